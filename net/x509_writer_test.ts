import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { programPath, skipWithout } from "../tests/helpers/keeldns_process.ts";
import { namedBits, oid, smallInteger, time, tlv } from "./der.ts";
import { generateKeyPair, importKeyPair, privateKeyPem, toPem, writeCertificate } from "./x509_writer.ts";

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

Deno.test("DER: lengths, object identifiers, integers, named bits, times", () => {
  assertEquals(hex(tlv(0x04, new Uint8Array(3))), "0403000000");
  assertEquals(hex(tlv(0x04, new Uint8Array(200)).subarray(0, 3)), "0481c8");
  assertEquals(hex(tlv(0x04, new Uint8Array(300)).subarray(0, 4)), "0482012c");
  assertEquals(hex(oid("1.2.840.10045.4.3.2")), "06082a8648ce3d040302");
  assertEquals(hex(oid("2.5.29.17")), "0603551d11");
  assertEquals(hex(smallInteger(0)), "020100");
  assertEquals(hex(smallInteger(128)), "02020080");
  assertEquals(hex(namedBits([5, 6])), "03020106", "keyCertSign, cRLSign");
  assertEquals(hex(namedBits([0])), "03020780", "digitalSignature");
  assertEquals(new TextDecoder().decode(time(new Date("2030-01-02T03:04:05Z")).subarray(2)), "300102030405Z");
  assertEquals(time(new Date("2051-01-01T00:00:00Z"))[0], 0x18, "GeneralizedTime from 2050");
});

/** A CA and a leaf it signs, as PEM files in a temp dir. */
async function writePair(dir: string): Promise<void> {
  const ca = await generateKeyPair();
  const leaf = await generateKeyPair();
  const now = new Date();
  const caName = { commonName: "test Root CA", organization: "keeldns" };
  const caDer = await writeCertificate({
    subject: caName,
    notBefore: now,
    notAfter: new Date(now.getTime() + 3650 * 86400_000),
    publicKey: ca.publicKey,
    signingKey: ca.privateKey,
    ca: true,
  });
  const leafDer = await writeCertificate({
    subject: { commonName: "dns.test" },
    issuer: caName,
    notBefore: now,
    notAfter: new Date(now.getTime() + 390 * 86400_000),
    publicKey: leaf.publicKey,
    signingKey: ca.privateKey,
    issuerPublicKey: ca.publicKey,
    ca: false,
    dnsNames: ["dns.test", "keeldns"],
    ipAddresses: ["127.0.0.1", "::1", "192.168.1.1"],
  });
  await Deno.writeTextFile(`${dir}/ca.pem`, toPem("CERTIFICATE", caDer));
  await Deno.writeTextFile(`${dir}/leaf.pem`, toPem("CERTIFICATE", leafDer));
  await Deno.writeTextFile(`${dir}/leaf.key`, await privateKeyPem(leaf.privateKey));
}

async function openssl(...args: string[]): Promise<{ ok: boolean; out: string }> {
  const r = await new Deno.Command(programPath("openssl"), { args, stdin: "null" }).output();
  const d = new TextDecoder();
  return { ok: r.success, out: d.decode(r.stdout) + d.decode(r.stderr) };
}

Deno.test({
  name: "x509 writer: openssl reads the CA and the leaf, verifies the chain and the server purpose",
  ignore: skipWithout("openssl"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "keeldns-x509-" });
    try {
      await writePair(dir);
      const ca = await openssl("x509", "-in", `${dir}/ca.pem`, "-text", "-noout");
      assert(ca.ok, ca.out);
      assert(/CA:TRUE/.test(ca.out), ca.out);
      assert(/Certificate Sign, CRL Sign/.test(ca.out), ca.out);
      assert(/Subject: O ?= ?keeldns, CN ?= ?test Root CA/.test(ca.out), ca.out);
      assert(/ecdsa-with-SHA256/.test(ca.out) && /prime256v1|P-256/.test(ca.out), ca.out);
      const leaf = await openssl("x509", "-in", `${dir}/leaf.pem`, "-text", "-noout");
      assert(leaf.ok, leaf.out);
      assert(/CA:FALSE/.test(leaf.out), leaf.out);
      assert(/TLS Web Server Authentication/.test(leaf.out), leaf.out);
      assert(
        /DNS:dns\.test, DNS:keeldns, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1, IP Address:192\.168\.1\.1/
          .test(leaf.out),
        leaf.out,
      );
      assert(/X509v3 Authority Key Identifier/.test(leaf.out), leaf.out);
      // The leaf's authority key id is the CA's subject key id.
      const ski = /Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec(ca.out)?.[1];
      assert(ski && leaf.out.includes(ski), `CA key id ${ski} in the leaf`);
      const verify = await openssl(
        "verify",
        "-CAfile",
        `${dir}/ca.pem`,
        "-purpose",
        "sslserver",
        `${dir}/leaf.pem`,
      );
      assert(verify.ok && /leaf\.pem: OK/.test(verify.out), verify.out);
      // And it fails against another CA (the check can fail).
      const other = await Deno.makeTempDir({ prefix: "keeldns-x509-" });
      await writePair(other);
      const wrong = await openssl("verify", "-CAfile", `${other}/ca.pem`, `${dir}/leaf.pem`);
      assert(!wrong.ok, "a leaf of another CA is refused");
      await Deno.remove(other, { recursive: true });
      const key = await openssl("pkey", "-in", `${dir}/leaf.key`, "-noout", "-text");
      assert(key.ok && /prime256v1|P-256/.test(key.out), key.out);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("x509 writer: a PKCS#8 key read back signs what its public half verifies", async () => {
  const pair = await generateKeyPair();
  const back = await importKeyPair(await privateKeyPem(pair.privateKey));
  const data = new TextEncoder().encode("x");
  const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, back.privateKey, data);
  assert(await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, pair.publicKey, sig, data));
  assert(await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, back.publicKey, sig, data));
});
