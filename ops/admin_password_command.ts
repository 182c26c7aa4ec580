/**
 * `keeldns admin-password`: reads the dashboard's password from standard input (without echo on a
 * terminal) and prints its hash for `[admin] password-hash`, or with `--write` puts it in the
 * data directory's `admin-password` file (mode 0600), which logins read when the configuration
 * has no hash.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { hashAdminPassword } from "../config/admin.ts";
import { loadConfig } from "../config/load.ts";
import { dataDirectory } from "../server/self_signed_cert.ts";
import { PASSWORD_FILE } from "../server/dashboard_backend.ts";

/** The command's help. */
export const ADMIN_PASSWORD_USAGE = `Usage: keeldns admin-password [--write [-c FILE]]

Reads a password from standard input (one line; typed without echo on a terminal) and prints
its hash for [admin] password-hash in keeldns.toml. With --write, stores the hash in the data
directory of FILE's configuration (the cache file's directory) as ${PASSWORD_FILE}, mode 0600,
where the dashboard looks when the configuration has no password-hash.`;

/** Reads one line from stdin, without echo when it is a terminal. */
async function readPassword(): Promise<string> {
  const tty = Deno.stdin.isTerminal();
  if (tty) {
    Deno.stderr.writeSync(new TextEncoder().encode("password: "));
    Deno.stdin.setRaw(true);
  }
  const bytes: number[] = [];
  const buffer = new Uint8Array(256);
  try {
    for (;;) {
      const n = await Deno.stdin.read(buffer);
      if (n === null) break;
      const chunk = buffer.subarray(0, n);
      const end = chunk.findIndex((b) => b === 10 || b === 13 || (tty && b === 3));
      if (tty && end >= 0 && chunk[end] === 3) throw new Error("cancelled");
      bytes.push(...(end >= 0 ? chunk.subarray(0, end) : chunk));
      if (end >= 0) break;
    }
  } finally {
    if (tty) {
      Deno.stdin.setRaw(false);
      Deno.stderr.writeSync(new TextEncoder().encode("\n"));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** Runs `keeldns admin-password`; returns the exit code. */
export async function commandAdminPassword(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      write: { type: "boolean" },
      config: { type: "string", short: "c" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return console.log(ADMIN_PASSWORD_USAGE), 0;
  const password = await readPassword();
  if (password.length < 8) {
    console.error("keeldns admin-password: the password must have at least 8 characters");
    return 1;
  }
  const hash = hashAdminPassword(password);
  if (!values.write) return console.log(hash), 0;
  const dir = dataDirectory(loadConfig(values.config));
  const file = `${dir.replace(/\/+$/, "")}/${PASSWORD_FILE}`;
  await Deno.mkdir(dir, { recursive: true, mode: 0o750 });
  await Deno.writeTextFile(file, `${hash}\n`, { mode: 0o600 });
  await Deno.chmod(file, 0o600);
  console.log(`wrote the password hash to ${file}`);
  return 0;
}
