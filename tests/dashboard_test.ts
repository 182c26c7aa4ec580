/**
 * End to end: the dashboard in a real browser (Debian's chromium, driven by npm playwright-core)
 * against the real keeldns with a fake upstream. The page loads; a wrong password is refused and
 * the right one logs in; after queries sent here, the charts and the query log show them; a search
 * finds a name; Flush empties the cache (the next query for a cached name goes upstream again).
 * Also: a smartdns.conf's `plugin smartdns_ui.so` / `smartdns-ui.*` lines bring the same listener
 * up, with /healthz, /metrics and the configuration view flagging an unsupported line.
 *
 * With KEELDNS_SCREENSHOTS=DIR the browser test saves its screenshots there (docs/ has them).
 */
import { assert, assertEquals, assertMatch } from "./helpers/assert.ts";
import { udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { freePort, KeeldnsProcess, programPath, skipWithout } from "./helpers/keeldns_process.ts";
import { hashAdminPassword } from "../config/admin.ts";
import { makeTestPki } from "./helpers/test_pki.ts";
import type { Page } from "playwright-core";

const PASSWORD = "correct-horse-battery";

/** The page's DOM, as the functions run in the browser see it (the page's CSP forbids string eval). */
declare const document: {
  querySelector(selector: string): { textContent: string | null } | null;
  querySelectorAll(selector: string): ArrayLike<{ getAttribute(name: string): string | null }>;
};
const SCREENSHOTS = Deno.env.get("KEELDNS_SCREENSHOTS");

/**
 * Resolves once `predicate` is true in the page, polled through CDP (Playwright's waitForFunction
 * evaluates strings in the page, which its CSP rightly forbids).
 */
async function until(page: Page, predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!await page.evaluate(predicate)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${predicate}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A keeldns with the admin listener on a free port, and its fake upstream. */
async function start(): Promise<{ k: KeeldnsProcess; fake: FakeUpstream; admin: string; dir: string }> {
  const fake = await FakeUpstream.start();
  const adminPort = await freePort();
  const dir = await Deno.makeTempDir({ prefix: "keeldns-dashboard-" });
  const config =
    `[server]\nbind = ["127.0.0.1:{port}"]\n[[upstream]]\naddress = "udp://127.0.0.1:${fake.port}"\n` +
    `[cache]\nfile = "${dir}/cache"\n[log]\nlevel = "info"\n` +
    `[admin]\nlisten = "127.0.0.1:${adminPort}"\npassword-hash = "${hashAdminPassword(PASSWORD, 10_000)}"\n`;
  const k = await KeeldnsProcess.start(config);
  await k.waitFor(/admin listener .* on http:\/\/127\.0\.0\.1:\d+/);
  return { k, fake, admin: `http://127.0.0.1:${adminPort}`, dir };
}

Deno.test({
  name: "dashboard in Chromium: login, live charts and query log, search, flush empties the cache",
  ignore: skipWithout("chromium"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const { chromium } = await import("playwright-core");
    const { k, fake, admin, dir } = await start();
    const browser = await chromium.launch({
      executablePath: programPath("chromium"),
      args: ["--no-sandbox"],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
      const errors: string[] = [];
      page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
      page.on("pageerror", (e) => errors.push(String(e)));

      await page.goto(admin);
      await page.waitForSelector("#login-form", { state: "visible" });
      await page.fill("input[name=password]", "wrong password");
      await page.click("#login-form button[type=submit]");
      await until(page, () => /wrong/.test(document.querySelector("#login-error")?.textContent ?? ""));
      assert(await page.isHidden("#main"), "a wrong password shows nothing");
      if (SCREENSHOTS) await page.screenshot({ path: `${SCREENSHOTS}/dashboard-login.png` });

      await page.fill("input[name=password]", PASSWORD);
      await page.click("#login-form button[type=submit]");
      await page.waitForSelector("#main", { state: "visible" });
      const cookies = await page.context().cookies();
      const session = cookies.find((c) => c.name === "keeldns_session")!;
      assert(session.httpOnly && session.sameSite === "Strict", JSON.stringify(cookies));

      // One miss and two hits for one name, one miss for another.
      for (const name of ["dash-one.example", "dash-one.example", "dash-one.example", "dash-two.example"]) {
        assertEquals((await udpQuery(k.port, name, "A")).answers[0]?.data, "192.0.2.1");
      }
      assertEquals(fake.count("dash-one.example"), 1);
      await page.waitForSelector('#queries tr[data-name="dash-two.example"]', { timeout: 10_000 });
      assertEquals(
        await page.locator('#queries tr[data-name="dash-one.example"][data-reason="cache"]').count(),
        2,
      );
      // The charts got them: queries per second above 0, a hit ratio in the same bucket.
      await until(
        page,
        () => {
          const charts =
            (globalThis as unknown as { keeldns: { charts: Record<string, { data: number[][] }> } })
              .keeldns.charts;
          return charts["chart-queries"]?.data[1].some((v) => v > 0) &&
            charts["chart-hits"]?.data[1].some((v) => v !== null && v > 0) &&
            charts["chart-latency"]?.data.length === 2;
        },
      );
      await page.waitForSelector('#top-names li[data-name="dash-one.example"]');
      assertMatch(await page.textContent("#upstreams tr[data-address] td") ?? "", /127\.0\.0\.1/);
      await page.waitForSelector("#config-text div[data-line]");
      if (SCREENSHOTS) await page.screenshot({ path: `${SCREENSHOTS}/dashboard.png`, fullPage: true });

      // Search by name.
      await page.fill("#search input[name=name]", "dash-two");
      await page.click("#search button[type=submit]");
      await until(page, () => {
        const rows = Array.from(document.querySelectorAll("#queries tbody tr"));
        return rows.length > 0 && rows.every((r) => r.getAttribute("data-name") === "dash-two.example");
      });

      // Flush: the next query for a cached name goes upstream.
      await page.click("#flush");
      await until(
        page,
        () => /cache flushed: \d+ entries/.test(document.querySelector("#status")?.textContent ?? ""),
      );
      assertMatch(await page.textContent("#status") ?? "", /cache flushed: 2 entries removed/);
      await udpQuery(k.port, "dash-one.example", "A");
      assertEquals(fake.count("dash-one.example"), 2, "after the flush the name was asked upstream again");

      // Logged out, the API refuses.
      await page.click("#logout");
      await page.waitForSelector("#login-form", { state: "visible" });
      const after = await page.evaluate(() =>
        fetch("/api/stats", { headers: { "x-keeldns": "1" } }).then((r) => r.status)
      );
      assertEquals(after, 401);
      // The refused logins and the logged-out calls are 401s the page expects; nothing else.
      assertEquals(errors.filter((e) => !/status of 401/.test(e)), [], "no script, CSP or load errors");
    } finally {
      await browser.close();
      await k.stop();
      await fake.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "smartdns.conf: plugin smartdns_ui.so and smartdns-ui.* lines start the admin listener",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    const adminPort = await freePort();
    const dir = await Deno.makeTempDir({ prefix: "keeldns-dashboard-" });
    const k = await KeeldnsProcess.start(
      `bind 127.0.0.1:{port}\nserver 127.0.0.1:${fake.port}\ncache-file ${dir}/cache\nlog-level info\n` +
        `plugin /usr/lib/smartdns/smartdns_ui.so\nsmartdns-ui.ip http://127.0.0.1:${adminPort}\n` +
        `smartdns-ui.user root\nsmartdns-ui.password ${PASSWORD}\nsmartdns-ui.www-root /usr/share/smartdns/wwwroot\n`,
      { name: "smartdns.conf" },
    );
    try {
      await k.waitFor(/admin listener .* on http:\/\/127\.0\.0\.1:\d+/);
      const base = `http://127.0.0.1:${adminPort}`;
      const health = await fetch(`${base}/healthz`);
      assertEquals([health.status, /answered \. NS/.test(await health.text())], [200, true]);
      const metrics = await fetch(`${base}/metrics`);
      assertEquals(metrics.status, 200, "loopback: no token needed");
      assertMatch(await metrics.text(), /# TYPE keeldns_/);
      const api = { "x-keeldns": "1", "content-type": "application/json" };
      const wrong = await fetch(`${base}/api/login`, {
        method: "POST",
        headers: api,
        body: JSON.stringify({ user: "admin", password: PASSWORD }),
      });
      assertEquals(wrong.status, 401, "smartdns-ui.user root: admin is not the user");
      await wrong.body?.cancel();
      const ok = await fetch(`${base}/api/login`, {
        method: "POST",
        headers: api,
        body: JSON.stringify({ user: "root", password: PASSWORD }),
      });
      assertEquals(ok.status, 200);
      await ok.body?.cancel();
      const cookie = ok.headers.get("set-cookie")!.split(";")[0];
      const config = await (await fetch(`${base}/api/config`, { headers: { ...api, cookie } })).json();
      assertEquals(config.format, "smartdns");
      assertEquals(
        config.unsupported.map((u: { name: string; line: number }) => `${u.name}@${u.line}`),
        ["smartdns-ui.www-root@9"],
      );
      assert(config.text.includes("smartdns-ui.ip"));
    } finally {
      await k.stop();
      await fake.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "admin over HTTPS with the encrypted listeners' certificate: /healthz, a Secure cookie",
  ignore: skipWithout("openssl"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    const adminPort = await freePort();
    const dir = await Deno.makeTempDir({ prefix: "keeldns-dashboard-" });
    const pki = await makeTestPki(dir, "router.test");
    const k = await KeeldnsProcess.start(
      `[server]\nbind = ["127.0.0.1:{port}"]\ncert-file = "${pki.certFile}"\nkey-file = "${pki.keyFile}"\n` +
        `[[upstream]]\naddress = "udp://127.0.0.1:${fake.port}"\n[cache]\nfile = "${dir}/cache"\n` +
        `[log]\nlevel = "info"\n[admin]\nlisten = "https://127.0.0.1:${adminPort}"\n` +
        `password-hash = "${hashAdminPassword(PASSWORD, 10_000)}"\n`,
    );
    const client = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(pki.caFile)] });
    try {
      await k.waitFor(/admin listener .* on https:\/\/127\.0\.0\.1:\d+/);
      const base = `https://127.0.0.1:${adminPort}`;
      const health = await fetch(`${base}/healthz`, { client });
      assertEquals(health.status, 200, await health.text());
      const ok = await fetch(`${base}/api/login`, {
        client,
        method: "POST",
        headers: { "x-keeldns": "1" },
        body: JSON.stringify({ user: "admin", password: PASSWORD }),
      });
      assertEquals(ok.status, 200);
      await ok.body?.cancel();
      assertMatch(ok.headers.get("set-cookie")!, /HttpOnly; SameSite=Strict; Max-Age=3600; Secure$/);
    } finally {
      client.close();
      await k.stop();
      await fake.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
