import { assert, assertEquals, assertThrows } from "../tests/helpers/assert.ts";
import { hasProgram, skipWithout } from "../tests/helpers/keeldns_process.ts";
import { promtoolCheck } from "../tests/helpers/promtool.ts";
import { escapeLabelValue, PrometheusText } from "./prometheus.ts";

function sample(): string {
  return new PrometheusText()
    .family("keeldns_queries_total", "counter", "Queries answered.")
    .sample("keeldns_queries_total", 3, { type: "A", reason: "cache" })
    .sample("keeldns_queries_total", 1, { type: "AAAA", reason: 'odd"\\\nvalue' })
    .family("keeldns_request_duration_seconds", "histogram", "Time to answer.")
    .histogram("keeldns_request_duration_seconds", { bounds: [0.001, 0.01], counts: [2, 1, 1], sum: 0.5 }, {
      reason: "upstream",
    })
    .family("keeldns_cache_entries", "gauge", "Answers cached.")
    .sample("keeldns_cache_entries", 0)
    .text();
}

Deno.test("prometheus text: help, type, escaped labels, cumulative buckets with +Inf, sum and count", () => {
  assertEquals(
    sample(),
    [
      "# HELP keeldns_queries_total Queries answered.",
      "# TYPE keeldns_queries_total counter",
      'keeldns_queries_total{type="A",reason="cache"} 3',
      'keeldns_queries_total{type="AAAA",reason="odd\\"\\\\\\nvalue"} 1',
      "# HELP keeldns_request_duration_seconds Time to answer.",
      "# TYPE keeldns_request_duration_seconds histogram",
      'keeldns_request_duration_seconds_bucket{reason="upstream",le="0.001"} 2',
      'keeldns_request_duration_seconds_bucket{reason="upstream",le="0.01"} 3',
      'keeldns_request_duration_seconds_bucket{reason="upstream",le="+Inf"} 4',
      'keeldns_request_duration_seconds_sum{reason="upstream"} 0.5',
      'keeldns_request_duration_seconds_count{reason="upstream"} 4',
      "# HELP keeldns_cache_entries Answers cached.",
      "# TYPE keeldns_cache_entries gauge",
      "keeldns_cache_entries 0",
      "",
    ].join("\n"),
  );
  assertEquals(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
});

Deno.test("prometheus text: refuses what Prometheus would (bad names, a counter without _total, a family twice)", () => {
  assertThrows(() => new PrometheusText().family("keeldns-bad", "gauge", "x"));
  assertThrows(() => new PrometheusText().family("keeldns_queries", "counter", "x"));
  assertThrows(() => new PrometheusText().family("a", "gauge", "x").family("a", "gauge", "x"));
  assertThrows(() => new PrometheusText().family("a", "gauge", "x").sample("a", 1, { "bad-label": "v" }));
});

Deno.test({
  name:
    "prometheus text: promtool check metrics accepts it, and rejects a broken one (so the check can fail)",
  ignore: skipWithout("promtool"),
  async fn() {
    const good = await promtoolCheck(sample());
    assertEquals(good.code, 0, good.output);
    assertEquals(good.output, "");
    // A counter without _total and a histogram without +Inf: promtool must complain.
    const bad = await promtoolCheck(
      '# HELP x_seconds y\n# TYPE x_seconds histogram\nx_seconds_bucket{le="1"} 1\nx_seconds_count 1\n' +
        "# HELP y_requests z\n# TYPE y_requests counter\ny_requests 1\n",
    );
    assert(bad.code !== 0 || bad.output !== "", "promtool found nothing wrong in a broken exposition");
    assert(hasProgram("promtool"));
  },
});
