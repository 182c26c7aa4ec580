/**
 * keeldns command line: `run` (default) starts the guardian, `check` validates a configuration,
 * `convert` prints it as keeldns TOML, `health` probes a running server, `version` says what this
 * build is. `--child` is internal: the guardian starts the serving child with it.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { ConfigError, readFailure } from "./config/errors.ts";
import { checkLists } from "./config/list_check.ts";
import { convertToToml } from "./config/convert.ts";
import { detectFormat, loadConfig } from "./config/load.ts";
import { parseSmartdnsConf } from "./config/smartdns_conf.ts";
import { parseTomlConfig } from "./config/toml.ts";
import { CONTROL_COMMANDS, type ControlCommand, sendControl } from "./ops/control_channel.ts";
import { DEFAULT_CONTROL_PATH, resolveControlPath } from "./ops/control_path.ts";
import { commandExplain, EXPLAIN_USAGE } from "./ops/explain_command.ts";

// The guardian, the child and the health probe are imported when their command runs: the guardian
// process then never loads the child's code (about 9 MB of its resident memory, measured).
import { setupLogging } from "./ops/log.ts";
import { loaderInUse } from "./ops/runtime_loader.ts";
import { lookupUser } from "./ops/user_database.ts";
import type { UpstreamHealthReport } from "./upstream/health.ts";
import type { CacheList } from "./resolver/cache_listing.ts";
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
  convert   print a smartdns.conf as keeldns TOML (comments and unsupported lines kept)
  health    send one query to a running server; exit 0 if it answers
  status    show the running guardian's state (child, uptime, restarts, last crash)
  reload    re-read the configuration (validated first; a bad one changes nothing)
  restart   replace the child without dropping queries (cache kept)
  stop      stop guardian and child
  cache     list, flush or count the running server's cached answers
  explain   how the running server answers a name and why (rules, cache, upstreams, speed check)
  admin-password  hash a password for the dashboard ([admin] password-hash)
  metrics   print the running server's statistics (Prometheus text, or --json)
  version   print version, Deno version, target and build kind

Run "keeldns <command> --help" for a command's options.`,
  run: `Usage: keeldns [run] [-c FILE] [-p PIDFILE] [--control SOCKET] [--no-guardian] [-v]

  -c, --config FILE   keeldns .toml or SmartDNS .conf file (format detected by content);
                      without it, the embedded default: 127.0.0.1:5353, public upstreams
  -p, --pid-file FILE write the guardian's pid here (removed at exit); crash reports and the
                      control socket (FILE with .sock for .pid) go beside it
      --control PATH  control socket for status/reload/restart/stop (default: beside the pid
                      file, else /run/keeldns.sock when /run is writable)
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
  -p, --control       where to ask the guardian why nothing answers (as for run)
Exit codes: 0 answered (NOERROR/NXDOMAIN), 1 no answer, 2 answered with an error rcode
(e.g. SERVFAIL: upstreams unreachable), 64 bad arguments.
Cron: */5 * * * * keeldns health -q || /etc/init.d/keeldns restart`,
  convert: `Usage: keeldns convert [-c] FILE [-o OUT]

Prints FILE (a smartdns.conf, or a keeldns .toml) as keeldns TOML that reads back into the same
configuration. Comments stay above what their lines became; lines with no TOML equivalent (not
supported yet, unknown) are kept as "# not supported yet: …" comments. Lines of conf-file includes
are merged in; relative paths are written absolute. A file keeldns refuses (a critical line not
supported yet) is refused here too, with its file:line:col (exit 1).
  -c, --config FILE   the file to convert (or give it without -c)
  -o, --output OUT    write the TOML to OUT instead of standard output
  -h, --help          show this help`,
  version: "Usage: keeldns version",
  cache: `Usage: keeldns cache list [PATTERN] | flush [NAME] | stats [-p PIDFILE | --control PATH]

  list [PATTERN]  cached names with type, seconds left, client group (first 1000, and how many more);
                  PATTERN: a name (it and the names below it) or a glob (*.example.com)
  flush [NAME]    removes every type and variant of NAME (*.example.com: the names below it), or
                  everything; the cache file is saved at once when cache persistence is on
  stats           entries, capacity, bytes, hits and misses

Asks the running guardian over its control socket (as for status); it forwards to the child.
Exit 0 when done, 1 when refused (the reason is printed) or the guardian cannot be reached.`,
  explain: EXPLAIN_USAGE,
  metrics: `Usage: keeldns metrics [--json] [-p PIDFILE | --control PATH]

Prints the running server's statistics in Prometheus's text format (what the admin listener's
/metrics serves): queries by type, reason and rcode, request-duration histograms, cache, upstream
health and latency, listener counters; kept across restarts. With --json, the dashboard's
snapshot instead: the same counts, per-10-s and per-5-min series, top names, clients and blocked
names. Asks the running guardian over its control socket (as for status); it forwards to the child.`,
  control: `Usage: keeldns status|reload|restart|stop [-p PIDFILE | --control PATH]

Talks to the running guardian over its control socket (default: beside the pid file given with
-p, else /run/keeldns.sock). Exit 0 when the guardian did it, 1 when it refused (the reason is
printed) or cannot be reached.`,
};

/** What kind of build is running: compiled executable, runtime (bundle + Deno runtime), or source. */
function buildKind(): string {
  if (Deno.build.standalone) return "compiled";
  return Deno.mainModule.endsWith(".ts") ? "source" : "runtime";
}

/** Exit code for bad command-line arguments (EX_USAGE). */
const EXIT_USAGE = 64;

function fail(message: string, code = EXIT_USAGE): number {
  console.error(`keeldns: ${message}`);
  return code;
}

async function commandRun(args: string[], child: boolean): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string", short: "c" },
      "pid-file": { type: "string", short: "p" },
      control: { type: "string" },
      "no-guardian": { type: "boolean" },
      verbose: { type: "boolean", short: "v" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return console.log(USAGE.run), 0;
  const options = { configPath: values.config, verbose: values.verbose ?? false };
  if (child || values["no-guardian"]) {
    const { runChild } = await import("./child.ts");
    return await runChild({ ...options, guarded: child });
  }
  const { runGuardian } = await import("./guardian.ts");
  return await runGuardian({ ...options, pidFile: values["pid-file"], controlPath: values.control });
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
    const at = (p: { file: string; line: number; col: number }) => `${p.file}:${p.line}:${p.col}`;
    for (const w of config.warnings) console.log(`${at(w.source)}: warning: ${w.message}`);
    for (const u of config.unsupported) {
      console.log(`${at(u.source)}: not supported yet: ${u.name}${u.reason ? ` (${u.reason})` : ""}`);
    }
    const lists = checkLists(config);
    for (const p of lists.problems) console.log(`${p.line > 0 ? at(p) : p.file}: warning: ${p.reason}`);
    const user = config.guardian.user;
    if (user !== undefined) {
      try {
        lookupUser(user);
      } catch (e) {
        console.log(
          `${config.path}: warning: ${(e as Error).message} on this machine; start-up will refuse it`,
        );
      }
    }
    console.log(
      `${config.path}: OK (${config.format}; ${config.server.binds.length} listeners, ` +
        `${config.upstreams.length} upstream servers, cache ${config.cache.size}, ` +
        `${config.rules.domainRules.length} domain rules, ${lists.domains} domains in lists)`,
    );
    return 0;
  } catch (e) {
    console.error(e instanceof ConfigError ? e.message : `keeldns: ${String(e)}`);
    return 1;
  }
}

function commandConvert(args: string[]): number {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      config: { type: "string", short: "c" },
      output: { type: "string", short: "o" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return console.log(USAGE.convert), 0;
  const files = [...(values.config ? [values.config] : []), ...positionals];
  if (files.length !== 1) return fail(`convert needs one FILE\n\n${USAGE.convert}`);
  // Absolute, so the paths the file names relative to itself come out absolute.
  const path = files[0].startsWith("/") ? files[0] : `${Deno.cwd()}/${files[0]}`.replace(/\/\.\//g, "/");
  try {
    const sources: Record<string, string> = {};
    const read = (p: string) => (sources[p] = Deno.readTextFileSync(p));
    let text: string;
    try {
      text = read(path);
    } catch (e) {
      throw new ConfigError(`cannot read the configuration file: ${readFailure(e)}`, {
        file: path,
        line: 0,
        col: 0,
      });
    }
    const config = detectFormat(text, path) === "toml"
      ? parseTomlConfig(text, path)
      : parseSmartdnsConf(text, path, read);
    const toml = convertToToml(config, sources);
    const out = values.output ?? "<converted>";
    parseTomlConfig(toml, out.startsWith("/") || out.startsWith("<") ? out : `${Deno.cwd()}/${out}`);
    if (values.output) {
      Deno.writeTextFileSync(values.output, toml);
      const notYet = toml.split("\n").filter((l) => l.startsWith("# not supported")).length;
      console.error(
        `keeldns convert: wrote ${values.output}${
          notYet ? ` (${notYet} "not supported" notes kept as comments)` : ""
        }`,
      );
    } else {
      Deno.stdout.writeSync(new TextEncoder().encode(toml));
    }
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
      "pid-file": { type: "string", short: "p" },
      control: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return console.log(USAGE.health), 0;
  const { HealthExit, probe } = await import("./ops/health_probe.ts");
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
  if (result.exitCode !== HealthExit.OK) {
    const why = await guardianSays(resolveControlPath(values.control, values["pid-file"]));
    console.error(`keeldns health: ${result.message}${why}`);
  } else if (!values.quiet) console.log(result.message);
  return result.exitCode;
}

/** What the guardian says about its child, as "; guardian: …", or "" if it cannot be asked. */
async function guardianSays(path: string | undefined): Promise<string> {
  if (!path) return "";
  const reply = await sendControl(path, "status", 1000).catch(() => null);
  const status = reply?.status as { state?: string; lastCrash?: { reason: string } | null } | undefined;
  if (!status) return "";
  return `; guardian: ${status.state}` +
    (status.lastCrash ? `, last child exit: ${status.lastCrash.reason}` : "");
}

async function commandControl(command: ControlCommand, args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      "pid-file": { type: "string", short: "p" },
      control: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return console.log(USAGE.control), 0;
  const path = resolveControlPath(values.control, values["pid-file"]) ?? DEFAULT_CONTROL_PATH;
  let reply;
  try {
    reply = await sendControl(path, command, 60_000);
  } catch (e) {
    console.error(`keeldns ${command}: no guardian answers on ${path}: ${(e as Error).message}`);
    return 1;
  }
  if (!reply.ok) {
    console.error(`keeldns ${command}: ${reply.error}`);
    return 1;
  }
  if (reply.status) {
    for (const [key, value] of Object.entries(reply.status)) {
      if (key === "upstreams" && Array.isArray(value)) {
        for (const u of value as UpstreamHealthReport[]) console.log(upstreamLine(u));
        continue;
      }
      console.log(`${key}: ${typeof value === "object" && value !== null ? JSON.stringify(value) : value}`);
    }
  } else {
    console.log(`keeldns ${command}: done`);
  }
  return 0;
}

async function commandCache(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      "pid-file": { type: "string", short: "p" },
      control: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return console.log(USAGE.cache), 0;
  const [action, pattern, ...extra] = positionals;
  const most = action === "stats" ? 0 : 1;
  if (!["list", "flush", "stats"].includes(action) || extra.length + (pattern === undefined ? 0 : 1) > most) {
    return fail(`cache: expected list [PATTERN], flush [NAME] or stats\n\n${USAGE.cache}`);
  }
  const path = resolveControlPath(values.control, values["pid-file"]) ?? DEFAULT_CONTROL_PATH;
  let reply;
  try {
    reply = await sendControl(path, "cache", 60_000, positionals);
  } catch (e) {
    console.error(`keeldns cache: no guardian answers on ${path}: ${(e as Error).message}`);
    return 1;
  }
  if (!reply.ok) {
    console.error(`keeldns cache ${action}: ${reply.error}`);
    return 1;
  }
  const result = reply.cache ?? {};
  if (action === "stats") {
    for (const [key, value] of Object.entries(result)) console.log(`${key}: ${value}`);
  } else if (action === "flush") {
    console.log(`keeldns cache flush: ${result.removed} entries removed (${pattern ?? "all"})`);
  } else {
    const { entries, more } = result as unknown as CacheList;
    for (const e of entries) {
      console.log(`${e.name} ${e.type} ttl ${e.ttl} group ${e.group}${e.dnssecOk ? " dnssec" : ""}`);
    }
    if (more > 0) console.log(`… and ${more} more (narrow with a PATTERN)`);
    if (entries.length === 0) console.log(`no cached entries${pattern ? ` match ${pattern}` : ""}`);
  }
  return 0;
}

async function commandMetrics(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      json: { type: "boolean" },
      "pid-file": { type: "string", short: "p" },
      control: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return console.log(USAGE.metrics), 0;
  const path = resolveControlPath(values.control, values["pid-file"]) ?? DEFAULT_CONTROL_PATH;
  let reply;
  try {
    reply = await sendControl(path, "metrics", 60_000, [values.json ? "json" : "text"]);
  } catch (e) {
    console.error(`keeldns metrics: no guardian answers on ${path}: ${(e as Error).message}`);
    return 1;
  }
  if (!reply.ok) {
    console.error(`keeldns metrics: ${reply.error}`);
    return 1;
  }
  if (values.json) console.log(JSON.stringify(reply.metrics?.snapshot ?? {}));
  else console.log(String(reply.metrics?.text ?? "").replace(/\n$/, ""));
  return 0;
}

/** One server's health in `keeldns status`: `upstream ADDRESS: up, rtt p50 … ms, p95 … ms, …`. */
function upstreamLine(u: UpstreamHealthReport): string {
  return `upstream ${u.address}: ${u.state}${u.fallback ? " (fallback)" : ""}, ` +
    `rtt p50 ${u.rttP50Ms} ms, p95 ${u.rttP95Ms} ms (${u.samples} samples), timeout ${u.timeoutMs} ms, ` +
    `${u.answers} answers, ${u.failures} failures (${u.consecutiveFailures} in a row), ${u.probes} probes`;
}

function commandVersion(args: string[]): number {
  if (args.includes("--help") || args.includes("-h")) return console.log(USAGE.version), 0;
  console.log(`keeldns ${VERSION} (deno ${Deno.version.deno}, ${Deno.build.target}, ${buildKind()} build)`);
  console.log(`runs on the ${loaderInUse()}`);
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
      case "convert":
        return commandConvert(tail);
      case "status":
      case "reload":
      case "restart":
      case "stop":
        return await commandControl(first, tail);
      case "cache":
        return await commandCache(tail);
      case "explain":
        return await commandExplain(tail);
      case "admin-password":
        return await (await import("./ops/admin_password_command.ts")).commandAdminPassword(tail);
      case "metrics":
        return await commandMetrics(tail);
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
      const usage = first !== "cache" && first !== "explain" && first !== "metrics" &&
          CONTROL_COMMANDS.includes(first as ControlCommand)
        ? USAGE.control
        : USAGE[first ?? "run"];
      return fail(`${e.message}\n\n${usage ?? USAGE.main}`);
    }
    throw e;
  }
}

if (import.meta.main) {
  setupLogging({ level: "info", size: 0, num: 0 }, false);
  Deno.exit(await main(Deno.args));
}
