/**
 * How this program's processes are started when the Deno runtime must run through a bundled glibc
 * loader (stock OpenWrt is musl): the launcher exports where the loader and its libraries are, and
 * every child is started the same way. Without those variables a command runs as it is.
 *
 * @module
 */

/** Environment variable naming the bundled glibc loader (`ld-linux-*.so.*`), set by the launcher. */
export const LOADER_ENV = "KEELDNS_LOADER";
/** Environment variable naming the directory of the bundled libraries, set by the launcher. */
export const LIBRARY_PATH_ENV = "KEELDNS_LIBRARY_PATH";

/** Which loader runs this process: the system's, or the bundled one at a path. */
export function loaderInUse(): string {
  const loader = Deno.env.get(LOADER_ENV);
  return loader ? `bundled glibc loader ${loader}` : "system loader";
}

/**
 * The command that starts `command args…` through the bundled loader when one is in use, else the
 * command unchanged.
 */
export function loaderCommand(command: string, args: string[]): { command: string; args: string[] } {
  const loader = Deno.env.get(LOADER_ENV);
  if (!loader) return { command, args };
  const libraries = Deno.env.get(LIBRARY_PATH_ENV);
  const prefix = libraries ? ["--library-path", libraries] : [];
  return { command: loader, args: [...prefix, command, ...args] };
}
