/**
 * The `keeldns explain NAME [TYPE] [--client IP] [--json]` command line: asks the running
 * guardian, which forwards to the child (resolver/explain.ts), and prints the report as text (or
 * as the JSON the child made). Only types are imported from the resolver: the command runs in a
 * process that never loads the child's code.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { ExplainAnswer, ExplainReport } from "../resolver/explain.ts";
import { sendControl } from "./control_channel.ts";
import { DEFAULT_CONTROL_PATH, resolveControlPath } from "./control_path.ts";

/** The command's help. */
export const EXPLAIN_USAGE =
  `Usage: keeldns explain NAME [TYPE] [--client IP] [--json] [-p PIDFILE | --control PATH]

Asks the running server how it answers NAME (type A unless TYPE is given) and why, without
changing its cache: the client group, every rule that matches with its file:line and the one
that decides, the cache state (fresh / stale / absent, TTL left), the upstream group and each
server raced with its time and verdict (accepted, filtered by which IP rule, outrun, failed),
the speed check per address, and the final answer. The upstream servers are asked for real.
  --client IP   explain it for this client (its client group's rules apply)
  --json        print the report as JSON
Exit 0 when explained, 1 when refused (the reason is printed) or the guardian cannot be reached.`;

/** A source position as `file:line` (`file:line:col` when the column is known). */
function at(source: { file: string; line: number; col?: number }): string {
  if (!source.file) return "(built in)";
  if (!source.line) return source.file;
  return source.col ? `${source.file}:${source.line}:${source.col}` : `${source.file}:${source.line}`;
}

/** An answer's lines. */
function answerLines(a: ExplainAnswer, indent: string): string[] {
  const lines = [`${indent}${a.rcode}, ${a.records.length} records (from ${a.source})`];
  for (const r of a.records) lines.push(`${indent}  ${r.name} ${r.ttl} ${r.type} ${r.data}`);
  for (const r of a.authority) lines.push(`${indent}  authority: ${r.name} ${r.ttl} ${r.type} ${r.data}`);
  return lines;
}

/** The report as text, one fact a line. */
export function formatExplainReport(r: ExplainReport): string {
  const out: string[] = [];
  const q = r.question;
  out.push(`${q.name} ${q.type}${q.client ? ` for client ${q.client}` : ""}`);
  out.push(`client group: ${r.clientGroup.name}${r.clientGroup.index ? ` (${r.clientGroup.index})` : ""}`);
  const c = r.cache;
  const ttl = "ttlLeft" in c && c.ttlLeft !== undefined ? `, ttl ${c.ttlLeft} s left` : "";
  const why = "why" in c && c.why ? ` (${c.why})` : "";
  out.push(`cache: ${c.state}${ttl}${c.wouldServe ? ", answers the client" : ""}${why}`);
  if (r.rules.matched.length === 0) out.push("rules: none match");
  for (const m of r.rules.matched) {
    const won = m.rule === r.rules.winner ? " [wins]" : "";
    out.push(`rule: ${m.text} at ${at(m.source)}${won}`);
    out.push(`  sets ${m.kinds.join(", ")}${m.decides.length ? `; decides ${m.decides.join(", ")}` : ""}`);
    if (m.listLine) {
      out.push(
        `  listed at ${m.listLine.file}:${m.listLine.line} as ${m.listLine.domain}` +
          (m.listLine.kind === "exception" ? " (exception)" : ""),
      );
    }
  }
  out.push(
    `rules verdict: ${r.rules.verdict}${r.rules.nftset ? `, addresses go to nftset ${r.rules.nftset}` : ""}`,
  );
  if (r.upstream) {
    out.push(`upstream group: ${r.upstream.group.name}`);
    for (const s of r.upstream.servers) {
      const parts = [`${s.verdict}`, `${s.rttMs} ms`];
      if (s.rcode) parts.push(s.rcode);
      if (s.addresses?.length) parts.push(s.addresses.join(" "));
      if (s.detail) parts.push(s.detail);
      for (const rule of s.ipRules ?? []) parts.push(`by ${rule.text} at ${at(rule.source)}`);
      out.push(`  server ${s.server}: ${parts.join(", ")}${s.chosen ? " [used]" : ""}`);
    }
  }
  if (r.speed) {
    out.push(`speed check: ${r.speed.probes}, ${r.speed.responseMode}`);
    for (const p of r.speed.results) {
      out.push(`  ${p.ip}: ${p.rttMs === null ? "no answer" : `${p.rttMs} ms`}`);
    }
  }
  if (r.dualstack) {
    const d = r.dualstack;
    out.push(
      `dual-stack: own ${d.ownMs ?? "none"} ms, other family ${d.otherMs ?? "none"} ms, threshold ` +
        `${d.thresholdMs} ms: ${d.answeredEmpty ? "answered empty (other family preferred)" : "kept"}`,
    );
  }
  out.push("answer:", ...answerLines(r.answer, "  "));
  if (r.resolvedNow) {
    out.push("resolved now (behind the cache, not stored):", ...answerLines(r.resolvedNow, "  "));
  }
  out.push(`took ${r.tookMs} ms`);
  return out.join("\n");
}

/** Runs `keeldns explain ARGS`; returns the exit code. */
export async function commandExplain(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      client: { type: "string" },
      json: { type: "boolean" },
      "pid-file": { type: "string", short: "p" },
      control: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return console.log(EXPLAIN_USAGE), 0;
  const [name, type, ...extra] = positionals;
  if (!name || extra.length > 0) {
    console.error(`keeldns: explain: expected NAME [TYPE]\n\n${EXPLAIN_USAGE}`);
    return 64;
  }
  const path = resolveControlPath(values.control, values["pid-file"]) ?? DEFAULT_CONTROL_PATH;
  let reply;
  try {
    reply = await sendControl(path, "explain", 30_000, [name, type ?? "", values.client ?? ""]);
  } catch (e) {
    console.error(`keeldns explain: no guardian answers on ${path}: ${(e as Error).message}`);
    return 1;
  }
  if (!reply.ok) {
    console.error(`keeldns explain: ${reply.error}`);
    return 1;
  }
  const report = reply.explain as unknown as ExplainReport;
  console.log(values.json ? JSON.stringify(report, null, 2) : formatExplainReport(report));
  return 0;
}
