/**
 * SmartDNS's upstream directives: `server`, `server-tcp`, `server-tls`, `server-https`,
 * `server-quic`, `resolv-file`, and the HTTP/3 kinds not built. A server may be given by IP address
 * or by host name (resolved through the bootstrap servers, see config/bootstrap_servers.ts;
 * `-host-ip` pins the address). The model half is `UpstreamConfig` in config/schema.ts.
 *
 * @module
 */
import type { TlsOptions, UpstreamTransport } from "../schema.ts";
import { isIPv4, isIPv6, parseUpstreamAddress, type UpstreamAddress } from "../values.ts";
import { formatClientSubnet, parseClientSubnet } from "../../dns/client_subnet.ts";
import { type DirectiveTable, type Draft, type Line, relativeTo } from "./reader.ts";

/** `server` options that take a value, by every name SmartDNS accepts. */
export const WITH_VALUE = new Set([
  "group",
  "g",
  "proxy",
  "p",
  "host-name",
  "tls-host-verify",
  "spki-pin",
  "http-host",
  "host-ip",
  "subnet",
  "interface",
  "set-mark",
  "tcp-keepalive",
  "alpn",
  "drop-packet-latency",
]);
/** `server` options that are flags. */
export const FLAGS = new Set([
  "exclude-default-group",
  "e",
  "blacklist-ip",
  "whitelist-ip",
  "check-edns",
  "bootstrap-dns",
  "b",
  "no-check-certificate",
  "k",
  "subnet-all-query-types",
  "fallback",
  "hitchhiking",
]);
/** Why `-set-mark`/`-interface` are refused on a server other than plain UDP without a proxy. */
export const SOCKET_OPTION_REFUSAL =
  "only plain UDP servers (FFI sockets) can carry it: Deno's TCP sockets " +
  "take no SO_MARK or SO_BINDTODEVICE, so queries would leave without it";
/** Options that only mean something for encrypted servers. */
export const TLS_ONLY = new Set([
  "host-name",
  "tls-host-verify",
  "spki-pin",
  "http-host",
  "no-check-certificate",
  "k",
  "alpn",
]);

function server(d: Draft, l: Line, transport: UpstreamTransport): void {
  const text = d.text(l, 1);
  let address: UpstreamAddress;
  try {
    address = parseUpstreamAddress(text, transport);
  } catch (e) {
    const reason = (e as Error).message;
    if (reason.includes("not supported yet") && reason.includes("://")) {
      d.notSupported(
        `${l.words[0]} ${reason.split(":")[0]}://`,
        l,
        1,
        NO_HTTP3,
      );
      d.unusableServers.push(d.at(l, 1));
      return;
    }
    d.fail(l, 1, `${l.words[0]}: ${reason}`);
  }
  const groups: string[] = [];
  let excludeDefault = false;
  let blacklistIp = false;
  let whitelistIp = false;
  let fallback = false;
  let proxy: string | undefined;
  let proxyAt = d.at(l, 0);
  let setMark: number | undefined;
  let device: string | undefined;
  let tcpKeepalive: number | undefined;
  const subnets: string[] = [];
  let subnetAllQueryTypes = false;
  let checkEdns = false;
  let bootstrap = false;
  let hostIp: string | undefined;
  const encrypted = address.transport === "tls" || address.transport === "https" ||
    address.transport === "quic";
  const pins: string[] = [];
  const tls: { -readonly [K in keyof TlsOptions]: TlsOptions[K] } = {
    verifyCertificate: true,
    spkiPins: pins,
  };
  d.options(l, 2, { withValue: WITH_VALUE, flags: FLAGS }, (opt, value) => {
    if (encrypted && TLS_ONLY.has(opt)) {
      if (opt === "host-name") tls.hostName = value;
      else if (opt === "tls-host-verify") tls.verifyName = value;
      else if (opt === "spki-pin") pins.push(value ?? "");
      else if (opt === "http-host") tls.httpHost = value;
      else if (opt === "no-check-certificate" || opt === "k") tls.verifyCertificate = false;
      else if (opt === "alpn" && address.transport === "quic") {
        tls.alpn = (value ?? "").split(",").map((a) => a.trim()).filter((a) => a !== "");
      } else d.notSupported(`${l.words[0]} -${opt}`, l, 0, "the server is used without it");
      return;
    }
    if (opt === "group" || opt === "g") {
      if (value && !groups.includes(value)) groups.push(value);
    } else if (opt === "exclude-default-group" || opt === "e") {
      excludeDefault = true;
    } else if (opt === "blacklist-ip") {
      blacklistIp = true;
    } else if (opt === "whitelist-ip") {
      whitelistIp = true;
    } else if (opt === "fallback") {
      fallback = true;
    } else if (opt === "proxy" || opt === "p") {
      proxy = value ?? "";
      proxyAt = d.at(l, l.words.indexOf(value ?? "", 2));
    } else if (opt === "set-mark") {
      const m = /^(0x[0-9a-f]+|\d+)$/i.exec(value ?? "");
      const mark = m ? Number(m[1]) : NaN;
      if (!(mark >= 0 && mark <= 0xffffffff)) {
        d.fail(l, 0, `${l.words[0]}: -set-mark "${value}" is not a mark`);
      }
      setMark = mark;
    } else if (opt === "tcp-keepalive") {
      const n = /^\d+/.exec(value ?? "");
      if (!n || Number(n[0]) > 65535) {
        d.fail(l, 0, `${l.words[0]}: -tcp-keepalive "${value}" is not a timeout (0..65535, in 100 ms units)`);
      }
      if (address.transport === "tcp" || address.transport === "tls") {
        if (Number(n[0]) > 0) tcpKeepalive = Number(n[0]);
      } else {
        d.warn(
          l,
          0,
          `${
            l.words[0]
          }: -tcp-keepalive is sent to TCP and TLS servers only (RFC 7828 forbids it over UDP; ` +
            "a DoH connection is HTTP's to manage); ignored",
        );
      }
    } else if (opt === "interface") {
      if (!/^[^\s/]{1,15}$/.test(value ?? "")) {
        d.fail(l, 0, `${l.words[0]}: -interface "${value}" is not an interface name (1 to 15 characters)`);
      }
      device = value;
    } else if (opt === "subnet") {
      addSubnet(d, l, subnets, value ?? "");
    } else if (opt === "subnet-all-query-types") {
      subnetAllQueryTypes = true;
    } else if (opt === "check-edns") {
      checkEdns = true;
    } else if (opt === "bootstrap-dns" || opt === "b") {
      bootstrap = true; // SmartDNS: in group "bootstrap-dns", out of the default group
      excludeDefault = true;
    } else if (opt === "host-ip") {
      const ip = value ?? "";
      if (!isIPv4(ip) && !isIPv6(ip)) d.fail(l, 0, `${l.words[0]}: -host-ip "${ip}" is not an IP address`);
      // As in SmartDNS, it only means something for a server given by host name.
      if (address.name) hostIp = ip;
    } else if (TLS_ONLY.has(opt)) {
      d.warn(l, 0, `${l.words[0]}: -${opt} only applies to encrypted servers; ignored`);
    } else {
      d.notSupported(`${l.words[0]} -${opt}`, l, 0, "the server is used without it");
    }
  });
  if (address.transport !== "udp") {
    if (setMark !== undefined) d.notSupportedCritical(`${l.words[0]} -set-mark`, l, SOCKET_OPTION_REFUSAL);
    if (device !== undefined) d.notSupportedCritical(`${l.words[0]} -interface`, l, SOCKET_OPTION_REFUSAL);
  }
  if (proxy !== undefined) {
    const marked = [setMark !== undefined ? "-set-mark" : "", device !== undefined ? "-interface" : ""];
    d.proxyRefs.push({
      upstream: d.upstreams.length,
      name: proxy,
      source: proxyAt,
      marked: marked.filter(Boolean).map((o) => `${l.words[0]} ${o} with -proxy`),
      line: l,
    });
  }
  d.upstreams.push({
    ...address,
    ...(encrypted ? { tls } : {}),
    groups,
    excludeDefault,
    ...(blacklistIp ? { blacklistIp } : {}),
    ...(whitelistIp ? { whitelistIp } : {}),
    ...(fallback ? { fallback } : {}),
    ...(setMark !== undefined ? { setMark } : {}),
    ...(device !== undefined ? { interface: device } : {}),
    ...(tcpKeepalive !== undefined ? { tcpKeepalive } : {}),
    ...(subnets.length > 0 ? { clientSubnet: subnets } : {}),
    ...(subnetAllQueryTypes ? { subnetAllQueryTypes } : {}),
    ...(checkEdns ? { checkEdns } : {}),
    ...(hostIp ? { hostIp } : {}),
    ...(bootstrap ? { bootstrap } : {}),
    source: d.at(l, 1),
  });
}

/**
 * Why DNS over HTTP/3 is not built: Deno 2.9.6 has no HTTP/3 client (fetch and
 * `Deno.createHttpClient` speak HTTP/1.1 and HTTP/2 only); its raw QUIC API would need HTTP/3
 * framing, control streams and QPACK written here.
 */
const NO_HTTP3 = "DNS over HTTP/3 is not built: Deno's fetch has no HTTP/3";

/**
 * Adds a Client Subnet (`edns-client-subnet`, `-subnet`) to `list`, replacing the one of its
 * family, as SmartDNS keeps one per family. SmartDNS reads a missing or zero prefix length as the
 * whole address (`1.2.3.4/0` is `1.2.3.4/32`), and so does this, saying so for `/0`.
 */
function addSubnet(d: Draft, l: Line, list: string[], text: string): void {
  const word = Math.max(1, l.words.indexOf(text));
  const zero = /\/0*$/.test(text.trim()) ? text.trim().replace(/\/0*$/, "") : undefined;
  const subnet = d.value(l, word, () => parseClientSubnet(zero ?? text));
  const canonical = formatClientSubnet(subnet);
  if (zero !== undefined) {
    d.warn(l, word, `${l.words[0]}: "${text}" read as ${canonical}, as SmartDNS reads /0`);
  }
  const at = list.findIndex((s) => s.includes(":") === (subnet.family === 2));
  if (at >= 0) list.splice(at, 1, canonical);
  else list.push(canonical);
}

/** An encrypted server kind not built: reported, and counted as a server line keeldns cannot use. */
function encrypted(name: string): DirectiveTable[string] {
  return {
    toml: "upstream.address",
    status: "partly",
    note: "not built: Deno 2.9.6's fetch speaks HTTP/1.1 and HTTP/2 only, and HTTP/3 over its raw QUIC " +
      "streams would need HTTP/3 framing and QPACK written here; reported, and never replaced by resolv.conf",
    handle: (d, l) => {
      d.notSupported(name, l, 0, NO_HTTP3);
      d.unusableServers.push(d.at(l, 1));
    },
  };
}

/** The upstream directives. */
export const UPSTREAMS: DirectiveTable = {
  "server": {
    toml: "upstream.address",
    status: "partly",
    note: "udp:// and tcp:// by IP address or host name, with -group, -exclude-default-group, " +
      "-blacklist-ip, -whitelist-ip, -fallback, -bootstrap-dns, -host-ip, -subnet, -subnet-all-query-types, " +
      "-check-edns, -proxy, -tcp-keepalive (the RFC 7828 option in TCP and TLS queries); -set-mark and " +
      "-interface on UDP servers (refused on others); other options reported",
    handle: (d, l) => server(d, l, "udp"),
  },
  "server-tcp": {
    toml: "upstream.address (tcp://)",
    status: "partly",
    note: "as server",
    handle: (d, l) => server(d, l, "tcp"),
  },
  "resolv-file": {
    toml: "(none: list the servers)",
    status: "supported",
    handle: (d, l) => d.resolvFile = d.text(l, 1),
  },
  "edns-client-subnet": {
    toml: "server.edns-client-subnet",
    status: "supported",
    note: "one IPv4 and one IPv6 subnet, sent to servers without their own -subnet; per client group too",
    handle: (d, l) => {
      const list = d.group ? (d.groups.get(d.group)!.clientSubnet ??= []) : d.clientSubnet;
      addSubnet(d, l, list, d.text(l, 1));
    },
  },
  "ca-file": {
    toml: "server.ca-file",
    status: "supported",
    handle: (d, l) => d.caFile = relativeTo(l.file, d.text(l, 1)),
  },
  "ca-path": {
    toml: "server.ca-path",
    status: "supported",
    handle: (d, l) => d.caPath = relativeTo(l.file, d.text(l, 1)),
  },
  "server-tls": {
    toml: "upstream.address (tls://)",
    status: "partly",
    note: "DNS over TLS to an IP address or a host name (the default SNI), -host-name (SNI), " +
      "-tls-host-verify, -no-check-certificate, -spki-pin (these three through node:tls, not behind a " +
      "proxy), -host-ip, -proxy, -tcp-keepalive (also the idle time of the reused connection)",
    handle: (d, l) => server(d, l, "tls"),
  },
  "server-https": {
    toml: "upstream.address (https://)",
    status: "partly",
    note: "DNS over HTTPS (POST, HTTP/2) to an IP address or a host name, with the server-tls options " +
      "and -http-host",
    handle: (d, l) => server(d, l, "https"),
  },
  "server-quic": {
    toml: "upstream.address (quic://)",
    status: "partly",
    note: "DNS over QUIC (RFC 9250: ALPN doq, one stream per query, ID 0) to an IP address or a host " +
      "name (the default SNI), -host-name (SNI), -host-ip, ca-file/ca-path; -no-check-certificate, " +
      "-spki-pin and a -tls-host-verify name other than the SNI name refuse the server (Deno's QUIC " +
      "client always verifies and does not expose the certificate); -alpn (default doq); a real -proxy " +
      "refuses the file (Deno's QUIC cannot be tunnelled)",
    handle: (d, l) => server(d, l, "quic"),
  },
  "server-h3": encrypted("server-h3"),
  "server-http3": encrypted("server-http3"),
};
