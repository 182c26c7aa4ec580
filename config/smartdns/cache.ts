/**
 * SmartDNS's cache directives: `cache-size`, `cache-persist`, `cache-file`,
 * `cache-checkpoint-time`, the TTL rewrites `rr-ttl*`, `serve-expired*` and `prefetch-domain`. The model half is `CacheConfig` in
 * config/schema.ts.
 *
 * @module
 */
import { AUTO_CACHE_SIZE } from "../values.ts";
import { type DirectiveTable, relativeTo } from "./reader.ts";

const TTL_MAX = 2 ** 31 - 1;

/** The cache directives. */
export const CACHE: DirectiveTable = {
  "cache-size": {
    toml: "cache.size",
    status: "supported",
    handle: (d, l) => {
      const text = d.text(l, 1);
      // SmartDNS reads a size here (128k, 8M); -1 is "auto".
      const n = /^-\d/.test(text) ? d.integer(l, 1, -1, -1) : d.size(l, 1);
      d.cache.size = n < 0 ? AUTO_CACHE_SIZE : Math.min(n, TTL_MAX);
    },
  },
  "cache-persist": {
    toml: "cache.persist",
    status: "supported",
    handle: (d, l) => d.persistSet = d.yesNo(l, 1),
  },
  "cache-file": {
    toml: "cache.file",
    status: "supported",
    handle: (d, l) => {
      d.cache.file = relativeTo(l.file, d.text(l, 1));
      d.cacheFileSet = true;
    },
  },
  "cache-checkpoint-time": {
    toml: "cache.checkpoint-time",
    status: "supported",
    handle: (d, l) => d.cache.checkpointTime = d.integer(l, 1, 0, 7 * 86400),
  },
  "rr-ttl": {
    toml: "cache.rr-ttl",
    status: "supported",
    handle: (d, l) => d.cache.rrTtl = d.integer(l, 1, 0, TTL_MAX),
  },
  "rr-ttl-min": {
    toml: "cache.rr-ttl-min",
    status: "supported",
    handle: (d, l) => d.cache.rrTtlMin = d.integer(l, 1, 0, TTL_MAX),
  },
  "cache-mem-size": {
    toml: "cache.mem-size",
    status: "supported",
    note: "set, the byte budget bounds the cache and cache-size no longer does, as in SmartDNS",
    handle: (d, l) => d.cache.memSize = d.size(l, 1),
  },
  "rr-ttl-reply-max": {
    toml: "cache.rr-ttl-reply-max",
    status: "supported",
    note: "one value for all client groups (SmartDNS keeps one per group)",
    handle: (d, l) => d.cache.rrTtlReplyMax = d.integer(l, 1, 0, TTL_MAX),
  },
  "serve-expired": {
    toml: "cache.serve-expired",
    status: "supported",
    note: "on unless set to no, as in SmartDNS (keeldns's own TOML default is off)",
    handle: (d, l) => d.cache.serveExpired = d.yesNo(l, 1),
  },
  "serve-expired-ttl": {
    toml: "cache.serve-expired-ttl",
    status: "supported",
    handle: (d, l) => d.cache.serveExpiredTtl = d.integer(l, 1, 0, TTL_MAX),
  },
  "serve-expired-reply-ttl": {
    toml: "cache.serve-expired-reply-ttl",
    status: "supported",
    note: "also the TTL (at least 2 s) of the first reply to a miss the speed check runs on, serve-expired " +
      "on or not, as in SmartDNS",
    handle: (d, l) => d.cache.serveExpiredReplyTtl = d.integer(l, 1, 0, TTL_MAX),
  },
  "prefetch-domain": {
    toml: "cache.prefetch",
    status: "supported",
    note: "one value for all client groups (SmartDNS keeps one per group); serve-expired-ttl stays 86400 " +
      "unless set, as in SmartDNS HEAD",
    handle: (d, l) => d.cache.prefetch = d.yesNo(l, 1),
  },
  "serve-expired-prefetch-time": {
    toml: "cache.serve-expired-prefetch-time",
    status: "supported",
    note: "one value for all client groups (SmartDNS keeps one per group)",
    handle: (d, l) => d.cache.serveExpiredPrefetchTime = d.integer(l, 1, 0, TTL_MAX),
  },
  "rr-ttl-max": {
    toml: "cache.rr-ttl-max",
    status: "supported",
    handle: (d, l) => d.cache.rrTtlMax = d.integer(l, 1, 0, TTL_MAX),
  },
};
