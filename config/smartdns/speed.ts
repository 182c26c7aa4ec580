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
};
