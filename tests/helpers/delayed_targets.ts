/**
 * Speed-check targets with a chosen round-trip time, inside a network namespace (root): the
 * addresses are routed into a TUN device, where a small python3 process answers each TCP SYN to
 * the probe port after the address's delay, with a SYN-ACK (the handshake completes) or a RST (a
 * refusal), and ignores everything else. On loopback a handshake takes microseconds, which
 * SmartDNS (it counts RTTs in 0.1 ms) takes for "no result"; these make the speed check see
 * real milliseconds. The addresses must be on no interface of the namespace.
 *
 * @module
 */
import { programPath } from "./keeldns_process.ts";
import { inNamespace } from "./netns.ts";

const SCRIPT = `
import fcntl, os, random, socket, struct, subprocess, sys, threading, time
ip_cmd, tun, local, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
targets = {}
for spec in sys.argv[5].split(","):
    addr, ms, kind = spec.split(":")
    targets[socket.inet_aton(addr)] = (float(ms) / 1000, kind)
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", tun.encode(), 0x0001 | 0x1000))  # TUNSETIFF: IFF_TUN | IFF_NO_PI
subprocess.run([ip_cmd, "link", "set", tun, "up"], check=True)
subprocess.run([ip_cmd, "addr", "add", local + "/32", "dev", tun], check=True)
for addr in targets:
    subprocess.run([ip_cmd, "route", "add", socket.inet_ntoa(addr) + "/32", "dev", tun, "src", local], check=True)
def checksum(data):
    if len(data) % 2: data += b"\\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def reply(src, dst, sport, dport, seq, ack, flags):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp
def pump():
    while True:
        p = os.read(fd, 65535)
        if len(p) < 40 or p[0] >> 4 != 4 or p[9] != 6: continue
        ihl = (p[0] & 15) * 4
        src, dst = p[12:16], p[16:20]
        sport, dport, seq = struct.unpack("!HHI", p[ihl:ihl + 8])
        flags = p[ihl + 13]
        if dst not in targets or dport != port or flags & 0x12 != 0x02: continue  # SYNs only
        delay, kind = targets[dst]
        out = reply(dst, src, dport, sport, random.getrandbits(32), (seq + 1) & 0xffffffff,
                    0x12 if kind == "accept" else 0x14)  # SYN+ACK, else RST+ACK
        threading.Timer(delay, os.write, (fd, out)).start()
threading.Thread(target=pump, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
`;

/** One address behind the TUN device. */
export interface DelayedTarget {
  ip: string;
  /** Milliseconds before the SYN is answered. */
  ms: number;
  /** accept: SYN-ACK; refuse: RST. */
  kind: "accept" | "refuse";
}

/** A running TUN responder in a namespace. */
export class DelayedTargets {
  private constructor(private readonly process: Deno.ChildProcess) {}

  /**
   * Creates TUN device `tun` in `ns` (with the local address `local`, the probes' source), routes
   * the targets' addresses into it, and answers SYNs to `port` as each target says.
   */
  static async start(
    ns: string,
    tun: string,
    local: string,
    port: number,
    targets: DelayedTarget[],
  ): Promise<DelayedTargets> {
    const spec = targets.map((t) => `${t.ip}:${t.ms}:${t.kind}`).join(",");
    const { command, args } = inNamespace(ns, "python3", [
      "-c",
      SCRIPT,
      programPath("ip"),
      tun,
      local,
      String(port),
      spec,
    ]);
    const process = new Deno.Command(command, { args, stdin: "piped", stdout: "piped", stderr: "inherit" })
      .spawn();
    const reader = process.stdout.getReader();
    const { value } = await reader.read();
    reader.releaseLock();
    const targetsUp = new DelayedTargets(process);
    if (!new TextDecoder().decode(value ?? new Uint8Array()).includes("ready")) {
      await targetsUp.stop();
      throw new Error("the TUN probe targets did not start");
    }
    return targetsUp;
  }

  /** Stops the responder (its TUN device, and the routes into it, go with it). */
  async stop(): Promise<void> {
    try {
      await this.process.stdin.close();
    } catch { /* gone */ }
    try {
      this.process.kill("SIGKILL");
    } catch { /* gone */ }
    await this.process.status;
    await this.process.stdout.cancel().catch(() => {});
  }
}
