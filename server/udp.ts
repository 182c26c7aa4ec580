/**
 * The portable UDP listener, on `node:dgram` (measured faster than `Deno.listenDatagram` here, and
 * stable without `--unstable-net`). `::` binds dual-stack.
 *
 * @module
 */
import dgram from "node:dgram";
import type { BindConfig } from "../config/schema.ts";
import type { Logger } from "../ops/log.ts";
import { authority } from "../upstream/upstream.ts";
import { encodeSockaddr } from "../net/linux_socket.ts";
import type { QueryDispatcher } from "./dispatcher.ts";
import { bindFlags, DRAIN_MS, type Listener } from "./listener.ts";

/** A UDP DNS listener. */
export class UdpListener implements Listener {
  readonly address: string;
  readonly flags: number;
  readonly group?: string;

  private constructor(
    private readonly socket: dgram.Socket,
    bind: BindConfig,
    private readonly dispatcher: QueryDispatcher,
  ) {
    this.address = `udp://${authority(bind.host, bind.port)}`;
    this.flags = bindFlags(bind);
    this.group = bind.group;
  }

  /** Binds `bind` and starts answering through `dispatcher`. Rejects if the port cannot be bound. */
  static async listen(bind: BindConfig, dispatcher: QueryDispatcher, log: Logger): Promise<UdpListener> {
    const v6 = bind.host.includes(":");
    // reuseAddr lets a successor bind the same port; new datagrams then go to the newest socket.
    const socket = dgram.createSocket({ type: v6 ? "udp6" : "udp4", ipv6Only: false, reuseAddr: true });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind({ address: bind.host, port: bind.port }, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    const listener = new UdpListener(socket, bind, dispatcher);
    socket.on(
      "error",
      (e: Error) => log.warn("{address}: {error}", { address: listener.address, error: e.message }),
    );
    const send = (answer: Uint8Array, rinfo: dgram.RemoteInfo) =>
      socket.send(answer, rinfo.port, rinfo.address);
    socket.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
      // The client's address as a sockaddr, for the access rules and client groups.
      let peer: Uint8Array | undefined;
      try {
        peer = encodeSockaddr(rinfo.address.replace(/%.*$/, ""), rinfo.port);
      } catch {
        peer = undefined;
      }
      const answer = dispatcher.answer(msg, true, listener, peer);
      if (answer instanceof Uint8Array) send(answer, rinfo);
      else if (answer) answer.then((bytes) => send(bytes, rinfo));
    });
    return listener;
  }

  /** Waits for answers under way (still answering what arrives meanwhile), then closes the socket. */
  async close(drainMs = DRAIN_MS): Promise<void> {
    await this.dispatcher.whenIdle(drainMs);
    return new Promise((resolve) => {
      try {
        this.socket.close(() => resolve());
      } catch {
        resolve();
      }
    });
  }
}
