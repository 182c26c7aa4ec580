/**
 * A keeldns checkout a bench runs side by side with others (e.g. a `git worktree` of an older
 * commit): which commit it is, and the command line that runs it.
 *
 * @module
 */

/** The checkout's short commit, and whether its code (tests, bench and docs aside) has uncommitted changes. */
export async function checkoutState(dir: string): Promise<{ commit: string; dirty: boolean }> {
  const out = await new Deno.Command("git", { args: ["-C", dir, "rev-parse", "--short", "HEAD"] }).output();
  const status = await new Deno.Command("git", {
    args: [
      "-C",
      dir,
      "status",
      "--porcelain",
      "--untracked-files=no",
      "--",
      ".",
      ":!tests",
      ":!bench",
      ":!docs",
    ],
  }).output();
  return {
    commit: new TextDecoder().decode(out.stdout).trim(),
    dirty: new TextDecoder().decode(status.stdout).trim() !== "",
  };
}

/** The arguments of `Deno.execPath()` that run `keeldns ARGS` from the checkout in `dir`. */
export function checkoutArgs(dir: string, args: string[]): string[] {
  return ["run", "-A", "--config", `${dir}/deno.json`, `${dir}/main.ts`, ...args];
}
