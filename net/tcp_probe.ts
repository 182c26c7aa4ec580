/**
 * TCP connect probe: how long a TCP handshake with an address takes (SmartDNS's `tcp:PORT` speed
 * check). A refused connection (RST) counts as a reply, as it does in SmartDNS: the host answered.
 *
 * @module
 */

/**
 * Connects to `ip`:`port` and returns the time to the handshake's end (or to the refusal) in
 * milliseconds, or `undefined` when nothing came back within `timeoutMs` or the network is
 * unreachable. The connection is closed at once.
 */
export async function tcpConnectTime(
  ip: string,
  port: number,
  timeoutMs: number,
): Promise<number | undefined> {
  const signal = AbortSignal.timeout(Math.max(1, timeoutMs));
  const started = performance.now();
  try {
    const conn = await Deno.connect({ hostname: ip, port, signal });
    const rtt = performance.now() - started;
    try {
      conn.close();
    } catch { /* already closed */ }
    return rtt;
  } catch (e) {
    if (e instanceof Deno.errors.ConnectionRefused) return performance.now() - started;
    return undefined; // timed out, unreachable, or not permitted
  }
}
