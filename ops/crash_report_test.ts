import { assertMatch } from "../tests/helpers/assert.ts";
import { type CrashReport, formatCrashReport } from "./crash_report.ts";

const base: CrashReport = {
  time: new Date("2026-01-02T03:04:05.000Z"),
  pid: 42,
  how: "was killed by SIGKILL",
  uptimeMs: 61_500,
  restarts: 3,
  config: "/etc/keeldns/keeldns.toml",
  output: ["a line"],
};

Deno.test("a crash report says when the child became ready", () => {
  const text = formatCrashReport({ ...base, readyAfterMs: 1234, lastStage: "binding listeners" });
  assertMatch(text, /^how: was killed by SIGKILL$/m);
  assertMatch(text, /^uptime: 61\.5 s$/m);
  assertMatch(text, /^ready: after 1\.2 s$/m);
  assertMatch(text, /^last 1 lines of the child's output:\n {2}a line$/m);
});

Deno.test("a crash report of a child that never became ready names its last start-up stage", () => {
  assertMatch(
    formatCrashReport({ ...base, lastStage: "loading the cache file" }),
    /^ready: never \(last start-up stage: loading the cache file\)$/m,
  );
  assertMatch(formatCrashReport(base), /^ready: never \(last start-up stage: none reported\)$/m);
});
