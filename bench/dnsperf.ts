/**
 * One dnsperf run against a server on 127.0.0.1, the way every bench runs it: `clients` sockets,
 * one thread, up to 100 queries outstanding, the report written to a file (reading a pipe while
 * it runs would put this process on the CPUs the servers under test need); inside a network
 * namespace when asked.
 *
 * @module
 */
import { programPath } from "../tests/helpers/keeldns_process.ts";

/** What one run asks of dnsperf. */
export interface DnsperfRun {
  port: number;
  /** The query file. */
  file: string;
  /** Seconds to run (ignored with `runs`). */
  seconds: number;
  /** Passes over the file instead of a time limit. */
  runs?: number;
  /** A fixed query rate; latencies are then recorded and p50/p99 given. */
  rate?: number;
  clients: number;
  /** Transport dnsperf speaks (default udp); dot and doh open one connection per client. */
  mode?: "udp" | "tcp" | "dot" | "doh";
  /** Queries outstanding at once (default 100). */
  outstanding?: number;
  /**
   * dnsperf's socket buffers in kB (`-b`): with many outstanding, a burst of late answers overflows
   * its default ones, and those count as lost.
   */
  bufferKb?: number;
  /** Where dnsperf's report goes. */
  report: string;
  /** Run inside this network namespace (`ip netns exec`), against its 127.0.0.1. */
  netns?: string;
}

/** What dnsperf reported. */
export interface DnsperfResult {
  qps: number;
  lost: number;
  sent: number;
  completed: number;
  avgLatencyMs: number;
  /** Average response size in bytes. */
  responseBytes: number;
  /** With a fixed rate: latency percentiles over every response (ms). */
  p50Ms?: number;
  p99Ms?: number;
}

/** Runs dnsperf once and reads its report. */
export async function dnsperf(o: DnsperfRun): Promise<DnsperfResult> {
  const args = ["-s", "127.0.0.1", "-p", String(o.port), "-d", o.file, "-c", String(o.clients), "-T", "1"];
  args.push("-q", String(o.outstanding ?? 100));
  if (o.bufferKb) args.push("-b", String(o.bufferKb));
  if (o.mode && o.mode !== "udp") args.push("-m", o.mode);
  if (o.runs) args.push("-n", String(o.runs));
  else args.push("-l", String(o.seconds));
  if (o.rate) args.push("-Q", String(o.rate), "-v");
  const program = o.netns
    ? [programPath("ip"), "netns", "exec", o.netns, programPath("dnsperf")]
    : [programPath("dnsperf")];
  await new Deno.Command("sh", {
    args: ["-c", 'out="$1"; shift; exec "$@" > "$out"', "sh", o.report, ...program, ...args],
    stdout: "null",
    stderr: "null",
  }).output();
  const text = await Deno.readTextFile(o.report);
  const num = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
  const result: DnsperfResult = {
    qps: num(/Queries per second:\s+([\d.]+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    sent: num(/Queries sent:\s+(\d+)/),
    completed: num(/Queries completed:\s+(\d+)/),
    avgLatencyMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    responseBytes: num(/Average packet size:\s+request \d+, response (\d+)/),
  };
  if (o.rate) {
    const latencies = [...text.matchAll(/^> \S+ \S+ \S+ ([\d.]+)$/gm)].map((m) => Number(m[1]) * 1000)
      .sort((a, b) => a - b);
    const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))];
    result.p50Ms = at(0.5);
    result.p99Ms = at(0.99);
  }
  return result;
}
