/**
 * The last good configuration: the text of the configuration file as it was when last validated.
 * When the file turns invalid under a running service and a child has to be started, children run
 * on a copy of that text until the file is valid again. Files with `conf-file` includes are never
 * copied: a copy of the one file would not mean the same.
 *
 * @module
 */
import { loadConfig, parseConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";

/**
 * Reads and parses the configuration once: the model, and the file's text (none for the embedded
 * default). Throws the file's error, with its position.
 */
export function readConfig(path?: string): { config: Config; text?: string } {
  if (!path) return { config: loadConfig() };
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    return { config: loadConfig(path) }; // throws the read error as a ConfigError
  }
  return { config: parseConfig(text, path), text };
}

/** The configuration file's last validated text, and whether children run on a copy of it. */
export class LastGoodConfig {
  private good?: { readonly text: string; readonly time: string };
  private onCopy = false;
  private validated?: Config;
  /** Where the copy is written when children fall back to it. */
  readonly copyPath: string;

  /**
   * @param path the configuration file (undefined: the embedded default, which cannot turn bad)
   * @param copyDir where the copy may be written
   * @param text the file's text as validated at start: the first last good version
   */
  constructor(readonly path: string | undefined, copyDir: string, text?: string, config?: Config) {
    if (text !== undefined) this.good = { text, time: new Date().toISOString() };
    this.validated = config;
    const extension = /\.[a-z]+$/i.exec(path ?? "")?.[0] ?? "";
    this.copyPath = `${copyDir}/keeldns-lastgood-${Deno.pid}${extension}`;
  }

  /** Reads and validates the file; a valid one becomes the last good version. Throws the file's error. */
  validate(): void {
    const { config, text } = readConfig(this.path);
    if (text !== undefined) this.good = { text, time: new Date().toISOString() };
    this.validated = config;
  }

  /** The configuration as last validated (what a child started now runs on), if known. */
  get config(): Config | undefined {
    return this.validated;
  }

  /**
   * Validates the file and, if it is valid, has children use it again. Returns true if they had
   * been on the copy. Throws the file's error (children stay where they are).
   */
  recover(): boolean {
    this.validate();
    const was = this.onCopy;
    this.onCopy = false;
    return was;
  }

  /**
   * After a child refused the file: switches children to a copy of the last good version, if
   * there is one and a copy means the same. Returns true if it switched.
   */
  fallBack(): boolean {
    const good = this.good;
    if (!this.path || !good || this.onCopy || /^\s*conf-file\s/m.test(good.text)) return false;
    try {
      Deno.writeTextFileSync(this.copyPath, good.text, { mode: 0o600 });
    } catch {
      return false;
    }
    this.onCopy = true;
    return true;
  }

  /** The file a new child is given: the configuration file, or the copy; undefined for the embedded default. */
  pathForChild(): string | undefined {
    return this.onCopy ? this.copyPath : this.path;
  }

  /** While children run on the copy: when its text was validated (ISO time); otherwise null. */
  servingLastGood(): string | null {
    return this.onCopy ? this.good?.time ?? null : null;
  }

  /** Deletes the copy, if one was written. */
  async remove(): Promise<void> {
    await Deno.remove(this.copyPath).catch(() => {});
  }
}
