/**
 * The SubjectPublicKeyInfo of a DER X.509 certificate, and its SPKI pin (RFC 7469: base64 of the
 * SHA-256 of those DER bytes), as SmartDNS's `-spki-pin` and `openssl … | openssl pkey -pubin
 * -outform der | openssl dgst -sha256 -binary | base64` give it.
 *
 * @module
 */

/** One DER element's header at `at`: where its contents start and end. Throws on a bad length. */
function element(der: Uint8Array, at: number): { tag: number; start: number; end: number } {
  if (at + 2 > der.length) throw new Error("certificate: truncated");
  const tag = der[at];
  let length = der[at + 1];
  let start = at + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    if (bytes === 0 || bytes > 4 || start + bytes > der.length) throw new Error("certificate: bad length");
    length = 0;
    for (let i = 0; i < bytes; i++) length = length * 256 + der[start + i];
    start += bytes;
  }
  if (start + length > der.length) throw new Error("certificate: truncated");
  return { tag, start, end: start + length };
}

/** The DER bytes of the certificate's SubjectPublicKeyInfo. Throws when it is not a certificate. */
export function subjectPublicKeyInfo(der: Uint8Array): Uint8Array {
  const cert = element(der, 0);
  const tbs = element(der, cert.start);
  if (cert.tag !== 0x30 || tbs.tag !== 0x30) throw new Error("certificate: not a DER X.509 certificate");
  let at = tbs.start;
  let field = element(der, at);
  if (field.tag === 0xa0) at = field.end; // [0] version
  // serialNumber, signature, issuer, validity, subject, then subjectPublicKeyInfo.
  for (let i = 0; i < 5; i++) at = element(der, at).end;
  field = element(der, at);
  if (field.tag !== 0x30) throw new Error("certificate: no subjectPublicKeyInfo");
  return der.subarray(at, field.end);
}

/** The certificate's SPKI pin: base64 of the SHA-256 of its SubjectPublicKeyInfo. */
export async function spkiPin(der: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", subjectPublicKeyInfo(der).slice()));
  return btoa(String.fromCharCode(...digest));
}
