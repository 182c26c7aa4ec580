/**
 * Notices when files change (list files, hosts files, DHCP leases): polls their modification time
 * and size. Polling rather than inotify: lists on a router are often replaced by a rename from a
 * cron job or sit on a USB stick mounted after boot, and a poll sees both the same way.
 *
 * @module
 */

/** What a file looked like at the last look: mtime and size, or "missing". */
function stamp(path: string): string {
  try {
    const info = Deno.statSync(path);
    return `${info.mtime?.getTime() ?? 0}:${info.size}`;
  } catch {
    return "missing";
  }
}

/** Calls `onChange` (at most once per poll) when any of the watched files changes, appears or goes. */
export class FileWatcher {
  private readonly stamps = new Map<string, string>();
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(paths: Iterable<string>, private readonly onChange: (changed: string[]) => void) {
    for (const path of paths) this.stamps.set(path, stamp(path));
  }

  /** How many files are watched. */
  get size(): number {
    return this.stamps.size;
  }

  /** Starts polling every `intervalMs` (nothing to do without files). */
  start(intervalMs: number): this {
    if (this.stamps.size > 0) this.timer = setInterval(() => this.poll(), intervalMs);
    return this;
  }

  /** Looks once; returns the files that changed since the last look. */
  poll(): string[] {
    const changed: string[] = [];
    for (const [path, before] of this.stamps) {
      const now = stamp(path);
      if (now !== before) {
        this.stamps.set(path, now);
        changed.push(path);
      }
    }
    if (changed.length > 0) this.onChange(changed);
    return changed;
  }

  /** Stops polling. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
