/**
 * What the unit tests of the upstreams that keep one reused connection (DoT in
 * upstream/tls_test.ts, DoQ in upstream/quic_test.ts) share: the config of a test server on
 * loopback, asking it for an A record, catching the UpstreamError, running a test with a fresh
 * server and upstream, and the printed first-query and reuse timings.
 *
 * @module
 */
import type { TlsOptions, UpstreamConfig } from "../../config/schema.ts";
import { decodePacket } from "../../dns/packet.ts";
import { parseQuery } from "../../dns/wire.ts";
import { Cancel } from "../../upstream/cancel.ts";
import { type Upstream, UpstreamError } from "../../upstream/upstream.ts";
import { assert } from "./assert.ts";
import { buildQuery } from "./dns_client.ts";

/** How an upstream reports problems (the `log` option of TlsUpstream and QuicUpstream). */
export type UpstreamLog = (level: "error" | "warn", message: string) => void;

/** The config of a server on 127.0.0.1:`port` whose certificate is checked for `hostName`. */
export function loopbackConfig(
  transport: "tls" | "quic",
  port: number,
  hostName: string,
  tls: Partial<TlsOptions> = {},
): UpstreamConfig {
  return {
    transport,
    host: "127.0.0.1",
    port,
    groups: [],
    excludeDefault: false,
    tls: { verifyCertificate: true, spkiPins: [], hostName, ...tls },
  };
}

/** Asks `upstream` for the A record of `name` and returns the first address. */
export async function askA(upstream: Upstream, name: string, timeoutMs = 3000): Promise<string> {
  const q = parseQuery(buildQuery(name, "A"));
  const a = decodePacket(await upstream.exchange(q, Cancel.after(timeoutMs)));
  return (a.answers![0] as { data: string }).data;
}

/** The UpstreamError `promise` fails with; anything else, or no failure, fails the test. */
export async function failure(promise: Promise<unknown>): Promise<UpstreamError> {
  try {
    await promise;
  } catch (e) {
    assert(e instanceof UpstreamError, `expected an UpstreamError, got ${e}`);
    return e;
  }
  throw new Error("expected the exchange to fail");
}

/**
 * Runs `fn` with `server` and the upstream `connect` makes for it, then closes both; what the
 * upstream logs is collected as `level: message`.
 */
export async function withServerAndUpstream<S extends { close(): void }, U extends { close(): void }>(
  server: S,
  connect: (server: S, log: UpstreamLog) => U,
  fn: (server: S, upstream: U, logged: string[]) => Promise<void>,
): Promise<void> {
  const logged: string[] = [];
  const upstream = connect(server, (level, m) => logged.push(`${level}: ${m}`));
  try {
    await fn(server, upstream, logged);
  } finally {
    upstream.close();
    server.close();
  }
}

/** `Deno.test` for the tests named `prefix: …`, skipped when `ignore`, with no sanitizers. */
export function testsNamed(
  prefix: string,
  ignore: boolean,
): (name: string, fn: () => Promise<void>) => void {
  return (name, fn) =>
    Deno.test({
      name: `${prefix}: ${name}`,
      ignore,
      sanitizeOps: false,
      sanitizeResources: false,
      fn,
    });
}

/**
 * Prints how long the first query took (the connection opened), then 200 sequential queries
 * on the reused connection (median, p99) and 1000 concurrent ones (each given `concurrentMs`).
 */
export async function printReuseTimings(
  label: string,
  ask: (name: string, timeoutMs?: number) => Promise<string>,
  concurrentMs: number,
): Promise<void> {
  let t = performance.now();
  await ask("q1.test");
  const first = performance.now() - t;
  const times: number[] = [];
  for (let i = 0; i < 200; i++) {
    t = performance.now();
    await ask(`q${i % 50}.test`);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  t = performance.now();
  await Promise.all(Array.from({ length: 1000 }, (_, i) => ask(`q${i % 50}.test`, concurrentMs)));
  const concurrent = (performance.now() - t) / 1000;
  console.log(
    `${label} first query ${first.toFixed(1)} ms; reused: median ${times[100].toFixed(3)} ms, ` +
      `p99 ${times[198].toFixed(3)} ms sequential; ${concurrent.toFixed(3)} ms/query for 1000 concurrent`,
  );
}
