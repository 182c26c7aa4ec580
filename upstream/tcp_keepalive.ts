/**
 * SmartDNS's `server -tcp-keepalive N`: the EDNS(0) edns-tcp-keepalive option (RFC 7828, code 11)
 * with TIMEOUT N (in units of 100 ms) in the queries sent to the server, asking it to keep an idle
 * connection open that long (src/dns_client/packet.c adds it to the query). RFC 7828 §3.2.1 allows
 * it over TCP only: keeldns sends it on TCP and TLS connections.
 *
 * @module
 */

/** The EDNS option code of edns-tcp-keepalive (RFC 7828 §3.1). */
export const EDNS_TCP_KEEPALIVE = 11;

/**
 * `query` (as buildUpstreamQuery makes it: the OPT record last, with no options) with the
 * edns-tcp-keepalive option carrying `timeout` (100 ms units, 0..65535) added to its OPT record.
 */
export function withTcpKeepalive(query: Uint8Array, timeout: number): Uint8Array {
  const out = new Uint8Array(query.length + 6);
  out.set(query);
  const rdlength = (query[query.length - 2] << 8) | query[query.length - 1];
  if (rdlength !== 0) throw new Error("the OPT record is expected last and empty");
  out[query.length - 1] = 6; // RDLENGTH: one option of 2 + 2 + 2 bytes
  out.set([0, EDNS_TCP_KEEPALIVE, 0, 2, timeout >> 8, timeout & 0xff], query.length);
  return out;
}
