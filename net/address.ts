/**
 * IP addresses as text and as bytes: parsing a literal to its 4 or 16 bytes, and the reverse
 * (`in-addr.arpa` / `ip6.arpa`) name a PTR question for it asks.
 *
 * @module
 */

/** Parses a literal IPv4 or IPv6 address to its 4 or 16 bytes. */
export function ipBytes(ip: string): Uint8Array {
  if (!ip.includes(":")) {
    const parts = ip.split(".").map(Number);
    if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
      throw new Error(`"${ip}" is not an IPv4 address`);
    }
    return new Uint8Array(parts);
  }
  let text = ip;
  const out = new Uint8Array(16);
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = ipBytes(v4[1]);
    const hi = ((b[0] << 8) | b[1]).toString(16);
    const lo = ((b[2] << 8) | b[3]).toString(16);
    text = text.slice(0, -v4[1].length) + `${hi}:${lo}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) throw new Error(`"${ip}" is not an IPv6 address`);
  const [head, tail] = halves.length === 2 ? halves : [text, undefined];
  const headGroups = head ? head.split(":") : [];
  const tailGroups = tail ? tail.split(":") : [];
  if (tail === undefined && headGroups.length !== 8) throw new Error(`"${ip}" is not an IPv6 address`);
  if (headGroups.length + tailGroups.length > (tail === undefined ? 8 : 7)) {
    throw new Error(`"${ip}" is not an IPv6 address`);
  }
  const groups = [
    ...headGroups,
    ...Array(8 - headGroups.length - tailGroups.length).fill("0"),
    ...tailGroups,
  ];
  groups.forEach((g, i) => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw new Error(`"${ip}" is not an IPv6 address`);
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  return out;
}

/** The reverse-lookup name of a literal address (`4.3.2.1.in-addr.arpa`, nibbles for IPv6). */
export function reverseName(ip: string): string {
  const bytes = ipBytes(ip);
  if (bytes.length === 4) return `${bytes[3]}.${bytes[2]}.${bytes[1]}.${bytes[0]}.in-addr.arpa`;
  const nibbles: string[] = [];
  for (let i = 15; i >= 0; i--) nibbles.push((bytes[i] & 0xf).toString(16), (bytes[i] >> 4).toString(16));
  return `${nibbles.join(".")}.ip6.arpa`;
}
