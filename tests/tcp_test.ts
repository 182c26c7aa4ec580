/**
 * End to end: TCP listener behaviour — several queries on one connection, answered as they
 * complete; the idle timeout; the cap on open connections. And `--no-guardian`.
 */
import { assert, assertEquals } from "./helpers/assert.ts";
import { buildQuery, decodeReply, udpQuery } from "./helpers/dns_client.ts";
import { FakeUpstream } from "./helpers/fake_upstream.ts";
import { freePort, keeldnsCommand, KeeldnsProcess } from "./helpers/keeldns_process.ts";
import { frame, FramedReader, writeAll } from "../dns/stream_framing.ts";

Deno.test({
  name: "TCP: pipelined queries, out-of-order answers, idle timeout and connection cap",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const fake = await FakeUpstream.start((name) => name === "slow.test" ? { delayMs: 300 } : {});
    const k = await KeeldnsProcess.start(`
[server]
bind-tcp = ["127.0.0.1:{port}"]
tcp-idle-time = 1
max-tcp-connections = 2
[[upstream]]
address = "udp://127.0.0.1:${fake.port}"
`);
    const connect = () => Deno.connect({ hostname: "127.0.0.1", port: k.port });
    try {
      await t.step(
        "three queries in one write get three answers; the slow one does not block the others",
        async () => {
          const conn = await connect();
          const queries = [["slow.test", 1], ["one.test", 2], ["two.test", 3]] as const;
          const bytes = queries.map(([name, id]) => frame(buildQuery(name, "A", { id })));
          await writeAll(conn, new Uint8Array(bytes.flatMap((b) => [...b])));
          const reader = new FramedReader(conn);
          const ids: number[] = [];
          for (let i = 0; i < 3; i++) ids.push(decodeReply((await reader.next())!).id);
          conn.close();
          assertEquals(ids.slice().sort(), [1, 2, 3]);
          assertEquals(ids[2], 1, "the slow answer comes last");
        },
      );
      await t.step("an idle connection is closed after tcp-idle-time", async () => {
        const conn = await connect();
        const started = performance.now();
        const end = await new FramedReader(conn).next().catch(() => null);
        const waited = performance.now() - started;
        conn.close();
        assertEquals(end, null);
        assert(waited > 800 && waited < 5000, `closed after ${waited.toFixed(0)} ms`);
      });
      await t.step(
        "connections beyond max-tcp-connections are refused; the open ones still work",
        async () => {
          const a = await connect();
          const b = await connect();
          await new Promise((r) => setTimeout(r, 100));
          const c = await connect();
          const refused = await new FramedReader(c).next().catch(() => null);
          assertEquals(refused, null, "the third connection is closed at once");
          c.close();
          await writeAll(a, frame(buildQuery("a.test", "A", { id: 9 })));
          assertEquals(decodeReply((await new FramedReader(a).next())!).id, 9);
          a.close();
          b.close();
        },
      );
    } finally {
      await k.stop();
      await fake.close();
    }
  },
});

Deno.test({
  name: "--no-guardian serves in one process and stops on SIGTERM with exit 0",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const fake = await FakeUpstream.start();
    const port = await freePort();
    const dir = await Deno.makeTempDir({ prefix: "keeldns-ng-" });
    await Deno.writeTextFile(
      `${dir}/k.toml`,
      `[server]\nbind = ["127.0.0.1:${port}"]\n[[upstream]]\naddress = "udp://127.0.0.1:${fake.port}"\n`,
    );
    const { command, args } = keeldnsCommand(["run", "--no-guardian", "-c", `${dir}/k.toml`]);
    const process = new Deno.Command(command, { args, stdin: "null", stdout: "piped", stderr: "null" })
      .spawn();
    try {
      let answered = false;
      for (let i = 0; i < 100 && !answered; i++) {
        answered = await udpQuery(port, "ng.test", "A", { timeoutMs: 100 }).then(() => true, () => false);
      }
      assert(answered, "the single process answers");
      const children = await Deno.readTextFile(`/proc/${process.pid}/task/${process.pid}/children`);
      assertEquals(children.trim(), "", "no child process");
    } finally {
      process.kill("SIGTERM");
      const [status, stdout] = await Promise.all([process.status, new Response(process.stdout).text()]);
      assertEquals(status.code, 0);
      assert(!stdout.includes('"beat"'), "no guardian protocol on stdout");
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
