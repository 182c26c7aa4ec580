/**
 * Linux UDP sockets through libc via Deno FFI, used by both the batched listener (server/) and the
 * batched upstream sockets (upstream/): `socket`/`bind`/`setsockopt`, and batched
 * `recvmmsg`/`sendmmsg` over preallocated `struct mmsghdr` vectors. Layouts are those of glibc on
 * LP64 targets (x86_64 and aarch64), the only ones Deno ships for.
 *
 * @module
 */
import { ipBytes } from "./address.ts";

export { ipBytes };

/** Linux constants (identical on x86_64 and aarch64: asm-generic). */
export const AF_INET = 2;
export const AF_INET6 = 10;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0x80000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_RCVBUF = 8;
const SO_RCVTIMEO = 20;
const SO_TYPE = 3;
const SO_DOMAIN = 39;
/** SO_RCVBUF past net.core.rmem_max (needs CAP_NET_ADMIN). */
const SO_RCVBUFFORCE = 33;
const F_SETFD = 2;
const FD_CLOEXEC = 1;
const SO_BINDTODEVICE = 25;
const SO_MARK = 36;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
/** recvmmsg: block for the first datagram only, then take what is queued. */
export const MSG_WAITFORONE = 0x10000;
/** recvmmsg: do not block; return what is queued now. */
export const MSG_DONTWAIT = 0x40;
/** msg_flags: the datagram was longer than the buffer. */
export const MSG_TRUNC = 0x20;

/** sizeof(struct mmsghdr) on LP64: msghdr (56) + msg_len (4) + padding (4). */
export const MMSGHDR_SIZE = 64;
/** sizeof(struct iovec) on LP64. */
export const IOVEC_SIZE = 16;
/** Room for one socket address (sockaddr_in6 is 28 bytes). */
export const NAME_SIZE = 32;
/** Field offsets in struct mmsghdr. */
export const MsgOffset = {
  name: 0,
  namelen: 8,
  iov: 16,
  iovlen: 24,
  control: 32,
  controllen: 40,
  flags: 48,
  len: 56,
};

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  /** fcntl(fd, cmd, int): variadic in C; an int third argument is passed as a fixed one on LP64. */
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32", nonblocking: true },
  /** The same call on the calling thread, for MSG_DONTWAIT receives that must not block. */
  recvmmsgNow: { name: "recvmmsg", parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

/** The loaded libc symbols. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let libc: Libc | undefined;

/**
 * Loads libc once. Throws if this is not Linux on x86_64/aarch64, or FFI is not permitted
 * (`--allow-ffi`), or libc cannot be opened.
 */
export function loadLibc(): Libc {
  if (libc) return libc;
  if (Deno.build.os !== "linux" || !["x86_64", "aarch64"].includes(Deno.build.arch)) {
    throw new Error(`batched UDP needs Linux on x86_64 or aarch64, not ${Deno.build.os}/${Deno.build.arch}`);
  }
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    throw new Error("batched UDP needs --allow-ffi");
  }
  libc = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  return libc;
}

/** A 32-bit socket option value. */
function int32(v: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new Int32Array([v]).buffer);
}

/** An int socket option of `fd` at SOL_SOCKET, or undefined when getsockopt fails. */
function getIntOption(lib: Libc, fd: number, name: number): number | undefined {
  const value = new Int32Array(1);
  const length = new Uint32Array([4]);
  const ok = lib.getsockopt(
    fd,
    SOL_SOCKET,
    name,
    new Uint8Array(value.buffer),
    new Uint8Array(length.buffer),
  ) === 0;
  return ok ? value[0] : undefined;
}

/** Closes a descriptor this process inherited and does not use (nothing else refers to it here). */
export function closeDescriptor(fd: number): void {
  loadLibc().close(fd);
}

/** The text of the calling thread's errno (valid right after a failed synchronous call). */
function lastError(lib: Libc): string {
  const errnoPtr = lib.__errno_location();
  const errno = errnoPtr ? new Deno.UnsafePointerView(errnoPtr).getInt32() : 0;
  const text = lib.strerror(errno);
  return text ? new Deno.UnsafePointerView(text).getCString() : `errno ${errno}`;
}

/** Encodes a `sockaddr_in` (16 bytes) or `sockaddr_in6` (28 bytes) for host and port. */
export function encodeSockaddr(host: string, port: number): Uint8Array {
  const ip = ipBytes(host);
  const v6 = ip.length === 16;
  const out = new Uint8Array(v6 ? 28 : 16);
  const view = new DataView(out.buffer);
  view.setUint16(0, v6 ? AF_INET6 : AF_INET, true); // sa_family: host byte order (little-endian targets)
  view.setUint16(2, port, false); // network byte order
  out.set(ip, v6 ? 8 : 4); // sin6_flowinfo (4 bytes) comes before the IPv6 address
  return out;
}

/** Decodes a socket address written by the kernel into "host" and port. */
export function decodeSockaddr(bytes: Uint8Array): { host: string; port: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const family = view.getUint16(0, true);
  const port = view.getUint16(2, false);
  if (family === AF_INET) return { host: [...bytes.subarray(4, 8)].join("."), port };
  if (family === AF_INET6) {
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(view.getUint16(8 + i * 2, false).toString(16));
    return { host: groups.join(":"), port };
  }
  throw new Error(`unknown address family ${family}`);
}

/** The numeric address of a typed array's first byte. */
function addressOf(bytes: Uint8Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes as Uint8Array<ArrayBuffer>)));
}

/**
 * A vector of `count` mmsghdr entries, each with one iovec over its own `slotSize`-byte slot of
 * `data` and its own `NAME_SIZE`-byte address slot in `names`. All memory is allocated once; the
 * pointers inside the headers stay valid because the arrays are kept referenced here.
 */
export class MmsgVector {
  readonly headers: Uint8Array<ArrayBuffer>;
  readonly view: DataView;
  readonly data: Uint8Array<ArrayBuffer>;
  readonly names: Uint8Array<ArrayBuffer>;
  private readonly iovecs: Uint8Array<ArrayBuffer>;
  /** A view of each whole slot, made once, so the hot path needs no new view per datagram. */
  private readonly slots: Uint8Array<ArrayBuffer>[] = [];

  constructor(readonly count: number, readonly slotSize: number) {
    this.headers = new Uint8Array(count * MMSGHDR_SIZE);
    this.view = new DataView(this.headers.buffer);
    this.data = new Uint8Array(count * slotSize);
    this.names = new Uint8Array(count * NAME_SIZE);
    this.iovecs = new Uint8Array(count * IOVEC_SIZE);
    const iov = new DataView(this.iovecs.buffer);
    const dataBase = addressOf(this.data);
    const nameBase = addressOf(this.names);
    const iovBase = addressOf(this.iovecs);
    for (let i = 0; i < count; i++) {
      iov.setBigUint64(i * IOVEC_SIZE, dataBase + BigInt(i * slotSize), true);
      iov.setBigUint64(i * IOVEC_SIZE + 8, BigInt(slotSize), true);
      const h = i * MMSGHDR_SIZE;
      this.view.setBigUint64(h + MsgOffset.name, nameBase + BigInt(i * NAME_SIZE), true);
      this.view.setUint32(h + MsgOffset.namelen, NAME_SIZE, true);
      this.view.setBigUint64(h + MsgOffset.iov, iovBase + BigInt(i * IOVEC_SIZE), true);
      this.view.setBigUint64(h + MsgOffset.iovlen, 1n, true);
      this.slots.push(this.data.subarray(i * slotSize, (i + 1) * slotSize));
    }
    this.iovView = iov;
  }

  private readonly iovView: DataView;

  /** Bytes received into (or queued in) entry `i`. */
  length(i: number): number {
    return this.view.getUint32(i * MMSGHDR_SIZE + MsgOffset.len, true);
  }

  /** The msg_flags the kernel set on entry `i`. */
  flags(i: number): number {
    return this.view.getInt32(i * MMSGHDR_SIZE + MsgOffset.flags, true);
  }

  /** Entry `i`'s whole slot (the same view each time); its first {@link length} bytes are the payload. */
  slot(i: number): Uint8Array {
    return this.slots[i];
  }

  /** The payload of entry `i` (a view, valid until the slot is reused). */
  payload(i: number): Uint8Array {
    const start = i * this.slotSize;
    return this.data.subarray(start, start + this.length(i));
  }

  /** Length of the address in entry `i`. */
  nameLength(i: number): number {
    return this.view.getUint32(i * MMSGHDR_SIZE + MsgOffset.namelen, true);
  }

  /** The address bytes of entry `i` (a view). */
  name(i: number): Uint8Array {
    const start = i * NAME_SIZE;
    return this.names.subarray(start, start + this.nameLength(i));
  }

  /** Makes entry `i` ready to receive again: full address room. */
  resetForReceive(i: number): void {
    this.view.setUint32(i * MMSGHDR_SIZE + MsgOffset.namelen, NAME_SIZE, true);
  }

  /** Where entry `i`'s payload starts in `data`. */
  slotOffset(i: number): number {
    return i * this.slotSize;
  }

  /** Makes entry `i` send the `length` bytes already written at its slot to the address `name`. */
  setSendLength(i: number, length: number, name: Uint8Array): void {
    this.names.set(name, i * NAME_SIZE);
    this.view.setUint32(i * MMSGHDR_SIZE + MsgOffset.namelen, name.length, true);
    this.setIovLength(i, length);
  }

  /**
   * Makes entry `i` send the `length` bytes already written at its slot back to where entry `j`
   * of `received` came from (no intermediate view of the address).
   */
  setReplyLength(i: number, length: number, received: MmsgVector, j: number): void {
    const nameLength = received.nameLength(j);
    const from = received.names;
    for (let k = 0, src = j * NAME_SIZE, dst = i * NAME_SIZE; k < nameLength; k++) {
      this.names[dst + k] = from[src + k];
    }
    this.view.setUint32(i * MMSGHDR_SIZE + MsgOffset.namelen, nameLength, true);
    this.setIovLength(i, length);
  }

  /** Sets iov_len of entry `i` (a size_t; written as two halves to avoid a BigInt per packet). */
  private setIovLength(i: number, length: number): void {
    this.iovView.setUint32(i * IOVEC_SIZE + 8, length, true);
    this.iovView.setUint32(i * IOVEC_SIZE + 12, 0, true);
  }

  /** Fills entry `i` for sending `payload` to the address `name`. Returns false if it does not fit. */
  setForSend(i: number, payload: Uint8Array, name: Uint8Array): boolean {
    if (payload.length > this.slotSize || name.length > NAME_SIZE) return false;
    this.data.set(payload, i * this.slotSize);
    this.names.set(name, i * NAME_SIZE);
    this.view.setUint32(i * MMSGHDR_SIZE + MsgOffset.namelen, name.length, true);
    this.setIovLength(i, payload.length);
    return true;
  }
}

/** A bound UDP socket file descriptor and the calls that use it. */
export class LinuxUdpSocket {
  private constructor(readonly lib: Libc, readonly fd: number, readonly family: number) {}

  /**
   * Creates and binds a UDP socket. `::` is bound dual-stack. `receiveTimeoutMs` bounds each
   * blocking receive so a closing listener notices. `mark` sets SO_MARK (needs CAP_NET_ADMIN, or CAP_NET_RAW on Linux 5.17+),
   * `device` SO_BINDTODEVICE (needs CAP_NET_RAW). Throws with the OS's reason on failure.
   */
  static bind(
    host: string,
    port: number,
    options: { receiveTimeoutMs: number; reuseAddress?: boolean; mark?: number; device?: string },
  ): LinuxUdpSocket {
    return LinuxUdpSocket.open(host, port, true, (s) => {
      if (options.reuseAddress) s.setOption(SOL_SOCKET, SO_REUSEADDR, int32(1));
      s.setOption(SOL_SOCKET, SO_RCVBUF, int32(4 * 1024 * 1024));
      s.setReceiveTimeout(options.receiveTimeoutMs);
      if (options.mark !== undefined) {
        s.setOption(SOL_SOCKET, SO_MARK, new Uint8Array(new Uint32Array([options.mark]).buffer), "SO_MARK");
      }
      if (options.device !== undefined) {
        const name = new TextEncoder().encode(options.device + "\0");
        s.setOption(SOL_SOCKET, SO_BINDTODEVICE, name, `SO_BINDTODEVICE ${options.device}`);
      }
    });
  }

  /**
   * Creates and binds a UDP socket that processes started from this one inherit (no close-on-exec),
   * with SO_REUSEADDR and a receive buffer of `receiveBufferBytes`: past net.core.rmem_max when
   * the process may (SO_RCVBUFFORCE, CAP_NET_ADMIN), else as far as rmem_max allows. It is for a
   * process that holds the socket for others and never reads it. Throws with the OS's reason.
   */
  static bindInheritable(
    host: string,
    port: number,
    options: { receiveBufferBytes: number },
  ): LinuxUdpSocket {
    return LinuxUdpSocket.open(host, port, false, (s) => {
      s.setOption(SOL_SOCKET, SO_REUSEADDR, int32(1));
      const size = int32(options.receiveBufferBytes);
      if (s.lib.setsockopt(s.fd, SOL_SOCKET, SO_RCVBUFFORCE, size, size.length) !== 0) {
        s.setOption(SOL_SOCKET, SO_RCVBUF, size, "SO_RCVBUF");
      }
    });
  }

  /**
   * Takes over an inherited, bound UDP socket descriptor: checks that it is one, marks this
   * process's copy close-on-exec (so nothing this process starts inherits it), and sets the
   * receive timeout (as {@link bind}). Closing it closes only this copy. Throws if `fd` is not a
   * UDP socket.
   */
  static fromFd(fd: number, options: { receiveTimeoutMs: number }): LinuxUdpSocket {
    const lib = loadLibc();
    const type = getIntOption(lib, fd, SO_TYPE);
    if (type === undefined) throw new Error(`descriptor ${fd} is not a socket: ${lastError(lib)}`);
    if (type !== SOCK_DGRAM) throw new Error(`descriptor ${fd} is not a UDP socket`);
    const family = getIntOption(lib, fd, SO_DOMAIN) ?? AF_INET;
    if (lib.fcntl(fd, F_SETFD, FD_CLOEXEC) !== 0) {
      throw new Error(`fcntl(${fd}, FD_CLOEXEC): ${lastError(lib)}`);
    }
    const s = new LinuxUdpSocket(lib, fd, family);
    s.setReceiveTimeout(options.receiveTimeoutMs);
    return s;
  }

  /** Creates a socket for `host`, applies `configure`, binds it; closes it and throws on failure. */
  private static open(
    host: string,
    port: number,
    closeOnExec: boolean,
    configure: (s: LinuxUdpSocket) => void,
  ): LinuxUdpSocket {
    const lib = loadLibc();
    const address = encodeSockaddr(host, port);
    const family = address.length === 28 ? AF_INET6 : AF_INET;
    const fd = lib.socket(family, SOCK_DGRAM | (closeOnExec ? SOCK_CLOEXEC : 0), 0);
    if (fd < 0) throw new Error(`socket: ${lastError(lib)}`);
    const s = new LinuxUdpSocket(lib, fd, family);
    try {
      if (family === AF_INET6) s.setOption(IPPROTO_IPV6, IPV6_V6ONLY, int32(0));
      configure(s);
      if (lib.bind(fd, address, address.length) !== 0) throw new Error(lastError(lib));
    } catch (e) {
      lib.close(fd);
      throw e;
    }
    return s;
  }

  private setReceiveTimeout(ms: number): void {
    const tv = new BigInt64Array([BigInt(Math.floor(ms / 1000)), BigInt((ms % 1000) * 1000)]);
    this.setOption(SOL_SOCKET, SO_RCVTIMEO, new Uint8Array(tv.buffer), "SO_RCVTIMEO");
  }

  /** The receive buffer the kernel gives the socket, in bytes (SO_RCVBUF: twice what was asked). */
  receiveBufferBytes(): number {
    return getIntOption(this.lib, this.fd, SO_RCVBUF) ?? 0;
  }

  private setOption(level: number, name: number, value: Uint8Array<ArrayBuffer>, what?: string): void {
    if (this.lib.setsockopt(this.fd, level, name, value, value.length) !== 0) {
      throw new Error(`setsockopt(${what ?? `${level}, ${name}`}): ${lastError(this.lib)}`);
    }
  }

  /** The local port the socket is bound to. */
  localPort(): number {
    const name = new Uint8Array(NAME_SIZE);
    const len = new Uint32Array([NAME_SIZE]);
    this.lib.getsockname(this.fd, name, new Uint8Array(len.buffer));
    return decodeSockaddr(name).port;
  }

  /**
   * Waits (on a worker thread) for at least one datagram, then takes up to `vector.count` queued
   * ones. Resolves with how many arrived, or -1 on timeout or error.
   */
  receive(vector: MmsgVector): Promise<number> {
    return this.lib.recvmmsg(this.fd, vector.headers, vector.count, MSG_WAITFORONE, null);
  }

  /**
   * Takes up to `vector.count` datagrams already queued, on this thread and without waiting: no
   * worker-thread hop. Returns how many, or -1 when none was queued (or on error).
   */
  receiveNow(vector: MmsgVector): number {
    return this.lib.recvmmsgNow(this.fd, vector.headers, vector.count, MSG_DONTWAIT, null);
  }

  /** Sends the first `count` entries of `vector`; returns how many the kernel took, or -1. */
  send(vector: MmsgVector, count: number): number {
    return this.lib.sendmmsg(this.fd, vector.headers, count, 0);
  }

  /** Closes the descriptor (only once no receive is in flight). */
  close(): void {
    this.lib.close(this.fd);
  }
}

/**
 * Datagrams queued during one task and sent together when it ends, as many per `sendmmsg` as the
 * vector holds: answers that complete outside their receive batch, upstream queries made in one tick.
 */
export class SendQueue {
  private queue: { payload: Uint8Array; name: Uint8Array }[] = [];
  private scheduled = false;
  private closed = false;

  /** @param onError called when a sendmmsg call fails (the datagrams are lost, as UDP allows) */
  constructor(
    private readonly socket: LinuxUdpSocket,
    private readonly vector: MmsgVector,
    private readonly onError: () => void = () => {},
  ) {}

  /** Queues `payload` for the address `name` (both must stay unchanged until sent). */
  push(payload: Uint8Array, name: Uint8Array): void {
    if (this.closed) return;
    this.queue.push({ payload, name });
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }

  /** Sends everything queued now. */
  flush(): void {
    this.scheduled = false;
    const queue = this.queue;
    this.queue = [];
    if (this.closed) return;
    for (let start = 0; start < queue.length; start += this.vector.count) {
      let count = 0;
      for (const { payload, name } of queue.slice(start, start + this.vector.count)) {
        if (this.vector.setForSend(count, payload, name)) count++;
      }
      if (count > 0 && this.socket.send(this.vector, count) < 0) this.onError();
    }
  }

  /** Drops what is queued and refuses more (before the socket is closed). */
  close(): void {
    this.closed = true;
    this.queue = [];
  }
}
