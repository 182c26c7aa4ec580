/**
 * The one door to `npm:smol-toml`, plus a locator that finds where a key sits in the source so
 * semantic errors can name `file:line:col` (the parser itself reports only syntax positions).
 *
 * @module
 */
import { parse, TomlError } from "smol-toml";
import { ConfigError } from "./errors.ts";
import type { SourcePosition } from "./schema.ts";

/** A parsed TOML document with a way back to the source position of any key path. */
export class TomlSource {
  private readonly keys = new Map<string, SourcePosition>();

  private constructor(readonly data: Record<string, unknown>, readonly file: string, text: string) {
    this.index(text);
  }

  /** Parses `text`; syntax errors become {@link ConfigError} with the parser's position. */
  static parse(text: string, file: string): TomlSource {
    try {
      return new TomlSource(parse(text) as Record<string, unknown>, file, text);
    } catch (e) {
      if (e instanceof TomlError) {
        const reason = e.message.split("\n")[0].replace(/^Invalid TOML document: /, "");
        throw new ConfigError(reason, { file, line: e.line, col: e.column });
      }
      throw e;
    }
  }

  /** Records the position of every `key =` line and table header, as `table.key` or `table[i].key`. */
  private index(text: string): void {
    const counts = new Map<string, number>();
    let prefix = "";
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const header = /^(\s*)\[(\[)?\s*([A-Za-z0-9_.-]+)\s*\]\]?/.exec(line);
      if (header) {
        const name = header[3];
        if (header[2]) {
          const n = counts.get(name) ?? 0;
          counts.set(name, n + 1);
          prefix = `${name}[${n}]`;
        } else {
          prefix = name;
        }
        this.keys.set(prefix, { file: this.file, line: i + 1, col: header[1].length + 1 });
        continue;
      }
      const key = /^(\s*)("?)([A-Za-z0-9_.-]+)\2\s*=/.exec(line);
      if (key) {
        const path = prefix ? `${prefix}.${key[3]}` : key[3];
        if (!this.keys.has(path)) {
          this.keys.set(path, { file: this.file, line: i + 1, col: key[1].length + 1 });
        }
      }
    }
  }

  /** The position of `path` (e.g. `upstream[1].address`), else of its nearest parent, else 1:1. */
  position(path: string): SourcePosition {
    for (let p = path; p; p = p.replace(/(\.[^.[]*|\[\d+\])$/, "")) {
      const found = this.keys.get(p);
      if (found) return found;
      if (!/(\.|\[)/.test(p)) break;
    }
    return { file: this.file, line: 1, col: 1 };
  }

  /** Throws a {@link ConfigError} at `path`. */
  fail(path: string, reason: string): never {
    throw new ConfigError(reason, this.position(path));
  }
}
