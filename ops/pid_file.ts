/**
 * The pid file `-p` names: refuses to start over a live instance, removed at exit.
 *
 * @module
 */

/** Another instance already owns the pid file. */
export class AlreadyRunning extends Error {
  constructor(readonly path: string, readonly pid: number) {
    super(`keeldns is already running (pid ${pid}, from ${path})`);
    this.name = "AlreadyRunning";
  }
}

/** Whether a process with this pid exists. */
function alive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Writes this process's pid to `path`; throws {@link AlreadyRunning} if a live pid is there. */
export function writePidFile(path: string): void {
  try {
    const old = Number(Deno.readTextFileSync(path).trim());
    if (Number.isInteger(old) && old > 0 && old !== Deno.pid && alive(old)) {
      throw new AlreadyRunning(path, old);
    }
  } catch (e) {
    if (e instanceof AlreadyRunning) throw e;
  }
  const temp = `${path}.${Deno.pid}.tmp`;
  Deno.writeTextFileSync(temp, `${Deno.pid}\n`);
  Deno.renameSync(temp, path);
}

/** Removes the pid file if it still holds this process's pid. */
export function removePidFile(path: string): void {
  try {
    if (Number(Deno.readTextFileSync(path).trim()) === Deno.pid) Deno.removeSync(path);
  } catch {
    // gone already
  }
}
