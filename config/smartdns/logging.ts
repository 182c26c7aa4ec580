/**
 * SmartDNS's log and audit directives: `log-level`, `log-file`, `log-size`, `log-num`,
 * `log-console`, `log-file-mode`, and `audit-*`. The model halves are `LogConfig` and
 * `AuditConfig` in config/schema.ts.
 *
 * @module
 */
import { didYouMean } from "../errors.ts";
import { LOG_LEVELS, type LogLevel } from "../schema.ts";
import { parseFileMode } from "../values.ts";
import { type DirectiveTable, relativeTo } from "./reader.ts";

/** Reads SmartDNS's level names (`warning` is `warn`). */
function level(text: string): LogLevel {
  const name = text.toLowerCase() === "warning" ? "warn" : text.toLowerCase();
  if (!LOG_LEVELS.includes(name as LogLevel)) {
    throw new Error(`"${text}" is not a level (${LOG_LEVELS.join(", ")})${didYouMean(text, LOG_LEVELS)}`);
  }
  return name as LogLevel;
}

/** The log and audit directives. */
export const LOGGING: DirectiveTable = {
  "log-level": {
    toml: "log.level",
    status: "supported",
    handle: (d, l) => d.log.level = d.value(l, 1, level),
  },
  "log-file": { toml: "log.file", status: "supported", handle: (d, l) => d.log.file = d.text(l, 1) },
  "log-size": { toml: "log.size", status: "supported", handle: (d, l) => d.log.size = d.size(l, 1) },
  "log-num": { toml: "log.num", status: "supported", handle: (d, l) => d.log.num = d.integer(l, 1, 0, 1024) },
  "log-console": {
    toml: "log.console",
    status: "supported",
    note: "keeldns's default is yes: without a log file stderr is the only log, and it goes on",
    handle: (d, l) => d.log.console = d.yesNo(l, 1),
  },
  "log-file-mode": {
    toml: "log.file-mode",
    status: "supported",
    handle: (d, l) => d.log.fileMode = d.value(l, 1, parseFileMode),
  },
  "audit-enable": {
    toml: "audit.enable",
    status: "supported",
    handle: (d, l) => d.auditDraft().enable = d.yesNo(l, 1),
  },
  "audit-file": {
    toml: "audit.file",
    status: "supported",
    handle: (d, l) => d.auditDraft().file = relativeTo(l.file, d.text(l, 1)),
  },
  "audit-size": {
    toml: "audit.size",
    status: "supported",
    handle: (d, l) => d.auditDraft().size = d.size(l, 1),
  },
  "audit-num": {
    toml: "audit.num",
    status: "supported",
    note: "rotated files are FILE.1 … FILE.N, as the log's; 0 writes no file",
    handle: (d, l) => d.auditDraft().num = d.integer(l, 1, 0, 1024),
  },
  "audit-file-mode": {
    toml: "audit.file-mode",
    status: "supported",
    handle: (d, l) => d.auditDraft().fileMode = d.value(l, 1, parseFileMode),
  },
  "audit-console": {
    toml: "audit.console",
    status: "supported",
    note: "to stderr (keeldns's stdout talks to its guardian)",
    handle: (d, l) => d.auditDraft().console = d.yesNo(l, 1),
  },
  "audit-SOA": {
    toml: "audit.soa",
    status: "supported",
    handle: (d, l) => d.auditDraft().soa = d.yesNo(l, 1),
  },
};
