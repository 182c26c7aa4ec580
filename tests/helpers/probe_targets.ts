/**
 * Speed-check targets on loopback, for the speed check's tests: on one TCP port, some addresses
 * complete the handshake, some drop every SYN in silence (a listener whose accept queue is kept
 * full, as an overloaded or filtered host looks), and the others refuse it (RST, which SmartDNS
 * counts as a reply). Runs a small python3 process: Deno's listener takes no backlog.
 *
 * @module
 */

const SCRIPT = `
import socket, sys, threading, time
port = int(sys.argv[1])
accepting = [a for a in sys.argv[2].split(",") if a]
silent = [a for a in sys.argv[3].split(",") if a]
keep = []
for ip in silent:
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    s = socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port)); s.listen(0); keep.append(s)
    for _ in range(3):  # fill the accept queue: later SYNs are dropped
        c = socket.socket(fam); c.setblocking(False); c.connect_ex((ip, port)); keep.append(c)
def serve(s):
    while True:
        c, _ = s.accept(); c.close()
for ip in accepting:
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    s = socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port)); s.listen(64); keep.append(s)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
time.sleep(0.3)
print("ready", flush=True)
sys.stdin.read()
`;

/** A running set of probe targets on one port. */
export class ProbeTargets {
  private constructor(private readonly process: Deno.ChildProcess, readonly port: number) {}

  /** Listens on `port` at the `accepting` addresses and drops SYNs at the `silent` ones. */
  static async start(port: number, accepting: string[], silent: string[]): Promise<ProbeTargets> {
    const process = new Deno.Command("python3", {
      args: ["-c", SCRIPT, String(port), accepting.join(","), silent.join(",")],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = process.stdout.getReader();
    const { value } = await reader.read();
    reader.releaseLock();
    if (!new TextDecoder().decode(value ?? new Uint8Array()).includes("ready")) {
      throw new Error("probe targets did not start");
    }
    return new ProbeTargets(process, port);
  }

  /** Stops the listeners. */
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
