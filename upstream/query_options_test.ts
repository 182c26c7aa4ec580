import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { encodePacket } from "../dns/packet.ts";
import { readClientSubnet } from "../dns/client_subnet.ts";
import { buildUpstreamQuery, parseQuery, type Question } from "../dns/wire.ts";
import {
  ownQuestion,
  QuestionWithOptions,
  requiresOpt,
  UpstreamWithOptions,
  withQueryOptions,
} from "./query_options.ts";
import type { Upstream } from "./upstream.ts";
import { Cancel } from "./cancel.ts";

/** An upstream that records the query it would send and answers with `answer`. */
function recorder(answer: Uint8Array): Upstream & { sent: Uint8Array[]; asked: Question[] } {
  const sent: Uint8Array[] = [];
  const asked: Question[] = [];
  return {
    address: "udp://192.0.2.53:53",
    sent,
    asked,
    close() {},
    exchange(q) {
      asked.push(q);
      sent.push(buildUpstreamQuery(q, 1));
      return Promise.resolve(answer);
    },
  };
}

const withOpt = encodePacket({
  type: "response",
  id: 1,
  flags: 0x8180,
  questions: [{ name: "a.test", type: "A", class: "IN" }],
  answers: [{ name: "a.test", type: "A", ttl: 60, data: "192.0.2.1" }],
  additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as never],
});
const withoutOpt = encodePacket({
  type: "response",
  id: 1,
  flags: 0x8180,
  questions: [{ name: "a.test", type: "A", class: "IN" }],
  answers: [{ name: "a.test", type: "A", ttl: 60, data: "192.0.2.1" }],
});

Deno.test("withQueryOptions: a server with no subnet and no -check-edns is not wrapped", () => {
  const inner = recorder(withOpt);
  assert(withQueryOptions(inner, {}) === inner);
  assert(withQueryOptions(inner, { subnetAllQueryTypes: true, checkEdns: false }) === inner);
  assert(withQueryOptions(inner, { globalSubnets: ["1.2.3.0/24"] }) instanceof UpstreamWithOptions);
});

Deno.test("UpstreamWithOptions: the question goes as it is when its type takes no option", async () => {
  const inner = recorder(withOpt);
  const u = withQueryOptions(inner, { subnets: ["1.2.3.0/24"] });
  const mx = parseQuery(buildQuery("a.test", "MX"));
  await u.exchange(mx, new Cancel());
  assert(inner.asked[0] === mx, "no per-exchange object for a type without an option");
  const a = parseQuery(buildQuery("a.test", "A", { edns: 1232 }));
  await u.exchange(a, new Cancel());
  const view = inner.asked[1];
  assert(view instanceof QuestionWithOptions);
  assertEquals([view.name, view.qtype, view.dnssecOk, view.questionEnd, view.key], [
    a.name,
    a.qtype,
    a.dnssecOk,
    a.questionEnd,
    a.key,
  ]);
  assertEquals(readClientSubnet(inner.sent[1])?.subnet, "1.2.3.0/24");
  assertEquals(readClientSubnet(inner.sent[0]), null);
  assert(!requiresOpt(view) && !requiresOpt(a));
});

Deno.test("UpstreamWithOptions: -check-edns rejects an answer without an OPT record", async () => {
  const q = parseQuery(buildQuery("a.test", "A"));
  const good = withQueryOptions(recorder(withOpt), { checkEdns: true });
  assertEquals(await good.exchange(q, new Cancel()), withOpt);
  const inner = recorder(withoutOpt);
  const bad = withQueryOptions(inner, { checkEdns: true });
  const error = await bad.exchange(q, new Cancel()).then(() => null, (e) => e as Error);
  assert(error?.message.includes("without an OPT record"), String(error));
  assert(requiresOpt(inner.asked[0]), "UDP exchanges are told to wait on past such answers");
});

Deno.test("UpstreamWithOptions: a client group's own subnet, unless the server has its own", async () => {
  const groupOf = (q: Question) => q.id; // the test's stand-in for the query context's client group
  const options = {
    globalSubnets: ["1.2.3.0/24"],
    clientGroupSubnets: [undefined, ["9.9.9.0/24"]],
    clientGroupOf: groupOf,
  };
  const inner = recorder(withOpt);
  const u = withQueryOptions(inner, options);
  for (const group of [0, 1, 2, 3]) {
    await u.exchange(parseQuery(buildQuery("a.test", "A", { id: group })), new Cancel());
  }
  // Group 1 (the first client group) has none of its own: the global one; group 2 has its own;
  // an unknown group number gets the default's.
  assertEquals(inner.sent.map((q) => readClientSubnet(q)?.subnet), [
    "1.2.3.0/24",
    "1.2.3.0/24",
    "9.9.9.0/24",
    "1.2.3.0/24",
  ]);
  const ownInner = recorder(withOpt);
  const own = withQueryOptions(ownInner, { ...options, subnets: ["5.6.7.0/24"] });
  await own.exchange(parseQuery(buildQuery("a.test", "A", { id: 2 })), new Cancel());
  assertEquals(readClientSubnet(ownInner.sent[0])?.subnet, "5.6.7.0/24");
  const plain = recorder(withOpt);
  assert(withQueryOptions(plain, { clientGroupSubnets: [undefined], clientGroupOf: groupOf }) === plain);
});

Deno.test("UpstreamWithOptions: keeldns's own questions go without a subnet, still under -check-edns", async () => {
  const inner = recorder(withoutOpt);
  const u = withQueryOptions(inner, {
    globalSubnets: ["1.2.3.0/24"],
    subnets: ["5.6.7.0/24"],
    checkEdns: true,
  });
  const own = ownQuestion(parseQuery(buildQuery("dns.example", "A")));
  const error = await u.exchange(own, new Cancel()).then(() => null, (e) => e as Error);
  assert(error?.message.includes("without an OPT record"), String(error));
  assertEquals(readClientSubnet(inner.sent[0]), null);
  await u.exchange(parseQuery(buildQuery("dns.example", "A")), new Cancel()).catch(() => {});
  assertEquals(readClientSubnet(inner.sent[1])?.subnet, "5.6.7.0/24", "a client's question carries it");
  const plain = recorder(withOpt);
  await withQueryOptions(plain, { globalSubnets: ["1.2.3.0/24"] }).exchange(
    own,
    new Cancel(),
  );
  assert(plain.asked[0] === own, "no subnet and no -check-edns: the question goes as it is");
});
