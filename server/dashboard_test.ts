import { assert, assertEquals, assertMatch } from "../tests/helpers/assert.ts";
import { hashAdminPassword } from "../config/admin.ts";
import type { AdminConfig } from "../config/schema.ts";
import { getLogger } from "../ops/log.ts";
import { metricsRefusal } from "./admin_listener.ts";
import {
  Dashboard,
  type DashboardBackend,
  LOGIN_BURST,
  passwordMatches,
  type QueryLogSearch,
} from "./dashboard.ts";
import { DASHBOARD_ASSETS } from "./dashboard_assets.ts";
import { PAGE_FILES } from "./dashboard_page/build_assets.ts";
import { redactSecrets } from "./dashboard_backend.ts";

const HASH = hashAdminPassword("right horse", 2000);

function fakeBackend(searches: QueryLogSearch[] = []): DashboardBackend {
  return {
    queryLog: {
      search: (q) => {
        searches.push(q);
        return [];
      },
    },
    statsSnapshot: () => ({
      series: { start: 0, step: 10, queries: [1], cacheHits: [0], blocked: [0], upstreamLatencyMs: {} },
      counters: { queries: 1 },
      top: { names: [], clients: [], blocked: [] },
    }),
    metricsText: () => "",
    upstreams: () => [],
    cacheStats: () => ({ entries: 0 }),
    flushCache: () => Promise.resolve({ removed: 3 }),
    reload: () => Promise.resolve({ ok: true, message: "reloaded" }),
    configuration: () => ({ path: "/k.toml", format: "toml", text: "", unsupported: [], warnings: [] }),
    health: () => Promise.resolve({ ok: true, message: "ok" }),
  };
}

function dashboard(backend = fakeBackend(), hash: string | null = HASH): Dashboard {
  return new Dashboard(backend, {
    user: "admin",
    sessionSeconds: 60,
    secure: false,
    passwordHash: () => Promise.resolve(hash ?? undefined),
  }, getLogger("test"));
}

function req(path: string, init: RequestInit & { cookie?: string } = {}): Request {
  const headers = new Headers(init.headers);
  if (!headers.has("x-keeldns")) headers.set("x-keeldns", "1");
  if (init.cookie) headers.set("cookie", init.cookie);
  return new Request(`http://127.0.0.1:6080${path}`, { ...init, headers });
}

async function login(d: Dashboard, password: string, client = "127.0.0.1"): Promise<Response> {
  return (await d.handle(
    req("/api/login", { method: "POST", body: JSON.stringify({ user: "admin", password }) }),
    client,
  ))!;
}

Deno.test("the page and its assets are served with a strict content security policy", async () => {
  const d = dashboard();
  const page = (await d.handle(new Request("http://127.0.0.1:6080/"), "127.0.0.1"))!;
  assertEquals(page.status, 200);
  assertMatch(page.headers.get("content-security-policy")!, /script-src 'self'/);
  assertMatch(await page.text(), /<script src="\/assets\/app.js"/);
  const uplot = (await d.handle(new Request("http://127.0.0.1:6080/assets/uPlot.iife.min.js"), "::1"))!;
  assertEquals(uplot.headers.get("content-type"), "text/javascript; charset=utf-8");
  assertEquals((await d.handle(new Request("http://127.0.0.1:6080/assets/nope.js"), "::1"))!.status, 404);
  assertEquals(await d.handle(new Request("http://127.0.0.1:6080/other"), "::1"), null);
});

Deno.test("the API needs its header, a session, and the same origin", async () => {
  const d = dashboard();
  const bare = new Request("http://127.0.0.1:6080/api/stats");
  assertEquals((await d.handle(bare, "127.0.0.1"))!.status, 403);
  assertEquals((await d.handle(req("/api/stats"), "127.0.0.1"))!.status, 401);
  const ok = await login(d, "right horse");
  assertEquals(ok.status, 200);
  const cookie = ok.headers.get("set-cookie")!;
  assertMatch(cookie, /^keeldns_session=[0-9a-f]{64}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=60$/);
  const session = cookie.split(";")[0];
  assertEquals((await d.handle(req("/api/stats", { cookie: session }), "127.0.0.1"))!.status, 200);
  const foreign = req("/api/stats", { cookie: session, headers: { origin: "http://evil.example" } });
  assertEquals((await d.handle(foreign, "127.0.0.1"))!.status, 403);
  const out = await d.handle(req("/api/logout", { method: "POST", cookie: session }), "127.0.0.1");
  assertMatch(out!.headers.get("set-cookie")!, /Max-Age=0/);
  assertEquals((await d.handle(req("/api/stats", { cookie: session }), "127.0.0.1"))!.status, 401);
});

Deno.test("failed logins are refused, then rate-limited per client", async () => {
  const d = dashboard();
  for (let i = 0; i < LOGIN_BURST; i++) assertEquals((await login(d, "wrong")).status, 401);
  const limited = await login(d, "right horse");
  assertEquals(limited.status, 429, "even the right password waits");
  assert(Number(limited.headers.get("retry-after")) > 0);
  assertEquals((await login(d, "right horse", "127.0.0.2")).status, 200, "another client is not held up");
});

Deno.test("without a password set, login says how to set one", async () => {
  const r = await login(dashboard(fakeBackend(), null), "anything");
  assertEquals(r.status, 503);
  assertMatch((await r.json()).error, /keeldns admin-password/);
});

Deno.test("the query-log search passes its filters; flush and reload go to the backend", async () => {
  const searches: QueryLogSearch[] = [];
  const d = dashboard(fakeBackend(searches));
  const session = (await login(d, "right horse")).headers.get("set-cookie")!.split(";")[0];
  const r = await d.handle(
    req("/api/queries?name=example&type=aaaa&reason=Cache&limit=5000", { cookie: session }),
    "::1",
  );
  assertEquals(r!.status, 200);
  assertEquals(searches, [{
    name: "example",
    client: undefined,
    type: "AAAA",
    reason: "cache",
    limit: 1000,
  }]);
  const flush = await d.handle(
    req("/api/cache/flush", { method: "POST", body: "{}", cookie: session }),
    "::1",
  );
  assertEquals(await flush!.json(), { removed: 3 });
  const reload = await d.handle(req("/api/reload", { method: "POST", cookie: session }), "::1");
  assertEquals((await reload!.json()).ok, true);
  const explain = await d.handle(req("/api/explain?name=a.example", { cookie: session }), "::1");
  assertEquals(explain!.status, 501, "no explain backend yet");
});

Deno.test("passwordMatches (WebCrypto) agrees with the hash keeldns admin-password makes", async () => {
  assert(await passwordMatches("right horse", HASH));
  assert(!await passwordMatches("right horse!", HASH));
  assert(!await passwordMatches("", "garbage"));
});

Deno.test("/metrics: open on loopback, a token required beyond it or whenever one is set", () => {
  const admin = (host: string, metricsToken?: string): AdminConfig => ({
    host,
    port: 6080,
    https: false,
    user: "admin",
    sessionSeconds: 60,
    queryLogAge: 0,
    ...(metricsToken ? { metricsToken } : {}),
  });
  assertEquals(metricsRefusal(admin("127.0.0.1"), null), null);
  assertEquals(metricsRefusal(admin("0.0.0.0"), null)?.status, 403);
  assertEquals(metricsRefusal(admin("0.0.0.0", "t0k"), null)?.status, 401);
  assertEquals(metricsRefusal(admin("0.0.0.0", "t0k"), "Bearer t0kk")?.status, 401);
  assertEquals(metricsRefusal(admin("0.0.0.0", "t0k"), "Bearer t0k"), null);
  assertEquals(metricsRefusal(admin("::1", "t0k"), "Bearer nope")?.status, 401);
});

Deno.test("server/dashboard_assets.ts holds the page's files as they are (run `deno task dashboard-assets`)", async () => {
  for (const name of Object.keys(PAGE_FILES)) {
    const file = await Deno.readTextFile(new URL(`./dashboard_page/${name}`, import.meta.url));
    assert(DASHBOARD_ASSETS[name]?.body === file, `${name} differs: run deno task dashboard-assets`);
  }
  assertMatch(
    DASHBOARD_ASSETS["uPlot.iife.min.js"].body,
    /^\/\*! https:\/\/github.com\/leeoniya\/uPlot \(v1\.6\.32\)/,
  );
  const bytes = Object.values(DASHBOARD_ASSETS).reduce((n, a) => n + a.body.length, 0);
  assert(bytes < 300_000, `the page weighs ${bytes} bytes`);
});

Deno.test("the configuration view hides passwords, hashes, tokens and key passphrases", () => {
  const toml =
    '[admin]\npassword-hash = "pbkdf2-sha256$1$a$b"\nmetrics-token = "t"\nlisten = "127.0.0.1:6080"\n';
  assertEquals(
    redactSecrets(toml),
    '[admin]\npassword-hash = "(hidden)"\nmetrics-token = "(hidden)"\nlisten = "127.0.0.1:6080"\n',
  );
  assertEquals(
    redactSecrets("smartdns-ui.password hunter2\nbind-cert-key-pass x y\nserver 1.1.1.1"),
    "smartdns-ui.password (hidden)\nbind-cert-key-pass (hidden)\nserver 1.1.1.1",
  );
});
