/**
 * How this program's processes are started when the Deno runtime must run through a bundled glibc
 * loader (stock OpenWrt is musl): the launcher exports where the loader and its libraries are, and
 * every child is started the same way. Without those variables a command runs as it is.
 *
 * Under `ld-linux-*.so.* --library-path DIR deno …` the kernel runs the loader, so
 * `Deno.execPath()` (/proc/self/exe) is the loader, not deno. The launcher therefore also exports
 * the real program's path (KEELDNS_DENO: the Deno runtime, or a compiled executable), and a command
 * naming the loader itself is taken to mean that program.
 *
 * The libraries named by `--library-path` are also where `dlopen` looks first, so FFI's
 * `Deno.dlopen("libc.so.6")` (net/linux_socket.ts) gets the bundled libc — the one already loaded.
 *
 * @module
 */

/** Environment variable naming the bundled glibc loader (`ld-linux-*.so.*`), set by the launcher. */
export const LOADER_ENV = "KEELDNS_LOADER";
/** Environment variable naming the directory of the bundled libraries, set by the launcher. */
export const LIBRARY_PATH_ENV = "KEELDNS_LIBRARY_PATH";
/** Environment variable naming the real program the loader runs (deno, or a compiled keeldns). */
export const RUNTIME_ENV = "KEELDNS_DENO";

/** What the launcher exported: each unset when not in use. */
export interface LoaderEnvironment {
  readonly loader?: string;
  readonly libraryPath?: string;
  readonly runtime?: string;
}

/** This process's loader environment. */
export function loaderEnvironment(): LoaderEnvironment {
  return {
    loader: Deno.env.get(LOADER_ENV) || undefined,
    libraryPath: Deno.env.get(LIBRARY_PATH_ENV) || undefined,
    runtime: Deno.env.get(RUNTIME_ENV) || undefined,
  };
}

/**
 * The command that starts `command args…` under `env` (pure; `loaderCommand` applies it to this
 * process's environment). With a loader: `loader [--library-path DIR] program args…`, where
 * `program` is the real runtime when `command` is the loader itself. Throws when `command` is the
 * loader and the runtime is unknown: the loader cannot run itself.
 */
export function commandThroughLoader(
  command: string,
  args: string[],
  env: LoaderEnvironment,
): { command: string; args: string[] } {
  if (!env.loader) return { command, args };
  let program = command;
  if (command === env.loader) {
    if (!env.runtime) {
      throw new Error(`${command} is the glibc loader and ${RUNTIME_ENV} is not set: no program to run`);
    }
    program = env.runtime;
  }
  const prefix = env.libraryPath ? ["--library-path", env.libraryPath] : [];
  return { command: env.loader, args: [...prefix, program, ...args] };
}

/** Which loader runs this process: the system's, or the bundled one at a path. */
export function loaderInUse(): string {
  const { loader } = loaderEnvironment();
  if (!loader) return "system loader";
  let self: string | undefined;
  try {
    self = Deno.execPath();
  } catch {
    // no read permission: trust the environment
  }
  if (self !== undefined && self !== loader) return `system loader (${LOADER_ENV}=${loader} not in use)`;
  return `bundled glibc loader ${loader}`;
}

/**
 * The command that starts `command args…` through the bundled loader when one is in use, else the
 * command unchanged. Under the loader, `Deno.execPath()` as `command` means the real runtime.
 */
export function loaderCommand(command: string, args: string[]): { command: string; args: string[] } {
  return commandThroughLoader(command, args, loaderEnvironment());
}
