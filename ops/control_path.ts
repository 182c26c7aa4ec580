/**
 * Where the guardian's control socket lives, shared by the guardian and the commands that talk to it.
 *
 * @module
 */
import { controlPathFor } from "./control_channel.ts";

/** The default control socket when no pid file is given. */
export const DEFAULT_CONTROL_PATH = "/run/keeldns.sock";

/** The control socket to use: explicit, beside the pid file, or the default when /run is writable. */
export function resolveControlPath(controlPath?: string, pidFile?: string): string | undefined {
  if (controlPath) return controlPath;
  if (pidFile) return controlPathFor(pidFile);
  try {
    Deno.statSync("/run");
    Deno.writeTextFileSync("/run/.keeldns-probe", "");
    Deno.removeSync("/run/.keeldns-probe");
    return DEFAULT_CONTROL_PATH;
  } catch {
    return undefined;
  }
}
