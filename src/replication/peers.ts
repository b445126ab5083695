/**
 * Clients of other nodes' gRPC services, one channel per address, every call authenticated with
 * the cluster secret: the record stream, snapshots and positions for catch-up and failover, and
 * request forwarding.
 */
import { Buffer } from "node:buffer";
import grpc from "@grpc/grpc-js";
import { BrokerError } from "../broker/errors.ts";
import type { EntityRef } from "../broker/keys.ts";
import type { Principal } from "../auth/users.ts";
import { clientOptions } from "./grpc_auth.ts";
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

/** Turns a failed call into BrokerError("unavailable"), so the API answers 503 Retry-After. */
function unavailable(what: string, err: unknown): BrokerError {
  const e = err as grpc.ServiceError;
  const code = typeof e?.code === "number" ? grpc.status[e.code] : "error";
  return new BrokerError("unavailable", `${what}: ${code} ${e?.details ?? e?.message ?? err}`, 1);
}

/** Channels to the other nodes, keyed by gRPC address. */
export class PeerClients {
  readonly #options: grpc.ClientOptions;
  // deno-lint-ignore no-explicit-any
  #replication = new Map<string, any>();
  // deno-lint-ignore no-explicit-any
  #forward = new Map<string, any>();

  constructor(opts: { secret: string }) {
    this.#options = clientOptions(opts.secret);
  }

  // deno-lint-ignore no-explicit-any
  #client(map: Map<string, any>, ctor: grpc.ServiceClientConstructor, address: string): any {
    let client = map.get(address);
    if (!client) {
      client = new ctor(address, grpc.credentials.createInsecure(), this.#options);
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
            });
          }
        },
      );
    });
  }

  /**
   * Sends an HTTP request to the node at `address`, which serves it as its own, with the caller
   * this node authenticated. Failures to reach it are BrokerError("unavailable").
   */
  async forwardHttp(
    address: string,
    request: Request,
    principal: Principal | null,
    opts: { deadlineMs?: number } = {},
  ): Promise<Response> {
    const url = new URL(request.url);
    const body = request.body ? new Uint8Array(await request.arrayBuffer()) : new Uint8Array();
    const headers = [...request.headers].filter(([name]) => !HOP_BY_HOP.has(name.toLowerCase()))
      .map(([name, value]) => ({ name, value }));
    const client = this.#client(this.#forward, momdProto().Forward, address);
    const res = await new Promise<
      { status: number; headers: { name: string; value: string }[]; body: Uint8Array }
    >((resolve, reject) => {
      client.Http(
        {
          method: request.method,
          path: url.pathname + url.search,
          headers,
          body: Buffer.from(body),
          principal: principal ? { username: principal.username, role: principal.role } : null,
        },
        { deadline: Date.now() + (opts.deadlineMs ?? 60_000) },
        // deno-lint-ignore no-explicit-any
        (err: grpc.ServiceError | null, out: any) => {
          if (err) reject(unavailable(`forward to ${address}`, err));
          else resolve(out);
        },
      );
    });
    const out = new Headers();
    for (const h of res.headers ?? []) {
      if (!HOP_BY_HOP.has(h.name.toLowerCase())) out.append(h.name, h.value);
    }
    const nullBody = [101, 103, 204, 205, 304].includes(res.status);
    return new Response(nullBody ? null : new Uint8Array(res.body ?? []), {
      status: res.status,
      headers: out,
    });
  }

  /** Drops the channel to one address (its node moved or went away). */
  forget(address: string): void {
    for (const map of [this.#replication, this.#forward]) {
      map.get(address)?.close();
      map.delete(address);
    }
  }

  /** Closes every channel. */
  close(): void {
    for (const map of [this.#replication, this.#forward]) {
      for (const c of map.values()) c.close();
      map.clear();
    }
  }
}
