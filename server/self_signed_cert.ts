/**
 * The certificate the encrypted listeners present when none is configured (no `bind-cert-file`
 * and `bind-cert-key-file`), as SmartDNS makes one: a CA (10 years) and a server certificate it
 * signs (390 days), made once and kept in the data directory (the cache file's directory,
 * `/var/cache/keeldns` by default) under `tls/`:
 *
 * - `ca.pem`: the CA certificate, to be installed as trusted on the clients;
 * - `ca.key`: its private key (mode 0600), kept to sign the next server certificate;
 * - `server.pem`: the server's private key, its certificate and the CA's (mode 0600).
 *
 * Keys are ECDSA P-256, signatures ECDSA-SHA256, made with WebCrypto (net/x509_writer.ts; no
 * openssl on a router). The server certificate names `keeldns`, `localhost`, the host name, the
 * `server-name`, and as IP addresses loopback, the listeners' own addresses and this machine's
 * private ones. On the next start the files are used again; the server certificate alone is made
 * anew, signed by the same CA (so the clients keep trusting it), when it has less than 30 days
 * left or does not name an address or name it should. Two children starting at once cannot mix
 * their files: a new set is written to a temporary directory and renamed into place (the first
 * rename wins, the other child uses its files), and `server.pem` is replaced by a rename.
 *
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../ops/log.ts";
import { ipBytes } from "../net/address.ts";
import {
  type CertificateName,
  generateKeyPair,
  importKeyPair,
  privateKeyPem,
  toPem,
  writeCertificate,
} from "../net/x509_writer.ts";
import { certificateFingerprint, type ListenerCertificate } from "./tls.ts";

/** The CA's name. */
export const CA_NAME: CertificateName = { commonName: "keeldns Root CA", organization: "keeldns" };
/** Days the CA is valid (SmartDNS: 10 years). */
export const CA_DAYS = 3650;
/** Days a server certificate is valid (SmartDNS: 13 × 30). */
export const SERVER_DAYS = 390;
/** A server certificate with fewer days left is made anew at start. */
export const RENEW_DAYS = 30;

const DAY_MS = 86400_000;

/** What the certificate should name, and where it is kept. */
export interface SelfSignedOptions {
  /** The data directory; the files go to its `tls/` subdirectory. */
  readonly dataDir: string;
  /** subjectAltName DNS names; the first is the common name. */
  readonly dnsNames: readonly string[];
  /** subjectAltName IP addresses. */
  readonly ipAddresses: readonly string[];
  /** The clock (tests). */
  readonly now?: () => Date;
}

/** The listener certificate made here, with where its files are and the CA's fingerprint. */
export interface SelfSignedCertificate extends ListenerCertificate {
  /** The `tls/` directory. */
  readonly dir: string;
  /** The CA certificate file clients trust. */
  readonly caFile: string;
  /** SHA-256 of the CA certificate. */
  readonly caFingerprint: string;
  /** What was done: "made" (CA and server), "renewed" (a new server certificate), "reused". */
  readonly action: "made" | "renewed" | "reused";
}

/** The PEM blocks labelled `label` in `pem`, in order. */
function pemBlocks(pem: string, label: string): string[] {
  const re = new RegExp(`-----BEGIN ${label}-----[A-Za-z0-9+/=\\s]+-----END ${label}-----\\n?`, "g");
  return [...pem.matchAll(re)].map((m) => m[0].endsWith("\n") ? m[0] : m[0] + "\n");
}

/** Reads a file as text, or undefined when it is not there. */
async function readIfThere(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Canonical text of an IP address (its bytes in hex), to compare spellings. */
function ipKey(ip: string): string {
  return [...ipBytes(ip)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Why the server certificate in `pem` must be made anew, or null when it will do. */
function renewalReason(server: string, caCert: string, options: SelfSignedOptions, now: Date): string | null {
  const [key] = pemBlocks(server, "PRIVATE KEY");
  const [leafPem, issuerPem] = pemBlocks(server, "CERTIFICATE");
  if (!key || !leafPem) return "server.pem has no key or no certificate";
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(leafPem);
    if (!leaf.checkPrivateKey(createPrivateKey(key))) return "the key in server.pem is not the certificate's";
    if (!leaf.verify(new X509Certificate(caCert).publicKey)) return "server.pem was not signed by ca.pem";
  } catch (e) {
    return `server.pem cannot be read (${(e as Error).message})`;
  }
  if (issuerPem?.trim() !== caCert.trim()) return "server.pem does not carry ca.pem";
  if (new Date(leaf.validTo).getTime() - now.getTime() < RENEW_DAYS * DAY_MS) {
    return `it ends ${new Date(leaf.validTo).toISOString()}`;
  }
  const names = new Set<string>();
  for (const entry of (leaf.subjectAltName ?? "").split(/,\s*/)) {
    const dns = /^DNS:(.*)$/.exec(entry);
    const ip = /^IP Address:(.*)$/.exec(entry);
    if (dns) names.add(`dns:${dns[1].toLowerCase()}`);
    else if (ip) {
      try {
        names.add(`ip:${ipKey(ip[1])}`);
      } catch { /* a form we do not read: not one we want */ }
    }
  }
  const missing = [
    ...options.dnsNames.filter((n) => !names.has(`dns:${n.toLowerCase()}`)),
    ...options.ipAddresses.filter((ip) => !names.has(`ip:${ipKey(ip)}`)),
  ];
  return missing.length ? `it does not name ${missing.join(", ")}` : null;
}

/** A new server key and certificate signed by the CA key in `caKey`: the text of server.pem. */
async function makeServer(caKey: CryptoKeyPair, caCert: string, options: SelfSignedOptions, now: Date) {
  const pair = await generateKeyPair();
  const der = await writeCertificate({
    subject: { commonName: options.dnsNames[0] ?? "keeldns" },
    issuer: CA_NAME,
    // An hour back: a client whose clock is a little behind still accepts it.
    notBefore: new Date(now.getTime() - 3600_000),
    notAfter: new Date(now.getTime() + SERVER_DAYS * DAY_MS),
    publicKey: pair.publicKey,
    signingKey: caKey.privateKey,
    issuerPublicKey: caKey.publicKey,
    ca: false,
    dnsNames: options.dnsNames,
    ipAddresses: options.ipAddresses,
  });
  return (await privateKeyPem(pair.privateKey)) + toPem("CERTIFICATE", der) + caCert;
}

/** Writes `text` to `path` with `mode` through a temporary file and a rename. */
async function writeAtomically(path: string, text: string, mode: number): Promise<void> {
  const temp = `${path}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    await Deno.writeTextFile(temp, text, { mode, createNew: true });
    await Deno.chmod(temp, mode);
    await Deno.rename(temp, path);
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    throw e;
  }
}

/** Makes a new CA and server certificate in a temporary directory and renames it to `dir`. */
async function makeAll(dir: string, options: SelfSignedOptions, now: Date): Promise<boolean> {
  const parent = dir.replace(/\/[^/]+\/?$/, "") || "/";
  const temp = await Deno.makeTempDir({ dir: parent, prefix: ".tls-" });
  try {
    const ca = await generateKeyPair();
    const caCert = toPem(
      "CERTIFICATE",
      await writeCertificate({
        subject: CA_NAME,
        notBefore: new Date(now.getTime() - 3600_000),
        notAfter: new Date(now.getTime() + CA_DAYS * DAY_MS),
        publicKey: ca.publicKey,
        signingKey: ca.privateKey,
        ca: true,
      }),
    );
    await Deno.writeTextFile(`${temp}/ca.key`, await privateKeyPem(ca.privateKey), { mode: 0o600 });
    await Deno.chmod(`${temp}/ca.key`, 0o600);
    await Deno.writeTextFile(`${temp}/ca.pem`, caCert, { mode: 0o644 });
    await Deno.chmod(`${temp}/ca.pem`, 0o644);
    await Deno.writeTextFile(`${temp}/server.pem`, await makeServer(ca, caCert, options, now), {
      mode: 0o600,
    });
    await Deno.chmod(`${temp}/server.pem`, 0o600);
    await Deno.chmod(temp, 0o755);
    try {
      await Deno.rename(temp, dir);
      return true;
    } catch (e) {
      // Another child was first (the directory is there and not empty): its files are used.
      if (await readIfThere(`${dir}/ca.pem`) !== undefined) return false;
      throw e;
    }
  } finally {
    await Deno.remove(temp, { recursive: true }).catch(() => {});
  }
}

/**
 * The self-signed listener certificate in `options.dataDir`/tls: made when missing, its server
 * certificate made anew when it is due (see the module doc), otherwise read. Throws a message that
 * says what to do when the directory cannot be written or holds something unusable.
 */
export async function selfSignedCertificate(options: SelfSignedOptions): Promise<SelfSignedCertificate> {
  const now = options.now?.() ?? new Date();
  const dir = `${options.dataDir.replace(/\/+$/, "")}/tls`;
  const where = (what: string, e: unknown) =>
    new Error(
      `${what} ${dir} for the encrypted listeners' certificate: ${(e as Error).message} ` +
        "(give keeldns a writable data directory — the cache file's — or set bind-cert-file and bind-cert-key-file)",
    );
  let action: SelfSignedCertificate["action"] = "reused";
  try {
    await Deno.mkdir(options.dataDir, { recursive: true, mode: 0o750 });
  } catch (e) {
    throw where("cannot create", e);
  }
  let caCert = await readIfThere(`${dir}/ca.pem`).catch((e) => {
    throw where("cannot read", e);
  });
  if (caCert === undefined) {
    try {
      if (await makeAll(dir, options, now)) action = "made";
    } catch (e) {
      throw where("cannot write", e);
    }
    caCert = await Deno.readTextFile(`${dir}/ca.pem`);
  }
  const caKeyPem = await readIfThere(`${dir}/ca.key`);
  if (caKeyPem === undefined) {
    throw new Error(
      `${dir}/ca.key is missing: remove ${dir} to have a new CA made (clients must then trust it)`,
    );
  }
  let ca: CryptoKeyPair;
  try {
    ca = await importKeyPair(caKeyPem);
    const caX509 = new X509Certificate(caCert);
    if (new Date(caX509.validTo) <= now) {
      throw new Error(`it ended ${new Date(caX509.validTo).toISOString()}`);
    }
  } catch (e) {
    throw new Error(
      `${dir}: the CA cannot be used (${(e as Error).message}): remove ${dir} to have a new one made`,
    );
  }
  let server = await readIfThere(`${dir}/server.pem`) ?? "";
  const reason = renewalReason(server, caCert, options, now);
  if (reason !== null) {
    server = await makeServer(ca, caCert, options, now);
    try {
      await writeAtomically(`${dir}/server.pem`, server, 0o600);
    } catch (e) {
      throw where("cannot write", e);
    }
    if (action === "reused") action = "renewed";
  }
  const [key] = pemBlocks(server, "PRIVATE KEY");
  const cert = pemBlocks(server, "CERTIFICATE").join("");
  return {
    cert,
    key,
    fingerprint: await certificateFingerprint(cert),
    dir,
    caFile: `${dir}/ca.pem`,
    caFingerprint: await certificateFingerprint(caCert),
    action,
  };
}

/** Whether an address is loopback or private (RFC 1918, RFC 6598 shared, IPv6 ULA). */
export function isPrivateAddress(ip: string): boolean {
  const b = ipBytes(ip);
  if (b.length === 4) {
    return b[0] === 127 || b[0] === 10 || (b[0] === 172 && (b[1] & 0xf0) === 16) ||
      (b[0] === 192 && b[1] === 168) || (b[0] === 100 && (b[1] & 0xc0) === 64);
  }
  return (b[0] & 0xfe) === 0xfc || b.every((x, i) => x === (i === 15 ? 1 : 0));
}

/**
 * What the server certificate should name: `keeldns`, `localhost`, the host name and the
 * server name; loopback, the listeners' own (not wildcard) addresses and this machine's private
 * addresses.
 */
export function certificateNames(
  binds: readonly { host: string }[],
  serverName: string | undefined,
  hostname: string,
  interfaces: readonly { address: string }[],
): { dnsNames: string[]; ipAddresses: string[] } {
  const dns = new Set<string>(["keeldns", "localhost"]);
  for (const name of [hostname, serverName ?? ""]) {
    const n = name.toLowerCase();
    if (/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(n) && n.length <= 253) dns.add(n);
  }
  const ips = new Map<string, string>();
  const add = (ip: string) => {
    const plain = ip.replace(/%.*$/, "");
    try {
      ips.set(ipKey(plain), plain);
    } catch { /* not an address */ }
  };
  add("127.0.0.1");
  add("::1");
  for (const b of binds) if (b.host !== "::" && b.host !== "0.0.0.0") add(b.host);
  for (const i of interfaces) {
    try {
      if (isPrivateAddress(i.address.replace(/%.*$/, ""))) add(i.address);
    } catch { /* not an address */ }
  }
  return { dnsNames: [...dns], ipAddresses: [...ips.values()] };
}

/** The data directory of `config`: the cache file's directory. */
export function dataDirectory(config: Pick<Config, "cache">): string {
  const file = config.cache.file;
  const slash = file.lastIndexOf("/");
  return slash < 0 ? "." : slash === 0 ? "/" : file.slice(0, slash);
}

/**
 * The self-signed certificate of `config`'s encrypted listeners (made, renewed or read as the
 * module doc says), with a log line naming its files and both fingerprints.
 */
export async function selfSignedFor(config: Pick<Config, "cache" | "server" | "rules">, log: Logger) {
  let hostname = "";
  let interfaces: { address: string }[] = [];
  try {
    hostname = Deno.hostname();
    interfaces = Deno.networkInterfaces();
  } catch { /* no --allow-sys: loopback, the listeners' addresses and the fixed names only */ }
  const names = certificateNames(config.server.binds, config.rules.serverName, hostname, interfaces);
  const made = await selfSignedCertificate({ dataDir: dataDirectory(config), ...names });
  log.info(
    "encrypted listeners present the certificate keeldns {action} in {dir} (no bind-cert-file): " +
      "clients trust {caFile}, CA SHA-256 fingerprint {caFingerprint}; server certificate for " +
      "{names}, SHA-256 fingerprint {fingerprint}",
    {
      action: made.action,
      dir: made.dir,
      caFile: made.caFile,
      caFingerprint: made.caFingerprint,
      names: [...names.dnsNames, ...names.ipAddresses].join(", "),
      fingerprint: made.fingerprint,
    },
  );
  return made;
}
