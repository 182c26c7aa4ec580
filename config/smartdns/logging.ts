/**
 * SmartDNS's log directives: `log-level`, `log-file`, `log-size`, `log-num`. The model half is
 * `LogConfig` in config/schema.ts.
 *
 * @module
 */
import { didYouMean } from "../errors.ts";
import { LOG_LEVELS, type LogLevel } from "../schema.ts";
import type { DirectiveTable } from "./reader.ts";

/** Reads SmartDNS's level names (`warning` is `warn`). */
function level(text: string): LogLevel {
  const name = text.toLowerCase() === "warning" ? "warn" : text.toLowerCase();
  if (!LOG_LEVELS.includes(name as LogLevel)) {
    throw new Error(`"${text}" is not a level (${LOG_LEVELS.join(", ")})${didYouMean(text, LOG_LEVELS)}`);
  }
  return name as LogLevel;
}

/** The log directives. */
export const LOGGING: DirectiveTable = {
  "log-level": {
    toml: "log.level",
    status: "supported",
    handle: (d, l) => d.log.level = d.value(l, 1, level),
  },
  "log-file": { toml: "log.file", status: "supported", handle: (d, l) => d.log.file = d.text(l, 1) },
  "log-size": { toml: "log.size", status: "supported", handle: (d, l) => d.log.size = d.size(l, 1) },
  "log-num": { toml: "log.num", status: "supported", handle: (d, l) => d.log.num = d.integer(l, 1, 0, 1024) },
};
