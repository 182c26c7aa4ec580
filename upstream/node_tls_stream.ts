/**
 * A TLS connection through `node:tls` for the DoT servers whose checks Deno's own TLS cannot do:
 * `-no-check-certificate` (no chain check), `-tls-host-verify NAME` (the certificate checked for
 * another name than the SNI one) and `-spki-pin` (the server's key pinned; node:tls gives the
 * peer certificate, Deno.TlsConn does not). It reads and writes like a Deno connection, so the
 * DoT upstream's pipelining works the same over it.
 *
 * @module
 */
import tls from "node:tls";
import { Buffer } from "node:buffer";
import { spkiPin } from "../net/x509_spki.ts";

/** The byte stream the DoT upstream reads and writes. */
export interface ByteStream {
  read(into: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  close(): void;
}

/** How the connection is checked. */
export interface NodeTlsOptions {
  readonly host: string;
  readonly port: number;
  /** SNI (none for an IP address). */
  readonly serverName?: string;
  /** Check the chain (false: `-no-check-certificate`). */
  readonly verifyChain: boolean;
  /** The name the certificate must carry (`-tls-host-verify`; default the SNI name or the IP). */
  readonly verifyName?: string;
  /** SPKI pins (base64 SHA-256); one must match when given. */
  readonly pins: readonly string[];
  /** Extra CA certificates (PEM), besides the built-in roots. */
  readonly caCerts: readonly string[];
}

/** A node:tls socket as a {@link ByteStream}. */
class NodeTlsStream implements ByteStream {
  private chunks: Uint8Array[] = [];
  private ended = false;
  private failure?: Error;
  private wake?: () => void;

  constructor(private readonly socket: tls.TLSSocket) {
    socket.on("data", (b: Buffer) => {
      this.chunks.push(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
      this.wake?.();
    });
    socket.on("end", () => {
      this.ended = true;
      this.wake?.();
    });
    socket.on("close", () => {
      this.ended = true;
      this.wake?.();
    });
    socket.on("error", (e: Error) => {
      this.failure = e;
      this.wake?.();
    });
  }

  async read(into: Uint8Array): Promise<number | null> {
    while (this.chunks.length === 0) {
      if (this.failure) throw this.failure;
      if (this.ended) return null;
      await new Promise<void>((r) => this.wake = r);
      this.wake = undefined;
    }
    const chunk = this.chunks[0];
    const n = Math.min(chunk.length, into.length);
    into.set(chunk.subarray(0, n));
    if (n === chunk.length) this.chunks.shift();
    else this.chunks[0] = chunk.subarray(n);
    return n;
  }

  write(data: Uint8Array): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.socket.write(Buffer.from(data), (e?: Error | null) => e ? reject(e) : resolve(data.length));
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Connects and handshakes with node:tls, checking as `options` say; rejects saying what failed. */
export async function connectNodeTls(options: NodeTlsOptions): Promise<ByteStream> {
  const name = options.verifyName ?? options.serverName ?? options.host;
  const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({
      host: options.host,
      port: options.port,
      ...(options.serverName ? { servername: options.serverName } : {}),
      rejectUnauthorized: options.verifyChain,
      ...(options.caCerts.length > 0 ? { ca: [...tls.rootCertificates, ...options.caCerts] } : {}),
      checkServerIdentity: (_host: string, cert: tls.PeerCertificate) =>
        options.verifyChain ? tls.checkServerIdentity(name, cert) : undefined,
    }, () => resolve(s));
    s.once("error", reject);
  });
  socket.setNoDelay(true);
  if (options.pins.length > 0) {
    const raw = socket.getPeerCertificate(true)?.raw;
    const pin = raw ? await spkiPin(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength)) : "";
    if (!options.pins.includes(pin)) {
      socket.destroy();
      throw new Error(`the server's key (SPKI pin ${pin || "unknown"}) is not one of the -spki-pin values`);
    }
  }
  return new NodeTlsStream(socket);
}
