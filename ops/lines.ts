/**
 * Splits a byte stream into text lines.
 *
 * @module
 */

/** Yields each line of `stream` (without its newline); a last unterminated line is yielded too. */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let newline: number;
    while ((newline = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, newline);
      rest = rest.slice(newline + 1);
    }
  }
  if (rest) yield rest;
}

/** Keeps the last `capacity` lines pushed into it. */
export class LineRing {
  private readonly lines: string[] = [];

  constructor(readonly capacity: number) {}

  /** Adds a line, dropping the oldest beyond capacity. */
  push(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.capacity) this.lines.shift();
  }

  /** The kept lines, oldest first. */
  toArray(): string[] {
    return [...this.lines];
  }

  /** Forgets every line. */
  clear(): void {
    this.lines.length = 0;
  }
}
