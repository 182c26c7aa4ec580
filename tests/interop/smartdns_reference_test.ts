/**
 * SmartDNS as the reference: the same smartdns.conf (only the port differs) runs under Debian's
 * SmartDNS and under keeldns, both forwarding to one dnsmasq; dig must see the same status and
 * records from both.
 */
import { assert, assertEquals } from "../helpers/assert.ts";
import { freePort, KeeldnsProcess, programPath, skipWithout } from "../helpers/keeldns_process.ts";
import { dig, EXAMPLE_RECORDS, startDnsmasq, stopPeer, waitForAnswer } from "../helpers/peers.ts";

/** A typical home-router smartdns.conf; SmartDNS-only features are switched off to compare forwarding. */
function smartdnsConf(port: number, upstream: number, dir: string): string {
  return [
    `bind 127.0.0.1:${port}`,
    `bind-tcp 127.0.0.1:${port}`,
    `server 127.0.0.1:${upstream}`,
    "cache-size 512",
    "speed-check-mode none",
    "response-mode fastest-response",
    "dualstack-ip-selection no",
    "serve-expired no",
    "cache-persist no",
    "log-level error",
    `log-file ${dir}/smartdns.log`,
    "",
  ].join("\n");
}

/** Status line and sorted answer records of one dig query, without TTLs (SmartDNS's differ by design). */
async function observe(port: number, ...query: string[]): Promise<string> {
  const out = await dig(
    "@127.0.0.1",
    "-p",
    String(port),
    "+time=2",
    "+tries=1",
    "+noall",
    "+comments",
    "+answer",
    ...query,
  );
  const status = /status: (\w+)/.exec(out)?.[1] ?? "no answer";
  const answers = out.split("\n").filter((l) => l && !l.startsWith(";"))
    .map((l) => l.split(/\s+/)).map(([name, , cls, type, ...data]) =>
      `${name} ${cls} ${type} ${data.join(" ")}`
    )
    .sort();
  return [status, ...answers].join("\n");
}

Deno.test({
  name: "keeldns answers like SmartDNS 40 for the same smartdns.conf",
  ignore: skipWithout("dig", "dnsmasq", "smartdns"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "keeldns-ref-" });
    const upstream = await freePort();
    const dnsmasq = await startDnsmasq(upstream, EXAMPLE_RECORDS, {
      name: "shop.example",
      expect: "198.51.100.7",
    });
    const smartPort = await freePort();
    await Deno.writeTextFile(`${dir}/smartdns.conf`, smartdnsConf(smartPort, upstream, dir));
    const smartdns = new Deno.Command(programPath("smartdns"), {
      args: ["-f", "-c", `${dir}/smartdns.conf`, "-p", "-"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const keeldns = await KeeldnsProcess.start(
      smartdnsConf(0, upstream, dir).replaceAll(":0\n", ":{port}\n"),
      {
        name: "smartdns.conf",
      },
    );
    try {
      await waitForAnswer(smartPort, "shop.example", "198.51.100.7");
      const queries = [
        ["shop.example", "A"],
        ["mail.example", "A"],
        ["mail.example", "AAAA"],
        ["example", "MX"],
        ["info.example", "TXT"],
        ["nothing.example", "A"],
        ["shop.example", "A", "+tcp"],
      ];
      for (const query of queries) {
        await t.step(query.join(" "), async () => {
          const reference = await observe(smartPort, ...query);
          const expectRecords = query[0] !== "nothing.example";
          assert(
            reference.startsWith(expectRecords ? "NOERROR\n" : "NXDOMAIN"),
            `SmartDNS said:\n${reference}`,
          );
          assertEquals(await observe(keeldns.port, ...query), reference);
        });
      }
    } finally {
      await keeldns.stop();
      await stopPeer(smartdns);
      await stopPeer(dnsmasq);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

/** The TTL of the first answer record of a dig query (NaN if none). */
async function firstTtl(port: number, name: string): Promise<number> {
  const out = await dig(
    "@127.0.0.1",
    "-p",
    String(port),
    "+time=2",
    "+tries=1",
    "+noall",
    "+answer",
    name,
    "A",
  );
  return Number(out.split("\n").find((l) => l && !l.startsWith(";"))?.split(/\s+/)[1]);
}

Deno.test({
  name:
    "TTLs like SmartDNS 40 when a smartdns.conf sets none: its 600 s floor on forwarded, cached and local answers",
  ignore: skipWithout("dig", "dnsmasq", "smartdns"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "keeldns-ref-" });
    const upstream = await freePort();
    // dnsmasq gives its local records TTL 60: under SmartDNS's default rr-ttl-min of 600.
    const dnsmasq = await startDnsmasq(upstream, [
      ...EXAMPLE_RECORDS.filter((r) => !r.startsWith("--local-ttl")),
      "--local-ttl=60",
    ], {
      name: "shop.example",
      expect: "198.51.100.7",
    });
    const conf = (port: number | string) =>
      [
        `bind 127.0.0.1:${port}`,
        `server 127.0.0.1:${upstream}`,
        "speed-check-mode none",
        "address /local.example/192.0.2.77",
        "cache-persist no",
        "log-level error",
        `log-file ${dir}/smartdns-ttl.log`,
        "",
      ].join("\n");
    const smartPort = await freePort();
    await Deno.writeTextFile(`${dir}/ttl.conf`, conf(smartPort));
    const smartdns = new Deno.Command(programPath("smartdns"), {
      args: ["-f", "-c", `${dir}/ttl.conf`, "-p", "-"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const keeldns = await KeeldnsProcess.start(conf("{port}"), { name: "smartdns.conf" });
    try {
      await waitForAnswer(smartPort, "local.example", "192.0.2.77");
      for (const name of ["shop.example", "local.example"]) {
        await t.step(`${name}: first answer, then cached a second later`, async () => {
          const first = [await firstTtl(smartPort, name), await firstTtl(keeldns.port, name)];
          assertEquals(first[0], 600, "SmartDNS's floor");
          assertEquals(first[1], first[0]);
          await new Promise((r) => setTimeout(r, 1100));
          const cached = [await firstTtl(smartPort, name), await firstTtl(keeldns.port, name)];
          for (const ttl of cached) assert(ttl >= 597 && ttl <= 600, `cached TTLs ${cached}`);
        });
      }
    } finally {
      await keeldns.stop();
      await stopPeer(smartdns);
      await stopPeer(dnsmasq);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
