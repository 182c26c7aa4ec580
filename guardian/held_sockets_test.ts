import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { parseConfig } from "../config/load.ts";
import { parseInheritedSockets } from "../ops/inherited_sockets.ts";
import { getLogger } from "../ops/log.ts";
import { freePort } from "../tests/helpers/keeldns_process.ts";
import { batchedUdpBinds, HeldUdpSockets } from "./held_sockets.ts";

const config = (binds: string, transport = "auto") =>
  parseConfig(
    `[server]\n${binds}\nudp-transport = "${transport}"\n[[upstream]]\naddress = "udp://127.0.0.1:9"\n`,
    "test.toml",
  );

Deno.test("the guardian holds the UDP binds a batched child serves: once per address, none when portable", () => {
  const c = config(
    'bind = ["127.0.0.1:5301", "127.0.0.1:5301", "[::1]:5302"]\nbind-tcp = ["127.0.0.1:5303"]',
  );
  assertEquals(batchedUdpBinds(c).map((b) => `${b.host}:${b.port}`), ["127.0.0.1:5301", "::1:5302"]);
  assertEquals(batchedUdpBinds(config('bind = ["127.0.0.1:5301"]', "portable")), []);
});

Deno.test({
  name: "held sockets: bound for a configuration, listed for the child, released when no longer configured",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const [a, b] = [await freePort(), await freePort()];
    const held = new HeldUdpSockets(getLogger("guardian"));
    try {
      const first = config(`bind = ["127.0.0.1:${a}"]`);
      const second = config(`bind = ["127.0.0.1:${b}"]`);
      held.bindFor(first);
      held.bindFor(first); // already held: nothing more
      assertEquals([...parseInheritedSockets(held.environment()).keys()], [`udp://127.0.0.1:${a}`]);
      held.bindFor(second); // a planned restart adds b, the old child still serves a
      assertEquals(held.size, 2);
      held.keepOnly(second);
      assertEquals([...parseInheritedSockets(held.environment()).keys()], [`udp://127.0.0.1:${b}`]);
      // a is free again
      const probe = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: a });
      probe.close();
      // a port someone else holds exclusively is left to the child, not an error
      const taken = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: a });
      try {
        held.bindFor(config(`bind = ["127.0.0.1:${a}", "127.0.0.1:${b}"]`));
        assert(!held.environment()!.includes(`:${a}=`), "a is not held");
      } finally {
        taken.close();
      }
    } finally {
      held.closeAll();
    }
    assertEquals(held.environment(), undefined);
  },
});
