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
import { AdminListener } from "./admin_listener.ts";
import { Dashboard, type DashboardBackend } from "./dashboard.ts";
import { RecentQueries, RollingStats, standInMetricsText } from "./dashboard_standins.ts";
import { QueryRecorder } from "./query_recorder.ts";
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
  readonly stats: ServerStats;
  readonly dispatcher: QueryDispatcher;
  /** Re-reads the configuration as SIGHUP does; whether the new one is in force. */
  reload(): boolean;
}

/**
 * Records held between two drains when the dashboard creates the recorder: 8192 slots (about
 * 4.5 MB with answers kept) take 80k answers a second without loss at the 100 ms drain; above
 * that the oldest are lost and counted (`recordsLost` in the statistics), never the answers.
 */
const RECORDER_SLOTS = 8192;

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
    health: async () => {
      const bind = serving.config().server.binds.find((b) => b.transport === "udp");
      if (!bind) return { ok: true, message: "serving (no UDP listener to ask)" };
      const host = bind.host === "::" ? "::1" : bind.host === "0.0.0.0" ? "127.0.0.1" : bind.host;
      const result = await probe(host, bind.port, HEALTH_NAME, HEALTH_TYPE, 2000);
      return { ok: result.exitCode === 0, message: result.message };
    },
  };
}

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
  const dispatcher = serving.dispatcher;
  // The audit/metrics parts create the recorder with recorderFor(config); this one is for when
  // only the dashboard needs it. MERGER: keep one recorder, with answers kept.
  const recorder = dispatcher.recorder ??= new QueryRecorder(RECORDER_SLOTS, true);
  // STAND-INS (server/dashboard_standins.ts) until the query log and the statistics are merged.
  const recent = new RecentQueries(recorder, 2048, admin.queryLogAge);
  const rolling = new RollingStats(recorder);
  recorder.addConsumer(recent);
  recorder.addConsumer(rolling);
  const backend = childDashboardBackend(
    serving,
    recent,
    () => rolling.snapshot(),
    () => standInMetricsText(rolling, serving.resolver().counters()),
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
