/**
 * Reads dnsmasq's DHCP lease file (`dnsmasq-lease-file`): `expiry mac ip hostname client-id`
 * lines; a host name of `*` means the client gave none. The names are answered locally with
 * their address, and the address's PTR with the name, as SmartDNS does.
 *
 * @module
 */
import type { HostEntry } from "./hosts_file.ts";
import { asciiDomain } from "./smartdns/reader.ts";
import { isIPv4, isIPv6 } from "./values.ts";

/** The named leases of a dnsmasq lease file's text (bad lines are skipped: the file is dnsmasq's). */
export function parseDnsmasqLeases(text: string): HostEntry[] {
  const entries: HostEntry[] = [];
  for (const line of text.split(/\r?\n/)) {
    const [, , ip, name] = line.trim().split(/\s+/);
    if (!ip || !name || name === "*" || (!isIPv4(ip) && !isIPv6(ip))) continue;
    try {
      entries.push({ name: asciiDomain(name), ip, canonical: true });
    } catch {
      // a client-chosen name that is not a domain name is not answered
    }
  }
  return entries;
}
