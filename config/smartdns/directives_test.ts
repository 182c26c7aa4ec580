import { assert, assertEquals } from "../../tests/helpers/assert.ts";
import { FEATURE_TABLES, NOT_YET, SMARTDNS_DIRECTIVES } from "./directives.ts";

Deno.test("every directive of SmartDNS's table is in exactly one handler table or the not-yet list", () => {
  const owners = new Map<string, string[]>();
  for (const [feature, table] of Object.entries(FEATURE_TABLES)) {
    for (const name of Object.keys(table)) owners.set(name, [...(owners.get(name) ?? []), feature]);
  }
  for (const name of Object.keys(NOT_YET)) owners.set(name, [...(owners.get(name) ?? []), "not yet"]);
  for (const name of SMARTDNS_DIRECTIVES) {
    assertEquals(owners.get(name)?.length, 1, `${name}: ${owners.get(name)?.join(", ") ?? "in no table"}`);
  }
  for (const name of owners.keys()) {
    assert(SMARTDNS_DIRECTIVES.includes(name), `${name} is not a SmartDNS directive`);
  }
  assertEquals(new Set(SMARTDNS_DIRECTIVES).size, SMARTDNS_DIRECTIVES.length, "no name twice");
});

Deno.test("every handler says where it lives in keeldns.toml, and partly-supported ones say what is missing", () => {
  for (const table of Object.values(FEATURE_TABLES)) {
    for (const [name, handler] of Object.entries(table)) {
      assert(handler.toml !== "", `${name}: toml`);
      if (handler.status === "partly") {
        assert(handler.note, `${name}: a partly supported directive needs a note`);
      }
    }
  }
});
