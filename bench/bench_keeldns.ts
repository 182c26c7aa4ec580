/**
 * One keeldns under its guardian for a bench workload: a TOML of its own in the scratch
 * directory, listening on a free port, forwarding to the bench's upstream, its cache sized for
 * the names, logging only errors, tuned for speed; `extra` adds sections. Resolves once it
 * answers a bench name.
 *
 * @module
 */
import { freePort, keeldnsCommand } from "../tests/helpers/keeldns_process.ts";
import { waitForAnswer } from "../tests/helpers/peers.ts";

/** A running bench keeldns. */
export interface BenchKeeldns {
  readonly port: number;
  readonly process: Deno.ChildProcess;
  /** Its guardian's pid file (for `keeldns cache stats -p`, `keeldns metrics -p`). */
  readonly pidFile: string;
}

/** Where and what a bench keeldns serves. */
export interface BenchKeeldnsOptions {
  /** The scratch directory; its files are named after `name`. */
  readonly work: string;
  readonly name: string;
  /** The upstream's port (the bench's dnsmasq answering *.bench.test). */
  readonly upstream: number;
  /** Cache entries. */
  readonly cacheSize: number;
  /** More `[cache]` lines (each ending in a newline). */
  readonly cacheLines?: string;
  /** More sections (TOML text ending in a newline). */
  readonly extra?: string;
}

/** Starts a keeldns for a bench workload and waits until it answers. */
export async function startBenchKeeldns(o: BenchKeeldnsOptions): Promise<BenchKeeldns> {
  const port = await freePort();
  const config = `${o.work}/${o.name}.toml`;
  const pidFile = `${o.work}/${o.name}.pid`;
  await Deno.writeTextFile(
    config,
    `[server]\nbind = ["127.0.0.1:${port}"]\n[[upstream]]\naddress = "udp://127.0.0.1:${o.upstream}"\n` +
      `[cache]\nsize = ${o.cacheSize}\n${o.cacheLines ?? ""}` +
      `[log]\nlevel = "error"\n[guardian]\noptimize-for = "speed"\n${o.extra ?? ""}`,
  );
  const { command, args } = keeldnsCommand(["run", "-c", config, "-p", pidFile]);
  const process = new Deno.Command(command, { args, stdin: "null", stdout: "null", stderr: "null" }).spawn();
  await waitForAnswer(port, "ready.bench.test", "192.0.2.");
  return { port, process, pidFile };
}

/** Writes a dnsperf query file of `count` names `PREFIXi.bench.test A` to `path`. */
export async function writeBenchNames(path: string, prefix: string, count: number): Promise<void> {
  await Deno.writeTextFile(
    path,
    Array.from({ length: count }, (_, i) => `${prefix}${i}.bench.test A`).join("\n") + "\n",
  );
}
