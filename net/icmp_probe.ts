/**
 * ICMP echo probe (SmartDNS's `ping` speed check) through the FFI socket layer: an unprivileged
 * ICMP datagram socket where `net.ipv4.ping_group_range` allows it, else a raw ICMP socket (root or
 * CAP_NET_RAW). One socket per address family, opened on first use and kept; one receive loop per
 * socket runs on a worker thread while probes are waiting.
 *
 * @module
 */
import { AF_INET, AF_INET6, encodeSockaddr } from "./linux_socket.ts";

const SOCK_DGRAM = 2;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const IPPROTO_ICMP = 1;
const IPPROTO_ICMPV6 = 58;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  recvfrom: {
    parameters: ["i32", "buffer", "usize", "i32", "pointer", "pointer"],
    result: "isize",
    nonblocking: true,
  },
  close: { parameters: ["i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** How ICMP probes are sent: which socket kind worked, or why none did. */
export type IcmpAccess = "unprivileged" | "raw" | { readonly unavailable: string };

/** The internet checksum (RFC 1071) of `bytes`. */
export function internetChecksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (bytes.length % 2) sum += bytes[bytes.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** One family's socket and the probes waiting on it. */
class IcmpSocket {
  private readonly waiting = new Map<number, (at: number) => void>();
  private receiving = false;
  private seq = Math.floor(Math.random() * 0xffff);
  private readonly id = Math.floor(Math.random() * 0xffff);
  private readonly buffer = new Uint8Array(1500);

  constructor(
    private readonly lib: Lib,
    private readonly fd: number,
    private readonly v6: boolean,
    /** Raw sockets see every ICMP packet (and, for IPv4, its IP header). */
    private readonly raw: boolean,
  ) {}

  /** Sends one echo request to `ip`; resolves with the RTT in ms, or undefined after `timeoutMs`. */
  probe(ip: string, timeoutMs: number): Promise<number | undefined> {
    const seq = this.seq = (this.seq + 1) & 0xffff;
    const packet = new Uint8Array(16);
    packet[0] = this.v6 ? 128 : 8; // echo request
    packet[4] = this.id >> 8;
    packet[5] = this.id & 0xff;
    packet[6] = seq >> 8;
    packet[7] = seq & 0xff;
    if (!this.v6) { // the kernel fills in ICMPv6 checksums
      const sum = internetChecksum(packet);
      packet[2] = sum >> 8;
      packet[3] = sum & 0xff;
    }
    const address = encodeSockaddr(ip, 0);
    const started = performance.now();
    if (Number(this.lib.sendto(this.fd, packet, BigInt(packet.length), 0, address, address.length)) < 0) {
      return Promise.resolve(undefined);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(seq);
        resolve(undefined);
      }, Math.max(1, timeoutMs));
      this.waiting.set(seq, (at) => {
        clearTimeout(timer);
        resolve(Math.max(at - started, 0.001));
      });
      if (!this.receiving) this.receive();
    });
  }

  /** Reads replies on a worker thread while any probe waits (each read gives up after 200 ms). */
  private async receive(): Promise<void> {
    this.receiving = true;
    try {
      while (this.waiting.size > 0) {
        const n = Number(
          await this.lib.recvfrom(this.fd, this.buffer, BigInt(this.buffer.length), 0, null, null),
        );
        if (n <= 0) continue;
        const at = performance.now();
        let p = 0;
        if (this.raw && !this.v6) p = (this.buffer[0] & 0x0f) * 4; // skip the IPv4 header
        if (n < p + 8 || this.buffer[p] !== (this.v6 ? 129 : 0)) continue; // not an echo reply
        // Datagram sockets get only their own replies (the kernel sets and checks the id).
        const id = (this.buffer[p + 4] << 8) | this.buffer[p + 5];
        if (this.raw && id !== this.id) continue;
        const seq = (this.buffer[p + 6] << 8) | this.buffer[p + 7];
        const done = this.waiting.get(seq);
        if (done) {
          this.waiting.delete(seq);
          done(at);
        }
      }
    } finally {
      this.receiving = false;
    }
  }
}

/** Sends ICMP echo probes over the best socket kind this process may open. */
export class IcmpPinger {
  /** Each family's socket, or why it cannot be opened. */
  private readonly sockets = new Map<number, IcmpSocket | string>();
  /** Which kind each family's socket is. */
  private readonly kind = new Map<number, "unprivileged" | "raw">();
  private lib?: Lib;

  /** How IPv4 probes go out (opening the socket if need be): for the one log line. */
  access(): IcmpAccess {
    const s = this.socket(false);
    if (typeof s === "string") return { unavailable: s };
    return this.kind.get(AF_INET) ?? "raw";
  }

  /** The RTT of one echo to `ip` in ms, or undefined (no reply in `timeoutMs`, or no ICMP here). */
  probe(ip: string, timeoutMs: number): Promise<number | undefined> {
    const s = this.socket(ip.includes(":"));
    return typeof s === "string" ? Promise.resolve(undefined) : s.probe(ip, timeoutMs);
  }

  /** The family's socket, or why it cannot be had. */
  private socket(v6: boolean): IcmpSocket | string {
    const family = v6 ? AF_INET6 : AF_INET;
    const known = this.sockets.get(family);
    if (known !== undefined) return known;
    let result: IcmpSocket | string;
    try {
      this.lib ??= Deno.dlopen("libc.so.6", SYMBOLS).symbols;
      result = this.open(this.lib, family, v6);
    } catch (e) {
      result = `no FFI for ICMP sockets (${(e as Error).message})`;
    }
    this.sockets.set(family, result);
    return result;
  }

  private open(lib: Lib, family: number, v6: boolean): IcmpSocket | string {
    const protocol = v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP;
    let raw = false;
    let fd = lib.socket(family, SOCK_DGRAM | SOCK_CLOEXEC, protocol);
    if (fd < 0) {
      raw = true;
      fd = lib.socket(family, SOCK_RAW | SOCK_CLOEXEC, protocol);
    }
    if (fd < 0) {
      const errnoPtr = lib.__errno_location();
      const errno = errnoPtr ? new Deno.UnsafePointerView(errnoPtr).getInt32() : 0;
      const text = lib.strerror(errno);
      const why = text ? new Deno.UnsafePointerView(text).getCString() : `errno ${errno}`;
      return `neither an ICMP datagram socket (net.ipv4.ping_group_range) nor a raw one (root) may be opened: ${why}`;
    }
    const tv = new BigInt64Array([0n, 200_000n]); // 200 ms per read, so the loop sees it has no work
    lib.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, new Uint8Array(tv.buffer), 16);
    this.kind.set(family, raw ? "raw" : "unprivileged");
    return new IcmpSocket(lib, fd, v6, raw);
  }
}
