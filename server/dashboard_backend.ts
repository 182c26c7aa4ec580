/**
 * The child's side of the admin listener: the {@link DashboardBackend} built from what the child
 * runs (the resolver, its cache and journal, the server's counters, the configuration, reload),
 * the query recorder's consumers the dashboard reads, and the listener itself, started and
 * stopped as one ({@link startAdmin}).
 *
 * @module
 */
import type { Config } from "../config/schema.ts";
import { probe } from "../ops/health_probe.ts";
import type { Logger } from "../ops/log.ts";
import { cacheAction } from "../resolver/cache_listing.ts";
import type { CacheJournal } from "../resolver/cache_journal.ts";
import type { Resolver } from "../resolver/resolver.ts";
import { explain } from "../resolver/explain.ts";
import { AdminListener } from "./admin_listener.ts";
import { Dashboard, type DashboardBackend } from "./dashboard.ts";
import type { ChildMetrics, StatsSnapshot } from "../ops/child_metrics.ts";
import type { QueryLog } from "../ops/query_log.ts";
import type { DashboardStats } from "./dashboard.ts";
import type { QueryDispatcher } from "./dispatcher.ts";
import type { ServerStats } from "./stats.ts";
import { dataDirectory } from "./self_signed_cert.ts";
import type { ListenerCertificate } from "./tls.ts";
import { loadListenerCertificate } from "./tls.ts";

/** What the child lends the dashboard; getters, as reloads replace the resolver and configuration. */
export interface ChildServing {
  config(): Config;
  resolver(): Resolver;
  journal(): CacheJournal | undefined;
  /** The query log (none when the recording is off). */
  queryLog(): QueryLog | undefined;
  /** The statistics and their Prometheus text (none with `[metrics] enable = false`). */
  readonly metrics?: ChildMetrics;
  readonly stats: ServerStats;
  readonly dispatcher: QueryDispatcher;
  /** Re-reads the configuration as SIGHUP does; whether the new one is in force. */
  reload(): boolean;
}

/** The data directory's file holding the password hash when the configuration has none. */
export const PASSWORD_FILE = "admin-password";

/** The question `/healthz` asks, as `keeldns health` does by default. */
const HEALTH_NAME = ".";
const HEALTH_TYPE = "NS";

/**
 * The backend of the running child. `queryLog`, `stats` and `metrics` are the parts the other
 * helpers of issue 15 provide; the stand-ins fill them until then.
 */
export function childDashboardBackend(
  serving: ChildServing,
  queryLog: DashboardBackend["queryLog"],
  statsSnapshot: DashboardBackend["statsSnapshot"],
  metricsText: DashboardBackend["metricsText"],
): DashboardBackend {
  return {
    queryLog,
    statsSnapshot,
    metricsText,
    upstreams: () => serving.resolver().upstreams(),
    cacheStats: () => {
      const resolver = serving.resolver();
      return resolver.cache ? cacheAction(resolver.cache, "stats", undefined, Date.now()) : { entries: 0 };
    },
    flushCache: async (pattern) => {
      const result = cacheAction(serving.resolver().cache, "flush", pattern, Date.now());
      await serving.journal()?.compact();
      return { removed: result.removed as number };
    },
    reload: () => {
      const ok = serving.reload();
      const path = serving.config().path;
      return Promise.resolve({
        ok,
        message: ok ? `reloaded ${path}` : `reload failed; the running configuration stays (see the log)`,
      });
    },
    configuration: () => {
      const c = serving.config();
      let text = "";
      try {
        if (c.path !== "<embedded default>") text = Deno.readTextFileSync(c.path);
      } catch (e) {
        text = `# cannot read ${c.path}: ${(e as Error).message}`;
      }
      return {
        path: c.path,
        format: c.format,
        text: redactSecrets(text),
        unsupported: c.unsupported.map((u) => ({
          name: u.name,
          file: u.source.file,
          line: u.source.line,
          ...(u.reason ? { reason: u.reason } : {}),
        })),
        warnings: c.warnings.map((w) => ({ message: w.message, file: w.source.file, line: w.source.line })),
      };
    },
    explain: (name, type, client) => explain(serving.resolver(), { name, type }, client),
    health: async () => {
      const bind = serving.config().server.binds.find((b) => b.transport === "udp");
      if (!bind) return { ok: true, message: "serving (no UDP listener to ask)" };
      const host = bind.host === "::" ? "::1" : bind.host === "0.0.0.0" ? "127.0.0.1" : bind.host;
      const result = await probe(host, bind.port, HEALTH_NAME, HEALTH_TYPE, 2000);
      return { ok: result.exitCode === 0, message: result.message };
    },
  };
}

/** The charts' and top lists' shape of the statistics (ops/child_metrics.ts). */
export function dashboardStatsOf(s: StatsSnapshot): DashboardStats {
  const fine = s.series.fine;
  // The charts show the last ten minutes of the hour of 10-s buckets the statistics keep.
  const from = Math.max(0, (fine.values.queries?.length ?? 0) - CHART_BUCKETS);
  const last = (a: readonly number[] = []) => a.slice(from);
  const v = Object.fromEntries(Object.entries(fine.values).map(([k, a]) => [k, last(a)]));
  const sum = (a: readonly number[] = [], b: readonly number[] = []) => a.map((x, k) => x + (b[k] ?? 0));
  const counters: Record<string, number> = { queries: s.queries, ...s.byReason };
  return {
    series: {
      start: fine.start + from * fine.widthSeconds * 1000,
      step: fine.widthSeconds,
      queries: v.queries ?? [],
      cacheHits: sum(v.cache, v.stale),
      blocked: v.blocked ?? [],
      upstreamLatencyMs: Object.fromEntries(
        s.upstreams.map((u) => {
          const answers = last(u.series.values.answers);
          const micros = last(u.series.values.durationUs);
          return [u.address, answers.map((n, k) => n > 0 ? micros[k] / n / 1000 : null)];
        }),
      ),
    },
    counters,
    top: {
      names: s.top.names.map((e) => [e.key, e.count] as const),
      clients: s.top.clients.map((e) => [e.key, e.count] as const),
      blocked: s.top.blocked.map((e) => [e.key, e.count] as const),
    },
  };
}

/** 10-s buckets the charts show: ten minutes. */
const CHART_BUCKETS = 60;

/** What the dashboard shows with the statistics off. */
const NO_STATS: DashboardStats = {
  series: { start: 0, step: 10, queries: [], cacheHits: [], blocked: [], upstreamLatencyMs: {} },
  counters: {},
  top: { names: [], clients: [], blocked: [] },
};

/**
 * `text` with the values of its secrets replaced by `(hidden)`: passwords, their hashes, tokens
 * and key passphrases, in either format (the config view shows the rest as it is).
 */
export function redactSecrets(text: string): string {
  return text
    .replace(/^(\s*(?:password-hash|metrics-token|key-pass)\s*=\s*).*$/gm, '$1"(hidden)"')
    .replace(/^(\s*(?:smartdns-ui\.password|bind-cert-key-pass)\s+)\S.*$/gm, "$1(hidden)");
}

/** The HTTPS certificate of the admin listener: its own, else the encrypted listeners'. */
async function adminCertificate(config: Config, log: Logger): Promise<ListenerCertificate | undefined> {
  const admin = config.admin!;
  if (!admin.https) return undefined;
  if (admin.certFile || admin.keyFile) {
    return await loadListenerCertificate({ certFile: admin.certFile, keyFile: admin.keyFile });
  }
  const { certFile, keyFile, keyPass } = config.server;
  if (certFile !== undefined || keyFile !== undefined || keyPass !== undefined) {
    return await loadListenerCertificate(config.server);
  }
  const { selfSignedFor } = await import("./self_signed_cert.ts");
  return await selfSignedFor(config, log);
}

/**
 * Starts the admin listener of `config` (none when `[admin]` is off): gives the dispatcher a
 * query recorder when it has none, adds the dashboard's consumers, binds. Returns its closer.
 * Throws when the port cannot be bound or the certificate is unusable.
 */
export async function startAdmin(
  serving: ChildServing,
  log: Logger,
): Promise<{ address: string; close(): Promise<void> } | undefined> {
  const config = serving.config();
  const admin = config.admin;
  if (!admin) return undefined;
  const metrics = serving.metrics;
  const ageMs = admin.queryLogAge * 1000;
  const backend = childDashboardBackend(
    serving,
    {
      // The log the recording keeps now (a reload may resize it), within smartdns-ui's max age.
      search: (query) => {
        const entries = serving.queryLog()?.search(query) ?? [];
        if (ageMs <= 0) return entries;
        const oldest = Date.now() - ageMs;
        return entries.filter((e) => e.time >= oldest);
      },
    },
    () => metrics ? dashboardStatsOf(metrics.statsSnapshot(10)) : NO_STATS,
    () => metrics?.metricsText() ?? "# keeldns statistics are off ([metrics] enable = false)\n",
  );
  const passwordFile = `${dataDirectory(config).replace(/\/+$/, "")}/${PASSWORD_FILE}`;
  const clear = admin.password;
  let clearHash: string | undefined;
  const dashboard = new Dashboard(backend, {
    user: admin.user,
    sessionSeconds: admin.sessionSeconds,
    secure: admin.https,
    passwordHash: async () => {
      if (admin.passwordHash) return admin.passwordHash;
      if (clear !== undefined) {
        if (!clearHash) {
          const { hashAdminPassword } = await import("../config/admin.ts");
          clearHash = hashAdminPassword(clear, 10_000);
        }
        return clearHash;
      }
      // Read at each login, so `keeldns admin-password --write` needs no restart.
      return (await Deno.readTextFile(passwordFile).catch(() => "")).trim() || undefined;
    },
  }, log);
  const certificate = await adminCertificate(config, log);
  let listener: AdminListener;
  try {
    listener = AdminListener.listen(admin, certificate, backend, dashboard, log);
  } catch (e) {
    throw new Error(
      `cannot bind the admin listener ${admin.host} port ${admin.port}: ${(e as Error).message}`,
    );
  }
  if (!admin.passwordHash && clear === undefined) {
    log.info("admin: no password-hash in the configuration; logins check {file}", { file: passwordFile });
  }
  log.info("admin listener (dashboard, /metrics, /healthz) on {address}", { address: listener.address });
  return { address: listener.address, close: () => listener.close() };
}
