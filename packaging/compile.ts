/**
 * `deno task compile`: one executable per target into dist/, with only the permissions the service
 * needs. `deno compile` downloads a `denort` base binary per target; offline, point `DENORT_BIN` at a
 * local one (it is used for the host's own target).
 *
 * Usage: deno task compile [--target TRIPLE ...]
 *
 * @module
 */
import { parseArgs } from "node:util";

/** Targets keeldns ships for (Deno has no MIPS or musl builds). */
export const TARGETS = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"];
/** What the guardian and child need; nothing else. */
export const PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
  "--allow-run",
  "--allow-ffi",
  "--unstable-net", // TCP reusePort, so a planned restart binds beside the old child
];

const root = new URL("../", import.meta.url).pathname;
const { values } = parseArgs({ args: Deno.args, options: { target: { type: "string", multiple: true } } });
const targets = values.target ?? TARGETS;
await Deno.mkdir(`${root}dist`, { recursive: true });
let failed = 0;
for (const target of targets) {
  const output = `${root}dist/keeldns-${target}`;
  const args = [
    "compile",
    ...PERMISSIONS,
    "--no-prompt",
    "--target",
    target,
    "--output",
    output,
    `${root}main.ts`,
  ];
  console.error(
    `compile: ${target}${Deno.env.get("DENORT_BIN") ? ` (DENORT_BIN=${Deno.env.get("DENORT_BIN")})` : ""}`,
  );
  const out = await new Deno.Command(Deno.execPath(), { args, cwd: root }).output();
  if (!out.success) console.error(new TextDecoder().decode(out.stderr).trim());
  const code = out.code;
  if (code !== 0) {
    failed++;
    console.error(`compile: ${target} failed (offline? set DENORT_BIN to a local denort for this target)`);
  } else {
    console.error(`compile: wrote ${output}`);
  }
}
Deno.exit(failed ? 1 : 0);
