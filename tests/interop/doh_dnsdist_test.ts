/**
 * Interop: dig asks keeldns, which forwards over DNS-over-HTTPS to Debian's dnsdist (its DoH
 * listener answers every question itself with a SpoofAction), the certificate from a test CA made
 * with openssl. dnsdist's console (`showDOHFrontends()`) counts the connections keeldns opened.
 */
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { freePort, KeeldnsProcess, programPath, skipWithout } from "../helpers/keeldns_process.ts";
import { FakeUpstream } from "../helpers/fake_upstream.ts";
import { dig, stopPeer } from "../helpers/peers.ts";
import { makeTestCa, makeTestPki } from "../helpers/test_pki.ts";

/** A running dnsdist with a DoH listener and a console. */
interface Dnsdist {
  process: Deno.ChildProcess;
  dohPort: number;
  /** Runs a console command and returns its output. */
  console(command: string): Promise<string>;
}

async function startDnsdist(dir: string): Promise<Dnsdist> {
  const [dns, doh, control] = [await freePort(), await freePort(), await freePort()];
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));
  await Deno.writeTextFile(
    `${dir}/dnsdist.conf`,
    [
      `setLocal("127.0.0.1:${dns}")`,
      `addDOHLocal("127.0.0.1:${doh}", "${dir}/leaf.pem", "${dir}/leaf.key", "/dns-query")`,
      `controlSocket("127.0.0.1:${control}")`,
      `setKey("${key}")`,
      `addAction(AllRule(), SpoofAction("192.0.2.54"))`,
      "",
    ].join("\n"),
  );
  const process = new Deno.Command(programPath("dnsdist"), {
    args: ["--supervised", "--disable-syslog", "-C", `${dir}/dnsdist.conf`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const console = async (command: string) => {
    const out = await new Deno.Command(programPath("dnsdist"), {
      args: ["-c", `127.0.0.1:${control}`, "-k", key, "-C", "/dev/null", "-e", command],
      stdin: "null",
      stderr: "null",
    }).output();
    if (!out.success) throw new Error(`dnsdist console: exit ${out.code}`);
    return new TextDecoder().decode(out.stdout);
  };
  for (let i = 0;; i++) {
    try {
      if ((await console("showDOHFrontends()")).includes(`127.0.0.1:${doh}`)) break;
    } catch (e) {
      if (i > 100) {
        process.kill("SIGKILL");
        throw new Error(`dnsdist did not start: ${e}`);
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { process, dohPort: doh, console };
}

/** The HTTP connections dnsdist's DoH frontend on `port` has accepted (`showDOHFrontends()`). */
async function dohConnections(dnsdist: Dnsdist): Promise<number> {
  const out = await dnsdist.console("showDOHFrontends()");
  const row = out.split("\n").find((l) => l.includes(`127.0.0.1:${dnsdist.dohPort}`));
  if (!row) throw new Error(`no DoH frontend in: ${out}`);
  return Number(row.trim().split(/\s+/)[2]); // "#  Address  HTTP(connects)  HTTP/1  HTTP/2 …"
}

Deno.test({
  name: "dig → keeldns → dnsdist over DoH: answers over one connection, the wrong CA is refused",
  ignore: skipWithout("dnsdist", "openssl", "dig"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "keeldns-doh-dnsdist-" });
    const other = await Deno.makeTempDir({ prefix: "keeldns-doh-other-" });
    await makeTestPki(dir, "doh.test", "keeldns test CA");
    await makeTestCa(other, "ca", "another test CA");
    const dnsdist = await startDnsdist(dir);
    const config = (ca: string) =>
      `bind 127.0.0.1:{port}\n` +
      `server-https https://127.0.0.1:${dnsdist.dohPort}/dns-query -host-name doh.test\n` +
      `ca-file ${ca}\nlog-level debug\n`;
    try {
      await t.step("answers through keeldns, 20 queries over one DoH connection", async () => {
        const k = await KeeldnsProcess.start(config(`${dir}/ca.pem`), { name: "smartdns.conf" });
        try {
          const before = await dohConnections(dnsdist);
          const at = ["@127.0.0.1", "-p", String(k.port), "+time=3", "+tries=1", "+short"];
          assertEquals((await dig(...at, "first.example")).trim(), "192.0.2.54");
          const answers = await Promise.all(
            Array.from({ length: 20 }, (_, i) => dig(...at, `name${i}.example`)),
          );
          for (const a of answers) assertEquals(a.trim(), "192.0.2.54");
          assertEquals(await dohConnections(dnsdist) - before, 1, "keeldns opened more than one connection");
        } finally {
          await k.stop();
        }
      });

      await t.step(
        "by host name: resolved through the -bootstrap-dns server, the name is the SNI",
        async () => {
          const boot = await FakeUpstream.start((name, type) => ({
            answers: name === "doh.test" && type === "A"
              ? [{ name, type: "A", ttl: 300, data: "127.0.0.1" }]
              : [],
          }));
          const k = await KeeldnsProcess.start(
            `bind 127.0.0.1:{port}\nserver 127.0.0.1:${boot.port} -bootstrap-dns\n` +
              `server-https https://doh.test:${dnsdist.dohPort}/dns-query\nca-file ${dir}/ca.pem\nlog-level info\n`,
            { name: "smartdns.conf" },
          );
          try {
            const at = ["@127.0.0.1", "-p", String(k.port), "+time=3", "+tries=1", "+short"];
            assertEquals((await dig(...at, "named.example")).trim(), "192.0.2.54");
            await k.waitFor(/https:\/\/doh\.test:\d+\/dns-query: doh\.test resolved to 127\.0\.0\.1/);
            assert(boot.count("doh.test") >= 1, "the bootstrap server was asked");
            assertEquals(boot.count("named.example"), 0, "queries go to the DoH server only");
          } finally {
            await k.stop();
            await boot.close();
          }
        },
      );

      await t.step("the wrong CA: SERVFAIL, and the log says why", async () => {
        const k = await KeeldnsProcess.start(config(`${other}/ca.pem`), { name: "smartdns.conf" });
        try {
          const out = await dig(
            "@127.0.0.1",
            "-p",
            String(k.port),
            "+time=5",
            "+tries=1",
            "wrong-ca.example",
          );
          assertMatch(out, /status: SERVFAIL/);
          const [line] = await k.waitFor(/https:\/\/127\.0\.0\.1:\d+\/dns-query.*failed: .*/);
          assertMatch(line, /invalid peer certificate: UnknownIssuer/);
          assert(!out.includes("192.0.2.54"));
        } finally {
          await k.stop();
        }
      });
    } finally {
      await stopPeer(dnsdist.process);
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(other, { recursive: true });
    }
  },
});
