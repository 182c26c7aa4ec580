import { assertEquals, assertMatch } from "../tests/helpers/assert.ts";
import { spkiPin } from "./x509_spki.ts";

Deno.test("SPKI pin: the same as openssl's for a test certificate; garbage is refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "keeldns-spki-" });
  try {
    const run = (args: string[], stdin?: Uint8Array) => {
      const p = new Deno.Command("sh", {
        args: ["-c", args.join(" ")],
        stdin: stdin ? "piped" : "null",
        stdout: "piped",
      })
        .spawn();
      if (stdin) {
        const w = p.stdin.getWriter();
        w.write(stdin).then(() => w.close());
      }
      return p.output();
    };
    await run([
      `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ${dir}/k.pem`,
      `-out ${dir}/c.pem -days 2 -subj /CN=pin.test 2>/dev/null`,
    ]);
    await run([`openssl x509 -in ${dir}/c.pem -outform der -out ${dir}/c.der`]);
    const expected = new TextDecoder().decode(
      (await run([
        `openssl x509 -in ${dir}/c.pem -pubkey -noout | openssl pkey -pubin -outform der |`,
        "openssl dgst -sha256 -binary | base64",
      ])).stdout,
    ).trim();
    assertEquals(await spkiPin(await Deno.readFile(`${dir}/c.der`)), expected);
    const garbage = await spkiPin(new Uint8Array([0x30, 0x03, 1, 2, 3])).then(() => "", (e) => String(e));
    assertMatch(garbage, /certificate: /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
