/**
 * A fake upstream DNS server for tests, on 127.0.0.1 random ports (UDP and TCP), with fault
 * injection: per-name delays, drops, wrong IDs, truncation, custom rcodes, and arbitrary damage to
 * the encoded answer (`mutate`). Counts what it receives.
 *
 * @module
 */
import dgram from "node:dgram";
import { type Answer, decodePacket, encodePacket, type Packet } from "../../dns/packet.ts";
import { frame, FramedReader, writeAll } from "../../dns/stream_framing.ts";

/** What the fake does for one question. */
export interface FakeBehaviour {
  /** Records to answer with (default: one A record 192.0.2.1, TTL 300, for A questions). */
  answers?: Answer[];
  rcode?: "NOERROR" | "NXDOMAIN" | "SERVFAIL" | "REFUSED";
  /** Authority records (e.g. an SOA for negative answers). */
  authorities?: Answer[];
  /** Milliseconds to wait before answering. */
  delayMs?: number;
  /** Never answer. */
  drop?: boolean;
  /** Over UDP, answer with TC set and no records (the full answer comes over TCP). */
  truncateUdp?: boolean;
  /** First send a reply with a wrong ID, then the right one. */
  wrongIdFirst?: boolean;
  /**
   * Rewrites the encoded answer just before it is sent (fault injection: bit flips, length lies,
   * pointer games …). May return the same array changed in place, or a new one of any length; over
   * TCP the result is framed with its own length. Called once per answer sent.
   */
  mutate?: (wire: Uint8Array, context: MutateContext) => Uint8Array;
  /** Additional records (besides the OPT record echoed to an EDNS0 query). */
  additionals?: Answer[];
  /** Answer without the OPT record even to an EDNS0 query (a server or forger without EDNS0). */
  noOpt?: boolean;
  /** Over UDP, first send a forged answer (A 198.51.100.66, no OPT record), then the real one. */
  forgedFirst?: boolean;
}

/** What a {@link FakeBehaviour.mutate} hook is told about the answer it rewrites. */
export interface MutateContext {
  /** The transport the answer leaves on. */
  proto: "udp" | "tcp";
  /** The query being answered, as received. */
  query: Uint8Array;
}

/** A decision function: question name and type → behaviour. */
export type FakeScript = (name: string, type: string) => FakeBehaviour;

/** A running fake upstream. */
export class FakeUpstream {
  /** Every question received, as `name type proto`. */
  readonly log: string[] = [];
  /** Every query received, as its bytes, in the order of {@link log}. */
  readonly queries: Uint8Array[] = [];
  private readonly tcpConns = new Set<Deno.TcpConn>();

  private constructor(
    private readonly udp: dgram.Socket,
    private readonly tcp: Deno.TcpListener,
    readonly port: number,
    public script: FakeScript,
  ) {
    this.serveTcp();
  }

  /** Starts UDP and TCP on the same random port of 127.0.0.1. */
  static async start(script: FakeScript = () => ({})): Promise<FakeUpstream> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = tcp.addr.port;
      const udp = dgram.createSocket("udp4");
      try {
        await new Promise<void>((resolve, reject) => {
          udp.once("error", reject);
          udp.bind(port, "127.0.0.1", () => resolve());
        });
      } catch {
        tcp.close();
        udp.close();
        continue;
      }
      const fake = new FakeUpstream(udp, tcp, port, script);
      udp.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => fake.onUdp(msg, rinfo));
      return fake;
    }
    throw new Error("no free port for the fake upstream");
  }

  /** How many questions for `name` arrived (over any transport). */
  count(name: string): number {
    return this.log.filter((l) => l.split(" ")[0] === name).length;
  }

  private answer(query: Packet, raw: Uint8Array, behaviour: FakeBehaviour, udp: boolean): Uint8Array {
    const q = query.questions![0];
    const truncated = udp && behaviour.truncateUdp;
    const defaultAnswers: Answer[] = q.type === "A"
      ? [{ name: q.name, type: "A", ttl: 300, data: "192.0.2.1" }]
      : [];
    const wire = encodePacket({
      type: "response",
      id: query.id,
      flags: 0x8180 | (truncated ? 0x0200 : 0) | rcodeNumber(behaviour.rcode),
      questions: query.questions,
      answers: truncated ? [] : behaviour.answers ?? defaultAnswers,
      authorities: truncated ? [] : behaviour.authorities ?? [],
      additionals: [
        ...(truncated ? [] : behaviour.additionals ?? []),
        ...(!behaviour.noOpt && query.additionals?.some((a) => a.type === "OPT")
          ? [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as unknown as Answer]
          : []),
      ],
    });
    return behaviour.mutate ? behaviour.mutate(wire, { proto: udp ? "udp" : "tcp", query: raw }) : wire;
  }

  private async onUdp(msg: Uint8Array, rinfo: dgram.RemoteInfo): Promise<void> {
    let query: Packet;
    try {
      query = decodePacket(msg);
    } catch {
      return;
    }
    const q = query.questions?.[0];
    if (!q) return;
    this.log.push(`${q.name} ${q.type} udp`);
    this.queries.push(new Uint8Array(msg));
    const behaviour = this.script(q.name, q.type);
    if (behaviour.drop) return;
    if (behaviour.delayMs) await new Promise((r) => setTimeout(r, behaviour.delayMs));
    let out: Uint8Array;
    try {
      out = this.answer(query, new Uint8Array(msg), behaviour, true);
    } catch {
      return; // a script or hook that throws means: no answer
    }
    if (behaviour.forgedFirst) {
      const forged: FakeBehaviour = {
        answers: [{ name: query.questions![0].name, type: "A", ttl: 300, data: "198.51.100.66" }],
        noOpt: true,
      };
      this.udp.send(this.answer(query, new Uint8Array(msg), forged, true), rinfo.port, rinfo.address);
    }
    if (behaviour.wrongIdFirst) {
      const wrong = out.slice();
      wrong[0] ^= 0xff;
      this.udp.send(wrong, rinfo.port, rinfo.address);
    }
    this.udp.send(out, rinfo.port, rinfo.address);
  }

  private async serveTcp(): Promise<void> {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.tcp.accept();
      } catch {
        return;
      }
      this.tcpConns.add(conn);
      (async () => {
        const reader = new FramedReader(conn);
        try {
          for (;;) {
            const msg = await reader.next();
            if (!msg) break;
            const query = decodePacket(msg);
            const q = query.questions![0];
            this.log.push(`${q.name} ${q.type} tcp`);
            this.queries.push(msg.slice());
            const behaviour = this.script(q.name, q.type);
            if (behaviour.drop) continue;
            if (behaviour.delayMs) await new Promise((r) => setTimeout(r, behaviour.delayMs));
            await writeAll(conn, frame(this.answer(query, msg, behaviour, false)));
          }
        } catch {
          // client went away
        } finally {
          this.tcpConns.delete(conn);
          try {
            conn.close();
          } catch { /* closed */ }
        }
      })();
    }
  }

  /** Stops both listeners. */
  async close(): Promise<void> {
    this.tcp.close();
    for (const c of this.tcpConns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await new Promise<void>((resolve) => this.udp.close(() => resolve()));
  }
}

function rcodeNumber(rcode: FakeBehaviour["rcode"]): number {
  return { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 }[rcode ?? "NOERROR"];
}

/** An SOA record for negative answers, with the given TTL and MINIMUM. */
export function soa(zone: string, ttl: number, minimum: number): Answer {
  return {
    name: zone,
    type: "SOA",
    ttl,
    data: {
      mname: `ns.${zone}`,
      rname: `hostmaster.${zone}`,
      serial: 1,
      refresh: 3600,
      retry: 600,
      expire: 86400,
      minimum,
    },
  };
}

/** TXT records making an answer of about `bytes` bytes (over the 4096-byte UDP receive slot). */
export function bigTxt(name: string, bytes: number): Answer[] {
  return Array.from({ length: Math.ceil(bytes / 112) }, (_, i) => ({
    name,
    type: "TXT" as const,
    ttl: 300,
    data: `${i}`.padEnd(100, "x"),
  }));
}

/** How many answer shapes {@link answerShape} has. */
export const ANSWER_SHAPES = 11;

/**
 * A valid answer of shape `shape` (0 to ANSWER_SHAPES - 1) for `name` in `zone`, and the type to
 * ask: A, AAAA, CNAME chain, MX with glue, TXT, NXDOMAIN, NODATA, SRV, NS with glue, PTR, and a
 * TXT set over 4096 bytes. The fuzz test and the soak damage these.
 */
export function answerShape(
  shape: number,
  name: string,
  zone: string,
): { type: string; behaviour: FakeBehaviour } {
  const a = (n: string, ip: string): Answer => ({ name: n, type: "A", ttl: 300, data: ip });
  const neg = [soa(zone, 300, 60)];
  switch (shape) {
    case 0:
      return { type: "A", behaviour: { answers: [a(name, "192.0.2.1"), a(name, "192.0.2.2")] } };
    case 1:
      return {
        type: "AAAA",
        behaviour: { answers: [{ name, type: "AAAA", ttl: 300, data: "2001:db8::1" }] },
      };
    case 2:
      return {
        type: "A",
        behaviour: {
          answers: [{ name, type: "CNAME", ttl: 300, data: `c.${name}` }, a(`c.${name}`, "192.0.2.3")],
        },
      };
    case 3:
      return {
        type: "MX",
        behaviour: {
          answers: [{ name, type: "MX", ttl: 300, data: { preference: 10, exchange: `mx.${name}` } }],
          additionals: [a(`mx.${name}`, "192.0.2.4")],
        },
      };
    case 4:
      return {
        type: "TXT",
        behaviour: { answers: [{ name, type: "TXT", ttl: 300, data: ["v=1", "hello world"] }] },
      };
    case 5:
      return { type: "A", behaviour: { rcode: "NXDOMAIN", authorities: neg } };
    case 6:
      return { type: "AAAA", behaviour: { answers: [], authorities: neg } };
    case 7:
      return {
        type: "SRV",
        behaviour: {
          answers: [{
            name,
            type: "SRV",
            ttl: 300,
            data: { priority: 1, weight: 5, port: 53, target: `t.${name}` },
          }],
        },
      };
    case 8:
      return {
        type: "NS",
        behaviour: {
          answers: [{ name, type: "NS", ttl: 300, data: `ns1.${name}` }],
          additionals: [a(`ns1.${name}`, "192.0.2.5")],
        },
      };
    case 9:
      return { type: "PTR", behaviour: { answers: [{ name, type: "PTR", ttl: 300, data: `host.${name}` }] } };
    default:
      return { type: "TXT", behaviour: { answers: bigTxt(name, 5000) } }; // over 4096 bytes
  }
}
