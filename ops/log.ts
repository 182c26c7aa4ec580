/**
 * The one door to `npm:@logtape/logtape`: sets up logging for a process (stderr, and optionally a
 * size-rotated file as SmartDNS's `log-file`, `log-size`, `log-num` describe) and hands out loggers.
 *
 * @module
 */
import {
  configureSync,
  getLogger as logtapeLogger,
  getTextFormatter,
  type Logger,
  type LogLevel as LogtapeLevel,
  type LogRecord,
  resetSync,
  type Sink,
} from "@logtape/logtape";
import type { LogConfig, LogLevel } from "../config/schema.ts";

export type { Logger };

/** Maps SmartDNS level names to logtape's; `off` maps to null. */
const LEVELS: Record<LogLevel, LogtapeLevel | null> = {
  off: null,
  fatal: "fatal",
  error: "error",
  warn: "warning",
  notice: "info",
  info: "info",
  debug: "debug",
};

const format = getTextFormatter({
  timestamp: "date-time-tz",
  category: ".",
  value: (v: unknown) => typeof v === "string" ? v : v instanceof Error ? v.message : Deno.inspect(v),
});
const encoder = new TextEncoder();

/** A sink that writes whole lines to stderr synchronously (so nothing is lost at exit). */
function stderrSink(): Sink {
  return (record: LogRecord) => {
    try {
      Deno.stderr.writeSync(encoder.encode(format(record)));
    } catch {
      // stderr gone (parent died): nothing sensible left to do with the line.
    }
  };
}

/**
 * A sink appending to `path` (created with permission bits `mode`), rotating to `path.1` …
 * `path.N` when the file would pass `maxBytes`. Write errors are reported once on stderr and the
 * file sink then stays quiet.
 */
export function rotatingFileSink(path: string, maxBytes: number, keep: number, mode = 0o640): Sink {
  let file: Deno.FsFile | undefined;
  let size = 0;
  let broken = false;
  const open = () => {
    file = Deno.openSync(path, { append: true, create: true, mode });
    size = file.statSync().size;
    if (size === 0) Deno.chmodSync(path, mode); // the umask may have taken bits off
  };
  const rotate = () => {
    file?.close();
    file = undefined;
    for (let i = keep - 1; i >= 1; i--) {
      try {
        Deno.renameSync(`${path}.${i}`, `${path}.${i + 1}`);
      } catch {
        // that generation does not exist yet
      }
    }
    if (keep >= 1) Deno.renameSync(path, `${path}.1`);
    else Deno.truncateSync(path, 0);
  };
  return (record: LogRecord) => {
    if (broken) return;
    try {
      const bytes = encoder.encode(format(record));
      if (!file) open();
      if (size > 0 && size + bytes.length > maxBytes) {
        rotate();
        open();
      }
      file!.writeSync(bytes);
      size += bytes.length;
    } catch (e) {
      broken = true;
      Deno.stderr.writeSync(
        encoder.encode(`keeldns: cannot write log file ${path}: ${(e as Error).message}\n`),
      );
    }
  };
}

/**
 * Configures logging for this process: stderr, plus the file sink when one is set (then stderr
 * only if `console` is not false: SmartDNS's `log-console no`).
 */
export function setupLogging(
  config:
    & Pick<LogConfig, "level" | "file" | "size" | "num">
    & Partial<Pick<LogConfig, "console" | "fileMode">>,
  useFile = true,
): void {
  const level = LEVELS[config.level];
  const sinks: Record<string, Sink> = { stderr: stderrSink() };
  const withFile = useFile && config.file !== undefined && config.num > 0;
  if (withFile) sinks.file = rotatingFileSink(config.file!, config.size, config.num, config.fileMode);
  const used = withFile && config.console === false ? ["file"] : Object.keys(sinks);
  resetSync();
  configureSync({
    reset: true,
    sinks,
    loggers: [
      { category: ["keeldns"], lowestLevel: level ?? "fatal", sinks: level ? used : [] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** Returns the logger for a part of keeldns, e.g. `getLogger("child")`. */
export function getLogger(part: string): Logger {
  return logtapeLogger(["keeldns", part]);
}
