import { assert, assertEquals } from "../tests/helpers/assert.ts";
import { ByteArena, CHUNK_SIZE } from "./byte_arena.ts";

Deno.test("ByteArena reuses a freed record for the next of its rounded size, never overlapping", () => {
  const arena = new ByteArena();
  const a = arena.allocate(100);
  const b = arena.allocate(100);
  assertEquals(b - a, ByteArena.roundedLength(100));
  arena.free(a, 100);
  assertEquals(arena.allocate(200) > b, true, "a larger record does not take the freed one");
  assertEquals(arena.allocate(97), a, "the same rounded size does");
});

Deno.test("ByteArena starts a new chunk when a record does not fit, and reuses the old chunk's tail", () => {
  const arena = new ByteArena();
  const big = CHUNK_SIZE - 4096;
  const first = arena.allocate(big);
  const second = arena.allocate(8192);
  assertEquals([first, second, arena.chunks.length], [0, CHUNK_SIZE, 2]);
  assertEquals(arena.allocate(4096), big, "the first chunk's tail became a free record");
  assert(arena.chunkOf(second) === arena.chunks[1]);
  let threw = false;
  try {
    arena.allocate(CHUNK_SIZE + 1);
  } catch {
    threw = true;
  }
  assert(threw, "a record larger than a chunk is refused");
});
