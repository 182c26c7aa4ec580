/**
 * The account `user NAME` names, read from `/etc/passwd` and `/etc/group` the way `getpwnam` and
 * `initgroups` read the `files` database: uid, primary gid, and every group that lists the user
 * as a member. Read directly rather than through libc's `getpwnam`: keeldns uses no NSS (the
 * bundled glibc carries no NSS modules, and OpenWrt's musl has none), and every router keeps its
 * service accounts (`nobody`, `dnsmasq`, `network`) in these two files.
 *
 * @example
 * ```ts
 * const nobody = lookupUser("nobody"); // { name: "nobody", uid: 65534, gid: 65534, groups: [65534], … }
 * ```
 *
 * @module
 */

/** An account to run as. */
export interface UserAccount {
  readonly name: string;
  readonly uid: number;
  /** The primary group. */
  readonly gid: number;
  /** The primary group first, then each group that names the user as a member (initgroups order). */
  readonly groups: readonly number[];
  /** The primary group's name, when /etc/group has it (for messages). */
  readonly groupName?: string;
}

/** The user is not in the user database, or the database cannot be read. */
export class UnknownUser extends Error {
  constructor(readonly user: string, detail: string) {
    super(`cannot run as user "${user}": ${detail}`);
    this.name = "UnknownUser";
  }
}

/** Where the two files are; injectable for tests. */
export interface UserDatabaseFiles {
  readonly passwd: string;
  readonly group: string;
}

const SYSTEM_FILES: UserDatabaseFiles = { passwd: "/etc/passwd", group: "/etc/group" };

/** A decimal id in the range Linux accepts (0 … 2^32 − 2; −1 is "no change" to setresuid). */
function id(text: string): number | undefined {
  if (!/^\d{1,10}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 0xffff_fffe ? n : undefined;
}

/**
 * Finds `name` in the texts of /etc/passwd and /etc/group. Lines that are comments, NIS `+`/`-`
 * entries or malformed are skipped, as glibc's files backend skips them. Returns undefined if
 * there is no such user.
 */
export function findUser(name: string, passwd: string, group: string): UserAccount | undefined {
  let account: { uid: number; gid: number } | undefined;
  for (const line of passwd.split("\n")) {
    const fields = line.trimEnd().split(":");
    if (fields.length < 7 || fields[0] !== name) continue;
    const uid = id(fields[2]);
    const gid = id(fields[3]);
    if (uid === undefined || gid === undefined) continue;
    account = { uid, gid };
    break;
  }
  if (!account) return undefined;
  const groups = [account.gid];
  let groupName: string | undefined;
  for (const line of group.split("\n")) {
    const fields = line.trimEnd().split(":");
    if (fields.length < 4 || fields[0].startsWith("+") || fields[0].startsWith("-")) continue;
    const gid = id(fields[2]);
    if (gid === undefined) continue;
    if (gid === account.gid) groupName ??= fields[0];
    const members = fields[3] ? fields[3].split(",").map((m) => m.trim()) : [];
    if (members.includes(name) && !groups.includes(gid)) groups.push(gid);
  }
  return { name, uid: account.uid, gid: account.gid, groups, ...(groupName ? { groupName } : {}) };
}

/** Looks `name` up in /etc/passwd and /etc/group; throws {@link UnknownUser} with a clear reason. */
export function lookupUser(name: string, files: UserDatabaseFiles = SYSTEM_FILES): UserAccount {
  if (!name || name.includes(":") || name.includes("\n")) throw new UnknownUser(name, "not a user name");
  let passwd: string;
  let group = "";
  try {
    passwd = Deno.readTextFileSync(files.passwd);
  } catch (e) {
    throw new UnknownUser(name, `${files.passwd} cannot be read (${(e as Error).message})`);
  }
  try {
    group = Deno.readTextFileSync(files.group);
  } catch {
    // no /etc/group: the primary group alone
  }
  const account = findUser(name, passwd, group);
  if (!account) {
    throw new UnknownUser(name, `there is no such user in ${files.passwd} (create it, or name another one)`);
  }
  return account;
}
