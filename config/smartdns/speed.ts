/**
 * SmartDNS's speed-check directives: `speed-check-mode` and `response-mode`. The model half is
 * `speedCheck`, `responseMode` and `blockingAnswerVote` in `RulesConfig` (config/schema.ts); the
 * stage is resolver/speed_stage.ts.
 *
 * @module
 */
import { parseSpeedCheckModes, RESPONSE_MODES, type ResponseMode } from "../schema.ts";
import type { DirectiveTable } from "./reader.ts";

/** The speed-check directives. */
export const SPEED: DirectiveTable = {
  "speed-check-mode": {
    toml: "rules.speed-check-mode",
    status: "supported",
    note:
      "ping (ICMP datagram socket, else raw when root), tcp:PORT (tcp-syn:PORT is probed as a full handshake)",
    handle: (d, l) => d.speedCheck = d.value(l, 1, parseSpeedCheckModes),
  },
  "response-mode": {
    toml: "rules.response-mode",
    status: "supported",
    handle: (d, l) => {
      d.responseMode = d.value(l, 1, (text) => {
        const mode = text.toLowerCase() as ResponseMode;
        if (!RESPONSE_MODES.includes(mode)) {
          throw new Error(`unknown response mode "${text}" (${RESPONSE_MODES.join(", ")})`);
        }
        return mode;
      });
    },
  },
  "dualstack-ip-selection": {
    toml: "rules.dualstack-ip-selection",
    status: "supported",
    note: "with the speed check on (it needs the probes' times)",
    handle: (d, l) => d.dualstack = d.yesNo(l, 1),
  },
  "dualstack-ip-selection-threshold": {
    toml: "rules.dualstack-ip-selection-threshold",
    status: "supported",
    handle: (d, l) => d.dualstackThreshold = d.integer(l, 1, 0, 1000),
  },
  "dualstack-ip-allow-force-AAAA": {
    toml: "rules.dualstack-ip-allow-force-aaaa",
    status: "supported",
    handle: (d, l) => d.dualstackAllowForceAAAA = d.yesNo(l, 1),
  },
};
