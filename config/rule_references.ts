/**
 * Checks, for both front-ends, what domain rules refer to: a `nameserver` group must have a
 * server keeldns can use (else its domains would silently go to the default group), and a
 * `domain-set:NAME` must be defined.
 *
 * @module
 */
import { ConfigError } from "./errors.ts";
import type { DomainRule, DomainSetConfig, IpRuleConfig, IpSetConfig, UpstreamConfig } from "./schema.ts";

/** Throws a ConfigError at the first rule that names a group without servers or an unknown set. */
export function checkRuleReferences(
  rules: readonly DomainRule[],
  sets: readonly DomainSetConfig[],
  servers: readonly UpstreamConfig[],
): void {
  const groups = new Set(servers.flatMap((u) => u.groups));
  const names = new Set(sets.map((s) => s.name));
  for (const rule of rules) {
    if (rule.nameserver !== undefined && rule.nameserver !== "-" && !groups.has(rule.nameserver)) {
      throw new ConfigError(
        `nameserver: no usable server is in group "${rule.nameserver}" ` +
          `(a server needs -group ${rule.nameserver}); its domains would go to the default group`,
        rule.source,
      );
    }
    for (const domain of rule.domains) {
      const set = /^domain-set:(.*)$/.exec(domain)?.[1];
      if (set !== undefined && !names.has(set)) {
        throw new ConfigError(`no domain-set named "${set}" (domain-set -name ${set} -file …)`, rule.source);
      }
    }
  }
}

/** Throws a ConfigError at the first IP rule that names an `ip-set:NAME` that is not defined. */
export function checkIpSetReferences(rules: readonly IpRuleConfig[], sets: readonly IpSetConfig[]): void {
  const names = new Set(sets.map((s) => s.name));
  for (const rule of rules) {
    for (const cidr of rule.cidrs) {
      const set = /^ip-set:(.*)$/.exec(cidr)?.[1];
      if (set !== undefined && !names.has(set)) {
        throw new ConfigError(`no ip-set named "${set}" (ip-set -name ${set} -file …)`, rule.source);
      }
    }
  }
}
