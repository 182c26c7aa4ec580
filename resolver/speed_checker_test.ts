import { assert, assertEquals, assertLess } from "../tests/helpers/assert.ts";
import { NEXT_KIND_AFTER_MS, type Probe, SpeedChecker } from "./speed_checker.ts";

const after = (ms: number, value: number | undefined): Promise<number | undefined> =>
  new Promise((r) => setTimeout(() => r(value), ms));

Deno.test("speed check: the next probe kind starts after 100 ms without a result, the first result wins", async () => {
  const started: string[] = [];
  const silent: Probe = (ip) => (started.push(`ping ${ip}`), after(400, undefined));
  const tcp: Probe = (ip) => (started.push(`tcp ${ip}`), after(5, 7));
  const checker = new SpeedChecker([{ kind: "ping" }, { kind: "tcp", port: 80 }], [silent, tcp]);
  const t0 = performance.now();
  assertEquals(await checker.check("10.0.0.1", 950), 7);
  const took = performance.now() - t0;
  assert(took >= NEXT_KIND_AFTER_MS, `tcp started after the ping had ${NEXT_KIND_AFTER_MS} ms: ${took}`);
  assertLess(took, 350, "the silent ping is not waited for");
  assertEquals(started, ["ping 10.0.0.1", "tcp 10.0.0.1"]);
});

Deno.test("speed check: a kind that fails at once hands over to the next at once", async () => {
  const failing: Probe = () => Promise.resolve(undefined);
  const tcp: Probe = () => after(1, 3);
  const checker = new SpeedChecker([{ kind: "ping" }, { kind: "tcp", port: 443 }], [failing, tcp]);
  const t0 = performance.now();
  assertEquals(await checker.check("10.0.0.2", 950), 3);
  assertLess(performance.now() - t0, NEXT_KIND_AFTER_MS - 20);
});

Deno.test("speed check: results are kept per address, probes in flight are joined, failures end in the budget", async () => {
  let probes = 0;
  const never: Probe = (_ip, timeout) => (probes++, after(Math.min(timeout, 1000), undefined));
  let now = 0;
  const checker = new SpeedChecker([{ kind: "ping" }], [never], () => now);
  const t0 = performance.now();
  const [a, b] = await Promise.all([checker.check("10.0.0.3", 150), checker.check("10.0.0.3", 150)]);
  assertEquals([a, b], [undefined, undefined]);
  assertLess(performance.now() - t0, 400);
  assertEquals(probes, 1, "two checks of one address share one probe");
  assertEquals(await checker.check("10.0.0.3", 150), undefined);
  assertEquals(probes, 1, "the failure is remembered");
  now += 61_000;
  await checker.check("10.0.0.3", 50);
  assertEquals(probes, 2, "and forgotten after a minute");
});
