/**
 * The guardian's control channel: a unix socket (mode 0600) next to the pid file. A client sends
 * one JSON request line (`{command, args?}`) and reads one JSON reply line. `keeldns
 * status|reload|stop|restart|cache` use it.
 *
 * @module
 */

/** What a client may ask. */
export type ControlCommand = "status" | "reload" | "stop" | "restart" | "cache" | "explain" | "metrics";

/** All commands. */
export const CONTROL_COMMANDS: readonly ControlCommand[] = [
  "status",
  "reload",
  "stop",
  "restart",
  "cache",
  "explain",
  "metrics",
];

/** Replies up to this size are read by {@link sendControl} (`cache list` sends up to 1000 entries). */
const REPLY_LIMIT = 16 << 20;

/** The reply to a command. */
export interface ControlReply {
  readonly ok: boolean;
  /** Why it failed, when `ok` is false. */
  readonly error?: string;
  /** The guardian's state, for `status` (and after `restart`). */
  readonly status?: Record<string, unknown>;
  /** What the child answered, for `cache` (stats, the entries listed, the entries flushed). */
  readonly cache?: Record<string, unknown>;
  /** What the child answered for `explain` (resolver/explain.ts ExplainReport). */
  readonly explain?: Record<string, unknown>;
  /** What the child answered, for `metrics`: `text` (Prometheus), or `snapshot` (JSON). */
  readonly metrics?: Record<string, unknown>;
}

/** Answers one command. */
export type ControlHandler = (command: ControlCommand, args: readonly string[]) => Promise<ControlReply>;

/** The control socket path that goes with a pid file: `x.pid` → `x.sock`. */
export function controlPathFor(pidFile: string): string {
  return pidFile.endsWith(".pid") ? pidFile.slice(0, -4) + ".sock" : `${pidFile}.sock`;
}

/** Another guardian answers on this socket. */
export class ControlSocketInUse extends Error {
  constructor(readonly path: string) {
    super(`another keeldns answers on ${path}; stop it first (keeldns stop)`);
    this.name = "ControlSocketInUse";
  }
}

const encoder = new TextEncoder();

/** Reads one line (up to `limit` bytes, 64 KiB unless told) from a connection. */
async function readLine(conn: Deno.Conn, limit = 65536): Promise<string> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buffer = new Uint8Array(4096);
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) break;
    const chunk = buffer.slice(0, n);
    const newline = chunk.indexOf(10);
    chunks.push(newline >= 0 ? chunk.subarray(0, newline) : chunk);
    total += n;
    if (newline >= 0 || total > limit) break;
  }
  const all = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let pos = 0;
  for (const c of chunks) all.set(c, (pos += c.length) - c.length);
  return new TextDecoder().decode(all);
}

/** A listening control socket. */
export class ControlServer {
  private constructor(private readonly listener: Deno.UnixListener, readonly path: string) {}

  /**
   * Listens on `path` (0600). A stale socket file is replaced; one a live guardian answers on
   * throws {@link ControlSocketInUse}.
   */
  static async listen(path: string, handler: ControlHandler): Promise<ControlServer> {
    try {
      await Deno.lstat(path);
      const reply = await sendControl(path, "status", 1000).catch(() => null);
      if (reply) throw new ControlSocketInUse(path);
      await Deno.remove(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const listener = Deno.listen({ transport: "unix", path });
    await Deno.chmod(path, 0o600);
    const server = new ControlServer(listener, path);
    server.serve(handler);
    return server;
  }

  private async serve(handler: ControlHandler): Promise<void> {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await this.listener.accept();
      } catch {
        return;
      }
      (async () => {
        try {
          let reply: ControlReply;
          try {
            const request = JSON.parse(await readLine(conn));
            const command = request?.command;
            const args = request?.args ?? [];
            reply = !Array.isArray(args) || args.some((a) => typeof a !== "string")
              ? { ok: false, error: "args must be a list of strings" }
              : CONTROL_COMMANDS.includes(command)
              ? await handler(command, args)
              : { ok: false, error: `unknown command ${JSON.stringify(command)}` };
          } catch (e) {
            reply = { ok: false, error: `bad request: ${(e as Error).message}` };
          }
          await conn.write(encoder.encode(JSON.stringify(reply) + "\n"));
        } catch {
          // the client went away
        } finally {
          try {
            conn.close();
          } catch { /* closed */ }
        }
      })();
    }
  }

  /** Stops listening and removes the socket file. */
  async close(): Promise<void> {
    this.listener.close();
    await Deno.remove(this.path).catch(() => {});
  }
}

/**
 * Sends one command (with its `args`, for `cache`) to the guardian at `path`; rejects if nobody
 * answers within `timeoutMs`.
 */
export async function sendControl(
  path: string,
  command: ControlCommand,
  timeoutMs = 30_000,
  args: readonly string[] = [],
): Promise<ControlReply> {
  const conn = await Deno.connect({ transport: "unix", path });
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    const request = args.length > 0 ? { command, args } : { command };
    await conn.write(encoder.encode(JSON.stringify(request) + "\n"));
    const line = await readLine(conn, REPLY_LIMIT);
    if (!line) throw new Error(`no reply on ${path}`);
    return JSON.parse(line) as ControlReply;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}
