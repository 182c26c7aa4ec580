/**
 * Real peers for interop tests and the benchmark: dig as a client, dnsmasq as an upstream that
 * answers local names itself, unbound as a DNS-over-TLS upstream, SmartDNS as the reference.
 *
 * @module
 */
import { programPath } from "./keeldns_process.ts";

/** Runs dig with `args` and returns its stdout. */
export async function dig(...args: string[]): Promise<string> {
  const out = await new Deno.Command(programPath("dig"), { args, stdin: "null", stderr: "null" }).output();
  return new TextDecoder().decode(out.stdout);
}

/** Resolves once 127.0.0.1:port answers `name` with an address starting `expect`; throws after 10 s. */
export async function waitForAnswer(port: number, name: string, expect: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const out = await dig("@127.0.0.1", "-p", String(port), "+short", "+time=1", "+tries=1", name);
    if (out.includes(expect)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing answers ${name} on port ${port}`);
}

/** dnsmasq's arguments for a foreground, loopback-only instance on `port`, plus `extra`. */
export function dnsmasqArgs(port: number, extra: string[]): string[] {
  return [
    "--keep-in-foreground",
    "--no-resolv",
    "--no-hosts",
    "--no-poll",
    "--bind-interfaces",
    "--listen-address=127.0.0.1",
    `--port=${port}`,
    "--user=root",
    "--pid-file",
    "--dns-forward-max=10000",
    ...extra,
  ];
}

/**
 * Starts dnsmasq on 127.0.0.1:port with no upstream of its own, answering from `records` (dnsmasq
 * options such as `--address=/x/192.0.2.1`), and waits until `probe` answers.
 */
export async function startDnsmasq(
  port: number,
  records: string[],
  probe: { name: string; expect: string },
): Promise<Deno.ChildProcess> {
  const process = new Deno.Command(programPath("dnsmasq"), {
    args: dnsmasqArgs(port, records),
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await waitForAnswer(port, probe.name, probe.expect);
  } catch (e) {
    process.kill("SIGKILL");
    throw e;
  }
  return process;
}

/** Where a DNS-over-TLS unbound listens and what it answers. */
export interface UnboundTlsOptions {
  /** Loopback address and port it listens on (TLS only). */
  readonly host: string;
  readonly port: number;
  /** The zone it answers itself (`dot.test.`) and its records (`a.dot.test. 300 IN A 192.0.2.53`). */
  readonly zone: string;
  readonly records: readonly string[];
}

/**
 * Starts unbound answering `zone` over TLS only, with the leaf.pem/leaf.key of `dir` (see
 * test_pki.ts), and resolves once it accepts connections.
 */
export async function startUnboundTls(dir: string, o: UnboundTlsOptions): Promise<Deno.ChildProcess> {
  const conf = `${dir}/unbound-${o.host}-${o.port}.conf`;
  await Deno.writeTextFile(
    conf,
    `server:
  interface: ${o.host}@${o.port}
  tls-port: ${o.port}
  tls-service-key: "${dir}/leaf.key"
  tls-service-pem: "${dir}/leaf.pem"
  do-ip6: no
  do-udp: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "${dir}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 1
  access-control: 127.0.0.0/8 allow
  local-zone: "${o.zone}" static
${o.records.map((r) => `  local-data: "${r}"\n`).join("")}remote-control:
  control-enable: no
`,
  );
  const process = new Deno.Command(programPath("unbound"), {
    args: ["-d", "-c", conf],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  (async () => {
    for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
  })();
  for (let i = 0; i < 200; i++) {
    try {
      (await Deno.connect({ hostname: o.host, port: o.port })).close();
      return process;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  await stopPeer(process);
  throw new Error(`unbound did not start on ${o.host}:${o.port}: ${stderr}`);
}

/** Stops a peer with SIGTERM (SIGKILL after 5 s) and waits for it. */
export async function stopPeer(process: Deno.ChildProcess): Promise<void> {
  try {
    process.kill("SIGTERM");
  } catch { /* gone */ }
  const timer = setTimeout(() => {
    try {
      process.kill("SIGKILL");
    } catch { /* gone */ }
  }, 5000);
  await process.status;
  clearTimeout(timer);
}

/** The local records the interop tests serve from dnsmasq. */
export const EXAMPLE_RECORDS = [
  "--local-ttl=300",
  "--address=/shop.example/198.51.100.7",
  "--host-record=mail.example,198.51.100.25,2001:db8::25",
  "--mx-host=example,mail.example,10",
  "--txt-record=info.example,keeldns interop",
  "--local=/example/",
];
