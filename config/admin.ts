/**
 * The admin listener's settings as both formats give them: TOML `[admin]` and SmartDNS's
 * dashboard plugin lines (`smartdns-ui.ip`, `smartdns-ui.user`, …), read into one
 * {@link AdminConfig}.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";
import type { AdminConfig, SourcePosition } from "./schema.ts";

/** SmartDNS's dashboard port, and keeldns's. */
export const DEFAULT_ADMIN_PORT = 6080;
/** Where the admin listener binds when on and not told otherwise: loopback only. */
export const DEFAULT_ADMIN_HOST = "127.0.0.1";
/** Seconds a login lasts unless configured. */
export const DEFAULT_SESSION_SECONDS = 3600;

/** The keys of TOML `[admin]`. */
export const ADMIN_TOML_KEYS: readonly string[] = [
  "listen",
  "user",
  "password-hash",
  "metrics-token",
  "session-expire",
  "query-log-age",
  "cert-file",
  "key-file",
];

/**
 * Reads a listen address: `HOST:PORT`, `[V6]:PORT`, `HOST` (port 6080), or any of those after
 * `http://` or `https://` (SmartDNS's `smartdns-ui.ip http://[::]:6080`). Throws on anything else.
 */
export function parseAdminListen(text: string): { host: string; port: number; https: boolean } {
  const m =
    /^(?:(https?):\/\/)?(?:\[([0-9a-fA-F:.]+)\]|([^:/\[\]]+)|([0-9a-fA-F:]*:[0-9a-fA-F:]*))(?::(\d+))?\/?$/
      .exec(text.trim());
  // A bare IPv6 address has no port (its colons are its own).
  const bare6 = m?.[4];
  if (!m || (bare6 !== undefined && m[5] !== undefined)) {
    throw new Error(`"${text}" is not an admin listen address (HOST:PORT, [IPv6]:PORT, http:// or https://)`);
  }
  const host = m[2] ?? m[3] ?? bare6!;
  const port = m[5] === undefined ? DEFAULT_ADMIN_PORT : Number(m[5]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`port ${m[5]} is out of range`);
  return { host, port, https: m[1] === "https" };
}

/** Whether `host` is a loopback address (what may be served without a metrics token). */
export function isLoopbackHost(host: string): boolean {
  return /^127\./.test(host) || host === "::1" || host === "localhost";
}

/** What a smartdns.conf gave about the dashboard, gathered line by line. */
export interface AdminDraft {
  listen?: { host: string; port: number; https: boolean };
  user?: string;
  password?: string;
  sessionSeconds?: number;
  queryLogAge?: number;
  /** `plugin smartdns_ui.so`: the dashboard was asked for. */
  plugin?: boolean;
  source?: SourcePosition;
}

/**
 * The admin settings of a smartdns.conf: on when `smartdns-ui.ip` or the dashboard plugin is
 * there, bound where `smartdns-ui.ip` says, else to 127.0.0.1:6080 (loopback, unlike SmartDNS,
 * until the owner says otherwise); HTTPS uses the encrypted listeners' certificate.
 */
export function adminFromDraft(d: AdminDraft): AdminConfig | undefined {
  if (!d.listen && !d.plugin) return undefined;
  const listen = d.listen ?? { host: DEFAULT_ADMIN_HOST, port: DEFAULT_ADMIN_PORT, https: false };
  return {
    ...listen,
    user: d.user ?? "admin",
    ...(d.password !== undefined ? { password: d.password } : {}),
    sessionSeconds: d.sessionSeconds ?? DEFAULT_SESSION_SECONDS,
    queryLogAge: d.queryLogAge ?? 0,
    ...(d.source ? { source: d.source } : {}),
  };
}

/** PBKDF2-SHA256 rounds of a new password hash (about 0.1 s on a router; the hash says its own). */
export const PASSWORD_ROUNDS = 100_000;
const HASH_FORMAT = /^pbkdf2-sha256\$(\d{1,7})\$([A-Za-z0-9+/]+=*)\$([A-Za-z0-9+/]+=*)$/;

/** A password's hash as `[admin] password-hash` takes it: `pbkdf2-sha256$ROUNDS$SALT$HASH` (base64). */
export function hashAdminPassword(password: string, rounds = PASSWORD_ROUNDS): string {
  const salt = randomBytes(16);
  const hash = pbkdf2Sync(password, salt, rounds, 32, "sha256");
  return `pbkdf2-sha256$${rounds}$${salt.toString("base64")}$${hash.toString("base64")}`;
}

/** Whether `text` is a password hash keeldns can check (else an error saying what is wrong). */
export function checkPasswordHash(text: string): void {
  const m = HASH_FORMAT.exec(text);
  if (!m || Number(m[1]) < 1000) {
    throw new Error(
      "password-hash must be pbkdf2-sha256$ROUNDS$SALT$HASH, as `keeldns admin-password` prints",
    );
  }
}

/** Whether `password` matches `hash` (constant time in the hash's bytes). */
export function verifyAdminPassword(password: string, hash: string): boolean {
  const m = HASH_FORMAT.exec(hash.trim());
  if (!m) return false;
  const want = Buffer.from(m[3], "base64");
  const got = pbkdf2Sync(password, Buffer.from(m[2], "base64"), Number(m[1]), want.length, "sha256");
  return want.length > 0 && timingSafeEqual(got, want);
}
