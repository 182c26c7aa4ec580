/**
 * `promtool check metrics` (Debian's prometheus package) on a Prometheus text exposition, for the
 * metrics tests.
 *
 * @module
 */

/** Runs `promtool check metrics` on `text`: its exit code, and what it said (empty: no complaint). */
export async function promtoolCheck(text: string): Promise<{ code: number; output: string }> {
  const p = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = p.stdin.getWriter();
  await w.write(new TextEncoder().encode(text));
  await w.close();
  const out = await p.output();
  const d = new TextDecoder();
  return { code: out.code, output: (d.decode(out.stdout) + d.decode(out.stderr)).trim() };
}
