/**
 * A small SOCKS5 proxy for tests (RFC 1928 CONNECT and UDP ASSOCIATE, optional RFC 1929
 * user/password), on loopback, that counts what it relays. It forwards only to loopback targets
 * (tests never send traffic elsewhere) and refuses others with "connection not allowed by ruleset".
 */
import dgram from "node:dgram";

/** Options of a {@link Socks5Proxy}. */
export interface Socks5ProxyOptions {
  /** Require this user name and password. */
  readonly auth?: { user: string; pass: string };
  /** Name the relay as 0.0.0.0 in the UDP ASSOCIATE reply (the client must use the proxy's IP). */
  readonly zeroRelayAddress?: boolean;
}

function loopback(host: string): boolean {
  return host.startsWith("127.") || host === "::1";
}

async function readExact(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  for (let got = 0; got < n;) {
    const r = await conn.read(out.subarray(got));
    if (r === null) throw new Error("closed");
    got += r;
  }
  return out;
}

function ipOf(b: Uint8Array): string {
  if (b.length === 4) return b.join(".");
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push(((b[i] << 8) | b[i + 1]).toString(16));
  return new URL(`http://[${g.join(":")}]/`).hostname.slice(1, -1);
}

function reply(code: number, host = "0.0.0.0", port = 0): Uint8Array {
  const ip = host.includes(":") ? new Uint8Array(16) : new Uint8Array(host.split(".").map(Number));
  if (host.includes(":")) ip[15] = host === "::1" ? 1 : 0;
  return new Uint8Array([5, code, 0, ip.length === 4 ? 1 : 4, ...ip, port >> 8, port & 0xff]);
}

/** A running test SOCKS5 proxy. */
export class Socks5Proxy {
  /** TCP connections accepted (control and CONNECT). */
  connections = 0;
  /** CONNECT requests relayed. */
  connects = 0;
  /** UDP associations made. */
  associations = 0;
  /** Datagrams relayed to a target. */
  udpRelayed = 0;
  /** Authentications refused. */
  authFailures = 0;
  private readonly listener: Deno.TcpListener;
  private readonly conns = new Set<Deno.Conn>();
  private readonly sockets = new Set<dgram.Socket>();

  private constructor(private readonly options: Socks5ProxyOptions, port: number) {
    this.listener = Deno.listen({ hostname: "127.0.0.1", port });
    this.accept();
  }

  /** Starts a proxy on 127.0.0.1 and `port` (default: a free one). */
  static start(options: Socks5ProxyOptions = {}, port = 0): Socks5Proxy {
    return new Socks5Proxy(options, port);
  }

  /** The port it listens on. */
  get port(): number {
    return this.listener.addr.port;
  }

  /** Stops listening and closes every connection and relay socket. */
  close(): void {
    try {
      this.listener.close();
    } catch { /* closed */ }
    for (const c of this.conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    for (const s of this.sockets) {
      try {
        s.close();
      } catch { /* closed */ }
    }
  }

  private async accept(): Promise<void> {
    try {
      for await (const conn of this.listener) {
        this.connections++;
        this.conns.add(conn);
        this.serve(conn).catch(() => {}).finally(() => {
          this.conns.delete(conn);
          try {
            conn.close();
          } catch { /* closed */ }
        });
      }
    } catch { /* listener closed */ }
  }

  private async serve(conn: Deno.Conn): Promise<void> {
    const [version, count] = await readExact(conn, 2);
    if (version !== 5) return;
    const methods = await readExact(conn, count);
    const want = this.options.auth ? 2 : 0;
    if (!methods.includes(want)) {
      await conn.write(new Uint8Array([5, 0xff]));
      return;
    }
    await conn.write(new Uint8Array([5, want]));
    if (this.options.auth) {
      const [, ulen] = await readExact(conn, 2);
      const user = new TextDecoder().decode(await readExact(conn, ulen));
      const [plen] = await readExact(conn, 1);
      const pass = new TextDecoder().decode(await readExact(conn, plen));
      const ok = user === this.options.auth.user && pass === this.options.auth.pass;
      await conn.write(new Uint8Array([1, ok ? 0 : 1]));
      if (!ok) {
        this.authFailures++;
        return;
      }
    }
    const [, cmd, , atyp] = await readExact(conn, 4);
    if (atyp !== 1 && atyp !== 4) {
      await conn.write(reply(8));
      return;
    }
    const host = ipOf(await readExact(conn, atyp === 1 ? 4 : 16));
    const p = await readExact(conn, 2);
    const port = (p[0] << 8) | p[1];
    if (cmd === 1) return this.connect(conn, host, port);
    if (cmd === 3) return this.associate(conn);
    await conn.write(reply(7));
  }

  private async connect(conn: Deno.Conn, host: string, port: number): Promise<void> {
    if (!loopback(host)) {
      await conn.write(reply(2));
      return;
    }
    let target: Deno.TcpConn;
    try {
      target = await Deno.connect({ hostname: host, port });
    } catch {
      await conn.write(reply(5));
      return;
    }
    this.connects++;
    this.conns.add(target);
    await conn.write(reply(0, "127.0.0.1", (target.localAddr as Deno.NetAddr).port));
    await Promise.allSettled([conn.readable.pipeTo(target.writable), target.readable.pipeTo(conn.writable)]);
    this.conns.delete(target);
  }

  private async associate(conn: Deno.Conn): Promise<void> {
    const relay = dgram.createSocket("udp4");
    this.sockets.add(relay);
    await new Promise<void>((resolve) => relay.bind(0, "127.0.0.1", resolve));
    this.associations++;
    let client: { address: string; port: number } | undefined;
    relay.on("message", (msg: Uint8Array, rinfo: { address: string; port: number }) => {
      const fromClient = client ? rinfo.address === client.address && rinfo.port === client.port : true;
      if (fromClient && msg[0] === 0 && msg[1] === 0 && msg[2] === 0 && (msg[3] === 1 || msg[3] === 4)) {
        client ??= { address: rinfo.address, port: rinfo.port };
        const len = msg[3] === 1 ? 4 : 16;
        const host = ipOf(msg.subarray(4, 4 + len));
        const port = (msg[4 + len] << 8) | msg[5 + len];
        if (!loopback(host)) return;
        this.udpRelayed++;
        relay.send(msg.subarray(6 + len), port, host);
        return;
      }
      if (!client) return;
      // From a target: wrap it with the header naming where it came from.
      const ip = rinfo.address.split(".").map(Number);
      const head = new Uint8Array([0, 0, 0, 1, ...ip, rinfo.port >> 8, rinfo.port & 0xff]);
      const out = new Uint8Array(head.length + msg.length);
      out.set(head);
      out.set(msg, head.length);
      relay.send(out, client.port, client.address);
    });
    const port = relay.address().port;
    await conn.write(reply(0, this.options.zeroRelayAddress ? "0.0.0.0" : "127.0.0.1", port));
    // The association lasts while the control connection is open.
    const buf = new Uint8Array(16);
    try {
      while (await conn.read(buf) !== null) { /* nothing expected */ }
    } catch { /* closed */ }
    this.sockets.delete(relay);
    relay.close();
  }
}
