/**
 * DNS transaction IDs for queries keeldns sends: unpredictable, so an off-path attacker cannot
 * guess them (RFC 5452).
 *
 * @module
 */

/** A random 16-bit transaction ID from a cryptographic source. */
export function randomId(): number {
  const pool = randomId.pool;
  if (randomId.next >= pool.length) {
    crypto.getRandomValues(pool);
    randomId.next = 0;
  }
  return pool[randomId.next++];
}
randomId.pool = new Uint16Array(256);
randomId.next = 256;
