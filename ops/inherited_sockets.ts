/**
 * The UDP listener sockets a child inherits from the guardian: which descriptor serves which
 * listener, passed in one environment variable, `udp://HOST:PORT=FD` entries joined by commas
 * (`udp://[::]:53=5,udp://127.0.0.1:53=6`). The guardian binds them once (guardian/held_sockets.ts),
 * so datagrams that arrive while no child runs queue in the kernel for the next one.
 *
 * @module
 */

/** Environment variable listing the UDP listener descriptors the child inherits. */
export const INHERITED_UDP_FDS_ENV = "KEELDNS_UDP_FDS";

/** Set ("1") in the guardian's environment, it holds no sockets: children bind all their own. */
export const NO_HELD_SOCKETS_ENV = "KEELDNS_NO_HELD_SOCKETS";

/** The name a UDP listener goes by in {@link INHERITED_UDP_FDS_ENV}: `udp://127.0.0.1:53`, `udp://[::]:53`. */
export function udpListenerKey(host: string, port: number): string {
  return `udp://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** The variable's value for `fds` (listener key → descriptor). */
export function formatInheritedSockets(fds: ReadonlyMap<string, number>): string {
  return [...fds].map(([key, fd]) => `${key}=${fd}`).join(",");
}

/** Reads the variable's value: listener key → descriptor. Entries that do not parse are skipped. */
export function parseInheritedSockets(text: string | undefined): Map<string, number> {
  const fds = new Map<string, number>();
  for (const entry of (text ?? "").split(",")) {
    const at = entry.lastIndexOf("=");
    if (at <= 0) continue;
    const fd = Number(entry.slice(at + 1));
    if (Number.isInteger(fd) && fd > 2) fds.set(entry.slice(0, at), fd);
  }
  return fds;
}
