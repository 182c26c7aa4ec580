import { assertEquals } from "../tests/helpers/assert.ts";
import { RollingSeries } from "./rolling_series.ts";

Deno.test("rolling series: buckets in time order, old ones dropped as the window moves", () => {
  const s = new RollingSeries(10_000, 3, ["queries"]);
  const t0 = 1_000_000_000; // a bucket boundary (width 10 s)
  s.values[0][s.slot(t0 + 1)]++;
  s.values[0][s.slot(t0 + 9_999)]++;
  s.values[0][s.slot(t0 + 10_000)] += 5;
  assertEquals(s.rows(t0 + 20_000), { widthSeconds: 10, start: t0, values: { queries: [2, 5, 0] } });
  // Two buckets later the first has left the window, and its slot is reused empty.
  s.values[0][s.slot(t0 + 30_000)]++;
  assertEquals(s.rows(t0 + 30_000).values.queries, [5, 0, 1]);
  assertEquals(s.rows(t0 + 60_000).values.queries, [0, 0, 0]);
});

Deno.test("rolling series: a successor adds a predecessor's buckets by time; another shape is ignored", () => {
  const t0 = 2_000_000_000;
  const old = new RollingSeries(10_000, 4, ["queries", "cache"]);
  old.values[0][old.slot(t0)] = 3;
  old.values[1][old.slot(t0)] = 2;
  old.values[0][old.slot(t0 + 10_000)] = 4;
  const next = new RollingSeries(10_000, 4, ["queries", "cache"]);
  next.values[0][next.slot(t0 + 10_000)] = 1;
  next.merge(JSON.parse(JSON.stringify(old.state(t0 + 10_000))), t0 + 10_000);
  next.merge({ widthMs: 60_000, fields: ["queries"], buckets: [[t0 / 60_000, 99]] }, t0 + 10_000);
  assertEquals(next.rows(t0 + 10_000).values, { queries: [0, 0, 3, 5], cache: [0, 0, 2, 0] });
});
