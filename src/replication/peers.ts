/**
 * Clients of other nodes' gRPC services, one channel per address, every call authenticated with
 * the cluster secret: the record stream, snapshots and positions for catch-up and failover,
 * request forwarding, and the consistency check's questions.
 */
import { Buffer } from "node:buffer";
import grpc from "@grpc/grpc-js";
import { BrokerError } from "../broker/errors.ts";
import type { EntityRef } from "../broker/keys.ts";
import type { Principal } from "../auth/users.ts";
import { DEADLINE_HEADER, FORWARDS_HEADER } from "../api/routing.ts";
import { clientOptions, type GrpcTls, peerChannel } from "./grpc_auth.ts";
import { ForwardStream, type WireHttpRequest, type WireHttpResponse } from "./forward_stream.ts";
import {
  fromWireSnapshot,
  momdProto,
  safeInt,
  type WireAck,
  type WireBatch,
  type WirePosition,
  type WireSnapshot,
} from "./proto.ts";
import type { EntitySnapshot, Position } from "./snapshot.ts";
import {
  fromWireInspectReply,
  type InspectReply,
  type InspectRequest,
  toWireInspectRequest,
  type WireInspectReply,
} from "./inspect.ts";

/** An open Replicate stream. */
export type ReplicateCall = grpc.ClientDuplexStream<WireBatch, WireAck>;

/** Headers that belong to one HTTP hop and are not forwarded. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "trailer",
  "content-length",
  "host",
]);

const EMPTY_BODY = Buffer.alloc(0);

/** Turns a failed call into BrokerError("unavailable"), so the API answers 503 Retry-After. */
function unavailable(what: string, err: unknown): BrokerError {
  const e = err as grpc.ServiceError;
  const code = typeof e?.code === "number" ? grpc.status[e.code] : "error";
  return new BrokerError("unavailable", `${what}: ${code} ${e?.details ?? e?.message ?? err}`, 1);
}

/**
 * A forward that failed: "unavailable" (503, not served) when the request never left this node
 * or only reads; "outcome_unknown" (504) when the owner may have served a change before the
 * answer was lost.
 */
function forwardFailure(address: string, method: string, err: unknown): BrokerError {
  const failure = unavailable(`forward to ${address}`, err);
  const e = err as grpc.ServiceError & { sent?: boolean };
  const reads = method === "GET" || method === "HEAD";
  // A unary call (peers of an earlier version) cannot tell whether it was sent.
  const sent = e?.sent ?? e?.code !== grpc.status.UNAVAILABLE;
  if (reads || !sent || e?.code === grpc.status.CANCELLED) return failure;
  return new BrokerError(
    "outcome_unknown",
    `${failure.detail}; the owner may have served the request: retry sends with the same dedupId`,
    1,
  );
}

/** Channels to the other nodes, keyed by gRPC address. */
export class PeerClients {
  readonly #options: grpc.ClientOptions;
  readonly #tls?: GrpcTls;
  // deno-lint-ignore no-explicit-any
  #replication = new Map<string, any>();
  // deno-lint-ignore no-explicit-any
  #forward = new Map<string, any>();
  /** The open Forward.Stream per address. */
  #streams = new Map<string, ForwardStream>();
  /** Addresses whose node answered Forward.Stream with UNIMPLEMENTED (an earlier version). */
  #unaryForward = new Set<string>();

  /**
   * `tls`: connect over mutual TLS (this node's certificate, peers checked against the CA).
   * `keepaliveMs`: how often an idle channel pings its peer, and how long it waits for the answer.
   */
  constructor(opts: { secret: string; tls?: GrpcTls; keepaliveMs?: number }) {
    this.#options = clientOptions(opts.secret, opts.keepaliveMs);
    this.#tls = opts.tls;
  }

  // deno-lint-ignore no-explicit-any
  #client(map: Map<string, any>, ctor: grpc.ServiceClientConstructor, address: string): any {
    let client = map.get(address);
    if (!client) {
      const channel = peerChannel(address, this.#tls);
      client = new ctor(address, channel.credentials, { ...this.#options, ...channel.options });
      map.set(address, client);
    }
    return client;
  }

  /** Opens a Replicate stream to the node at `address`. */
  replicate(address: string): ReplicateCall {
    return this.#client(this.#replication, momdProto().Replication, address).Replicate();
  }

  /** The entity's snapshot as held by the node at `address`. */
  snapshot(address: string, entity: EntityRef, deadlineMs = 30_000): Promise<EntitySnapshot> {
    const client = this.#client(this.#replication, momdProto().Replication, address);
    return new Promise((resolve, reject) => {
      client.Snapshot(
        entity,
        { deadline: Date.now() + deadlineMs },
        (err: grpc.ServiceError | null, res: WireSnapshot) => {
          if (err) reject(unavailable(`snapshot from ${address}`, err));
          else resolve(fromWireSnapshot(res));
        },
      );
    });
  }

  /** The entity's sequence number and epoch at the node at `address`. */
  position(address: string, entity: EntityRef, deadlineMs = 2_000): Promise<Position> {
    const client = this.#client(this.#replication, momdProto().Replication, address);
    return new Promise((resolve, reject) => {
      client.Position(
        entity,
        { deadline: Date.now() + deadlineMs },
        (err: grpc.ServiceError | null, res: WirePosition) => {
          if (err) reject(unavailable(`position from ${address}`, err));
          else {
            resolve({
              seq: safeInt(res.seq, "seq"),
              epoch: safeInt(res.epoch, "epoch"),
              exists: res.exists,
              store: res.store ?? "",
            });
          }
        },
      );
    });
  }

  /** What the node at `address` holds in its store, for the consistency check (inspect.ts). */
  inspect(address: string, request: InspectRequest, deadlineMs = 3_000): Promise<InspectReply> {
    const client = this.#client(this.#replication, momdProto().Replication, address);
    return new Promise((resolve, reject) => {
      client.Inspect(
        toWireInspectRequest(request),
        { deadline: Date.now() + deadlineMs },
        (err: grpc.ServiceError | null, res: WireInspectReply) => {
          if (err) reject(unavailable(`inspect of ${address}`, err));
          else {
            try {
              resolve(fromWireInspectReply(res));
            } catch (e) {
              reject(e);
            }
          }
        },
      );
    });
  }

  /**
   * Sends an HTTP request to the node at `address`, which serves it as its own, with the caller
   * this node authenticated: over the node's Forward.Stream (forward_stream.ts), or a unary
   * Forward.Http call if the node does not serve the stream. Failures to reach it are
   * BrokerError("unavailable"). `forwards` counts this forward too (FORWARDS_HEADER);
   * `deadlineAt` tells the node when the caller stops waiting (DEADLINE_HEADER).
   */
  async forwardHttp(
    address: string,
    request: Request,
    principal: Principal | null,
    opts: { deadlineMs?: number; signal?: AbortSignal; forwards?: number; deadlineAt?: number } =
      {},
  ): Promise<Response> {
    // Every forwarded request pays this on the hot path: no URL parsing, no copies of the body.
    const url = request.url;
    const pathStart = url.indexOf("/", url.indexOf("//") + 2);
    const headers = [{ name: FORWARDS_HEADER, value: String(opts.forwards ?? 1) }];
    if (opts.deadlineAt !== undefined) {
      headers.push({ name: DEADLINE_HEADER, value: String(Math.round(opts.deadlineAt)) });
    }
    request.headers.forEach((value, name) => {
      // The owner takes the forwarded principal as verified and never reads the token.
      if (
        !HOP_BY_HOP.has(name) && !(principal && name === "authorization") &&
        name !== FORWARDS_HEADER && name !== DEADLINE_HEADER
      ) {
        headers.push({ name, value });
      }
    });
    const wire: WireHttpRequest = {
      method: request.method,
      path: pathStart < 0 ? "/" : url.slice(pathStart),
      headers,
      // Not `request.body`: reading that property turns the body into a stream first.
      body: request.method === "GET" || request.method === "HEAD"
        ? EMPTY_BODY
        : Buffer.from(await request.arrayBuffer()),
      principal: principal
        ? {
          username: principal.username,
          role: principal.role,
          tokenVersion: principal.tokenVersion,
        }
        : null,
    };
    const deadlineMs = opts.deadlineMs ?? 60_000;
    let res: WireHttpResponse;
    try {
      res = this.#unaryForward.has(address)
        ? await this.#forwardUnary(address, wire, deadlineMs, opts.signal)
        : await this.#forwardStream(address).send(wire, deadlineMs, opts.signal).catch((err) => {
          if (err.code !== grpc.status.UNIMPLEMENTED) throw err;
          // A node of an earlier version: it never saw the request, so sending it again is safe.
          this.#unaryForward.add(address);
          return this.#forwardUnary(address, wire, deadlineMs, opts.signal);
        });
    } catch (err) {
      throw forwardFailure(address, request.method, err);
    }
    const out = new Headers();
    for (const h of res.headers ?? []) {
      if (!HOP_BY_HOP.has(h.name.toLowerCase())) out.append(h.name, h.value);
    }
    const nullBody = [101, 103, 204, 205, 304].includes(res.status);
    return new Response(nullBody ? null : res.body ?? EMPTY_BODY, {
      status: res.status,
      headers: out,
    });
  }

  #forwardStream(address: string): ForwardStream {
    let stream = this.#streams.get(address);
    if (!stream?.open) {
      const client = this.#client(this.#forward, momdProto().Forward, address);
      const opened: ForwardStream = new ForwardStream(client.Stream(), () => {
        if (this.#streams.get(address) === opened) this.#streams.delete(address);
      });
      this.#streams.set(address, opened);
      stream = opened;
    }
    return stream;
  }

  #forwardUnary(
    address: string,
    wire: WireHttpRequest,
    deadlineMs: number,
    signal?: AbortSignal,
  ): Promise<WireHttpResponse> {
    const client = this.#client(this.#forward, momdProto().Forward, address);
    return new Promise((resolve, reject) => {
      const call = client.Http(
        wire,
        { deadline: Date.now() + deadlineMs },
        (err: grpc.ServiceError | null, out: WireHttpResponse) => {
          signal?.removeEventListener("abort", cancel);
          if (err) reject(err);
          else resolve(out);
        },
      );
      // The serving node sees the call cancelled and ends a long poll.
      const cancel = () => call.cancel();
      signal?.addEventListener("abort", cancel, { once: true });
    });
  }

  /** Drops the channel to one address (its node moved or went away). */
  forget(address: string): void {
    this.#streams.get(address)?.close();
    this.#unaryForward.delete(address);
    for (const map of [this.#replication, this.#forward]) {
      map.get(address)?.close();
      map.delete(address);
    }
  }

  /** Closes every channel. */
  close(): void {
    for (const stream of [...this.#streams.values()]) stream.close();
    this.#unaryForward.clear();
    for (const map of [this.#replication, this.#forward]) {
      for (const c of map.values()) c.close();
      map.clear();
    }
  }
}
