/**
 * SmartDNS's client directives: who may ask (`acl-enable`), and the run-as user. The model half
 * is `ServerConfig` and `GuardianConfig` in config/schema.ts.
 *
 * @module
 */
import type { DirectiveTable } from "./reader.ts";

/** The client directives. */
export const CLIENTS: DirectiveTable = {};
