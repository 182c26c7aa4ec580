/**
 * What every listener (UDP, TCP, later DoT/DoH) looks like to the child that owns it.
 *
 * @module
 */

import type { BindConfig } from "../config/schema.ts";
import { BindFlag, type ListenerProfile } from "../resolver/query_context.ts";

/** A bound, serving socket; it is the profile its queries carry down the chain. */
export interface Listener extends ListenerProfile {
  /** e.g. `udp://127.0.0.1:5353`. */
  readonly address: string;
  /**
   * Stops taking new queries, lets the answers under way go out (bounded by `drainMs`), and
   * releases the socket; resolves when it is released.
   */
  close(drainMs?: number): Promise<void>;
}

/** Default time a closing listener waits for answers under way. */
export const DRAIN_MS = 3000;

/** SmartDNS bind option names and the {@link BindFlag} each sets. */
const FLAG_NAMES: Record<string, number> = {
  "no-rule-addr": BindFlag.NO_RULE_ADDR,
  "no-rule-nameserver": BindFlag.NO_RULE_NAMESERVER,
  "no-rule-soa": BindFlag.NO_RULE_SOA,
  "no-rules": BindFlag.NO_RULES,
  "no-cache": BindFlag.NO_CACHE,
  "force-aaaa-soa": BindFlag.FORCE_AAAA_SOA,
  "no-speed-check": BindFlag.NO_SPEED_CHECK,
  "no-dualstack-selection": BindFlag.NO_DUALSTACK,
  "no-serve-expired": BindFlag.NO_SERVE_EXPIRED,
};

/** The flag bits of a bind line's options (names other than the ones above set nothing). */
export function bindFlags(bind: BindConfig): number {
  let bits = 0;
  for (const name of bind.flags ?? []) bits |= FLAG_NAMES[name] ?? 0;
  return bits;
}
