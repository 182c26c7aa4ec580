/**
 * What the consumers of query records (the audit file, the query log) look up about a record in
 * the running configuration: the upstream that answered, the rule that decided with its
 * `file:line`, and the server group the rules send the name to. Read off the hot path, from the
 * resolver serving now (a record drained just after a reload is read against the new rules).
 *
 * @module
 */
import type { Resolver } from "../resolver/resolver.ts";
import type { RuleSource } from "../resolver/rule_set.ts";
import { DEFAULT_GROUP } from "../resolver/group_router.ts";
import type { QueryRecorder, QueryRecords } from "../server/query_recorder.ts";

/** Lookups about a record; every method is cheap and never throws. */
export interface RecordLookups {
  /** The address of upstream `index` of the recorder (`QueryRecords.upstream`), if any. */
  upstream(index: number): string | undefined;
  /** Rule `rule` of client group `ruleGroup`'s rules (its line and `file:line`), if any. */
  ruleSource(ruleGroup: number, rule: number): RuleSource | undefined;
  /** The server group the rules send slot `i`'s name to (SmartDNS's audit `group`). */
  upstreamGroup(records: QueryRecords, i: number): string;
}

/** {@link RecordLookups} against `current()`, the resolver serving now, and `recorder`'s addresses. */
export function resolverLookups(recorder: QueryRecorder, current: () => Resolver): RecordLookups {
  return {
    upstream: (index) => index >= 0 ? recorder.upstreams[index] : undefined,
    ruleSource: (ruleGroup, rule) => {
      if (rule < 0) return undefined;
      const sets = current().rules?.sets;
      return (sets?.[ruleGroup] ?? sets?.[0])?.rules[rule];
    },
    upstreamGroup: (records, i) => current().router.names[records.upstreamGroup[i]] ?? DEFAULT_GROUP,
  };
}

/** Where a rule is: `file:line`, or its text when it comes from no file (this machine's names, DDR). */
export function ruleWhere(rule: RuleSource): string {
  return rule.source.file ? `${rule.source.file}:${rule.source.line}` : rule.text;
}

/** The `Reason` codes (resolver/query_context.ts) by name, as the audit file and the query log write them. */
export const REASON_NAMES: readonly string[] = [
  "upstream",
  "cache",
  "coalesced",
  "rule",
  "blocked",
  "soa",
  "servfail",
  "stale",
];

const RCODE_NAMES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];

/** An rcode's name (`NOERROR`, `NXDOMAIN` …; `RCODE9` for one without a name here). */
export function rcodeName(rcode: number): string {
  return RCODE_NAMES[rcode] ?? `RCODE${rcode}`;
}
