/**
 * SmartDNS's process directives that keeldns honours by what it always does: `conf-file`
 * (includes), `restart-on-crash` (the guardian), `no-daemon` (it runs in the foreground).
 *
 * @module
 */
import type { DirectiveTable } from "./reader.ts";

/** The general directives. */
export const GENERAL: DirectiveTable = {
  "conf-file": {
    toml: "(none: one file)",
    status: "partly",
    note: "globs, relative to the including file; -group is not honoured yet",
    handle: (d, l) => d.include(l),
  },
  "restart-on-crash": {
    toml: "(always: the guardian)",
    status: "supported",
    handle: (d, l) => {
      // keeldns always runs its guardian (--no-guardian is the way out); "yes" is what it does.
      if (!d.yesNo(l, 1)) d.notSupported("restart-on-crash no", l, 0, "use --no-guardian");
    },
  },
  "no-daemon": {
    toml: "(always: foreground)",
    status: "supported",
    handle: (d, l) => void d.yesNo(l, 1), // keeldns never daemonizes
  },
};
