/**
 * A process's stderr as lines, and waiting for one that matches: what every test that runs
 * keeldns as a subprocess watches (KeeldnsProcess, NsKeeldns).
 *
 * @module
 */

/** The lines of a stream, read as they come. */
export class LogLines {
  /** Every line so far. */
  readonly lines: string[] = [];
  /** Resolves when the stream has ended. */
  readonly ended: Promise<void>;
  private waiters: { pattern: RegExp; from: number; resolve: (m: RegExpMatchArray) => void }[] = [];

  constructor(stream: ReadableStream<Uint8Array>) {
    this.ended = this.pump(stream);
  }

  private async pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      let nl: number;
      while ((nl = rest.indexOf("\n")) >= 0) {
        this.lines.push(rest.slice(0, nl));
        rest = rest.slice(nl + 1);
        this.check();
      }
    }
    if (rest) this.lines.push(rest);
    this.check();
  }

  private check(): void {
    this.waiters = this.waiters.filter((w) => {
      for (let i = w.from; i < this.lines.length; i++) {
        const m = this.lines[i].match(w.pattern);
        if (m) {
          w.resolve(m);
          return false;
        }
      }
      return true;
    });
  }

  /**
   * Waits for a line matching `pattern` at or after line index `from` (default: any line).
   * Rejects after `timeoutMs`, quoting the log.
   */
  waitFor(pattern: RegExp, timeoutMs = 10_000, from = 0): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(
          new Error(`no log line matched ${pattern} in ${timeoutMs} ms; log:\n${this.lines.join("\n")}`),
        );
      }, timeoutMs);
      const done = (m: RegExpMatchArray) => {
        clearTimeout(timer);
        resolve(m);
      };
      this.waiters.push({ pattern, from, resolve: done });
      this.check();
    });
  }
}
