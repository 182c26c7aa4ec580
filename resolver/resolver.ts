/**
 * Builds the resolver chain from the configuration: the one place that decides which stages run
 * and in what order — nftset and the client stage (when configured) → cache → rules (only when
 * there are any) → DNS64 (when on) → coalescing → the upstream race of the query's server group.
 *
 * @module
 */
import { bootstrapServerIndexes, needsResolution } from "../config/bootstrap_servers.ts";
import {
  type Config,
  formatSpeedCheckModes,
  speedCheckLists,
  type SpeedCheckMode,
  type UpstreamConfig,
} from "../config/schema.ts";
import { setReplyTtlMax } from "../dns/stored_answer.ts";
import type { Logger } from "../ops/log.ts";
import { BootstrapResolver } from "../upstream/bootstrap.ts";
import { createUpstream } from "../upstream/create.ts";
import { withQueryOptions } from "../upstream/query_options.ts";
import type { Question } from "../dns/wire.ts";
import { HealthChecked, type UpstreamHealthReport } from "../upstream/health.ts";
import type { Upstream } from "../upstream/upstream.ts";
import type { OutgoingSocketPool } from "../upstream/udp_batched.ts";
import { AnswerCache } from "./answer_cache.ts";
import { AnswerFilter, type ServerFilterFlags } from "./answer_filter.ts";
import { CacheStage, staleWindowOf } from "./cache_stage.ts";
import { CoalesceStage } from "./coalesce_stage.ts";
import { Dns64Stage } from "./dns64_stage.ts";
import { DEFAULT_GROUP, GroupRouter } from "./group_router.ts";
import { nftsetStage } from "./nftset_stage.ts";
import { DDR_FLAG, designatedResolvers } from "./designated_resolvers.ts";
import { localAnswerTtl, RuleSet } from "./rule_set.ts";
import { RulesStage } from "./rules_stage.ts";
import { ClientStage } from "./client_stage.ts";
import { QueryContext } from "./query_context.ts";
import { chain, type Next, type Stage } from "./stage.ts";
import { UpstreamRace } from "./upstream_race.ts";
import { BlockingAnswerVote } from "./blocking_answer_vote.ts";
import { SpeedChecker } from "./speed_checker.ts";
import { SpeedStage } from "./speed_stage.ts";
import { DualstackStage } from "./dualstack_stage.ts";

/** A ready resolver chain and its parts. */
export interface Resolver {
  /** Resolves a query through the whole chain. */
  readonly resolve: Next;
  readonly rules?: RulesStage;
  readonly cache?: CacheStage;
  readonly coalesce: CoalesceStage;
  /** The speed check, when `speed-check-mode` is not none. */
  readonly speed?: SpeedStage;
  /** The speed checkers by probe kinds (kept on reload, so their results are). */
  readonly speedCheckers: Map<string, SpeedChecker>;
  readonly router: GroupRouter;
  /** Every stage's counters, merged (for the guardian's stats and `keeldns status`). */
  counters(): Record<string, number>;
  /** Each server's health (state, RTT p50/p95, failures), in configuration order. */
  upstreams(): UpstreamHealthReport[];
  /** Bumped whenever a server goes down or comes back (so the child reports it at once). */
  readonly healthChanges: number;
  /** Frees the upstreams' sockets (after a reload; queries under way finish). */
  close(): void;
  /** The files the rules were read from (lists, hosts, leases): a change means a rebuild. */
  readonly files: readonly string[];
  /** The chain's stages in order, and the client groups' names (group i + 1): for `explain`. */
  readonly stages: readonly Stage[];
  readonly clientGroups: readonly string[];
}

/** This machine's host name and addresses, for the names answered with them (empty if unknown). */
function selfAddresses(): { hostname: string; v4: string[]; v6: string[] } {
  try {
    const all = Deno.networkInterfaces().filter((i) => !i.address.startsWith("fe80:"));
    const outside = all.filter((i) => i.address !== "127.0.0.1" && i.address !== "::1");
    const use = outside.length > 0 ? outside : all;
    return {
      hostname: Deno.hostname(),
      v4: use.filter((i) => i.family === "IPv4").map((i) => i.address),
      v6: use.filter((i) => i.family === "IPv6").map((i) => i.address),
    };
  } catch {
    return { hostname: "", v4: [], v6: [] }; // no --allow-sys: these names go upstream
  }
}

/**
 * The server groups: the default one (every server without `-exclude-default-group`; all servers
 * if none is left), then each `-group` name in the order first seen.
 */
function groupsOf(
  config: Config,
  upstreams: Upstream[],
  log: Logger,
): { names: string[]; members: Upstream[][] } {
  const names = [DEFAULT_GROUP];
  const members: Upstream[][] = [[]];
  config.upstreams.forEach((u, i) => {
    if (!u.excludeDefault) members[0].push(upstreams[i]);
    for (const g of u.groups) {
      let index = names.indexOf(g);
      if (index < 0) index = names.push(g) - 1, members.push([]);
      members[index].push(upstreams[i]);
    }
  });
  if (members[0].length === 0) {
    log.warn("every server excludes the default group; using all {count} servers", {
      count: upstreams.length,
    });
    members[0] = [...upstreams];
  }
  return { names, members };
}

/**
 * Builds the chain for `config`. Pass the `previous` resolver on reload to keep its cache
 * (resized to the new `cache-size`), and a `udpPool` to send UDP queries through batched sockets.
 */
export function buildResolver(
  config: Config,
  log: Logger,
  previous?: Resolver,
  udpPool?: OutgoingSocketPool,
): Resolver {
  const trust = { caFile: config.server.caFile, caPath: config.server.caPath };
  let healthChanges = 0;
  const checked = (u: UpstreamConfig, inner: Upstream) => {
    const refusal = (inner as { refusal?: string }).refusal;
    if (refusal) log.warn("{upstream} is refused: {refusal}", { upstream: inner.address, refusal });
    const options = {
      subnets: u.clientSubnet,
      subnetAllQueryTypes: u.subnetAllQueryTypes,
      globalSubnets: config.server.clientSubnet,
      clientGroupSubnets: config.groups.map((g) => g.clientSubnet),
      clientGroupOf: (q: Question) => q instanceof QueryContext ? q.ruleGroup : 0,
      checkEdns: u.checkEdns,
    };
    return new HealthChecked(withQueryOptions(inner, options), {
      timeoutMs: config.server.upstreamTimeout,
      fallback: u.fallback,
      onChange: (h) => {
        healthChanges++;
        if (h.down) log.warn("{upstream} is down; probing it until it answers", { upstream: h.address });
        else log.info("{upstream} is up again", { upstream: h.address });
      },
    });
  };
  // Servers given by host name are resolved through the bootstrap servers, so those come first.
  const direct = config.upstreams.map((u) =>
    needsResolution(u) ? undefined : checked(u, createUpstream(u, udpPool, trust))
  );
  const bootstrap = new BootstrapResolver(
    bootstrapServerIndexes(config.upstreams).map((i) => direct[i]!),
    config.server.upstreamTimeout,
  );
  const upstreams = config.upstreams.map((u, i) =>
    direct[i] ?? checked(u, createUpstream(u, udpPool, trust, bootstrap))
  );
  const { names, members } = groupsOf(config, upstreams, log);
  const filter = config.rules.ipRules.length > 0
    ? new AnswerFilter(
      config.rules.ipRules,
      config.rules.ipSets,
      (message) => log.warn("ip rules: {message}", { message }),
    )
    : undefined;
  const flags = new Map<Upstream, ServerFilterFlags>(upstreams.map((u, i) => [u, config.upstreams[i]]));
  const ipRules = filter && !filter.empty
    ? { filter, flagsOf: (u: Upstream) => flags.get(u) ?? {} }
    : undefined;
  // The speed check: every client group's policy, and the domain rules' own probe kinds.
  const { policies, modeLists } = speedCheckLists(config);
  const anySpeed = modeLists.some((m) => m.length > 0);
  const vote = config.rules.blockingAnswerVote
    ? new BlockingAnswerVote(() => upstreams.filter((u) => !u.down).length)
    : undefined;
  const races = members.map((group) =>
    new UpstreamRace(
      group,
      config.cache,
      config.server.upstreamTimeout,
      (upstream, error) =>
        log.debug("{upstream} failed: {error}", { upstream: upstream.address, error: String(error) }),
      // With a speed check the speed stage limits the addresses, after probing them all.
      anySpeed ? 0 : config.rules.maxReplyIpNum,
      ipRules,
      vote,
    )
  );
  const router = new GroupRouter(races, names);
  const stages: Stage[] = [];
  const ruleOptions = {
    groupIndex: (name: string) => router.indexOf(name),
    ttl: config.cache,
    warn: (message: string) => log.warn("rules: {message}", { message }),
    self: config.rules.selfNames || config.rules.resolvHostname ? selfAddresses() : undefined,
    designatedResolvers: designatedResolvers(config.server.binds),
    strict: previous !== undefined,
  };
  const ruleSet = new RuleSet(config.rules, ruleOptions);
  // One rule set per client group, index 0 the default policy (ClientStage picks the index).
  const ruleSets = [ruleSet, ...config.groups.map((g) => new RuleSet(g.rules, ruleOptions))];
  // (-ddr switches nothing per query: it only adds the DDR records to the rules.)
  const listenerSwitches = config.server.binds.some((b) =>
    b.group !== undefined || (b.flags ?? []).some((f) => f !== DDR_FLAG)
  );
  // nftset first: it sees every answer, cached ones included (sets emptied by a firewall reload refill).
  if (ruleSet.hasNftset) stages.push(nftsetStage(ruleSet, config.rules, log));
  if (config.groups.length > 0 || listenerSwitches) {
    stages.push(new ClientStage(config.groups.map((g) => g.clients), (name) => router.indexOf(name)));
  }
  /** Where the cache stage is (or would be): the dual-stack stage's other question starts there. */
  const cacheIndex = stages.length;
  let cache: CacheStage | undefined;
  setReplyTtlMax(config.cache.rrTtlReplyMax);
  // SmartDNS: a cache-mem-size budget replaces the entry bound (and turns the cache on).
  const entries = config.cache.memSize > 0 ? 2 ** 31 - 1 : config.cache.size;
  if (entries > 0) {
    cache = previous?.cache ?? new CacheStage(new AnswerCache(entries, config.cache.memSize));
    cache.cache.resize(entries, config.cache.memSize);
    cache.cache.staleWindow = staleWindowOf(config.cache);
    cache.staleReplyTtl = config.cache.serveExpiredReplyTtl;
    cache.configurePrefetch(config.cache);
    stages.push(cache);
  }
  let rules: RulesStage | undefined;
  if (ruleSets.some((r) => !r.empty)) {
    const cnameTtl = localAnswerTtl(config.rules.localTtl, config.cache);
    rules = new RulesStage(ruleSets, cnameTtl);
    stages.push(rules);
    log.info(
      "rules: {rules} rule lines, {domains} domains from lists, {nodes} names in the table, {groups} client groups",
      {
        rules: ruleSet.rules.length,
        domains: ruleSet.listDomains,
        nodes: ruleSet.nodes,
        groups: config.groups.length,
      },
    );
  }
  if (cache) cache.rules = rules;
  const dns64 = config.rules.dns64Prefix ? new Dns64Stage(config.rules.dns64Prefix) : undefined;
  if (dns64) stages.push(dns64);
  const coalesce = new CoalesceStage();
  stages.push(coalesce);
  const checkers = previous?.speedCheckers ?? new Map<string, SpeedChecker>();
  const checkerFor = (modes: readonly SpeedCheckMode[]) => {
    if (modes.length === 0) return undefined;
    const text = formatSpeedCheckModes(modes);
    let checker = checkers.get(text);
    if (!checker) checkers.set(text, checker = new SpeedChecker(modes));
    return checker;
  };
  const speed = anySpeed
    ? new SpeedStage(
      policies.map((r) => ({
        checker: checkerFor(r.speedCheck),
        mode: r.responseMode,
        maxAddresses: r.maxReplyIpNum,
      })),
      checkerFor,
      config.cache,
    )
    : undefined;
  const anyDualstack = policies.some((r) => r.dualstack.enabled) ||
    policies.some((r) => r.domainRules.some((d) => d.dualstack === true));
  const dualstack = speed && anyDualstack
    ? new DualstackStage(policies.map((r) => r.dualstack), speed, config.cache)
    : undefined;
  if (dualstack) stages.push(dualstack);
  if (speed) {
    stages.push(speed);
    const used = [...new Set(modeLists.filter((m) => m.length > 0).map(formatSpeedCheckModes))];
    if (modeLists.some((m) => m.some((k) => k.kind === "ping"))) {
      const access = SpeedChecker.icmpAccess();
      if (typeof access === "string") {
        log.info("speed check: {modes}; ping through {kind} ICMP sockets", {
          modes: used.join(" / "),
          kind: access === "raw" ? "raw (root)" : "unprivileged datagram",
        });
      } else {
        log.warn("speed check: {modes}; no ping ({why}): the other probe kinds are used", {
          modes: used.join(" / "),
          why: access.unavailable,
        });
      }
    } else {
      log.info("speed check: {modes}", { modes: used.join(" / ") });
    }
  }
  if (dualstack) dualstack.fromCache = chain(stages.slice(cacheIndex), router);
  if (cache) cache.refreshVia = chain(stages.slice(cacheIndex + 1), router);
  return {
    resolve: chain(stages, router),
    rules,
    cache,
    coalesce,
    speed,
    speedCheckers: checkers,
    router,
    counters: () => ({
      ruleLocal: rules?.counters.local ?? 0,
      ruleBlocked: rules?.counters.blocked ?? 0,
      ruleRouted: rules?.counters.routed ?? 0,
      cacheHits: cache?.counters.hits ?? 0,
      cacheMisses: cache?.counters.misses ?? 0,
      cacheEntries: cache?.cache.size ?? 0,
      cacheBytes: cache?.cache.reservedBytes ?? 0,
      coalesced: coalesce.joined,
      speedChecked: speed?.counters.checked ?? 0,
      speedSelected: speed?.counters.selected ?? 0,
      speedUnanswered: speed?.counters.unanswered ?? 0,
      speedProbes: [...checkers.values()].reduce((sum, c) => sum + c.probesSent, 0),
      dualstackPreferredIpv4: dualstack?.counters.preferredIpv4 ?? 0,
      dualstackPreferredIpv6: dualstack?.counters.preferredIpv6 ?? 0,
      dns64Synthesized: dns64?.synthesized ?? 0,
      upstreamQueries: races.reduce((sum, r) => sum + r.counters.queries, 0),
      upstreamFailures: races.reduce((sum, r) => sum + r.counters.failures, 0),
      upstreamInvalidAnswers: races.reduce((sum, r) => sum + r.counters.invalidAnswers, 0),
      upstreamFilteredAnswers: races.reduce((sum, r) => sum + r.counters.filteredAnswers, 0),
      upstreamBogusAnswers: races.reduce((sum, r) => sum + r.counters.bogusAnswers, 0),
      negativeOvertaken: races.reduce((sum, r) => sum + r.counters.negativeOvertaken, 0),
    }),
    upstreams: () => upstreams.map((u) => u.report()),
    get healthChanges() {
      return healthChanges;
    },
    close: () => {
      for (const u of upstreams) u.close();
    },
    files: [...new Set(ruleSets.flatMap((r) => [...r.files]))],
    stages,
    clientGroups: config.groups.map((g) => g.name),
  };
}
