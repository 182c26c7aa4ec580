/**
 * Writes X.509 v3 certificates (RFC 5280) for ECDSA P-256 keys, signed with ECDSA-SHA256 through
 * WebCrypto: a CA (basicConstraints CA:TRUE, keyUsage keyCertSign/cRLSign) or a TLS server leaf
 * (CA:FALSE, digitalSignature, extKeyUsage serverAuth, subjectAltName with DNS names and IP
 * addresses), both with subjectKeyIdentifier and authorityKeyIdentifier. No openssl needed: what
 * a router without one uses to make the encrypted listeners' certificate (server/self_signed_cert.ts).
 *
 * @module
 */
import { ipBytes } from "./address.ts";
import {
  bitString,
  boolean,
  namedBits,
  octetString,
  oid,
  sequence,
  set,
  smallInteger,
  tagged,
  time,
  unsignedInteger,
  utf8String,
} from "./der.ts";

/** The key algorithm certificates are made for. */
export const EC_P256: EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };

const OID = {
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  commonName: "2.5.4.3",
  organization: "2.5.4.10",
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
} as const;

/** keyUsage bit numbers (RFC 5280 §4.2.1.3). */
const KeyUsage = { digitalSignature: 0, keyCertSign: 5, cRLSign: 6 } as const;

/** A distinguished name as the certificates here have it: a common name and an organisation. */
export interface CertificateName {
  readonly commonName: string;
  readonly organization?: string;
}

/** What one certificate says, and who signs it. */
export interface CertificateSpec {
  readonly subject: CertificateName;
  /** The issuer's name; the subject's for a self-signed certificate. */
  readonly issuer?: CertificateName;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The subject's public key (ECDSA P-256). */
  readonly publicKey: CryptoKey;
  /** The issuer's private key, which signs (the subject's own for a self-signed CA). */
  readonly signingKey: CryptoKey;
  /** The issuer's public key (for authorityKeyIdentifier); the subject's when self-signed. */
  readonly issuerPublicKey?: CryptoKey;
  /** A CA certificate (may sign others) or a TLS server one. */
  readonly ca: boolean;
  /** subjectAltName DNS names (server certificates). */
  readonly dnsNames?: readonly string[];
  /** subjectAltName IP addresses, literal IPv4 or IPv6 (server certificates). */
  readonly ipAddresses?: readonly string[];
  /** The serial number (positive, at most 20 bytes); 16 random bytes when left out. */
  readonly serial?: Uint8Array;
}

/** The DER Name (RDNSequence) of `name`, one attribute per RDN. */
export function encodeName(name: CertificateName): Uint8Array<ArrayBuffer> {
  const rdn = (type: string, value: string) => set(sequence(oid(type), utf8String(value)));
  const parts = [];
  if (name.organization !== undefined) parts.push(rdn(OID.organization, name.organization));
  parts.push(rdn(OID.commonName, name.commonName));
  return sequence(...parts);
}

/** The DER SubjectPublicKeyInfo of a public key. */
export async function subjectPublicKeyInfo(key: CryptoKey): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.exportKey("spki", key));
}

/** The key identifier of a public key: SHA-1 of its subjectPublicKey bits (RFC 5280 §4.2.1.2 (1)). */
export async function keyIdentifier(key: CryptoKey): Promise<Uint8Array<ArrayBuffer>> {
  const point = new Uint8Array(await crypto.subtle.exportKey("raw", key));
  return new Uint8Array(await crypto.subtle.digest("SHA-1", point));
}

/** A random positive 16-byte serial number. */
function randomSerial(): Uint8Array {
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] = (serial[0] & 0x7f) | 0x01;
  return serial;
}

function extension(id: string, critical: boolean, value: Uint8Array): Uint8Array<ArrayBuffer> {
  return critical
    ? sequence(oid(id), boolean(true), octetString(value))
    : sequence(oid(id), octetString(value));
}

/** The subjectAltName GeneralNames: dNSName [2] and iPAddress [7]. */
function altNames(dns: readonly string[], ips: readonly string[]): Uint8Array<ArrayBuffer> {
  const encoder = new TextEncoder();
  return sequence(
    ...dns.map((name) => tagged(2, encoder.encode(name), false)),
    ...ips.map((ip) => tagged(7, ipBytes(ip), false)),
  );
}

/** An ECDSA signature as WebCrypto gives it (r ‖ s) in DER's Ecdsa-Sig-Value form. */
export function ecdsaSignatureDer(raw: Uint8Array): Uint8Array<ArrayBuffer> {
  const half = raw.length / 2;
  return sequence(unsignedInteger(raw.subarray(0, half)), unsignedInteger(raw.subarray(half)));
}

/** Writes and signs the certificate `spec` describes; returns its DER bytes. */
export async function writeCertificate(spec: CertificateSpec): Promise<Uint8Array<ArrayBuffer>> {
  if (!(spec.notAfter > spec.notBefore)) throw new RangeError("the certificate would end before it starts");
  const algorithm = sequence(oid(OID.ecdsaWithSha256));
  const ownId = await keyIdentifier(spec.publicKey);
  const issuerId = spec.issuerPublicKey ? await keyIdentifier(spec.issuerPublicKey) : ownId;
  const extensions = [
    extension(OID.basicConstraints, true, spec.ca ? sequence(boolean(true)) : sequence()),
    extension(
      OID.keyUsage,
      true,
      namedBits(spec.ca ? [KeyUsage.keyCertSign, KeyUsage.cRLSign] : [KeyUsage.digitalSignature]),
    ),
  ];
  if (!spec.ca) extensions.push(extension(OID.extKeyUsage, false, sequence(oid(OID.serverAuth))));
  const dns = spec.dnsNames ?? [];
  const ips = spec.ipAddresses ?? [];
  if (dns.length + ips.length > 0) extensions.push(extension(OID.subjectAltName, false, altNames(dns, ips)));
  extensions.push(extension(OID.subjectKeyIdentifier, false, octetString(ownId)));
  extensions.push(extension(OID.authorityKeyIdentifier, false, sequence(tagged(0, issuerId, false))));
  const tbs = sequence(
    tagged(0, smallInteger(2), true), // v3
    unsignedInteger(spec.serial ?? randomSerial()),
    algorithm,
    encodeName(spec.issuer ?? spec.subject),
    sequence(time(spec.notBefore), time(spec.notAfter)),
    encodeName(spec.subject),
    await subjectPublicKeyInfo(spec.publicKey),
    tagged(3, sequence(...extensions), true),
  );
  const raw = new Uint8Array(
    await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, spec.signingKey, tbs),
  );
  return sequence(tbs, algorithm, bitString(ecdsaSignatureDer(raw)));
}

/** DER bytes as a PEM block with `label` ("CERTIFICATE", "PRIVATE KEY"), 64 characters a line. */
export function toPem(label: string, der: Uint8Array): string {
  let bin = "";
  for (const b of der) bin += String.fromCharCode(b);
  const b64 = btoa(bin);
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** The PKCS#8 PEM of an extractable private key. */
export async function privateKeyPem(key: CryptoKey): Promise<string> {
  return toPem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", key)));
}

/** Reads a PKCS#8 PEM P-256 key back: the private key and its public half. */
export async function importKeyPair(pem: string): Promise<CryptoKeyPair> {
  const m = /-----BEGIN PRIVATE KEY-----([A-Za-z0-9+/=\s]+)-----END PRIVATE KEY-----/.exec(pem);
  if (!m) throw new Error("no PKCS#8 PRIVATE KEY block in it");
  const der = Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  const privateKey = await crypto.subtle.importKey("pkcs8", der, EC_P256, true, ["sign"]);
  const { kty, crv, x, y } = await crypto.subtle.exportKey("jwk", privateKey);
  const publicKey = await crypto.subtle.importKey("jwk", { kty, crv, x, y }, EC_P256, true, ["verify"]);
  return { privateKey, publicKey };
}

/** A new extractable P-256 key pair. */
export function generateKeyPair(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(EC_P256, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
}
