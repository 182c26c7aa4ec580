/**
 * The child: loads the configuration, builds the resolver chain and the listeners, tells the
 * guardian it is ready, then serves and beats until told to stop.
 *
 * @module
 */
import { ConfigError } from "./config/errors.ts";
import { loadConfig } from "./config/load.ts";
import type { Config, UdpTransportChoice } from "./config/schema.ts";
import {
  BEAT_INTERVAL_MS,
  BESIDE_PREDECESSOR_ENV,
  type CacheRequest,
  type CarryRequest,
  type ChildMessage,
  EXIT_BIND,
  EXIT_CONFIG,
  EXIT_CRASH,
  EXIT_PRIVILEGES,
  type ExplainRequest,
  HANDOVER_FILE_ENV,
  HANDOVER_LOAD_ENV,
  isExplainRequest,
  type MetricsRequest,
  type StatsMessage,
  TEST_STARTUP_DELAY_ENV,
} from "./ops/child_messages.ts";
import { yieldToEventLoop } from "./ops/event_loop.ts";
import { FileWatcher } from "./ops/file_watch.ts";
import { getLogger, setupLogging } from "./ops/log.ts";
import { readLines } from "./ops/lines.ts";
import { cacheAction } from "./resolver/cache_listing.ts";
import type { CacheJournal } from "./resolver/cache_journal.ts";
import { buildResolver, type Resolver } from "./resolver/resolver.ts";
import { handOverTo, openCacheJournal, takeOverHandedCache } from "./resolver/cache_persistence.ts";
import { AccessControl } from "./server/access_control.ts";
import { QueryDispatcher } from "./server/dispatcher.ts";
import type { Listener } from "./server/listener.ts";
import { ServerStats } from "./server/stats.ts";
import { TcpListener } from "./server/tcp.ts";
import { type ListenerCertificate, listenTls, loadListenerCertificate } from "./server/tls.ts";
import { HttpsListener } from "./server/https.ts";
import { QuicListener } from "./server/quic.ts";
import { selfSignedFor } from "./server/self_signed_cert.ts";
import { UdpListener } from "./server/udp.ts";
import type { ChildServing } from "./server/dashboard_backend.ts";
import { BatchedUdpListener } from "./server/udp_batched.ts";
import { closeDescriptor, loadLibc } from "./net/linux_socket.ts";
import { INHERITED_UDP_FDS_ENV, parseInheritedSockets, udpListenerKey } from "./ops/inherited_sockets.ts";
import { OutgoingSocketPool } from "./upstream/udp_batched.ts";
import { dropPrivileges, runningAsRoot, shedCapabilities } from "./ops/privileges.ts";
import { childPlan } from "./ops/run_as_user.ts";
import { ChildMetrics } from "./ops/child_metrics.ts";
import { QueryStats } from "./ops/query_stats.ts";
import { lookupUser } from "./ops/user_database.ts";
import { AuditFile } from "./ops/audit_file.ts";
import { QueryLog } from "./ops/query_log.ts";
import { type RecordLookups, resolverLookups } from "./ops/query_record_lookups.ts";
import { QueryRecorder } from "./server/query_recorder.ts";

/** How the child was started. */
export interface ChildOptions {
  /** Config file, or undefined for the embedded default. */
  readonly configPath?: string;
  /** Log at debug level whatever the config says. */
  readonly verbose: boolean;
  /** Speak the NDJSON protocol on stdout (set when a guardian started us). */
  readonly guarded: boolean;
}

const log = getLogger("child");
const encoder = new TextEncoder();

/** Writes one protocol message to the guardian; false if the guardian is gone. */
function tell(message: ChildMessage): boolean {
  try {
    Deno.stdout.writeSync(encoder.encode(JSON.stringify(message) + "\n"));
    return true;
  } catch {
    return false;
  }
}

/**
 * Tells the guardian (when it started us) that a start-up step begins: how far a child that never
 * becomes ready got. Then gives the event loop a turn, so a due heartbeat goes out first.
 */
async function startupStage(
  options: ChildOptions,
  stage: string,
  done?: number,
  total?: number,
): Promise<void> {
  if (options.guarded) tell({ progress: done === undefined ? { stage } : { stage, done, total } });
  await yieldToEventLoop();
}

/**
 * Test-only: with {@link TEST_STARTUP_DELAY_ENV} set, start-up takes that many milliseconds more
 * (before the listeners are bound), beating and reporting progress meanwhile as a long load does,
 * so end-to-end tests can play a slow board.
 */
async function testOnlyStartupDelay(options: ChildOptions): Promise<void> {
  const ms = Number(Deno.env.get(TEST_STARTUP_DELAY_ENV) ?? 0);
  if (!(ms > 0)) return;
  const started = Date.now();
  for (let waited = 0; waited < ms; waited = Date.now() - started) {
    await startupStage(options, `test-only start-up delay (${TEST_STARTUP_DELAY_ENV})`, waited, ms);
    await new Promise((resolve) => setTimeout(resolve, Math.min(1000, ms - waited)));
  }
}

/** The access rules of `config` (none when everyone may ask without a limit). */
function accessFor(config: Config): AccessControl | undefined {
  const settings = {
    policy: config.server.clients,
    allowed: config.server.allowedClients,
    rateLimit: config.server.rateLimit,
    burst: config.server.rateBurst,
  };
  return AccessControl.needed(settings) ? new AccessControl(settings) : undefined;
}

/** How often the rules' files are looked at for changes. */
const RULE_FILE_POLL_MS = 5000;

/** Whether UDP listeners can use batched syscalls here; logs the choice once. */
function chooseBatchedUdp(choice: UdpTransportChoice): boolean {
  if (choice === "portable") {
    log.info("UDP transport: portable (node:dgram), as configured");
    return false;
  }
  try {
    loadLibc();
    log.info("UDP transport: batched recvmmsg/sendmmsg (listeners and upstreams)");
    return true;
  } catch (e) {
    if (choice === "batched") {
      throw new Error(`udp-transport "batched" is not available: ${(e as Error).message}`);
    }
    log.info("UDP transport: portable (node:dgram), because {reason}", { reason: (e as Error).message });
    return false;
  }
}

/**
 * Binds every configured listener; closes what was bound and throws on the first failure. A
 * batched UDP listener whose socket the guardian holds (`inherited`: listener key → descriptor,
 * taken from the map as used) serves that socket instead of binding one.
 */
async function bindAll(
  config: Config,
  dispatcher: QueryDispatcher,
  batched: boolean,
  inherited: Map<string, number>,
): Promise<Listener[]> {
  const listeners: Listener[] = [];
  const serverLog = getLogger("server");
  const inheritedFd = (bind: Config["server"]["binds"][number]) => {
    const key = udpListenerKey(bind.host, bind.port);
    const fd = inherited.get(key);
    inherited.delete(key);
    if (fd !== undefined) serverLog.info("{key}: the guardian's socket (descriptor {fd})", { key, fd });
    return fd;
  };
  const streams = {
    idleSeconds: config.server.tcpIdleTime,
    maxConnections: config.server.maxTcpConnections,
  };
  // The encrypted listeners' certificate (configured, or made once into the data directory), read
  // once and its fingerprint logged, if any listener needs it.
  let certificate: ListenerCertificate | undefined;
  if (
    config.server.binds.some((b) =>
      b.transport === "tls" || b.transport === "https" || b.transport === "quic"
    )
  ) {
    const { certFile, keyFile, keyPass } = config.server;
    if (certFile === undefined && keyFile === undefined && keyPass === undefined) {
      certificate = await selfSignedFor(config, serverLog);
    } else {
      certificate = await loadListenerCertificate(config.server);
      serverLog.info("encrypted listeners present {file}, SHA-256 fingerprint {fingerprint}", {
        file: certFile,
        fingerprint: certificate.fingerprint,
      });
    }
  }
  try {
    for (const bind of config.server.binds) {
      try {
        listeners.push(
          bind.transport === "udp"
            ? batched
              ? BatchedUdpListener.listen(bind, dispatcher, serverLog, inheritedFd(bind))
              : await UdpListener.listen(bind, dispatcher, serverLog)
            : bind.transport === "tls"
            ? await listenTls(bind, dispatcher, certificate!, streams, serverLog)
            : bind.transport === "https"
            ? HttpsListener.listen(bind, dispatcher, certificate!, streams, serverLog)
            : bind.transport === "quic"
            ? QuicListener.listen(bind, dispatcher, certificate!, {
              ...streams,
              waitForPort: Deno.env.get(BESIDE_PREDECESSOR_ENV) === "1",
            }, serverLog)
            : TcpListener.listen(bind, dispatcher, streams, serverLog),
        );
      } catch (e) {
        const where = bind.source ? ` (${bind.source.file}:${bind.source.line})` : "";
        throw new Error(
          `cannot bind ${bind.transport} ${bind.host} port ${bind.port}${where}: ${(e as Error).message}`,
        );
      }
    }
  } catch (e) {
    await Promise.all(listeners.map((l) => l.close()));
    throw e;
  }
  return listeners;
}

/**
 * With `user` set, leaves root (or, started by a guardian that already did, the capabilities it
 * passed on) right after binding, before serving: keeps only what the configuration needs
 * (ops/run_as_user.ts). Throws with a clear message if that cannot be done.
 */
function dropToUser(config: Config): void {
  const user = config.guardian.user;
  if (user === undefined) return;
  const account = lookupUser(user);
  const plan = childPlan(config);
  if (runningAsRoot()) {
    dropPrivileges(account, plan);
  } else {
    const missing = shedCapabilities(account, plan.keep);
    if (missing.length) {
      log.warn("started without {caps}: what needs them will fail (start keeldns as root to get them)", {
        caps: missing.join(", "),
      });
    }
  }
  log.info("serving as user {name} (uid {uid}, gid {gid}), capabilities: {caps}", {
    name: account.name,
    uid: account.uid,
    gid: account.gid,
    caps: plan.keep.length ? plan.keep.join(", ") : "none",
  });
}

/** The child's stats message, and how many upstream health changes it has seen (sent at once). */
interface Report {
  message(): StatsMessage;
  healthChanges(): number;
}

/** Counters for the guardian's stats message and the exit log line. */
function counters(stats: ServerStats, resolver: Resolver): Record<string, number> {
  const memory = Deno.memoryUsage();
  return {
    ...stats,
    rssBytes: memory.rss,
    heapUsedBytes: memory.heapUsed,
    heapTotalBytes: memory.heapTotal,
    externalBytes: memory.external,
    ...resolver.counters(),
  };
}

/**
 * Answers the guardian's `keeldns cache` requests, one JSON line each on stdin, with a reply
 * message. A flush is saved at once when persistence is on, so the cache file cannot bring the
 * flushed entries back.
 */
async function answerCacheRequests(
  serving: () => { resolver: Resolver; journal?: CacheJournal },
  answerOther?: (request: object) => boolean,
): Promise<void> {
  for await (const line of readLines(Deno.stdin.readable)) {
    let request: CacheRequest;
    try {
      request = JSON.parse(line);
    } catch {
      continue;
    }
    if (answerOther?.(request)) continue;
    const { resolver, journal } = serving();
    if (isExplainRequest(request)) {
      answerExplain(request, resolver);
      continue;
    }
    try {
      const result = cacheAction(resolver.cache, request.cache, request.pattern, Date.now());
      if (request.cache === "stats" && journal) {
        const j = journal.stats;
        Object.assign(result, {
          "journal writing": j.writing,
          "journal bytes written": j.bytesWritten,
          "journal records": j.records,
          "journal compactions": j.compactions,
          "journal dropped": j.dropped,
          "journal failures": j.failures,
        });
      }
      if (request.cache === "flush") {
        log.info("cache: {removed} entries flushed ({what})", {
          removed: result.removed as number,
          what: request.pattern ?? "all",
        });
        await journal?.compact(true); // a flush is saved whatever the budget
      }
      tell({ reply: { id: request.id, ok: true, result } });
    } catch (e) {
      tell({ reply: { id: request.id, ok: false, error: (e as Error).message } });
    }
  }
}

// ---- query statistics and metrics (issue 15, metrics part) ----

/**
 * The query statistics on the dispatcher's recorder (made here if the audit part made none), and
 * the child's metrics made from them, unless `[metrics] enable = false` (read at start only):
 * `keeldns metrics` asks for them over stdin; the admin listener serves their `metricsText()` and
 * `statsSnapshot()`.
 */
function startMetrics(
  config: Config,
  dispatcher: QueryDispatcher,
  stats: ServerStats,
  resolver: () => Resolver,
): ChildMetrics | undefined {
  if (config.metrics?.enable === false) return undefined;
  const recorder = dispatcher.recorder ??= recorderFor(config);
  if (!recorder) return undefined;
  const queryStats = new QueryStats({ upstreams: recorder.upstreams });
  recorder.addConsumer(queryStats);
  return new ChildMetrics({ resolver, stats, queryStats, recorder });
}

/**
 * Answers `keeldns metrics` ({@link MetricsRequest}) and takes the statistics predecessors
 * counted ({@link CarryRequest}: reported at once, then confirmed); false for other requests.
 */
function answerMetricsRequest(
  request: object,
  metrics: ChildMetrics | undefined,
  report: () => void,
): boolean {
  if ("metrics" in request) {
    const { id, metrics: kind } = request as MetricsRequest;
    if (!metrics) tell({ reply: { id, ok: false, error: "metrics are off ([metrics] enable = false)" } });
    else if (kind === "json") {
      tell({ reply: { id, ok: true, result: { snapshot: metrics.statsSnapshot() } } });
    } else tell({ reply: { id, ok: true, result: { text: metrics.metricsText() } } });
    return true;
  }
  if ("carry" in request) {
    const { id, carry } = request as CarryRequest;
    try {
      if (metrics && Array.isArray(carry)) {
        metrics.absorb(id, carry);
        report();
      }
      tell({ reply: { id, ok: true } });
    } catch (e) {
      tell({ reply: { id, ok: false, error: (e as Error).message } });
    }
    return true;
  }
  return false;
}

/** Answers one `keeldns explain` request, without waiting for it: its race takes its time. */
function answerExplain(request: ExplainRequest, resolver: Resolver): void {
  const { name, type, client } = request.explain;
  // Loaded when first asked: a child that is never asked starts without it.
  import("./resolver/explain.ts").then(({ explain }) => explain(resolver, { name, type }, client)).then(
    (report) =>
      tell({ reply: { id: request.id, ok: true, result: report as unknown as Record<string, unknown> } }),
    (e) => tell({ reply: { id: request.id, ok: false, error: (e as Error).message } }),
  );
}

/**
 * Loads the saved cache before serving and journals it from then on, when persistence is on; an
 * unusable file is only logged.
 */
async function restoreCache(
  options: ChildOptions,
  config: Config,
  resolver: Resolver,
): Promise<CacheJournal | undefined> {
  if (!config.cache.persist || !resolver.cache) return undefined;
  await startupStage(options, "loading the cache file");
  return await openCacheJournal(resolver.cache.cache, config.cache, log);
}

/** Loads the cache a predecessor handed over in a planned restart, then deletes the file. */
async function takeOverCache(options: ChildOptions, resolver: Resolver): Promise<void> {
  const file = Deno.env.get(HANDOVER_FILE_ENV);
  if (!file || Deno.env.get(HANDOVER_LOAD_ENV) !== "1" || !resolver.cache) return;
  await startupStage(options, "taking over the previous child's cache");
  await takeOverHandedCache(resolver.cache.cache, file, log);
}

/** Writes the cache to the hand-over file (SIGUSR2 from the guardian before a planned restart). */
function handOverCache(resolver: Resolver): Promise<number> {
  const file = Deno.env.get(HANDOVER_FILE_ENV);
  if (!file) return Promise.resolve(-1);
  return handOverTo(resolver.cache?.cache, file, log);
}

/**
 * The journal after a reload: the same one while persistence, its file and the cache stay; else
 * the old one is closed (saved whole) and, if persistence is on, one opened for the new setting.
 */
async function journalAfterReload(
  journal: CacheJournal | undefined,
  before: Config,
  after: Config,
  resolver: Resolver,
): Promise<CacheJournal | undefined> {
  const cache = resolver.cache?.cache;
  const same = before.cache.persist === after.cache.persist && before.cache.file === after.cache.file &&
    before.cache.writeBudget === after.cache.writeBudget &&
    before.cache.checkpointTime === after.cache.checkpointTime && journal?.cache === cache;
  if (same) return journal;
  await journal?.close(true);
  if (!after.cache.persist || !cache) return undefined;
  return await openCacheJournal(cache, after.cache, log);
}

/**
 * Closes a replaced resolver's upstreams once the queries already running on it are past their
 * timeout, so a reload never cuts off a query in flight.
 */
function retire(resolver: Resolver, config: Config): void {
  const timer = setTimeout(() => resolver.close(), config.server.upstreamTimeout + 1000);
  Deno.unrefTimer(timer);
}

/**
 * Re-reads the configuration (SIGHUP). A bad file is logged and changes nothing; a good one swaps
 * upstreams, TTL rules, cache size and logging in place, keeping the cache. Listener changes need
 * a restart and are reported as such. Returns the new configuration and resolver, or null.
 */
function reload(
  options: ChildOptions,
  current: Config,
  resolver: Resolver,
  dispatcher: QueryDispatcher,
  udpPool: OutgoingSocketPool | undefined,
): { config: Config; resolver: Resolver } | null {
  let config: Config;
  try {
    config = loadConfig(options.configPath);
  } catch (e) {
    const message = e instanceof ConfigError ? e.message : String(e);
    log.error("reload failed, the running configuration stays: {message}", { message });
    return null;
  }
  setupLogging(options.verbose ? { ...config.log, level: "debug" } : config.log);
  const listenersOf = (c: Config) =>
    c.server.binds.map((b) => `${b.transport}://${b.host}:${b.port}`).join(",");
  if (
    listenersOf(config) !== listenersOf(current) || config.server.udpTransport !== current.server.udpTransport
  ) {
    log.warn("reload: listener changes take effect on restart; the current listeners stay");
  }
  if (JSON.stringify(config.admin) !== JSON.stringify(current.admin)) {
    log.warn("reload: [admin] changes take effect on restart; the admin listener stays as it is");
  }
  let next: Resolver;
  try {
    next = buildResolver(config, getLogger("resolver"), resolver, udpPool);
  } catch (e) {
    log.error("reload failed, the running configuration stays: {message}", { message: String(e) });
    return null;
  }
  dispatcher.useResolver(next.resolve);
  dispatcher.access = accessFor(config);
  retire(resolver, current);
  log.info("reloaded {path}: {upstreams} upstream servers, cache {size} ({entries} entries kept)", {
    path: config.path,
    upstreams: config.upstreams.length,
    size: config.cache.size,
    entries: next.cache?.cache.size ?? 0,
  });
  return { config, resolver: next };
}

/**
 * Records held between two drains of the query recorder (100 ms): 8192 is 80k queries a second
 * before the oldest are lost (counted), for 4.6 MB with the answers' first bytes kept.
 */
const RECORDER_SLOTS = 8192;

/**
 * The query recorder the configuration needs, or none: the audit file and the query log need the
 * answers' bytes (their addresses); the statistics (on unless `[metrics] enable = false`) need a
 * record of every answer but not its bytes. Each adds its consumer with `recorder.addConsumer`.
 */
export function recorderFor(config: Config): QueryRecorder | undefined {
  const keepAnswers = config.audit.enable || queryLogSizeOf(config) > 0;
  const metrics = config.metrics?.enable !== false; // the statistics: on unless turned off
  if (!keepAnswers && !metrics) return undefined;
  const recorder = new QueryRecorder(RECORDER_SLOTS, keepAnswers);
  // Under load the statistics and the query log take a sample of what was answered at once (all of
  // it is counted); the audit file wants every line.
  recorder.sampling = !config.audit.enable;
  return recorder;
}

/** Entries the dashboard's query log keeps when `[admin]` is on and `[audit] query-log-size` is not set. */
const ADMIN_QUERY_LOG_SIZE = 10_000;

/** The query log's size under `config`: as set, else {@link ADMIN_QUERY_LOG_SIZE} for the dashboard. */
function queryLogSizeOf(config: Config): number {
  return config.audit.queryLogSize > 0 ? config.audit.queryLogSize : config.admin ? ADMIN_QUERY_LOG_SIZE : 0;
}

/** The audit file and the query log, fed by one recorder, following the configuration on reload. */
class AuditRecording {
  audit?: AuditFile;
  /** The in-memory query log (for the dashboard), when `[audit] query-log-size` is set. */
  queryLog?: QueryLog;

  constructor(readonly recorder: QueryRecorder, private readonly lookups: RecordLookups) {
    recorder.addConsumer({
      consume: (r, i) => {
        this.audit?.consume(r, i);
        this.queryLog?.consume(r, i);
      },
      batchDone: () => this.audit?.batchDone(),
    });
  }

  /** Opens, reopens or closes the audit file and sizes the query log as `config` says. */
  apply(config: Config): void {
    const a = config.audit;
    this.recorder.sampling = !a.enable;
    const wanted = a.enable && (a.num > 0 || a.console);
    const s = this.audit?.settings;
    const same = s && s.file === a.file && s.size === a.size && s.num === a.num &&
      s.fileMode === a.fileMode && s.console === a.console && s.soa === a.soa;
    if (!wanted || !same) {
      this.audit?.close();
      this.audit = wanted ? new AuditFile(a, this.lookups, getLogger("audit")) : undefined;
      if (this.audit) log.info("audit: one line per query to {where}", { where: auditWhere(config) });
    }
    const size = queryLogSizeOf(config);
    if (this.queryLog?.capacity !== size) {
      this.queryLog = size > 0 ? new QueryLog(size, this.lookups) : undefined;
    }
  }

  /** Writes what is recorded and closes the file. */
  close(): void {
    this.recorder.close();
    this.audit?.close();
  }
}

function auditWhere(config: Config): string {
  const a = config.audit;
  const file = a.num > 0 ? `${a.file} (${a.size} bytes × ${a.num + 1} files)` : "";
  return [file, a.console ? "stderr" : ""].filter((w) => w).join(" and ");
}

/**
 * Starts recording answers for the audit file and the query log when `config` wants either (on
 * the recorder the statistics made, if they did); `current` is the resolver serving now, for rule
 * and group lookups.
 */
function startAuditRecording(
  config: Config,
  dispatcher: QueryDispatcher,
  current: () => Resolver,
  running?: AuditRecording,
): AuditRecording | undefined {
  const wanted = config.audit.enable || queryLogSizeOf(config) > 0;
  if (!running && !wanted) return undefined; // (the statistics may have a recorder: not needed here)
  if (!running) {
    const recorder = dispatcher.recorder ?? recorderFor(config);
    if (!recorder) return undefined;
    dispatcher.recorder = recorder;
    running = new AuditRecording(recorder, resolverLookups(recorder, current));
  }
  if (wanted && !running.recorder.keepAnswers) {
    // The recorder was made for the statistics alone (audit off at start): it keeps no answers.
    log.warn("audit: the answers' addresses are missing from its lines until a restart");
  }
  running.apply(config);
  return running;
}

/**
 * Starts the admin listener (dashboard, /metrics, /healthz) when `[admin]` is on. A failure (the
 * port taken, a bad certificate) is logged and DNS goes on being served.
 */
async function startAdminListener(serving: ChildServing): Promise<{ close(): Promise<void> } | undefined> {
  try {
    if (!serving.config().admin) return undefined;
    // The dashboard (its page and assets) is loaded only when the admin listener is on.
    const { startAdmin } = await import("./server/dashboard_backend.ts");
    return await startAdmin(serving, getLogger("admin"));
  } catch (e) {
    log.error("admin listener not started: {message}", { message: (e as Error).message });
    return undefined;
  }
}

/** Runs the DNS service until SIGTERM/SIGINT; returns the process exit code. */
export async function runChild(options: ChildOptions): Promise<number> {
  // Beat from the very start, so loading a large cache does not look like a hang.
  let beat = 0;
  let report: Report | undefined;
  let reportedChanges = -1; // the first beat after ready sends the stats
  const { promise: stopped, resolve: stop } = Promise.withResolvers<number>();
  const heartbeat = options.guarded
    ? setInterval(() => {
      beat++;
      const due = report !== undefined && (beat % 10 === 0 || report.healthChanges() !== reportedChanges);
      if (due) reportedChanges = report!.healthChanges();
      const alive = tell({ beat }) && (!due || tell(report!.message()));
      if (!alive) {
        log.error("guardian is gone; exiting");
        stop(0);
      }
    }, BEAT_INTERVAL_MS)
    : undefined;
  try {
    const code = await serve(options, stopped, stop, (r) => report = r);
    // The last counters, for the successor: the guardian hands them over.
    if (options.guarded && report) tell(report.message());
    return code;
  } finally {
    clearInterval(heartbeat);
  }
}

/** Loads, binds and serves until `stopped` resolves; returns the exit code. */
async function serve(
  options: ChildOptions,
  stopped: Promise<number>,
  stop: (code: number) => void,
  setReport: (report: Report) => void,
): Promise<number> {
  let config: Config;
  await startupStage(options, "reading the configuration");
  try {
    config = loadConfig(options.configPath);
  } catch (e) {
    const message = e instanceof ConfigError ? e.message : String(e);
    setupLogging({ level: "error", size: 0, num: 0 });
    log.fatal("invalid configuration: {message}", { message });
    if (options.guarded) tell({ fatal: `invalid configuration: ${message}` });
    return EXIT_CONFIG;
  }
  setupLogging(options.verbose ? { ...config.log, level: "debug" } : config.log);
  for (const w of config.warnings) {
    log.warn("{file}:{line}: {message}", { file: w.source.file, line: w.source.line, message: w.message });
  }
  for (const u of config.unsupported) {
    log.warn("{file}:{line}: {name} is not supported yet: {reason}", {
      file: u.source.file,
      line: u.source.line,
      name: u.name,
      reason: u.reason ?? "ignored",
    });
  }

  await startupStage(options, "building the resolver");
  const stats = new ServerStats();
  let batched: boolean;
  try {
    batched = chooseBatchedUdp(config.server.udpTransport);
  } catch (e) {
    log.fatal("{message}", { message: (e as Error).message });
    if (options.guarded) tell({ fatal: (e as Error).message });
    return EXIT_BIND;
  }
  const udpPool = batched ? new OutgoingSocketPool() : undefined;
  let resolver = buildResolver(config, getLogger("resolver"), undefined, udpPool);
  let journal = await restoreCache(options, config, resolver);
  await takeOverCache(options, resolver);
  await testOnlyStartupDelay(options);
  const dispatcher = new QueryDispatcher(resolver.resolve, stats, getLogger("server"));
  dispatcher.access = accessFor(config);
  let recording = startAuditRecording(config, dispatcher, () => resolver);
  const metrics = startMetrics(config, dispatcher, stats, () => resolver);
  let listeners: Listener[];
  await startupStage(options, "binding listeners");
  const inherited = parseInheritedSockets(Deno.env.get(INHERITED_UDP_FDS_ENV));
  try {
    listeners = await bindAll(config, dispatcher, batched, inherited);
  } catch (e) {
    log.fatal("{message}", { message: (e as Error).message });
    if (options.guarded) tell({ fatal: (e as Error).message });
    return EXIT_BIND;
  }
  // The guardian's sockets this configuration does not serve: closed here, so that nothing this
  // child starts inherits them (the guardian keeps its own copies).
  if (batched) { for (const fd of inherited.values()) closeDescriptor(fd); }
  try {
    dropToUser(config); // the same turn as the last bind: nothing has been read yet
  } catch (e) {
    const message = `refusing to serve: ${(e as Error).message}`;
    log.fatal("{message}", { message });
    if (options.guarded) tell({ fatal: message });
    await Promise.all(listeners.map((l) => l.close()));
    return EXIT_PRIVILEGES;
  }
  log.info("serving on {listeners} with {upstreams}", {
    listeners: listeners.map((l) => l.address).join(", "),
    upstreams: config.upstreams.map((u) => `${u.transport}://${u.host}:${u.port}`).join(", "),
  });

  const crash = (what: string, error: unknown) => {
    log.fatal("{what}: {error}", {
      what,
      error: error instanceof Error ? error.stack ?? error.message : error,
    });
    stop(EXIT_CRASH);
  };
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    crash("unhandled rejection", e.reason);
  });
  globalThis.addEventListener("error", (e) => {
    e.preventDefault();
    crash("uncaught exception", e.error);
  });
  // Lists, hosts and lease files are read again when they change (a cron job updating a block
  // list, new DHCP leases), on the running configuration.
  let watcher: FileWatcher | undefined;
  const watch = () => {
    watcher?.stop();
    watcher = new FileWatcher(resolver.files, (changed) => {
      log.info("rules: {files} changed; reading the rules again", { files: changed.join(", ") });
      try {
        const next = buildResolver(config, getLogger("resolver"), resolver, udpPool);
        dispatcher.useResolver(next.resolve);
        retire(resolver, config);
        resolver = next;
        watch();
      } catch (e) {
        log.error("rules: reading them again failed, the running rules stay: {error}", { error: String(e) });
      }
    }).start(RULE_FILE_POLL_MS);
  };
  watch();
  const onStop = () => stop(0);
  const onHangup = () => {
    const next = reload(options, config, resolver, dispatcher, udpPool);
    if (next) {
      const before = config;
      ({ config, resolver } = next);
      recording = startAuditRecording(config, dispatcher, () => resolver, recording);
      watch();
      journalSwap = journalSwap.then(async () =>
        journal = await journalAfterReload(journal, before, config, resolver)
      );
    }
  };
  let journalSwap = Promise.resolve<unknown>(undefined);
  // Before a planned restart: what the journal has waiting is written, then the hand-over file.
  const onHandOver = () =>
    Promise.resolve(journal?.flush()).then(() => handOverCache(resolver)).then((n) =>
      options.guarded && tell({ checkpointed: n })
    );
  Deno.addSignalListener("SIGTERM", onStop);
  Deno.addSignalListener("SIGINT", onStop);
  Deno.addSignalListener("SIGHUP", onHangup);
  Deno.addSignalListener("SIGUSR2", onHandOver);

  const admin = await startAdminListener({
    config: () => config,
    resolver: () => resolver,
    journal: () => journal,
    queryLog: () => recording?.queryLog,
    metrics,
    stats,
    dispatcher,
    reload: () => {
      const before = config;
      onHangup();
      return config !== before;
    },
  });
  const message = (): StatsMessage => ({
    stats: counters(stats, resolver),
    upstreams: resolver.upstreams(),
    ...(metrics ? { queryStats: metrics.state() } : {}),
  });
  setReport({ message, healthChanges: () => resolver.healthChanges });
  if (options.guarded) tell({ ready: { pid: Deno.pid, listeners: listeners.map((l) => l.address) } });
  if (options.guarded) {
    answerCacheRequests(
      () => ({ resolver, journal }),
      (request) => answerMetricsRequest(request, metrics, () => tell(message())),
    );
  }

  const code = await stopped;
  watcher?.stop();
  Deno.removeSignalListener("SIGTERM", onStop);
  Deno.removeSignalListener("SIGINT", onStop);
  Deno.removeSignalListener("SIGHUP", onHangup);
  Deno.removeSignalListener("SIGUSR2", onHandOver);
  await admin?.close();
  await Promise.all(listeners.map((l) => l.close()));
  recording?.close();
  udpPool?.close();
  // A graceful stop saves the whole cache; any other keeps the journal, with what waited written.
  await journalSwap;
  await journal?.close(code === 0);
  log.info("stopped: {counters}", { counters: JSON.stringify(counters(stats, resolver)) });
  return code;
}
