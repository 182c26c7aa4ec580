import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery, decodeReply } from "../tests/helpers/dns_client.ts";
import { decodeBase64Url, HttpsListener, MAX_BODY, minTtl } from "./https.ts";

Deno.test("base64url: with and without padding; other alphabets are refused", () => {
  assertEquals(decodeBase64Url("AAH_-w"), new Uint8Array([0, 1, 0xff, 0xfb]));
  assertEquals(decodeBase64Url("AAH_-w=="), new Uint8Array([0, 1, 0xff, 0xfb]));
  assertEquals(decodeBase64Url("AAH/+w"), null);
  assertEquals(decodeBase64Url("A"), null);
  assertEquals(decodeBase64Url("***"), null);
});

Deno.test("minTtl: the smallest answer TTL, 0 for none or a cut-off message", () => {
  const q = buildQuery("x.test", "A");
  const answer = new Uint8Array([
    ...q.subarray(0, 6),
    0,
    2,
    0,
    0,
    0,
    0,
    ...q.subarray(12),
    ...[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1],
    ...[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 2],
  ]);
  assertEquals(minTtl(answer), 60);
  assertEquals(minTtl(q), 0);
  assertEquals(minTtl(answer.subarray(0, answer.length - 5)), 0);
});

/** `handle` on a listener that was never bound, with a dispatcher answering with `reply`. */
function handler(reply: (wire: Uint8Array) => Uint8Array | null) {
  const self = {
    inFlight: 0,
    maxInFlight: 4,
    flags: 0,
    dispatcher: { answer: reply, stats: { tcpRefused: 0 } },
  };
  return (request: Request) =>
    HttpsListener.prototype.handle.call(
      self as unknown as HttpsListener,
      request,
      { remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 4000 } },
    );
}

Deno.test("DoH requests: GET and POST answered; each malformed kind gets its status", async () => {
  const echo = handler((wire) =>
    wire.length >= 12 ? new Uint8Array([...wire.subarray(0, 2), 0x81, 0x80, ...wire.subarray(4)]) : null
  );
  const q = buildQuery("x.test", "A", { id: 42 });
  const b64 = btoa(String.fromCharCode(...q)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const url = "https://dns.test/dns-query";
  const get = await echo(new Request(`${url}?dns=${b64}`));
  assertEquals(get.status, 200);
  assertEquals(get.headers.get("content-type"), "application/dns-message");
  assertEquals(decodeReply(new Uint8Array(await get.arrayBuffer())).id, 42);
  const post = await echo(
    new Request(url, {
      method: "POST",
      headers: { "content-type": "application/dns-message" },
      body: q as Uint8Array<ArrayBuffer>,
    }),
  );
  assertEquals(post.status, 200);
  const status = async (r: Request) => (await echo(r)).status;
  assertEquals(await status(new Request(url)), 400);
  assertEquals(await status(new Request(`${url}?dns=%%%`)), 400);
  assertEquals(await status(new Request(`${url}?dns=AAAA`)), 400);
  assertEquals(
    await status(new Request(url, { method: "POST", headers: { "content-type": "text/plain" }, body: "x" })),
    415,
  );
  assertEquals(
    await status(
      new Request(url, {
        method: "POST",
        headers: { "content-type": "application/dns-message" },
        body: new Uint8Array(MAX_BODY + 1),
      }),
    ),
    413,
  );
  assertEquals(await status(new Request("https://dns.test/other")), 404);
  assertEquals(await status(new Request(url, { method: "DELETE" })), 405);
  const none = handler(() => null);
  assertEquals((await none(new Request(`${url}?dns=${b64}`))).status, 400, "no answer: 400");
  const headRequest = await echo(new Request(`${url}?dns=${b64}`, { method: "HEAD" }));
  assert(headRequest.status === 200);
});
