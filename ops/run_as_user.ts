/**
 * Running as the configured `user` (SmartDNS `user NAME`, keeldns.toml `[guardian] user`): which
 * capabilities each process keeps, and the files the unprivileged processes must still be able to
 * write, prepared by the guardian while it is root. The system calls are in ops/privileges.ts.
 *
 * Who drops when:
 * - The guardian (started as root) resolves the user, opens its control socket and writes the pid
 *   file, prepares the files below, binds the UDP listener sockets it holds for its children
 *   (guardian/held_sockets.ts), then drops to the user before it starts any child. It keeps
 *   `CAP_NET_BIND_SERVICE` (plus what the configuration needs) in its permitted, inheritable and
 *   ambient sets but none effective: it binds nothing more itself, it only hands the capability
 *   on (a UDP listener a planned restart adds on a port below 1024 is bound by the child).
 * - Every child (first start, crash restart, planned restart) therefore starts as the user, with
 *   those capabilities from the ambient set. It binds its listeners — port 53, also beside an old
 *   child in a planned restart, where SO_REUSEADDR/SO_REUSEPORT do not waive the port check — then,
 *   in the same turn and before it serves, lowers its sets to what the configuration needs
 *   (`CAP_NET_ADMIN` for nftset rules; nothing otherwise).
 * - Under `--no-guardian` the one process starts as root, binds, and drops straight to the child's
 *   set.
 *
 * Why not keep the guardian root so it can start root children: the guardian reads what the child
 * writes on its pipes, so a child taken over would be one parse away from root; a guardian left
 * with one capability it does not even hold effective is worth little to anyone.
 *
 * @module
 */
import { type Config, speedCheckLists } from "../config/schema.ts";
import { type Capability, type DropPlan, lchown } from "./privileges.ts";
import type { UserAccount } from "./user_database.ts";

/**
 * The capabilities the configuration needs once serving: `CAP_NET_ADMIN` when a domain rule adds
 * answer addresses to an nftables set (`nftset`, `ipset`), `CAP_NET_RAW` when the speed check
 * pings (a raw ICMP socket, for systems whose `net.ipv4.ping_group_range` leaves the user out),
 * none otherwise.
 */
export function capabilitiesFor(config: Config): Capability[] {
  const caps: Capability[] = [];
  const setRule = config.rules.domainRules.some((r) =>
    (r.nftset?.v4 && r.nftset.v4 !== "-") || (r.nftset?.v6 && r.nftset.v6 !== "-")
  );
  if (setRule) caps.push("CAP_NET_ADMIN");
  const { modeLists } = speedCheckLists(config);
  if (modeLists.some((modes) => modes.some((m) => m.kind === "ping"))) caps.push("CAP_NET_RAW");
  return caps;
}

/** The guardian's drop: it keeps what its children need to bind and serve, none of it effective. */
export function guardianPlan(config: Config): DropPlan {
  return { keep: ["CAP_NET_BIND_SERVICE", ...capabilitiesFor(config)], effective: [], passOn: true };
}

/** A serving process's drop, once its listeners are bound. */
export function childPlan(config: Config): DropPlan {
  const caps = capabilitiesFor(config);
  return { keep: caps, effective: caps, passOn: false };
}

/** Whether `account` may create and rename files in the directory `info` describes. */
export function writableBy(info: Deno.FileInfo, account: UserAccount): boolean {
  const mode = info.mode ?? 0;
  if (account.uid === 0) return true;
  if (info.uid === account.uid) return (mode & 0o300) === 0o300;
  if (info.gid !== null && account.groups.includes(info.gid)) return (mode & 0o030) === 0o030;
  return (mode & 0o003) === 0o003;
}

/** The directory part of a path ("." for a bare name). */
function dirOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
}

/**
 * Makes `dir` usable by `account`: a missing directory is created (with its missing parents),
 * mode 0750 and owned by the account; an existing one is left alone. Returns whether the account
 * can write it.
 */
export function prepareDirectory(dir: string, account: UserAccount): boolean {
  const missing: string[] = [];
  for (let d = dir; d !== "/" && d !== "."; d = dirOf(d)) {
    try {
      Deno.statSync(d);
      break;
    } catch {
      missing.unshift(d);
    }
  }
  for (const d of missing) {
    Deno.mkdirSync(d, { mode: 0o750 });
    lchown(d, account);
  }
  try {
    return writableBy(Deno.statSync(dir), account);
  } catch {
    return false;
  }
}

/**
 * Hands an existing regular file root left behind (a cache file saved by a root keeldns, a log
 * file) to `account`, so the unprivileged child can read and write it. Symbolic links, files with
 * more than one name, and files someone else owns are left alone.
 */
export function handOverFile(path: string, account: UserAccount): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch {
    return; // not there yet: the child creates it
  }
  if (!info.isFile || info.nlink !== 1 || info.uid !== 0) return;
  lchown(path, account);
}

/** What the guardian prepared: warnings to log, and where scratch files can go. */
export interface PreparedFiles {
  readonly warnings: string[];
  /** Whether the account can write the pid file's directory (crash reports, hand-over file). */
  readonly workDirWritable: boolean;
}

/**
 * Prepares, as root, what the unprivileged guardian and children write: the pid file's directory
 * (crash reports, the planned-restart hand-over file, the last good configuration copy, and
 * removing the pid file and control socket at stop), the cache file's directory (saved atomically:
 * a temporary file renamed over it) and the log file (appended; rotated by renaming in its
 * directory). Missing directories are created for the account; existing ones are never given
 * away (a log in /var/log must not hand /var/log to the user): what cannot work there is
 * returned as a warning. The pid file stays root's (nothing writes it after the start).
 */
export function prepareFiles(
  account: UserAccount,
  config: Config,
  paths: { readonly pidFile?: string },
): PreparedFiles {
  const warnings: string[] = [];
  const who = `user ${account.name}`;
  let workDirWritable = true;
  if (paths.pidFile) {
    const dir = dirOf(paths.pidFile);
    workDirWritable = prepareDirectory(dir, account);
    if (!workDirWritable) {
      warnings.push(
        `${dir} is not writable by ${who}: crash reports are not written, and the pid file and control ` +
          `socket stay there after a stop; give keeldns a directory of its own (e.g. -p /run/keeldns/keeldns.pid, ` +
          `created for ${account.name} when missing)`,
      );
    }
  }
  // The cache file's directory is also where the child makes the encrypted listeners' certificate
  // when none is configured (server/self_signed_cert.ts).
  const { binds, certFile, keyFile, keyPass } = config.server;
  const ownCertificate =
    binds.some((b) => b.transport === "tls" || b.transport === "https" || b.transport === "quic") &&
    certFile === undefined && keyFile === undefined && keyPass === undefined;
  if ((config.cache.persist || ownCertificate) && config.cache.file) {
    const dir = dirOf(config.cache.file);
    if (!prepareDirectory(dir, account)) {
      warnings.push(
        `${dir} is not writable by ${who}: ` +
          (config.cache.persist ? `the cache cannot be saved to ${config.cache.file}` : "") +
          (config.cache.persist && ownCertificate ? " and " : "") +
          (ownCertificate ? "the encrypted listeners' certificate cannot be made there" : "") +
          `; give it a directory of its own (e.g. /var/cache/keeldns/, created when missing)`,
      );
    }
    if (config.cache.persist) handOverFile(config.cache.file, account);
  }
  if (config.log.file && config.log.num > 0) {
    const file = config.log.file;
    if (!prepareDirectory(dirOf(file), account)) {
      // The file itself can still be appended to if root creates it for the user.
      try {
        Deno.writeFileSync(file, new Uint8Array(), { append: true, create: true, mode: 0o640 });
      } catch {
        // reported below
      }
      warnings.push(
        `${dirOf(file)} is not writable by ${who}: ${file} is written but cannot be rotated; ` +
          `give the log a directory of its own (e.g. /var/log/keeldns/keeldns.log)`,
      );
    }
    handOverFile(file, account);
  }
  return { warnings, workDirWritable };
}

/**
 * Hands the control socket (created by root) to `account`, so the guardian's user — and root —
 * can use `keeldns status|reload|restart|stop`, as without `user`.
 */
export function handOverControlSocket(path: string, account: UserAccount): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch {
    return;
  }
  if (info.isSocket && info.uid === 0) lchown(path, account);
}
