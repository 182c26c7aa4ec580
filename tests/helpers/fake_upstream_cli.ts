/**
 * A {@link FakeUpstream} as a process of its own, for tests that need it somewhere the test
 * process is not (inside a network namespace: `ip netns exec NS deno run -A fake_upstream_cli.ts`).
 * Answers A questions from a fixed table, in the table's order, TTL 300; every other question
 * gets NOERROR without records. Prints `port N` once listening on 127.0.0.1:N (UDP and TCP), and
 * exits when its stdin closes.
 *
 * Usage: `fake_upstream_cli.ts '{"a.test": ["127.0.0.2", "127.0.0.3"]}'` (see {@link startFakeIn}).
 *
 * @module
 */
import { FakeUpstream } from "./fake_upstream.ts";
import { REPO_ROOT } from "./keeldns_process.ts";
import { inNamespace } from "./netns.ts";

/** A fake upstream running in another process. */
export interface FakeUpstreamProcess {
  /** Its port on 127.0.0.1 (in its namespace). */
  port: number;
  /** Stops it and waits for it. */
  stop(): Promise<void>;
}

/** Starts the fake in namespace `ns`, answering the A records of `table` (name → addresses). */
export async function startFakeIn(ns: string, table: Record<string, string[]>): Promise<FakeUpstreamProcess> {
  const { command, args } = inNamespace(ns, Deno.execPath(), [
    "run",
    "-A",
    "--config",
    `${REPO_ROOT}deno.json`,
    new URL(import.meta.url).pathname,
    JSON.stringify(table),
  ]);
  const process = new Deno.Command(command, { args, stdin: "piped", stdout: "piped", stderr: "inherit" })
    .spawn();
  const stop = async () => {
    await process.stdin.close().catch(() => {});
    const timer = setTimeout(() => {
      try {
        process.kill("SIGKILL");
      } catch { /* gone */ }
    }, 3000);
    await process.status;
    clearTimeout(timer);
    await process.stdout.cancel().catch(() => {});
  };
  const reader = process.stdout.getReader();
  let text = "";
  const deadline = Date.now() + 20_000;
  while (!/port \d+\n/.test(text) && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const port = /port (\d+)\n/.exec(text)?.[1];
  if (!port) {
    await stop();
    throw new Error(`the fake upstream did not start in ${ns}: ${text}`);
  }
  return { port: Number(port), stop };
}

if (import.meta.main) {
  const table = JSON.parse(Deno.args[0] ?? "{}") as Record<string, string[]>;
  const fake = await FakeUpstream.start((name, type) => ({
    answers: type === "A" ? (table[name] ?? []).map((data) => ({ name, type: "A", ttl: 300, data })) : [],
  }));
  console.log(`port ${fake.port}`);
  for await (const _ of Deno.stdin.readable) { /* until stdin closes */ }
  await fake.close();
}
