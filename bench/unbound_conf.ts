/**
 * The unbound.conf of the benches' upstream: unbound in the foreground, logging nowhere, loopback
 * clients only, its caches off, answering every `*.bench.test` name itself from a redirect zone
 * (192.0.2.1).
 *
 * @module
 */

/** That configuration, working in `dir`, with `lines` (interfaces, TLS, …) added to its server section. */
export function benchUnboundConf(dir: string, lines: string[]): string {
  return `server:
${lines.map((l) => `  ${l}\n`).join("")}  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "${dir}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  msg-cache-size: 0
  rrset-cache-size: 0
  local-zone: "bench.test." redirect
  local-data: "bench.test. 3600 IN A 192.0.2.1"
remote-control:
  control-enable: no
`;
}
