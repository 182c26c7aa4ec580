/**
 * The dashboard behind the admin listener: the page and its assets, login (a password checked
 * against its PBKDF2 hash, a session cookie HttpOnly + SameSite=Strict, failed logins rate-limited
 * per client), and the JSON API the page polls: statistics and series, top lists, the query log
 * with search, the upstream table, cache flush, reload, the configuration with its unsupported
 * lines, and the explanation of one query. What it shows comes from a {@link DashboardBackend}.
 *
 * API (every path but the page, its assets and login needs a session; every `/api/` request the
 * `X-Keeldns: 1` header, which a cross-site form cannot send):
 * - `POST /api/login` `{user, password}` → 200 and the cookie, 401, 429 (Retry-After), 503 (no
 *   password set); `POST /api/logout`; `GET /api/session` → `{user}` or 401
 * - `GET /api/stats` → {@link DashboardStats}; `GET /api/upstreams`; `GET /api/cache`
 * - `GET /api/queries?name=&client=&type=&reason=&limit=` → {@link QueryLogEntry}[]
 * - `POST /api/cache/flush` `{pattern?}` → `{removed}`; `POST /api/reload` → `{ok, message}`
 * - `GET /api/config` → {@link ConfigView}; `GET /api/explain?name=&type=&client=`
 *
 * @module
 */
import type { QueryLogEntry, QueryLogQuery } from "../ops/query_log.ts";
import type { UpstreamHealthReport } from "../upstream/health.ts";
import type { Logger } from "../ops/log.ts";
import { DASHBOARD_ASSETS } from "./dashboard_assets.ts";

/** What the page may ask of the query log (ops/query_log.ts), with a limit always given. */
export type QueryLogSearch = QueryLogQuery & { readonly limit: number };

/** What the charts and top lists show (the metrics part's `statsSnapshot()`). */
export interface DashboardStats {
  /** Per-bucket series, oldest first: bucket `i` starts at `start + i * step * 1000` (ms). */
  readonly series: {
    readonly start: number;
    readonly step: number;
    readonly queries: readonly number[];
    readonly cacheHits: readonly number[];
    readonly blocked: readonly number[];
    /** Mean answer time of each upstream per bucket (ms), null where it answered nothing. */
    readonly upstreamLatencyMs: Readonly<Record<string, readonly (number | null)[]>>;
  };
  /** Totals since start (queries, cache hits, stale, blocked, …). */
  readonly counters: Readonly<Record<string, number>>;
  readonly top: {
    readonly names: readonly (readonly [string, number])[];
    readonly clients: readonly (readonly [string, number])[];
    readonly blocked: readonly (readonly [string, number])[];
  };
}

/** The running configuration, as the config view shows it. */
export interface ConfigView {
  readonly path: string;
  readonly format: string;
  /** The file's text (empty for the embedded default). */
  readonly text: string;
  /** Lines read but not honoured (the page flags them). */
  readonly unsupported: readonly { name: string; file: string; line: number; reason?: string }[];
  readonly warnings: readonly { message: string; file: string; line: number }[];
}

/** What the dashboard asks of the running child. */
export interface DashboardBackend {
  readonly queryLog: { search(query: QueryLogSearch): QueryLogEntry[] };
  statsSnapshot(): DashboardStats;
  /** Prometheus text exposition (served at /metrics). */
  metricsText(): string;
  upstreams(): UpstreamHealthReport[];
  cacheStats(): Record<string, unknown>;
  flushCache(pattern?: string): Promise<{ removed: number }>;
  reload(): Promise<{ ok: boolean; message: string }>;
  configuration(): ConfigView;
  /** How `keeldns health` would see the server: ok, and one line saying what happened. */
  health(): Promise<{ ok: boolean; message: string }>;
  /** `keeldns explain` for one question (resolver/explain.ts); absent, the API answers 501. */
  explain?(name: string, type: string, client?: string): Promise<unknown>;
}

/** The login the dashboard checks. */
export interface DashboardLogin {
  readonly user: string;
  /** The current password hash (`pbkdf2-sha256$…`), or undefined when none is set. */
  passwordHash(): Promise<string | undefined>;
  /** Seconds a session lasts. */
  readonly sessionSeconds: number;
  /** Whether the cookie gets `Secure` (HTTPS). */
  readonly secure: boolean;
}

/** Failed logins one client may make at once, and the seconds after which one more is allowed. */
export const LOGIN_BURST = 5;
export const LOGIN_REFILL_SECONDS = 10;
/** Sessions held at once (the oldest goes first). */
const MAX_SESSIONS = 64;
/** Clients whose failed logins are remembered. */
const MAX_LOGIN_CLIENTS = 1024;
const COOKIE = "keeldns_session";
/** Largest request body the API reads. */
const MAX_BODY = 16 * 1024;

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: {
      ...SECURITY_HEADERS,
      "content-type": "application/json",
      "cache-control": "no-store",
      ...headers,
    },
  });
}

function base64ToBytes(text: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/**
 * Whether `password` matches a `pbkdf2-sha256$ROUNDS$SALT$HASH` hash, computed by WebCrypto off
 * the event loop (a sync PBKDF2 would hold up DNS answers for its 0.1 s).
 */
export async function passwordMatches(password: string, hash: string): Promise<boolean> {
  const m = /^pbkdf2-sha256\$(\d{1,7})\$([A-Za-z0-9+/]+=*)\$([A-Za-z0-9+/]+=*)$/.exec(hash.trim());
  if (!m) return false;
  const want = base64ToBytes(m[3]);
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(password), "PBKDF2", false, [
    "deriveBits",
  ]);
  const bits = new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "PBKDF2", hash: "SHA-256", salt: base64ToBytes(m[2]), iterations: Number(m[1]) },
      key,
      want.length * 8,
    ),
  );
  let diff = want.length ^ bits.length;
  for (let i = 0; i < want.length; i++) diff |= want[i] ^ bits[i];
  return want.length > 0 && diff === 0;
}

/** A token bucket per client for failed logins. */
class LoginLimiter {
  private readonly clients = new Map<string, { tokens: number; at: number }>();

  /** Seconds until `client` may try again (0: now). */
  wait(client: string, now: number): number {
    const b = this.refilled(client, now);
    return b.tokens >= 1 ? 0 : Math.ceil((1 - b.tokens) * LOGIN_REFILL_SECONDS);
  }

  /** Takes a token for a failed login. */
  failed(client: string, now: number): void {
    const b = this.refilled(client, now);
    b.tokens = Math.max(0, b.tokens - 1);
    this.clients.delete(client);
    this.clients.set(client, b);
    if (this.clients.size > MAX_LOGIN_CLIENTS) this.clients.delete(this.clients.keys().next().value!);
  }

  private refilled(client: string, now: number): { tokens: number; at: number } {
    const b = this.clients.get(client) ?? { tokens: LOGIN_BURST, at: now };
    b.tokens = Math.min(LOGIN_BURST, b.tokens + (now - b.at) / 1000 / LOGIN_REFILL_SECONDS);
    b.at = now;
    return b;
  }
}

/** Serves the dashboard page and its API. */
export class Dashboard {
  private readonly sessions = new Map<string, { user: string; expires: number }>();
  private readonly limiter = new LoginLimiter();

  constructor(
    private readonly backend: DashboardBackend,
    private readonly login: DashboardLogin,
    private readonly log: Logger,
  ) {}

  /** Answers one request from `client` (its address), or null when the path is not the dashboard's. */
  async handle(request: Request, client: string): Promise<Response | null> {
    const url = new URL(request.url);
    const path = url.pathname;
    if (request.method === "GET" && (path === "/" || path === "/index.html")) return this.asset("index.html");
    if (request.method === "GET" && path.startsWith("/assets/")) return this.asset(path.slice(8));
    if (!path.startsWith("/api/")) return null;
    // A cross-site page cannot set this header without a preflight the server never grants.
    if (request.headers.get("x-keeldns") !== "1") return json(403, { error: "missing X-Keeldns header" });
    const origin = request.headers.get("origin");
    if (origin && new URL(origin).host !== url.host) return json(403, { error: "cross-origin request" });
    try {
      return await this.api(request, url, client);
    } catch (e) {
      this.log.warn("dashboard: {path}: {error}", { path, error: (e as Error).message });
      return json(500, { error: (e as Error).message });
    }
  }

  private asset(name: string): Response {
    const asset = Object.hasOwn(DASHBOARD_ASSETS, name) ? DASHBOARD_ASSETS[name] : undefined;
    if (!asset) return new Response("not found\n", { status: 404, headers: SECURITY_HEADERS });
    return new Response(asset.body, {
      headers: {
        ...SECURITY_HEADERS,
        "content-type": asset.type,
        "cache-control": name === "index.html" ? "no-cache" : "max-age=3600",
      },
    });
  }

  private async api(request: Request, url: URL, client: string): Promise<Response> {
    const path = url.pathname;
    const method = request.method;
    if (path === "/api/login" && method === "POST") return await this.doLogin(request, client);
    const session = this.session(request);
    if (path === "/api/logout" && method === "POST") {
      if (session) this.sessions.delete(session.token);
      return json(200, { ok: true }, { "set-cookie": this.cookie("", 0) });
    }
    if (!session) return json(401, { error: "not logged in" });
    const q = url.searchParams;
    const b = this.backend;
    switch (`${method} ${path}`) {
      case "GET /api/session":
        return json(200, { user: session.user, expires: session.expires });
      case "GET /api/stats":
        return json(200, b.statsSnapshot());
      case "GET /api/upstreams":
        return json(200, b.upstreams());
      case "GET /api/cache":
        return json(200, b.cacheStats());
      case "GET /api/queries": {
        const limit = Math.min(1000, Math.max(1, Number(q.get("limit") ?? 100) || 100));
        const text = (k: string) => q.get(k)?.trim() || undefined;
        return json(
          200,
          b.queryLog.search({
            name: text("name"),
            client: text("client"),
            type: text("type")?.toUpperCase(),
            reason: text("reason")?.toLowerCase(),
            limit,
          }),
        );
      }
      case "POST /api/cache/flush": {
        const body = await this.body(request);
        const pattern = typeof body.pattern === "string" && body.pattern.trim()
          ? body.pattern.trim()
          : undefined;
        const result = await b.flushCache(pattern);
        this.log.info("dashboard: {user} flushed the cache ({removed} entries, {what})", {
          user: session.user,
          removed: result.removed,
          what: pattern ?? "all",
        });
        return json(200, result);
      }
      case "POST /api/reload": {
        this.log.info("dashboard: {user} asked for a reload", { user: session.user });
        const result = await b.reload();
        return json(result.ok ? 200 : 409, result);
      }
      case "GET /api/config":
        return json(200, b.configuration());
      case "GET /api/explain": {
        const name = q.get("name")?.trim();
        if (!name) return json(400, { error: "name is required" });
        if (!b.explain) return json(501, { error: "explain is not built into this keeldns yet" });
        return json(
          200,
          await b.explain(name, (q.get("type") ?? "A").toUpperCase(), q.get("client") ?? undefined),
        );
      }
    }
    return json(404, { error: `no ${method} ${path}` });
  }

  private async body(request: Request): Promise<Record<string, unknown>> {
    const text = await request.text();
    if (text.length > MAX_BODY) throw new Error("request body too large");
    if (!text) return {};
    const value = JSON.parse(text);
    return typeof value === "object" && value !== null ? value : {};
  }

  private async doLogin(request: Request, client: string): Promise<Response> {
    const now = Date.now();
    const wait = this.limiter.wait(client, now);
    if (wait > 0) {
      return json(429, { error: `too many failed logins; try again in ${wait} s` }, {
        "retry-after": String(wait),
      });
    }
    const hash = await this.login.passwordHash();
    if (!hash) {
      return json(503, {
        error:
          "no admin password is set: run `keeldns admin-password` and put the hash in [admin] password-hash",
      });
    }
    let body: Record<string, unknown>;
    try {
      body = await this.body(request);
    } catch {
      return json(400, { error: "the body must be JSON {user, password}" });
    }
    const user = typeof body.user === "string" ? body.user : "";
    const password = typeof body.password === "string" ? body.password : "";
    const ok = await passwordMatches(password, hash) && user === this.login.user;
    if (!ok) {
      this.limiter.failed(client, now);
      this.log.warn("dashboard: failed login as {user} from {client}", { user, client });
      return json(401, { error: "wrong user name or password" });
    }
    const token = [...crypto.getRandomValues(new Uint8Array(32))].map((b) => b.toString(16).padStart(2, "0"))
      .join("");
    const expires = now + this.login.sessionSeconds * 1000;
    this.sessions.set(token, { user, expires });
    for (const [t, s] of this.sessions) {
      if (this.sessions.size <= MAX_SESSIONS && s.expires > now) continue;
      this.sessions.delete(t);
    }
    this.log.info("dashboard: {user} logged in from {client}", { user, client });
    return json(200, { user, expires }, { "set-cookie": this.cookie(token, this.login.sessionSeconds) });
  }

  private cookie(token: string, maxAge: number): string {
    return `${COOKIE}=${token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}` +
      (this.login.secure ? "; Secure" : "");
  }

  private session(request: Request): { token: string; user: string; expires: number } | undefined {
    const cookies = request.headers.get("cookie") ?? "";
    const m = new RegExp(`(?:^|;\\s*)${COOKIE}=([0-9a-f]{64})`).exec(cookies);
    if (!m) return undefined;
    const s = this.sessions.get(m[1]);
    if (!s) return undefined;
    if (s.expires <= Date.now()) {
      this.sessions.delete(m[1]);
      return undefined;
    }
    return { token: m[1], ...s };
  }
}
