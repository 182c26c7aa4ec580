import { assertEquals } from "../tests/helpers/assert.ts";
import { parseTomlConfig } from "./toml.ts";

Deno.test("the README's keeldns.toml example is a configuration keeldns reads", () => {
  const readme = Deno.readTextFileSync(new URL("../README.md", import.meta.url));
  const block = /### keeldns\.toml\n\n```toml\n([\s\S]*?)```/.exec(readme)?.[1];
  if (!block) throw new Error("no keeldns.toml example in the README");
  const c = parseTomlConfig(block, "/etc/keeldns/keeldns.toml");
  assertEquals(c.server.binds.find((b) => b.group)?.group, "office");
  assertEquals(c.rules.domainRules.length, 1);
  assertEquals(c.groups.map((g) => g.name), ["kids"]);
  assertEquals(c.rules.ipRules.length, 1);
});
