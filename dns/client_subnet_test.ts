import { assert, assertEquals, assertThrows } from "../tests/helpers/assert.ts";
import { buildQuery } from "../tests/helpers/dns_client.ts";
import { decodePacket, encodePacket } from "./packet.ts";
import {
  ClientSubnetChoice,
  encodeClientSubnetOption,
  formatClientSubnet,
  hasOptRecord,
  parseClientSubnet,
  readClientSubnet,
} from "./client_subnet.ts";
import { buildUpstreamQuery, parseQuery } from "./wire.ts";

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");

Deno.test("Client Subnet option: IPv4 /24 is family 1, prefix 24, scope 0 and three address bytes", () => {
  const option = encodeClientSubnetOption(parseClientSubnet("1.2.3.4/24"));
  assertEquals(hex(option), "00 08 00 07 00 01 18 00 01 02 03");
});

Deno.test("Client Subnet option: IPv6 /56 sends seven bytes", () => {
  const option = encodeClientSubnetOption(parseClientSubnet("2001:db8:aaaa:bbcc:dddd::1/56"));
  assertEquals(hex(option), "00 08 00 0b 00 02 38 00 20 01 0d b8 aa aa bb");
});

Deno.test("Client Subnet option: prefix 0 sends no address byte", () => {
  assertEquals(hex(encodeClientSubnetOption(parseClientSubnet("9.9.9.9/0"))), "00 08 00 04 00 01 00 00");
  assertEquals(hex(encodeClientSubnetOption(parseClientSubnet("::/0"))), "00 08 00 04 00 02 00 00");
});

Deno.test("Client Subnet option: an odd prefix clears the bits past it in the last byte (RFC 7871 §6)", () => {
  // 10.20.255.1/20: the third byte keeps its top 4 bits only (0xff → 0xf0).
  assertEquals(
    hex(encodeClientSubnetOption(parseClientSubnet("10.20.255.1/20"))),
    "00 08 00 07 00 01 14 00 0a 14 f0",
  );
  assertEquals(
    hex(encodeClientSubnetOption(parseClientSubnet("10.20.255.1/17"))),
    "00 08 00 07 00 01 11 00 0a 14 80",
  );
  assertEquals(
    hex(encodeClientSubnetOption(parseClientSubnet("255.255.255.255/1"))),
    "00 08 00 05 00 01 01 00 80",
  );
  assertEquals(
    hex(encodeClientSubnetOption(parseClientSubnet("1.2.3.4"))),
    "00 08 00 08 00 01 20 00 01 02 03 04",
  );
});

Deno.test("parseClientSubnet: canonical text, and clear errors", () => {
  assertEquals(formatClientSubnet(parseClientSubnet("1.2.3.99/24")), "1.2.3.0/24");
  assertEquals(formatClientSubnet(parseClientSubnet("2001:DB8:1:2::5/48")), "2001:db8:1::/48");
  assertEquals(formatClientSubnet(parseClientSubnet("10.0.0.1")), "10.0.0.1/32");
  assertThrows(() => parseClientSubnet("1.2.3.0/33"), /0\.\.32/);
  assertThrows(() => parseClientSubnet("example.com/24"), /not an IPv4 address/);
  assertThrows(() => parseClientSubnet("::/129"), /0\.\.128/);
});

Deno.test("buildUpstreamQuery carries the option in its OPT record, which dns-packet reads back", () => {
  const q = parseQuery(buildQuery("a.test", "A", { id: 5, edns: 1232 }));
  const option = encodeClientSubnetOption(parseClientSubnet("1.2.3.0/24"));
  const wire = buildUpstreamQuery({ ...q, name: q.name, key: q.key, upstreamOption: option }, 77);
  const packet = decodePacket(wire);
  assertEquals(packet.id, 77);
  assertEquals(packet.questions?.[0].name, "a.test");
  const opt = packet.additionals?.find((a) => a.type === "OPT") as unknown as {
    udpPayloadSize: number;
    options: {
      code: number;
      family: number;
      sourcePrefixLength: number;
      scopePrefixLength: number;
      ip: string;
    }[];
  };
  assertEquals(opt.udpPayloadSize, 1232);
  assertEquals(opt.options.length, 1);
  const [ecs] = opt.options;
  assertEquals(
    [ecs.code, ecs.family, ecs.sourcePrefixLength, ecs.scopePrefixLength, ecs.ip],
    [8, 1, 24, 0, "1.2.3.0"],
  );
  assertEquals(readClientSubnet(wire)?.subnet, "1.2.3.0/24");
  assertEquals(readClientSubnet(wire)?.address, "1.2.3");
  // Without an option the query is as before: an OPT record with no data.
  const plain = buildUpstreamQuery(q, 77);
  assertEquals(plain.length, wire.length - option.length);
  assertEquals(readClientSubnet(plain), null);
  assertEquals(wire.subarray(0, plain.length - 2), plain.subarray(0, plain.length - 2));
});

Deno.test("readClientSubnet reads a dig-style IPv6 option; hasOptRecord sees the OPT record", () => {
  const wire = encodePacket({
    type: "response",
    id: 1,
    flags: 0x8180,
    questions: [{ name: "a.test", type: "AAAA", class: "IN" }],
    answers: [{ name: "a.test", type: "AAAA", ttl: 60, data: "2001:db8::1" }],
    additionals: [{
      type: "OPT",
      name: ".",
      udpPayloadSize: 1232,
      options: [{
        code: 8,
        family: 2,
        sourcePrefixLength: 56,
        scopePrefixLength: 48,
        ip: "2001:db8:0:ff00::",
      }],
    } as never],
  });
  const seen = readClientSubnet(wire)!;
  assertEquals([seen.family, seen.prefix, seen.scope, seen.subnet], [2, 56, 48, "2001:db8:0:ff00::/56"]);
  assert(hasOptRecord(wire));
  const noOpt = encodePacket({
    type: "response",
    id: 1,
    flags: 0x8180,
    questions: [{ name: "a.test", type: "A", class: "IN" }],
    answers: [{ name: "a.test", type: "A", ttl: 60, data: "192.0.2.1" }],
    additionals: [{ name: "a.test", type: "A", ttl: 60, data: "192.0.2.2" }],
  });
  assert(!hasOptRecord(noOpt));
  assert(!hasOptRecord(noOpt.subarray(0, noOpt.length - 3)), "a cut message has no OPT record to find");
});

Deno.test("ClientSubnetChoice: SmartDNS's choice of option by query type", () => {
  const v4 = "1.2.3.0/24";
  const v6 = "2001:db8::/56";
  const seen = (choice: ClientSubnetChoice | undefined, qtype: number) => {
    const option = choice?.forType(qtype);
    return option ? (option[5] === 1 ? "v4" : "v6") : "-";
  };
  const table = (choice: ClientSubnetChoice | undefined) => [1, 28, 15].map((t) => seen(choice, t)).join(" ");
  // Global edns-client-subnet: every type; others take the IPv4 subnet first.
  assertEquals(table(ClientSubnetChoice.of(undefined, false, [v4, v6])), "v4 v6 v4");
  assertEquals(table(ClientSubnetChoice.of(undefined, false, [v6])), "v6 v6 v6");
  // A server's own -subnet: A and AAAA only, unless -subnet-all-query-types (IPv6 first then).
  assertEquals(table(ClientSubnetChoice.of([v4], false, undefined)), "v4 v4 -");
  assertEquals(table(ClientSubnetChoice.of([v4, v6], true, undefined)), "v4 v6 v6");
  // Its own replaces the global one entirely, even for the types it sends none with.
  assertEquals(table(ClientSubnetChoice.of([v6], false, [v4])), "v6 v6 -");
  assertEquals(ClientSubnetChoice.of(undefined, true, undefined), undefined);
  assertEquals(ClientSubnetChoice.of([], false, []), undefined);
});
