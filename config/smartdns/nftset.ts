/**
 * SmartDNS's nftset/ipset directives (answer addresses added to firewall sets). The model half is
 * `DomainRule.nftset` and `RulesConfig.nftsetTimeout` in config/schema.ts.
 *
 * @module
 */
import type { DirectiveTable } from "./reader.ts";

/** The nftset/ipset directives. */
export const NFTSET: DirectiveTable = {};
