/**
 * SmartDNS's speed-check directives: `speed-check-mode`, `response-mode` and dual-stack selection,
 * for the default policy or, inside `group-begin` … `group-end`, for that client group. The model half is
 * `speedCheck`, `responseMode` and `blockingAnswerVote` in `RulesConfig` (config/schema.ts); the
 * stage is resolver/speed_stage.ts.
 *
 * @module
 */
import { parseResponseMode, parseSpeedCheckModes } from "../schema.ts";
import type { DirectiveTable } from "./reader.ts";

/** The speed-check directives. */
export const SPEED: DirectiveTable = {
  "speed-check-mode": {
    toml: "rules.speed-check-mode",
    status: "supported",
    note:
      "ping (ICMP datagram socket, else raw when root), tcp:PORT (tcp-syn:PORT is probed as a full handshake)",
    handle: (d, l) => d.speed.speedCheck = d.value(l, 1, parseSpeedCheckModes),
  },
  "response-mode": {
    toml: "rules.response-mode",
    status: "supported",
    handle: (d, l) => d.speed.responseMode = d.value(l, 1, parseResponseMode),
  },
  "dualstack-ip-selection": {
    toml: "rules.dualstack-ip-selection",
    status: "supported",
    note: "with the speed check on (it needs the probes' times)",
    handle: (d, l) => d.speed.dualstack = d.yesNo(l, 1),
  },
  "dualstack-ip-selection-threshold": {
    toml: "rules.dualstack-ip-selection-threshold",
    status: "supported",
    handle: (d, l) => d.speed.dualstackThreshold = d.integer(l, 1, 0, 1000),
  },
  "dualstack-ip-allow-force-AAAA": {
    toml: "rules.dualstack-ip-allow-force-aaaa",
    status: "supported",
    handle: (d, l) => d.speed.dualstackAllowForceAAAA = d.yesNo(l, 1),
  },
};
