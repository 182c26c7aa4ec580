/**
 * Configuration errors that point at the offending place in the file.
 *
 * @module
 */
import type { SourcePosition } from "./schema.ts";

/**
 * A configuration problem at a position in a file; `message` reads `file:line:col: reason`, or
 * `file: reason` for a problem with the file as a whole (line 0: it cannot be read, it lacks
 * something).
 */
export class ConfigError extends Error {
  constructor(readonly reason: string, readonly position: SourcePosition) {
    super(
      position.line > 0
        ? `${position.file}:${position.line}:${position.col}: ${reason}`
        : `${position.file}: ${reason}`,
    );
    this.name = "ConfigError";
  }
}

/** Says in a few words why a file could not be read (no OS error numbers, no call names). */
export function readFailure(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "is a directory, not a file";
  if (error instanceof TypeError || (error as Error)?.name === "InvalidData") return "not UTF-8 text";
  return ((error as Error)?.message ?? String(error)).replace(/ \(os error \d+\)/, "").replace(
    /: \w+ '.*'$/,
    "",
  );
}

/** Edit distance between two short strings (for "did you mean"). */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}

/** Returns ` (did you mean "x"?)` for the closest candidate within a small distance, else "". */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  let best = "";
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? ` (did you mean "${best}"?)` : "";
}
