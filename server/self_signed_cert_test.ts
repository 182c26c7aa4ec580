import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { programPath, skipWithout } from "../tests/helpers/keeldns_process.ts";
import { certificateNames, isPrivateAddress, selfSignedCertificate } from "./self_signed_cert.ts";

const NAMES = { dnsNames: ["keeldns", "dns.test"], ipAddresses: ["127.0.0.1", "::1"] };
const DAY = 86400_000;

async function openssl(...args: string[]): Promise<{ ok: boolean; out: string }> {
  const r = await new Deno.Command(programPath("openssl"), { args, stdin: "null" }).output();
  const d = new TextDecoder();
  return { ok: r.success, out: d.decode(r.stdout) + d.decode(r.stderr) };
}

/** openssl verify of the listener chain's leaf against ca.pem. */
async function verifies(dir: string, cert: string, caFile: string): Promise<string> {
  await Deno.writeTextFile(`${dir}/leaf-under-test.pem`, cert.split(/(?<=-----END CERTIFICATE-----\n)/)[0]);
  const r = await openssl("verify", "-CAfile", caFile, "-purpose", "sslserver", `${dir}/leaf-under-test.pem`);
  return r.ok ? "OK" : r.out;
}

Deno.test({
  name: "self-signed certificate: made once with key files 0600, reused, renewed from the same CA",
  ignore: skipWithout("openssl"),
  async fn() {
    const data = await Deno.makeTempDir({ prefix: "keeldns-selfsigned-" });
    const dataDir = `${data}/var/cache/keeldns`; // made when missing
    try {
      const first = await selfSignedCertificate({ dataDir, ...NAMES });
      assertEquals(first.action, "made");
      assertEquals(first.dir, `${dataDir}/tls`);
      assertEquals((await Deno.stat(`${first.dir}/ca.key`)).mode! & 0o777, 0o600);
      assertEquals((await Deno.stat(`${first.dir}/server.pem`)).mode! & 0o777, 0o600);
      assertEquals((await Deno.stat(`${first.dir}/ca.pem`)).mode! & 0o777, 0o644);
      assertEquals([...Deno.readDirSync(dataDir)].map((e) => e.name), ["tls"], "no temporary left");
      assertEquals(await verifies(data, first.cert, first.caFile), "OK");
      const text = await openssl("x509", "-in", `${data}/leaf-under-test.pem`, "-noout", "-text");
      assert(
        /DNS:keeldns, DNS:dns\.test, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1/.test(text.out),
      );
      const fp =
        (await openssl("x509", "-in", `${data}/leaf-under-test.pem`, "-noout", "-fingerprint", "-sha256"))
          .out.trim().split("=")[1];
      assertEquals(first.fingerprint, fp, "the logged fingerprint is openssl's");
      assert(/^-----BEGIN PRIVATE KEY-----/.test(first.key));

      const again = await selfSignedCertificate({ dataDir, ...NAMES });
      assertEquals(again.action, "reused");
      assertEquals(again.fingerprint, first.fingerprint);
      assertEquals(again.caFingerprint, first.caFingerprint);

      // A new address to name: a new server certificate under the same CA.
      const more = await selfSignedCertificate({
        dataDir,
        ...NAMES,
        ipAddresses: [...NAMES.ipAddresses, "10.1.2.3"],
      });
      assertEquals(more.action, "renewed");
      assertEquals(more.caFingerprint, first.caFingerprint);
      assert(more.fingerprint !== first.fingerprint);
      assertEquals(await verifies(data, more.cert, first.caFile), "OK");
      assertEquals(
        (await selfSignedCertificate({ dataDir, ...NAMES, ipAddresses: ["10.1.2.3"] })).action,
        "reused",
        "a subset of what it names will do",
      );

      // 370 days on: less than 30 days left, made anew.
      const later = await selfSignedCertificate({
        dataDir,
        ...NAMES,
        now: () => new Date(Date.now() + 370 * DAY),
      });
      assertEquals(later.action, "renewed");
      assertEquals(later.caFingerprint, first.caFingerprint);

      // server.pem gone: made anew from the CA.
      await Deno.remove(`${first.dir}/server.pem`);
      assertEquals((await selfSignedCertificate({ dataDir, ...NAMES })).action, "renewed");

      // The CA key gone: a clear refusal, nothing overwritten.
      await Deno.remove(`${first.dir}/ca.key`);
      const error = await selfSignedCertificate({ dataDir, ...NAMES }).then(() => null, (e) => e as Error);
      assert(
        error && /ca\.key is missing: remove .*\/tls to have a new CA made/.test(error.message),
        error?.message,
      );
    } finally {
      await Deno.remove(data, { recursive: true });
    }
  },
});

Deno.test("self-signed certificate: children starting at once end with one CA and one server certificate", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "keeldns-selfsigned-" });
  try {
    const all = await Promise.all(
      Array.from({ length: 6 }, () => selfSignedCertificate({ dataDir, ...NAMES })),
    );
    assertEquals(all.filter((c) => c.action === "made").length, 1, "one set was made");
    assertEquals(new Set(all.map((c) => c.caFingerprint)).size, 1);
    assertEquals(new Set(all.map((c) => c.fingerprint)).size, 1);
    const onDisk = await selfSignedCertificate({ dataDir, ...NAMES });
    assertEquals(onDisk.action, "reused");
    assertEquals(onDisk.fingerprint, all[0].fingerprint);
    assertEquals([...Deno.readDirSync(dataDir)].map((e) => e.name), ["tls"]);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("self-signed certificate: a data directory that cannot be made is a clear error", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "keeldns-selfsigned-" });
  try {
    await Deno.writeTextFile(`${tmp}/file`, "");
    const error = await selfSignedCertificate({ dataDir: `${tmp}/file/keeldns`, ...NAMES }).then(
      () => null,
      (e) => e as Error,
    );
    assert(error && /cannot create .*\/tls .*bind-cert-file/.test(error.message), error?.message);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("certificate names: loopback, specific listener addresses, private interfaces, host and server name", () => {
  const names = certificateNames(
    [{ host: "::" }, { host: "0.0.0.0" }, { host: "192.0.2.53" }, { host: "127.0.0.1" }],
    "Router.Lan",
    "myhost",
    [{ address: "192.168.1.1" }, { address: "203.0.113.9" }, { address: "fd00::1" }, {
      address: "fe80::1%eth0",
    }],
  );
  assertEquals(names.dnsNames, ["keeldns", "localhost", "myhost", "router.lan"]);
  assertEquals(names.ipAddresses, ["127.0.0.1", "::1", "192.0.2.53", "192.168.1.1", "fd00::1"]);
  assert(isPrivateAddress("10.0.0.1") && isPrivateAddress("172.31.0.1") && !isPrivateAddress("172.32.0.1"));
  assert(isPrivateAddress("100.64.0.1") && !isPrivateAddress("8.8.8.8") && !isPrivateAddress("2001:db8::1"));
});
