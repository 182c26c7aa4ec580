/**
 * DNS over UDP to one upstream through a SOCKS5 proxy's UDP ASSOCIATE (RFC 1928 §7), as SmartDNS
 * does for a `server -proxy NAME` whose proxy is socks5://: one association per server, held open
 * by its TCP control connection and opened again when that closes; each query goes to the relay
 * with the server's address in the header, and an answer is accepted only from the relay, for the
 * server's address and port, for an ID pending, with the same question. A truncated answer is
 * retried over TCP through the same proxy. Queries never go to the server directly.
 *
 * @module
 */
import dgram from "node:dgram";
import type { ProxyConfig } from "../config/schema.ts";
import { type Question, readId, sameQuestion } from "../dns/wire.ts";
import { exchangeOn, type ExchangeSocket, type PendingQuery } from "./pending_exchange.ts";
import { parseUdpDatagram, socks5Associate, type SocksAddress, udpDatagram } from "./socks5.ts";
import { TcpUpstream } from "./tcp.ts";
import type { Cancel } from "./cancel.ts";
import { authority, canonicalIp, type Upstream, UpstreamError } from "./upstream.ts";

/** How long setting up an association may take before the exchange fails. */
const ASSOCIATE_TIMEOUT_MS = 5_000;

/** One association: its control connection, relay address, socket and pending queries. */
class Association implements ExchangeSocket {
  readonly pending = new Map<number, PendingQuery>();
  sent = 0;
  closed = false;

  constructor(
    readonly control: Deno.TcpConn,
    readonly relay: SocksAddress,
    readonly socket: dgram.Socket,
    private readonly onClose: (a: Association, reason: string) => void,
  ) {
    this.watchControl();
  }

  /** The association ends when the proxy closes the control connection (RFC 1928 §7). */
  private async watchControl(): Promise<void> {
    const buf = new Uint8Array(64);
    try {
      while (await this.control.read(buf) !== null) { /* the proxy sends nothing more */ }
    } catch { /* closed */ }
    this.close("the proxy ended the UDP association");
  }

  /** Closes the association; queries still waiting fail with `reason`. */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.control.close();
    } catch { /* closed */ }
    try {
      this.socket.close();
    } catch { /* closed */ }
    this.onClose(this, reason);
  }
}

/** A UDP upstream server reached through a SOCKS5 proxy. */
export class Socks5UdpUpstream implements Upstream {
  readonly address: string;
  private readonly target: SocksAddress;
  private readonly tcp: TcpUpstream;
  private current?: Association;
  private opening?: Promise<Association>;
  private closedForGood = false;

  constructor(readonly host: string, readonly port: number, readonly proxy: ProxyConfig) {
    this.address = `udp://${authority(host, port)}`;
    this.target = { host: canonicalIp(host), port };
    this.tcp = new TcpUpstream(host, port, proxy);
  }

  /** Ends the association; exchanges under way fail. Idempotent. */
  close(): void {
    this.closedForGood = true;
    this.current?.close("upstream closed");
  }

  /** Sends `q` through the relay and resolves with the verified answer (over TCP if truncated). */
  async exchange(q: Question, cancel: Cancel): Promise<Uint8Array> {
    if (this.closedForGood) throw new UpstreamError(this.address, "upstream closed");
    if (cancel.cancelled) throw new UpstreamError(this.address, "aborted");
    let a: Association;
    let onCancel = () => {};
    try {
      a = await Promise.race([
        this.association(),
        new Promise<never>((_, reject) => {
          onCancel = () => reject(new Error("aborted"));
          cancel.listen(onCancel);
        }),
      ]);
    } catch (e) {
      if (cancel.cancelled) throw new UpstreamError(this.address, "aborted");
      throw new UpstreamError(this.address, `proxy ${this.proxy.name}: ${(e as Error).message}`);
    } finally {
      cancel.unlisten(onCancel);
    }
    return exchangeOn(a, q, cancel, this.address, this.tcp, (query, failure) => {
      if (a.closed) return failure.fail(new Error("the UDP association closed"));
      a.socket.send(
        udpDatagram(this.target, query),
        a.relay.port,
        a.relay.host,
        (e: Error | null) => e && failure.fail(e),
      );
    });
  }

  private association(): Promise<Association> {
    if (this.current && !this.current.closed) return Promise.resolve(this.current);
    this.opening ??= this.open().finally(() => this.opening = undefined);
    return this.opening;
  }

  private async open(): Promise<Association> {
    const family = this.host.includes(":") ? "v6" : "v4";
    const control = await Deno.connect({
      hostname: this.proxy.host,
      port: this.proxy.port,
      transport: "tcp",
    });
    const timer = setTimeout(() => control.close(), ASSOCIATE_TIMEOUT_MS);
    let relay: SocksAddress;
    try {
      control.setNoDelay(true);
      relay = await socks5Associate(control, this.proxy, family);
    } catch (e) {
      try {
        control.close();
      } catch { /* closed by the timer */ }
      throw e;
    } finally {
      clearTimeout(timer);
    }
    const socket = dgram.createSocket(relay.host.includes(":") ? "udp6" : "udp4");
    const relayHost = canonicalIp(relay.host);
    const a = new Association(control, relay, socket, (closing, reason) => {
      for (const p of closing.pending.values()) p.done(new UpstreamError(this.address, reason));
      if (this.current === closing) this.current = undefined;
    });
    socket.on("error", (e: Error) => a.close(`UDP socket failed: ${e.message}`));
    socket.on("message", (msg: Uint8Array, rinfo: { address: string; port: number }) => {
      if (rinfo.port !== relay.port || canonicalIp(rinfo.address) !== relayHost) return;
      const d = parseUdpDatagram(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength));
      if (!d || d.from.port !== this.target.port || d.from.host !== this.target.host) return;
      const answer = d.payload;
      if (answer.length < 12 || !(answer[2] & 0x80)) return;
      const pending = a.pending.get(readId(answer));
      if (!pending || !sameQuestion(pending.query, pending.questionEnd, answer)) return;
      pending.done(null, answer.slice(), (answer[2] & 0x02) !== 0);
    });
    if (this.closedForGood) {
      a.close("upstream closed");
      throw new Error("upstream closed");
    }
    this.current = a;
    return a;
  }
}
