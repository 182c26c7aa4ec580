/**
 * The CA certificates encrypted upstreams (DoT, DoH) are checked against besides the built-in
 * roots: SmartDNS's `ca-file` and `ca-path`.
 *
 * @module
 */

/** Where the CA certificates come from; none: the built-in roots only. */
export interface CaTrust {
  readonly caFile?: string;
  readonly caPath?: string;
}

/** The PEM certificates of `ca-file` and of the files in `ca-path`. Throws saying which failed. */
export function loadCaCerts(trust: CaTrust): string[] {
  const certs: string[] = [];
  const add = (file: string) => {
    const found = Deno.readTextFileSync(file).match(
      /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g,
    );
    if (found) certs.push(...found);
    return found?.length ?? 0;
  };
  if (trust.caFile) {
    try {
      if (add(trust.caFile) === 0) throw new Error("no PEM certificate in it");
    } catch (e) {
      throw new Error(`ca-file ${trust.caFile}: ${(e as Error).message}`);
    }
  }
  if (trust.caPath) {
    try {
      let n = 0;
      for (const entry of Deno.readDirSync(trust.caPath)) {
        if (!/\.(pem|crt)$|^[0-9a-f]{8}\.\d+$/i.test(entry.name)) continue;
        try {
          n += add(`${trust.caPath}/${entry.name}`);
        } catch { /* a dangling link or unreadable file: skip it like OpenSSL does */ }
      }
      if (n === 0) throw new Error("no PEM certificate in it");
    } catch (e) {
      throw new Error(`ca-path ${trust.caPath}: ${(e as Error).message}`);
    }
  }
  return certs;
}
