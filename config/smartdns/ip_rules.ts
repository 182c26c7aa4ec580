/**
 * SmartDNS's IP-rule directives: filters on the addresses of upstream answers. The model half is
 * `RulesConfig.ipRules` in config/schema.ts; the filter is resolver/answer_filter.ts.
 *
 * @module
 */
import type { DirectiveTable } from "./reader.ts";

/** The IP-rule directives. */
export const IP_RULES: DirectiveTable = {};
