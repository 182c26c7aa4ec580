import { assertEquals, assertMatch } from "../tests/helpers/assert.ts";
import { certificateFingerprint, firstCertificateDer, loadListenerCertificate } from "./tls.ts";

const PEM = "-----BEGIN CERTIFICATE-----\nAAECAw==\n-----END CERTIFICATE-----\n";
const KEY = "-----BEGIN PRIVATE KEY-----\nAAECAw==\n-----END PRIVATE KEY-----\n";
/** Asserts `fn` rejects with a message containing `text`. */
async function assertRejects(fn: () => Promise<unknown>, _: unknown, text: string): Promise<void> {
  const error = await fn().then(() => null, (e: Error) => e);
  if (!error) throw new Error("expected a rejection");
  assertMatch(error.message, new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
}

const files = (map: Record<string, string>) => (path: string) =>
  path in map ? Promise.resolve(map[path]) : Promise.reject(new Error("No such file or directory"));

Deno.test("the leaf's DER and its SHA-256 fingerprint", async () => {
  assertEquals(firstCertificateDer(PEM), new Uint8Array([0, 1, 2, 3]));
  assertEquals(firstCertificateDer("nothing"), null);
  // sha256 of 00 01 02 03
  assertEquals(
    await certificateFingerprint(PEM),
    "05:4E:DE:C1:D0:21:1F:62:4F:ED:0C:BC:A9:D4:F9:40:0B:0E:49:1C:43:74:2A:F2:C5:B0:AB:EB:F0:C9:90:D8",
  );
});

Deno.test("listener certificate: loaded; missing, encrypted or unreadable ones refused clearly", async () => {
  const read = files({ "/c.pem": PEM, "/k.pem": KEY, "/enc.pem": "-----BEGIN ENCRYPTED PRIVATE KEY-----\n" });
  const loaded = await loadListenerCertificate({ certFile: "/c.pem", keyFile: "/k.pem" }, read);
  assertEquals(loaded.cert, PEM);
  assertEquals(loaded.key, KEY);
  await assertRejects(
    () => loadListenerCertificate({ certFile: "/c.pem" }, read),
    Error,
    "bind-cert-file needs bind-cert-key-file too (or neither",
  );
  await assertRejects(
    () => loadListenerCertificate({ keyFile: "/k.pem" }, read),
    Error,
    "bind-cert-key-file needs bind-cert-file too",
  );
  await assertRejects(
    () => loadListenerCertificate({ certFile: "/c.pem", keyFile: "/k.pem", keyPass: "x" }, read),
    Error,
    "cannot load an encrypted private key",
  );
  await assertRejects(
    () => loadListenerCertificate({ certFile: "/c.pem", keyFile: "/enc.pem" }, read),
    Error,
    "the key is encrypted",
  );
  await assertRejects(
    () => loadListenerCertificate({ certFile: "/nope.pem", keyFile: "/k.pem" }, read),
    Error,
    "bind-cert-file /nope.pem",
  );
  await assertRejects(
    () => loadListenerCertificate({ certFile: "/k.pem", keyFile: "/k.pem" }, read),
    Error,
    "no PEM certificate",
  );
});
