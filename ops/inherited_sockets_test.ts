import { assertEquals } from "../tests/helpers/assert.ts";
import { formatInheritedSockets, parseInheritedSockets, udpListenerKey } from "./inherited_sockets.ts";

Deno.test("inherited sockets: keys bracket IPv6, the list reads back, junk entries are skipped", () => {
  assertEquals(udpListenerKey("127.0.0.1", 53), "udp://127.0.0.1:53");
  assertEquals(udpListenerKey("::", 5353), "udp://[::]:5353");
  const fds = new Map([["udp://127.0.0.1:53", 5], ["udp://[::]:53", 6]]);
  const text = formatInheritedSockets(fds);
  assertEquals(text, "udp://127.0.0.1:53=5,udp://[::]:53=6");
  assertEquals(parseInheritedSockets(text), fds);
  assertEquals(parseInheritedSockets(undefined).size, 0);
  assertEquals(parseInheritedSockets(""), new Map());
  assertEquals(
    parseInheritedSockets("udp://a:1=x,=4,udp://b:2=1,udp://c:3=7.5,udp://d:4=9"),
    new Map([["udp://d:4", 9]]),
    "not a number, no key, stdio, not an integer",
  );
});
