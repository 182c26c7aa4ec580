/**
 * Test certificates made with openssl: a CA and a leaf it signed (rustls refuses a bare
 * self-signed certificate), for the encrypted listeners and upstreams and their peers.
 *
 * @module
 */
import { programPath } from "./keeldns_process.ts";

const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** Runs openssl in `dir`; throws with its stderr when it fails. */
async function openssl(dir: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command(programPath("openssl"), {
    args,
    cwd: dir,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
}

/** Writes a CA certificate and key to `dir` as `${file}.pem` and `${file}.key`; returns the certificate's path. */
export async function makeTestCa(dir: string, file = "ca", commonName = `keeldns ${file}`): Promise<string> {
  await openssl(
    dir,
    ...["req", "-x509", ...EC_KEY],
    ...["-keyout", `${file}.key`, "-out", `${file}.pem`, "-days", "2", "-subj", `/CN=${commonName}`],
    ...["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
  );
  return `${dir}/${file}.pem`;
}

/** Paths of a test CA and the server certificate it signed. */
export interface TestPki {
  readonly dir: string;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/**
 * Writes ca.pem/ca.key and a server leaf.pem/leaf.key signed by it (SAN IP:127.0.0.1 and
 * DNS:`hostName`) to `dir`.
 */
export async function makeTestPki(dir: string, hostName: string, caName?: string): Promise<TestPki> {
  const caFile = await makeTestCa(dir, "ca", caName);
  await openssl(dir, "req", ...EC_KEY, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", `/CN=${hostName}`);
  await Deno.writeTextFile(
    `${dir}/leaf.ext`,
    `subjectAltName=IP:127.0.0.1,DNS:${hostName}\nbasicConstraints=CA:FALSE\n` +
      "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
  );
  await openssl(
    dir,
    ...["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"],
    ...["-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext"],
  );
  return { dir, caFile, certFile: `${dir}/leaf.pem`, keyFile: `${dir}/leaf.key` };
}
