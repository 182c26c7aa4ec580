/**
 * Loads a configuration file of either format, telling them apart by content.
 *
 * @module
 */
import { EMBEDDED_CONFIG_NAME, EMBEDDED_CONFIG_TOML } from "./defaults.ts";
import { ConfigError, readFailure } from "./errors.ts";
import type { Config } from "./schema.ts";
import { parseSmartdnsConf } from "./smartdns_conf.ts";
import { parseTomlConfig } from "./toml.ts";

/**
 * Guesses the format from the first meaningful line: a `[table]` header or `key = value` means
 * TOML; a SmartDNS directive (`word args…`) means smartdns.conf. The extension breaks ties.
 */
export function detectFormat(text: string, path: string): "toml" | "smartdns" {
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (/^\[/.test(line) || /^"?[A-Za-z0-9_.-]+"?\s*=/.test(line)) return "toml";
    return "smartdns";
  }
  return path.endsWith(".toml") ? "toml" : "smartdns";
}

/** Parses configuration text of either format. */
export function parseConfig(text: string, path: string): Config {
  return detectFormat(text, path) === "toml" ? parseTomlConfig(text, path) : parseSmartdnsConf(text, path);
}

/** Reads and parses the file at `path`, or the embedded default when `path` is undefined. */
export function loadConfig(path?: string): Config {
  if (path === undefined) return parseTomlConfig(EMBEDDED_CONFIG_TOML, EMBEDDED_CONFIG_NAME);
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    throw new ConfigError(`cannot read the configuration file: ${readFailure(e)}`, {
      file: path,
      line: 0,
      col: 0,
    });
  }
  return parseConfig(text, path);
}
