import { assertEquals } from "./tests/helpers/assert.ts";
import { childV8Flags } from "./guardian.ts";

Deno.test("the child's V8 flags bound its heap, and flags the guardian inherited override them", () => {
  assertEquals(childV8Flags("speed"), "--max-semi-space-size=2,--max-old-space-size=128");
  assertEquals(
    childV8Flags("memory", "--max-old-space-size=300"),
    "--optimize-for-size,--max-semi-space-size=1,--max-old-space-size=64,--max-old-space-size=300",
  );
});
