/**
 * Builds the resolver chain from the configuration: the one place that decides which stages run
 * and in what order (cache → coalescing → upstream race).
 *
 * @module
 */
import type { Config } from "../config/schema.ts";
import type { Logger } from "../ops/log.ts";
import { createUpstream } from "../upstream/create.ts";
import type { OutgoingSocketPool } from "../upstream/udp_batched.ts";
import { AnswerCache } from "./answer_cache.ts";
import { CacheStage } from "./cache_stage.ts";
import { CoalesceStage } from "./coalesce_stage.ts";
import { chain, type Next, type Stage } from "./stage.ts";
import { UpstreamRace } from "./upstream_race.ts";

/** A ready resolver chain and the parts whose counters are worth reporting. */
export interface Resolver {
  /** Resolves a question through the whole chain. */
  readonly resolve: Next;
  readonly cache?: CacheStage;
  readonly coalesce: CoalesceStage;
  readonly race: UpstreamRace;
}

/**
 * Builds the chain for `config`; servers in the default group are raced for every question. Pass
 * the `previous` resolver on reload to keep its cache (resized to the new `cache-size`), and a
 * `udpPool` to send UDP queries through batched sockets.
 */
export function buildResolver(
  config: Config,
  log: Logger,
  previous?: Resolver,
  udpPool?: OutgoingSocketPool,
): Resolver {
  let members = config.upstreams.filter((u) => !u.excludeDefault);
  if (members.length === 0) {
    log.warn("every server excludes the default group; using all {count} servers", {
      count: config.upstreams.length,
    });
    members = [...config.upstreams];
  }
  const upstreams = members.map((u) => createUpstream(u, udpPool));
  const race = new UpstreamRace(
    upstreams,
    config.cache,
    config.server.upstreamTimeout,
    (upstream, error) =>
      log.debug("{upstream} failed: {error}", { upstream: upstream.address, error: String(error) }),
  );
  const stages: Stage[] = [];
  let cache: CacheStage | undefined;
  if (config.cache.size > 0) {
    cache = previous?.cache ?? new CacheStage(new AnswerCache(config.cache.size));
    cache.cache.resize(config.cache.size);
  }
  if (cache) stages.push(cache);
  const coalesce = new CoalesceStage();
  stages.push(coalesce);
  return { resolve: chain(stages, race), cache, coalesce, race };
}
