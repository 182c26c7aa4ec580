/**
 * Dropping root through libc via Deno FFI: `setgroups`/`setresgid`/`setresuid`, and which Linux
 * capabilities survive it (`prctl(PR_SET_KEEPCAPS)`, `capset`, the bounding set, ambient
 * capabilities for the processes started afterwards), then a check that it took effect. Linux on
 * x86_64 and aarch64 with glibc only (the runtimes Deno ships; the packages bring their glibc);
 * anything else refuses, since going on as root when `user` asked otherwise is not an option.
 *
 * Capabilities belong to threads, not processes, and Deno runs several. Two facts make the drop
 * whole anyway: glibc's set*id functions change the ids of every thread (it signals each one to
 * make the same system call), and a thread whose ids all leave 0 loses all its capabilities unless
 * it set PR_SET_KEEPCAPS itself. Only the calling thread (the JavaScript thread, where FFI calls,
 * binds and process spawns run) sets it, so only that thread keeps what {@link DropPlan} names;
 * every other thread ends with none. A process that starts already unprivileged, with ambient
 * capabilities, cannot do that: {@link shedCapabilities} lowers the calling thread's sets, and
 * threads the runtime started before (V8's workers) keep what the process started with.
 *
 * @example
 * ```ts
 * dropPrivileges(lookupUser("nobody"), { keep: ["CAP_NET_BIND_SERVICE"], effective: [], passOn: true });
 * ```
 *
 * @module
 */
import type { UserAccount } from "./user_database.ts";

/** The capabilities keeldns may keep, by their kernel numbers (linux/capability.h). */
export const CAPABILITIES = {
  CAP_SETPCAP: 8,
  CAP_NET_BIND_SERVICE: 10,
  CAP_NET_ADMIN: 12,
  CAP_NET_RAW: 13,
} as const;

/** A capability's name. */
export type Capability = keyof typeof CAPABILITIES;

/** What survives the drop. */
export interface DropPlan {
  /** Kept in the permitted set (and in the bounding set; everything else leaves both). */
  readonly keep: readonly Capability[];
  /** Of those, the ones raised in the effective set (usable right now). */
  readonly effective: readonly Capability[];
  /**
   * Also raise `keep` in the inheritable and ambient sets, so processes this one starts (the
   * child) begin with them in their permitted and effective sets, as the user.
   */
  readonly passOn: boolean;
}

/** One thread's capability sets, as bit masks. */
export interface CapabilitySets {
  readonly effective: bigint;
  readonly permitted: bigint;
  readonly inheritable: bigint;
  readonly ambient: bigint;
}

/** The drop could not be done, or did not take effect. */
export class PrivilegeDropError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PrivilegeDropError";
  }
}

/** The mask of a list of capabilities. */
export function capabilityMask(caps: readonly Capability[]): bigint {
  return caps.reduce((m, c) => m | (1n << BigInt(CAPABILITIES[c])), 0n);
}

/** The names of a mask's bits (numbers for capabilities keeldns has no name for). */
export function capabilityNames(mask: bigint): string[] {
  const names: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if (!(mask & (1n << BigInt(bit)))) continue;
    const name = Object.entries(CAPABILITIES).find(([, n]) => n === bit)?.[0];
    names.push(name ?? `cap ${bit}`);
  }
  return names;
}

/** Reads the Uid:, Gid:, Groups: and Cap*: lines of a /proc/PID/status text. */
export function parseProcStatus(text: string): {
  uids: number[];
  gids: number[];
  groups: number[];
  caps: CapabilitySets;
} {
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, "m").exec(text)?.[1].trim() ?? "";
  const numbers = (name: string) => field(name).split(/\s+/).filter(Boolean).map(Number);
  const mask = (name: string) => BigInt(`0x${field(name) || "0"}`);
  return {
    uids: numbers("Uid"),
    gids: numbers("Gid"),
    groups: numbers("Groups"),
    caps: {
      effective: mask("CapEff"),
      permitted: mask("CapPrm"),
      inheritable: mask("CapInh"),
      ambient: mask("CapAmb"),
    },
  };
}

/** prctl options (linux/prctl.h). */
const PR_SET_KEEPCAPS = 8;
const PR_CAPBSET_DROP = 24;
const PR_SET_NO_NEW_PRIVS = 38;
const PR_CAP_AMBIENT = 47;
const PR_CAP_AMBIENT_RAISE = 2;
const PR_CAP_AMBIENT_CLEAR_ALL = 4;
/** _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set. */
const CAPABILITY_VERSION_3 = 0x20080522;

const SYMBOLS = {
  getuid: { parameters: [], result: "u32" },
  geteuid: { parameters: [], result: "u32" },
  getresuid: { parameters: ["buffer", "buffer", "buffer"], result: "i32" },
  getresgid: { parameters: ["buffer", "buffer", "buffer"], result: "i32" },
  getgroups: { parameters: ["i32", "buffer"], result: "i32" },
  setgroups: { parameters: ["usize", "buffer"], result: "i32" },
  setresgid: { parameters: ["u32", "u32", "u32"], result: "i32" },
  setresuid: { parameters: ["u32", "u32", "u32"], result: "i32" },
  // prctl is variadic; on the LP64 Linux ABIs integer arguments pass as for a fixed signature.
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  capget: { parameters: ["buffer", "buffer"], result: "i32" },
  capset: { parameters: ["buffer", "buffer"], result: "i32" },
  lchown: { parameters: ["buffer", "u32", "u32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let libc: Libc | undefined;

/**
 * Loads the libc calls once. Throws {@link PrivilegeDropError} off Linux x86_64/aarch64, without
 * `--allow-ffi`, or if libc.so.6 (glibc) cannot be opened.
 */
function load(): Libc {
  if (libc) return libc;
  if (Deno.build.os !== "linux" || !["x86_64", "aarch64"].includes(Deno.build.arch)) {
    throw new PrivilegeDropError(
      `switching users needs Linux on x86_64 or aarch64, not ${Deno.build.os}/${Deno.build.arch}`,
    );
  }
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    throw new PrivilegeDropError("switching users needs --allow-ffi (the calls go through libc)");
  }
  try {
    libc = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  } catch (e) {
    throw new PrivilegeDropError(`switching users needs glibc's libc.so.6: ${(e as Error).message}`);
  }
  return libc;
}

/** The text of the calling thread's errno, right after a failed call. */
function lastError(lib: Libc): string {
  const p = lib.__errno_location();
  const errno = p ? new Deno.UnsafePointerView(p).getInt32() : 0;
  const text = lib.strerror(errno);
  return text ? new Deno.UnsafePointerView(text).getCString() : `errno ${errno}`;
}

/** Throws {@link PrivilegeDropError} naming `what` when a libc call returned -1. */
function check(lib: Libc, result: number, what: string): void {
  if (result === -1) throw new PrivilegeDropError(`${what} failed: ${lastError(lib)}`);
}

function capHeader(): Uint8Array<ArrayBuffer> {
  const header = new Uint8Array(8);
  new DataView(header.buffer).setUint32(0, CAPABILITY_VERSION_3, true); // pid 0: this thread
  return header;
}

/** The calling thread's capability sets (the ambient one from /proc/thread-self/status). */
export function threadCapabilities(): CapabilitySets {
  const lib = load();
  const data = new Uint8Array(24);
  check(lib, lib.capget(capHeader(), data), "capget");
  const v = new DataView(data.buffer);
  const word = (offset: number) =>
    BigInt(v.getUint32(offset, true)) | BigInt(v.getUint32(offset + 12, true)) << 32n;
  let ambient = 0n;
  try {
    ambient = parseProcStatus(Deno.readTextFileSync("/proc/thread-self/status")).caps.ambient;
  } catch {
    // no /proc: ambient unknown, taken as empty
  }
  return { effective: word(0), permitted: word(4), inheritable: word(8), ambient };
}

/** Sets the calling thread's effective, permitted and inheritable sets. */
function setCapabilities(lib: Libc, effective: bigint, permitted: bigint, inheritable: bigint): void {
  const data = new Uint8Array(24);
  const v = new DataView(data.buffer);
  [effective, permitted, inheritable].forEach((mask, i) => {
    v.setUint32(i * 4, Number(mask & 0xffff_ffffn), true);
    v.setUint32(12 + i * 4, Number(mask >> 32n), true);
  });
  check(lib, lib.capset(capHeader(), data), "capset");
}

/** The real, effective and saved ids from getresuid/getresgid. */
function ids(lib: Libc, which: "uid" | "gid"): number[] {
  const bufs = [new Uint8Array(4), new Uint8Array(4), new Uint8Array(4)];
  const call = which === "uid" ? lib.getresuid : lib.getresgid;
  check(lib, call(bufs[0], bufs[1], bufs[2]), `getres${which}`);
  return bufs.map((b) => new DataView(b.buffer).getUint32(0, true));
}

/** The supplementary groups. */
function groups(lib: Libc): number[] {
  const buf = new Uint8Array(4 * 1024);
  const n = lib.getgroups(1024, buf);
  check(lib, n, "getgroups");
  const v = new DataView(buf.buffer);
  return Array.from({ length: n }, (_, i) => v.getUint32(i * 4, true));
}

/** Whether this process runs as root (effective uid 0). Throws where the calls are unavailable. */
export function runningAsRoot(): boolean {
  return load().geteuid() === 0;
}

/** The highest capability number the kernel knows. */
function lastCapability(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/sys/kernel/cap_last_cap").trim());
  } catch {
    return 40;
  }
}

/**
 * Verifies ids, groups and the calling thread's capability sets against what was asked; throws
 * {@link PrivilegeDropError} naming the first difference.
 */
function verify(lib: Libc, account: UserAccount, want: CapabilitySets, checkAmbient: boolean): void {
  const uids = ids(lib, "uid");
  const gids = ids(lib, "gid");
  if (uids.some((u) => u !== account.uid)) {
    throw new PrivilegeDropError(`uids are ${uids.join("/")} after the drop, not ${account.uid}`);
  }
  if (gids.some((g) => g !== account.gid)) {
    throw new PrivilegeDropError(`gids are ${gids.join("/")} after the drop, not ${account.gid}`);
  }
  const have = new Set(groups(lib));
  const extra = [...have].filter((g) => !account.groups.includes(g));
  if (extra.length) throw new PrivilegeDropError(`still in groups ${extra.join(", ")} after the drop`);
  const caps = threadCapabilities();
  const sets: (keyof CapabilitySets)[] = ["effective", "permitted", "inheritable"];
  if (checkAmbient) sets.push("ambient");
  for (const set of sets) {
    if (caps[set] !== want[set]) {
      throw new PrivilegeDropError(
        `the ${set} capabilities are [${capabilityNames(caps[set]).join(", ")}] after the drop, ` +
          `not [${capabilityNames(want[set]).join(", ")}]`,
      );
    }
  }
  if (account.uid !== 0 && lib.setresuid(0, 0, 0) === 0) {
    throw new PrivilegeDropError("root could be regained after the drop");
  }
}

/**
 * Drops root for good: bounding set reduced to `plan.keep`, no new privileges (set-uid programs
 * and file capabilities stay powerless), the user's groups, gid and uid (real, effective and
 * saved, on every thread), then `plan.keep` permitted, `plan.effective` effective, and with
 * `plan.passOn` inherited by started processes. Must run as root; throws
 * {@link PrivilegeDropError} if any step fails or the result is not exactly that.
 */
export function dropPrivileges(account: UserAccount, plan: DropPlan): void {
  const lib = load();
  if (lib.geteuid() !== 0) {
    throw new PrivilegeDropError(
      `switching to user ${account.name} needs root; running as uid ${lib.geteuid()}`,
    );
  }
  const keep = capabilityMask(plan.keep);
  const effective = capabilityMask(plan.effective) & keep;
  const last = lastCapability();
  for (let cap = 0; cap <= last; cap++) {
    if (keep & (1n << BigInt(cap))) continue;
    check(
      lib,
      lib.prctl(PR_CAPBSET_DROP, BigInt(cap), 0n, 0n, 0n),
      `dropping capability ${cap} from the bounding set`,
    );
  }
  check(lib, lib.prctl(PR_SET_NO_NEW_PRIVS, 1n, 0n, 0n, 0n), "prctl(PR_SET_NO_NEW_PRIVS)");
  check(lib, lib.prctl(PR_SET_KEEPCAPS, keep ? 1n : 0n, 0n, 0n, 0n), "prctl(PR_SET_KEEPCAPS)");
  const list = new Uint8Array(4 * account.groups.length);
  account.groups.forEach((g, i) => new DataView(list.buffer).setUint32(i * 4, g, true));
  check(lib, lib.setgroups(BigInt(account.groups.length), list), `setgroups(${account.groups.join(", ")})`);
  check(lib, lib.setresgid(account.gid, account.gid, account.gid), `setresgid(${account.gid})`);
  check(lib, lib.setresuid(account.uid, account.uid, account.uid), `setresuid(${account.uid})`);
  check(lib, lib.prctl(PR_SET_KEEPCAPS, 0n, 0n, 0n, 0n), "prctl(PR_SET_KEEPCAPS, 0)");
  const inheritable = plan.passOn ? keep : 0n;
  setCapabilities(lib, effective, keep, inheritable);
  if (plan.passOn) {
    for (const cap of plan.keep) {
      check(
        lib,
        lib.prctl(PR_CAP_AMBIENT, BigInt(PR_CAP_AMBIENT_RAISE), BigInt(CAPABILITIES[cap]), 0n, 0n),
        `raising ${cap} in the ambient set`,
      );
    }
  }
  verify(lib, account, { effective, permitted: keep, inheritable, ambient: inheritable }, true);
}

/**
 * For a process that already runs as `account` (started by a guardian that dropped root, or by
 * systemd as that user): lowers the calling thread's capabilities to `keep` (those it has) and
 * clears its inheritable and ambient sets. Returns what it had to go without: capabilities in
 * `keep` the process never had. Throws {@link PrivilegeDropError} if it runs as another user or
 * the result is not that.
 */
export function shedCapabilities(account: UserAccount, keep: readonly Capability[]): Capability[] {
  const lib = load();
  const uids = ids(lib, "uid");
  if (uids.some((u) => u !== account.uid)) {
    throw new PrivilegeDropError(
      `cannot switch to user ${account.name} (uid ${account.uid}): running as uid ${
        uids.join("/")
      }, not root`,
    );
  }
  const had = threadCapabilities().permitted;
  const wanted = capabilityMask(keep);
  const kept = wanted & had;
  check(
    lib,
    lib.prctl(PR_CAP_AMBIENT, BigInt(PR_CAP_AMBIENT_CLEAR_ALL), 0n, 0n, 0n),
    "clearing the ambient set",
  );
  setCapabilities(lib, kept, kept, 0n);
  verify(lib, { ...account, groups: [...new Set([...account.groups, ...groups(lib)])] }, {
    effective: kept,
    permitted: kept,
    inheritable: 0n,
    ambient: 0n,
  }, true);
  return keep.filter((c) => !(had & capabilityMask([c])));
}

/**
 * Changes the owner of `path` itself (never what a symbolic link points to) to `account`.
 * Throws {@link PrivilegeDropError} on failure.
 */
export function lchown(path: string, account: UserAccount): void {
  const lib = load();
  const bytes = new TextEncoder().encode(path + "\0");
  check(lib, lib.lchown(bytes, account.uid, account.gid), `chown ${path} to ${account.name}`);
}
