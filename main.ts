/**
 * keeldns command line: `run` (default) starts the guardian, `check` validates a configuration,
 * `health` probes a running server, `version` says what this build is. `--child` is internal: the
 * guardian starts the serving child with it.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { runChild } from "./child.ts";
import { ConfigError } from "./config/errors.ts";
import { loadConfig } from "./config/load.ts";
import { runGuardian } from "./guardian.ts";
import { HealthExit, probe } from "./ops/health_probe.ts";
import { setupLogging } from "./ops/log.ts";
import { parseHostPort } from "./config/values.ts";
import denoJson from "./deno.json" with { type: "json" };

/** keeldns's version, from deno.json. */
export const VERSION: string = denoJson.version;

const USAGE: Record<string, string> = {
  main: `keeldns ${VERSION} — a SmartDNS-class DNS forwarder

Usage: keeldns [command] [options]

Commands:
  run       start the server under its guardian (default)
  check     validate a configuration file and exit
  health    send one query to a running server; exit 0 if it answers
  version   print version, Deno version, target and build kind

Run "keeldns <command> --help" for a command's options.`,
  run: `Usage: keeldns [run] [-c FILE] [-p PIDFILE] [--no-guardian] [-v]

  -c, --config FILE   keeldns .toml or SmartDNS .conf file (format detected by content);
                      without it, the embedded default: 127.0.0.1:5353, public upstreams
  -p, --pid-file FILE write the guardian's pid here (removed at exit)
      --no-guardian   serve in this process, without a supervising guardian
  -v, --verbose       log at debug level
  -h, --help          show this help`,
  check: `Usage: keeldns check -c FILE

Validates FILE without starting anything. Prints file:line:col and the reason on error (exit 1),
and lists directives read but not supported yet.`,
  health:
    `Usage: keeldns health [--server HOST:PORT] [--timeout MS] [--name NAME] [--type TYPE] [-q] [-c FILE]

Sends one real UDP query and waits for the answer.
  --server HOST:PORT  server to ask (default: first UDP bind of -c FILE, else 127.0.0.1:5353)
  --timeout MS        how long to wait (default 2000)
  --name NAME         name to ask for (default ".")
  --type TYPE         record type (default NS)
  -q, --quiet         print nothing on success
Exit codes: 0 answered (NOERROR/NXDOMAIN), 1 no answer, 2 answered with an error rcode
(e.g. SERVFAIL: upstreams unreachable), 64 bad arguments.
Cron: */5 * * * * keeldns health -q || /etc/init.d/keeldns restart`,
  version: "Usage: keeldns version",
};

/** What kind of build is running: a compiled executable, a bundle, or the source tree. */
function buildKind(): string {
  if (Deno.build.standalone) return "compiled";
  return Deno.mainModule.endsWith(".ts") ? "source" : "bundle";
}

function fail(message: string, code = HealthExit.USAGE): number {
  console.error(`keeldns: ${message}`);
  return code;
}

async function commandRun(args: string[], child: boolean): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string", short: "c" },
      "pid-file": { type: "string", short: "p" },
      "no-guardian": { type: "boolean" },
      verbose: { type: "boolean", short: "v" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return console.log(USAGE.run), 0;
  const options = { configPath: values.config, verbose: values.verbose ?? false };
  if (child) return await runChild({ ...options, guarded: true });
  if (values["no-guardian"]) return await runChild({ ...options, guarded: false });
  return await runGuardian({ ...options, pidFile: values["pid-file"] });
}

function commandCheck(args: string[]): number {
  const { values } = parseArgs({
    args,
    options: { config: { type: "string", short: "c" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) return console.log(USAGE.check), 0;
  if (!values.config) return fail("check needs -c FILE");
  try {
    const config = loadConfig(values.config);
    for (const u of config.unsupported) {
      console.log(
        `${u.source.file}:${u.source.line}:${u.source.col}: warning: ${u.name} is not supported yet`,
      );
    }
    console.log(
      `${config.path}: OK (${config.format}; ${config.server.binds.length} listeners, ` +
        `${config.upstreams.length} upstream servers, cache ${config.cache.size})`,
    );
    return 0;
  } catch (e) {
    console.error(e instanceof ConfigError ? e.message : `keeldns: ${String(e)}`);
    return 1;
  }
}

async function commandHealth(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      server: { type: "string", short: "s" },
      timeout: { type: "string", short: "t", default: "2000" },
      name: { type: "string", default: "." },
      type: { type: "string", default: "NS" },
      config: { type: "string", short: "c" },
      quiet: { type: "boolean", short: "q" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return console.log(USAGE.health), 0;
  const timeout = Number(values.timeout);
  if (!Number.isInteger(timeout) || timeout <= 0) {
    return fail(`--timeout must be a positive integer, not "${values.timeout}"`);
  }
  let host = "127.0.0.1";
  let port = 5353;
  try {
    if (values.server) {
      ({ host, port } = parseHostPort(values.server, 53));
    } else if (values.config) {
      const bind = loadConfig(values.config).server.binds.find((b) => b.transport === "udp");
      if (bind) {
        port = bind.port;
        host = bind.host === "::" ? "::1" : bind.host === "0.0.0.0" ? "127.0.0.1" : bind.host;
      }
    }
  } catch (e) {
    return fail((e as Error).message);
  }
  const result = await probe(host, port, values.name, values.type.toUpperCase(), timeout);
  if (result.exitCode !== HealthExit.OK) console.error(`keeldns health: ${result.message}`);
  else if (!values.quiet) console.log(result.message);
  return result.exitCode;
}

function commandVersion(args: string[]): number {
  if (args.includes("--help") || args.includes("-h")) return console.log(USAGE.version), 0;
  console.log(`keeldns ${VERSION} (deno ${Deno.version.deno}, ${Deno.build.target}, ${buildKind()} build)`);
  return 0;
}

/** Runs the command line `args`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const child = args.includes("--child");
  const rest = args.filter((a) => a !== "--child");
  const [first, ...tail] = rest;
  try {
    switch (first) {
      case "run":
        return await commandRun(tail, child);
      case "check":
        return commandCheck(tail);
      case "health":
        return await commandHealth(tail);
      case "version":
      case "--version":
        return commandVersion(tail);
      case "help":
      case "--help":
      case "-h":
        console.log(USAGE.main);
        return 0;
      default:
        if (first !== undefined && !first.startsWith("-")) {
          return fail(`unknown command "${first}"\n\n${USAGE.main}`);
        }
        return await commandRun(rest, child);
    }
  } catch (e) {
    if (e instanceof TypeError && "code" in e && String(e.code).startsWith("ERR_PARSE_ARGS")) {
      return fail(`${e.message}\n\n${USAGE[first ?? "run"] ?? USAGE.main}`);
    }
    throw e;
  }
}

if (import.meta.main) {
  setupLogging({ level: "info", size: 0, num: 0 }, false);
  Deno.exit(await main(Deno.args));
}
