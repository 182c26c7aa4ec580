/**
 * Crash reports: one file per dead child next to the pid file, newest `keep` kept.
 *
 * @module
 */

/** What the guardian knows about a child that died. */
export interface CrashReport {
  readonly time: Date;
  readonly pid: number;
  /** e.g. "exited with code 1 (could not bind its sockets)" or "was killed by SIGKILL". */
  readonly how: string;
  readonly uptimeMs: number;
  /** Milliseconds from its start to ready; undefined if it never became ready. */
  readonly readyAfterMs?: number;
  /** The start-up stage it last reported (what it was doing if it never became ready). */
  readonly lastStage?: string;
  readonly restarts: number;
  readonly config: string;
  /** The child's last lines of output, oldest first. */
  readonly output: readonly string[];
}

const PREFIX = "keeldns-crash-";

/** The report as text. */
export function formatCrashReport(r: CrashReport): string {
  return [
    "keeldns child crash report",
    `time: ${r.time.toISOString()}`,
    `child pid: ${r.pid}`,
    `how: ${r.how}`,
    `uptime: ${(r.uptimeMs / 1000).toFixed(1)} s`,
    r.readyAfterMs === undefined
      ? `ready: never (last start-up stage: ${r.lastStage ?? "none reported"})`
      : `ready: after ${(r.readyAfterMs / 1000).toFixed(1)} s`,
    `restarts before this one: ${r.restarts}`,
    `config: ${r.config}`,
    `last ${r.output.length} lines of the child's output:`,
    ...r.output.map((l) => `  ${l}`),
    "",
  ].join("\n");
}

/** Writes the report into `dir` and deletes all but the newest `keep`; returns the new file's path. */
export async function writeCrashReport(dir: string, report: CrashReport, keep: number): Promise<string> {
  const stamp = report.time.toISOString().replace(/[:.]/g, "-");
  const path = `${dir}/${PREFIX}${stamp}-${report.pid}.log`;
  await Deno.writeTextFile(path, formatCrashReport(report), { mode: 0o640 });
  const reports: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && entry.name.startsWith(PREFIX) && entry.name.endsWith(".log")) {
      reports.push(entry.name);
    }
  }
  reports.sort();
  for (const old of reports.slice(0, Math.max(0, reports.length - keep))) {
    await Deno.remove(`${dir}/${old}`).catch(() => {});
  }
  return path;
}
