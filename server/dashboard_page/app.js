// The keeldns dashboard page: logs in, then polls the API (server/dashboard.ts) and draws the
// charts (uPlot), top lists, query log, upstream table and configuration. No framework, no CDN.
"use strict";

const POLL_MS = 2000;
const $ = (selector) => document.querySelector(selector);
const state = { charts: {}, timer: 0, firstChartMs: undefined, logFilters: {} };
globalThis.keeldns = state;

/** Calls the API; throws with the server's message on an error status. */
async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    credentials: "same-origin",
    headers: { "x-keeldns": "1", "content-type": "application/json", ...(options.headers ?? {}) },
  });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401 && path !== "/api/login") {
    showLogin();
    throw new Error(body.error ?? "not logged in");
  }
  if (!response.ok) throw new Error(body.error ?? `${response.status}`);
  return body;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function status(text) {
  $("#status").textContent = text;
}

function showLogin() {
  clearInterval(state.timer);
  state.timer = 0;
  $("#main").hidden = true;
  $("#actions").hidden = true;
  $("#login").hidden = false;
}

function showMain(user) {
  $("#login").hidden = true;
  $("#main").hidden = false;
  $("#actions").hidden = false;
  status(`logged in as ${user}`);
  refresh();
  loadConfig();
  if (!state.timer) state.timer = setInterval(refresh, POLL_MS);
}

const fmt = (n) => n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e4 ? `${(n / 1e3).toFixed(1)}k` : String(n);

function drawTotals(stats, cache) {
  const c = stats.counters;
  const hits = (c.cache ?? 0) + (c.stale ?? 0);
  const cards = [
    ["queries", fmt(c.queries ?? 0)],
    ["cache hit ratio", c.queries ? `${(100 * hits / c.queries).toFixed(1)}%` : "–"],
    ["blocked", fmt((c.blocked ?? 0) + (c.soa ?? 0))],
    ["from upstream", fmt(c.upstream ?? 0)],
    ["cache entries", fmt(cache.entries ?? 0)],
  ];
  $("#totals").replaceChildren(
    ...cards.map(([label, value]) =>
      el("div", { class: "card", "data-card": label }, el("b", {}, value), el("span", {}, label))
    ),
  );
}

function chart(id, series, data) {
  const target = document.getElementById(id);
  const width = Math.max(300, target.clientWidth || 400);
  const existing = state.charts[id];
  const key = series.join("\n");
  if (existing && existing.keeldnsKey === key) {
    existing.setData(data);
    return;
  }
  existing?.destroy();
  const colors = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2"];
  state.charts[id] = new uPlot(
    {
      width,
      height: 200,
      series: [
        {},
        ...series.map((label, i) => ({
          label,
          stroke: colors[i % colors.length],
          width: 1.5,
          spanGaps: false,
          points: { show: true, size: 4, fill: colors[i % colors.length] },
        })),
      ],
      axes: [{}, { size: 50 }],
      scales: { x: { time: true } },
    },
    data,
    target,
  );
  if (state.firstChartMs === undefined) {
    state.firstChartMs = performance.now();
    document.body.dataset.firstChartMs = state.firstChartMs.toFixed(0);
  }
}

/** Buckets shown at least (ten minutes of 10-s buckets): a young series is padded before its start. */
const MIN_BUCKETS = 60;

function drawCharts(stats) {
  const series = stats.series;
  const pad = Math.max(0, MIN_BUCKETS - series.queries.length);
  const padded = (a, fill) => [...Array(pad).fill(fill), ...a];
  const s = {
    ...series,
    start: series.start - pad * series.step * 1000,
    queries: padded(series.queries, 0),
    cacheHits: padded(series.cacheHits, 0),
    blocked: padded(series.blocked, 0),
    upstreamLatencyMs: Object.fromEntries(
      Object.entries(series.upstreamLatencyMs).map(([k, v]) => [k, padded(v, null)]),
    ),
  };
  const xs = s.queries.map((_, i) => s.start / 1000 + i * s.step);
  const perSecond = (a) => a.map((v) => v / s.step);
  chart("chart-queries", ["queries", "cache hits", "blocked"], [
    xs,
    perSecond(s.queries),
    perSecond(s.cacheHits),
    perSecond(s.blocked),
  ]);
  chart("chart-hits", ["hit ratio"], [xs, s.queries.map((q, i) => q ? 100 * s.cacheHits[i] / q : null)]);
  const upstreams = Object.keys(s.upstreamLatencyMs);
  chart(
    "chart-latency",
    upstreams.length ? upstreams : ["(no upstream answers yet)"],
    [xs, ...(upstreams.length ? upstreams.map((u) => s.upstreamLatencyMs[u]) : [xs.map(() => null)])],
  );
}

function drawTop(id, list) {
  $(id).replaceChildren(
    ...list.map(([name, n]) => el("li", { "data-name": name }, name, el("span", {}, fmt(n)))),
  );
}

function time(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

function drawQueries(entries) {
  $("#queries tbody").replaceChildren(...entries.map((e) => {
    const why = el("button", { type: "button", textContent: "why?" });
    why.addEventListener("click", () => explain(e));
    return el(
      "tr",
      { "data-name": e.name, "data-reason": e.reason },
      el("td", {}, time(e.time)),
      el("td", {}, e.client),
      el("td", {}, e.name),
      el("td", {}, e.type),
      el("td", {}, e.rcode),
      el("td", {}, e.reason),
      el("td", {}, e.detail),
      el("td", { class: "num" }, e.elapsedMs.toFixed(1)),
      el("td", {}, e.answers.join(" ")),
      el("td", {}, why),
    );
  }));
}

async function explain(entry) {
  const out = $("#explain");
  out.hidden = false;
  out.textContent = `explaining ${entry.name} ${entry.type} …`;
  try {
    const q = new URLSearchParams({ name: entry.name, type: entry.type, client: entry.client });
    out.textContent = JSON.stringify(await api(`/api/explain?${q}`), null, 2);
  } catch (e) {
    out.textContent = `explain: ${e.message}`;
  }
}

function drawUpstreams(list) {
  $("#upstreams tbody").replaceChildren(...list.map((u) =>
    el(
      "tr",
      { class: u.state === "down" ? "down" : "", "data-address": u.address },
      el("td", {}, u.address + (u.fallback ? " (fallback)" : "")),
      el("td", {}, u.state),
      el("td", { class: "num" }, `${u.rttP50Ms.toFixed(1)} ms`),
      el("td", { class: "num" }, `${u.rttP95Ms.toFixed(1)} ms`),
      el("td", { class: "num" }, fmt(u.answers)),
      el("td", { class: "num" }, fmt(u.failures)),
      el("td", { class: "num" }, `${u.timeoutMs} ms`),
    )
  ));
}

/** Draws `draw(data)` only when `data` differs from what `key` drew last (the page polls). */
function changed(key, data, draw) {
  const text = JSON.stringify(data);
  if (state.drawn?.[key] === text) return;
  (state.drawn ??= {})[key] = text;
  draw(data);
}

async function loadQueries() {
  const q = new URLSearchParams({ limit: "100" });
  for (const [k, v] of Object.entries(state.logFilters)) if (v) q.set(k, v);
  changed("queries", await api(`/api/queries?${q}`), drawQueries);
}

async function refresh() {
  try {
    const [stats, upstreams, cache] = await Promise.all([
      api("/api/stats"),
      api("/api/upstreams"),
      api("/api/cache").catch(() => ({})),
    ]);
    drawTotals(stats, cache);
    drawCharts(stats);
    changed("top", stats.top, (top) => {
      drawTop("#top-names", top.names);
      drawTop("#top-clients", top.clients);
      drawTop("#top-blocked", top.blocked);
    });
    changed("upstreams", upstreams, drawUpstreams);
    await loadQueries();
    document.body.dataset.refreshed = String(Date.now());
  } catch (e) {
    status(`update failed: ${e.message}`);
  }
}

async function loadConfig() {
  try {
    const c = await api("/api/config");
    $("#config-path").textContent = `${c.path} (${c.format})`;
    const flagged = new Map();
    for (const u of c.unsupported) if (u.file === c.path) flagged.set(u.line, u);
    $("#config-unsupported").replaceChildren(
      ...c.unsupported.map((u) =>
        el("li", {}, `${u.file}:${u.line}: ${u.name} is not supported: ${u.reason ?? "ignored"}`)
      ),
    );
    $("#config-text").replaceChildren(
      ...c.text.split("\n").map((line, i) => {
        const u = flagged.get(i + 1);
        return el("div", {
          class: u ? "unsupported" : "",
          "data-line": String(i + 1),
          title: u ? `not supported: ${u.reason ?? u.name}` : "",
        }, line);
      }),
    );
  } catch (e) {
    $("#config-path").textContent = `configuration: ${e.message}`;
  }
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  $("#login-error").textContent = "";
  try {
    const r = await api("/api/login", {
      method: "POST",
      body: JSON.stringify({ user: form.get("user"), password: form.get("password") }),
    });
    event.target.reset();
    showMain(r.user);
  } catch (e) {
    $("#login-error").textContent = e.message;
  }
});

$("#search").addEventListener("submit", async (event) => {
  event.preventDefault();
  state.logFilters = Object.fromEntries(new FormData(event.target));
  await loadQueries().catch((e) => status(`search failed: ${e.message}`));
});

$("#flush").addEventListener("click", async () => {
  try {
    const r = await api("/api/cache/flush", { method: "POST", body: "{}" });
    status(`cache flushed: ${r.removed} entries removed`);
    refresh();
  } catch (e) {
    status(`flush failed: ${e.message}`);
  }
});

$("#reload").addEventListener("click", async () => {
  try {
    status((await api("/api/reload", { method: "POST", body: "{}" })).message);
  } catch (e) {
    status(`reload failed: ${e.message}`);
  }
  loadConfig();
});

$("#logout").addEventListener("click", async () => {
  await api("/api/logout", { method: "POST", body: "{}" }).catch(() => {});
  status("logged out");
  showLogin();
});

api("/api/session").then((s) => showMain(s.user), () => showLogin());
