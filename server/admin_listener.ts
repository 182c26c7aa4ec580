/**
 * The admin HTTP(S) listener (`[admin]`, smartdns.conf `smartdns-ui.ip`): `/metrics` (Prometheus
 * text; a bearer token is required when bound beyond loopback, and whenever one is set),
 * `/healthz` (200 when the server answers a real query as `keeldns health` asks one, 503 when
 * not), and the dashboard (server/dashboard.ts). Bound with SO_REUSEPORT, as the DNS listeners
 * are, so the two children of a planned restart overlap on it.
 *
 * @module
 */
import { isLoopbackHost } from "../config/admin.ts";
import type { AdminConfig } from "../config/schema.ts";
import type { Logger } from "../ops/log.ts";
import type { Dashboard, DashboardBackend } from "./dashboard.ts";
import type { ListenerCertificate } from "./tls.ts";

/** Requests served at once; more get 503 (the admin side must never crowd out DNS). */
const MAX_IN_FLIGHT = 32;

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body.endsWith("\n") ? body : `${body}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", ...headers },
  });
}

/** Whether two strings are equal, in time that depends on their length only. */
function sameSecret(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < x.length; i++) diff |= x[i] ^ (y[i % (y.length || 1)] ?? 0);
  return diff === 0;
}

/**
 * Why `/metrics` is refused to a request with this Authorization header, or null when it may be
 * served: beyond loopback a token must be configured; when one is, it must be sent as a bearer token.
 */
export function metricsRefusal(config: AdminConfig, authorization: string | null): Response | null {
  const token = config.metricsToken;
  if (token === undefined) {
    return isLoopbackHost(config.host) ? null : text(
      403,
      "/metrics beyond loopback needs [admin] metrics-token (sent as Authorization: Bearer TOKEN)",
    );
  }
  const given = /^Bearer\s+(\S+)$/i.exec(authorization ?? "")?.[1] ?? "";
  return sameSecret(given, token)
    ? null
    : text(401, "a bearer token is required", { "www-authenticate": 'Bearer realm="keeldns metrics"' });
}

/** The running admin listener. */
export class AdminListener {
  /** `http://HOST:PORT` or `https://…`. */
  readonly address: string;
  private inFlight = 0;
  private readonly server: Deno.HttpServer<Deno.NetAddr>;

  private constructor(
    private readonly config: AdminConfig,
    certificate: ListenerCertificate | undefined,
    private readonly backend: DashboardBackend,
    private readonly dashboard: Dashboard,
    private readonly log: Logger,
  ) {
    const host = config.host.includes(":") ? `[${config.host}]` : config.host;
    this.address = `${certificate ? "https" : "http"}://${host}:${config.port}`;
    // SO_REUSEPORT (for a successor during a planned restart) needs --unstable-net, as in tcp.ts.
    const unstableNet = typeof (Deno as { listenDatagram?: unknown }).listenDatagram === "function";
    this.server = Deno.serve({
      hostname: config.host,
      port: config.port,
      reusePort: unstableNet,
      ...(certificate ? { cert: certificate.cert, key: certificate.key } : {}),
      onListen: () => {},
      onError: (e) => {
        this.log.debug("admin: request failed: {error}", { error: (e as Error).message });
        return text(500, "internal error");
      },
    }, (request, info) => this.handle(request, info.remoteAddr.hostname));
  }

  /**
   * Binds the admin listener and starts serving; throws if the port cannot be bound. Refuses to
   * serve `/metrics` beyond loopback without a token (the rest needs a login anyway).
   */
  static listen(
    config: AdminConfig,
    certificate: ListenerCertificate | undefined,
    backend: DashboardBackend,
    dashboard: Dashboard,
    log: Logger,
  ): AdminListener {
    if (config.https && !certificate) throw new Error("admin: HTTPS needs a certificate");
    return new AdminListener(config, certificate, backend, dashboard, log);
  }

  /** Answers one request from `client`. */
  async handle(request: Request, client: string): Promise<Response> {
    if (this.inFlight >= MAX_IN_FLIGHT) return text(503, "busy", { "retry-after": "1" });
    this.inFlight++;
    try {
      const path = new URL(request.url).pathname;
      if (path === "/metrics") return this.metrics(request);
      if (path === "/healthz") {
        const health = await this.backend.health();
        return text(health.ok ? 200 : 503, health.message);
      }
      return await this.dashboard.handle(request, client) ?? text(404, "not found");
    } finally {
      this.inFlight--;
    }
  }

  private metrics(request: Request): Response {
    const refused = metricsRefusal(this.config, request.headers.get("authorization"));
    if (refused) return refused;
    return new Response(this.backend.metricsText(), {
      headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8", "cache-control": "no-store" },
    });
  }

  /** Stops listening; requests under way finish. */
  async close(): Promise<void> {
    await this.server.shutdown();
  }
}
