/**
 * The node's gRPC server (replica side of replication, and forwarding):
 *
 * - `Replicate`: restores the snapshots of each batch, then applies its records through the
 *   applier (`Store.apply`), in sequence order per entity, one entity at a time across every
 *   stream, and answers each batch with one Ack giving, per entity, the sequence number held now
 *   and, when it stopped early, why (see `EntityAck` in proto/momd.proto):
 *   - a record with an epoch older than the entity's (or than `fence(entity)`, the epoch
 *     ZooKeeper granted): `stale_epoch`, the sender was deposed;
 *   - a record of a newer epoch than the replica's history while it holds some history:
 *     `resync`. After a change of owner the replica cannot tell whether its last records match
 *     the new owner's (KIP-101), so it asks for a snapshot; the snapshot carries the new epoch;
 *   - a record beyond the next expected sequence number: `gap`;
 *   - a record already held: skipped (acknowledged).
 *
 *   The position (seq, epoch) a batch starts from is read from Redis, except when the batch's
 *   first record follows the position this server itself left after its last clean apply of the
 *   entity: then that position is used, and anything unexpected (a record already held, a
 *   failing record, any refusal) makes it read the position and plan the batch again. What is
 *   remembered is dropped when a snapshot is restored, when the Redis connection closes (a
 *   restarted Redis may hold an older copy), and by `forget(entity)`, for writers other than this
 *   server (the node's own writes as owner, restores from the backup).
 * - `Snapshot` / `Position`: the entity as held here (snapshot.ts).
 * - `Inspect`: what the local store holds, for the consistency check (inspect.ts).
 * - `Forward.Http` / `Forward.Stream`: serve requests forwarded by another node through the
 *   injected handler, one per call or many over one stream.
 */
import { Buffer } from "node:buffer";
import type { Redis } from "ioredis";
import grpc from "@grpc/grpc-js";
import { BrokerError } from "../broker/errors.ts";
import { PerKey } from "../serial.ts";
import type { EntityRef } from "../broker/keys.ts";
import type { Principal } from "../auth/users.ts";
import type { ReplicationRecord } from "./record.ts";
import { authenticatedServer, bindServer, type GrpcTls } from "./grpc_auth.ts";
import { mayWait } from "../api/routing.ts";
import {
  fromWireEntity,
  fromWireRecord,
  fromWireSnapshot,
  momdProto,
  toWireSnapshot,
  type WireAck,
  type WireBatch,
  type WireEntity,
  type WireEntityAck,
  type WirePosition,
  type WireSnapshot,
} from "./proto.ts";
import { type EntitySnapshot, readPosition, restoreSnapshot, takeSnapshot } from "./snapshot.ts";
import {
  fromWireInspectRequest,
  inspectStore,
  toWireInspectReply,
  type WireInspectReply,
  type WireInspectRequest,
} from "./inspect.ts";
import { fallbackLogger, type Logger } from "../log/logger.ts";

/** Applies one record (Store.apply). */
export interface RecordApplier {
  apply(record: ReplicationRecord): Promise<"applied" | "duplicate">;
}

/** A request forwarded by another node, with the caller that node authenticated. */
export interface ForwardedRequest {
  request: Request;
  /** null for routes without authentication. */
  principal: Principal | null;
}

/** Serves a forwarded request (the node's HTTP app, with the principal taken as verified). */
export type ForwardHandler = (req: ForwardedRequest) => Promise<Response>;

/** Options of the ReplicationServer. */
export interface ReplicationServerOptions {
  /** Where failures are logged (default: warnings and errors on standard error). */
  log?: Logger;
  /** host:port to bind (the configured grpcListen); port 0 picks a free port. */
  listen: string;
  /** The shared cluster secret every call must carry. */
  secret: string;
  /** Serve over mutual TLS (peers must present a certificate signed by its CA); default none. */
  tls?: GrpcTls;
  /** The node's local Redis (snapshots, positions, restores). */
  redis: Redis;
  /** Applies records (the node's Store). */
  applier: RecordApplier;
  /** The lowest epoch accepted for an entity (the epoch ZooKeeper granted); default 0. */
  fence?: (entity: EntityRef) => number;
  /**
   * The entity's owner as this node knows it. A snapshot from another node at or below the
   * known epoch is refused: a former owner's copy must not replace the owner's state.
   */
  ownerOf?: (entity: EntityRef) => string | undefined;
  /** Serves forwarded HTTP requests; without it Forward.Http answers UNIMPLEMENTED. */
  forward?: ForwardHandler;
  /** Batches read ahead of the one being applied, per stream, before reading pauses. */
  maxQueuedBatches?: number;
}

type AckError = "" | "stale_epoch" | "gap" | "resync" | "failed";

interface EntityResult {
  entity: EntityRef;
  seq: number;
  epoch: number;
  error: AckError;
  detail: string;
}

/** A position this server left in the local Redis by applying records (see #applyEntity). */
interface KnownPosition {
  seq: number;
  epoch: number;
}

/** One planned and applied batch of one entity. */
interface EntityRun {
  result: EntityResult;
  /** Records applied (not counting those already held). */
  applied: number;
  /** Every planned record applied: none was already held, refused or failed. */
  clean: boolean;
}

function entityKey(e: EntityRef): string {
  return `${e.type}/${e.name}`;
}

function toWireAck(r: EntityResult): WireEntityAck {
  return {
    entity: { type: r.entity.type, name: r.entity.name },
    seq: String(r.seq),
    epoch: String(r.epoch),
    error: r.error,
    detail: r.detail,
  };
}

/** The gRPC status a failed handler answers with. */
function statusOf(err: unknown): grpc.status {
  if (err instanceof BrokerError && err.code === "unavailable") return grpc.status.UNAVAILABLE;
  if (err instanceof Error && err.message.startsWith("invalid")) {
    return grpc.status.INVALID_ARGUMENT;
  }
  return grpc.status.INTERNAL;
}

/** The gRPC server of one node. */
export class ReplicationServer {
  readonly #log: Logger;
  readonly #server: grpc.Server;
  readonly #opts: ReplicationServerOptions;
  /** Serializes work per entity across every stream. */
  readonly #locks = new PerKey();
  #port = 0;
  /** Per entity, the position its last clean apply left (trusted for the next batch only). */
  readonly #positions = new Map<string, KnownPosition>();
  /** Forwarded requests being served now. */
  #serving = 0;
  /** Per entity being applied: `stale` once its position may have changed meanwhile. */
  readonly #applying = new Map<string, { stale: boolean }>();
  /** A closed connection may mean a restarted Redis, holding an older copy of anything. */
  readonly #onRedisClose = (): void => this.forgetAll();

  private constructor(opts: ReplicationServerOptions) {
    this.#log = opts.log ?? fallbackLogger();
    this.#opts = opts;
    opts.redis.on("close", this.#onRedisClose);
    this.#server = authenticatedServer(opts.secret);
    const proto = momdProto();
    this.#server.addService(proto.Replication.service, {
      Replicate: (call: grpc.ServerDuplexStream<WireBatch, WireAck>) => this.#replicate(call),
      Snapshot: (
        call: grpc.ServerUnaryCall<WireEntity, WireSnapshot>,
        cb: grpc.sendUnaryData<WireSnapshot>,
      ) =>
        this.#unary(
          cb,
          async () => toWireSnapshot(await this.snapshot(fromWireEntity(call.request))),
        ),
      Position: (
        call: grpc.ServerUnaryCall<WireEntity, WirePosition>,
        cb: grpc.sendUnaryData<WirePosition>,
      ) =>
        this.#unary(cb, async () => {
          const entity = fromWireEntity(call.request);
          const p = await readPosition(this.#opts.redis, entity);
          return {
            entity,
            seq: String(p.seq),
            epoch: String(p.epoch),
            exists: p.exists,
            store: p.store ?? "",
          };
        }),
      Inspect: (
        call: grpc.ServerUnaryCall<WireInspectRequest, WireInspectReply>,
        cb: grpc.sendUnaryData<WireInspectReply>,
      ) => this.#unary(cb, () => this.#inspect(call.request)),
    });
    this.#server.addService(proto.Forward.service, {
      // deno-lint-ignore no-explicit-any
      Http: (call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) => {
        if (!this.#opts.forward) {
          cb({
            code: grpc.status.UNIMPLEMENTED,
            details: "this node does not serve forwarded requests",
          });
          return;
        }
        // A caller that cancels (its client went away) ends a long poll here too.
        const stop = mayWait(String(call.request.path ?? "")) ? new AbortController() : undefined;
        if (stop) call.on("cancelled", () => stop.abort());
        this.#unary(cb, () => this.#forward(call.request, stop?.signal));
      },
      // deno-lint-ignore no-explicit-any
      Stream: (call: grpc.ServerDuplexStream<any, any>) => this.#forwardStream(call),
    });
  }

  /** Starts the server on `opts.listen`. */
  static async start(opts: ReplicationServerOptions): Promise<ReplicationServer> {
    const s = new ReplicationServer(opts);
    s.#port = await bindServer(s.#server, opts.listen, { tls: opts.tls });
    return s;
  }

  /** The bound port. */
  get port(): number {
    return this.#port;
  }

  /** host:port the server listens on. */
  get address(): string {
    const host = this.#opts.listen.slice(0, this.#opts.listen.lastIndexOf(":"));
    return `${host}:${this.#port}`;
  }

  /** The entity as held here (every key, seq and epoch). */
  snapshot(entity: EntityRef): Promise<EntitySnapshot> {
    return this.#locked(entity, () => takeSnapshot(this.#opts.redis, entity));
  }

  /**
   * Drops the entity's position as this server remembers it, so that the next batch reads it
   * from Redis. Call it whenever something other than this server may write the entity in the
   * local Redis: this node becoming (or ceasing to be) its owner, a restore from the backup.
   */
  forget(entity: EntityRef): void {
    const key = entityKey(entity);
    this.#positions.delete(key);
    const applying = this.#applying.get(key);
    if (applying) applying.stale = true;
  }

  /** Waits until no forwarded request is being served here (at most `timeoutMs`). */
  async settle(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.#serving > 0 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Drops every remembered position (the store may have changed behind this server's back). */
  forgetAll(): void {
    this.#positions.clear();
    for (const a of this.#applying.values()) a.stale = true;
  }

  /** Stops accepting calls; waits up to `graceMs` for running ones, then cuts them. */
  stop(graceMs = 2_000): Promise<void> {
    this.#opts.redis.off("close", this.#onRedisClose);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#server.forceShutdown();
        resolve();
      }, graceMs);
      this.#server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  #unary<T>(cb: grpc.sendUnaryData<T>, run: () => Promise<T>): void {
    run().then(
      (value) => cb(null, value),
      (err) =>
        cb({ code: statusOf(err), details: err instanceof Error ? err.message : String(err) }),
    );
  }

  /**
   * The consistency checker's questions about the local store (inspect.ts), answered without
   * the per-entity locks: each copy is read consistently on its own, and replication goes on.
   * The node's view of an entity is its ownership cache (`ownerOf`, and `fence`: its epoch).
   */
  async #inspect(wire: WireInspectRequest): Promise<WireInspectReply> {
    const { redis, ownerOf, fence } = this.#opts;
    const reply = await inspectStore(redis, fromWireInspectRequest(wire), {
      viewOf: (e) => {
        const owner = ownerOf?.(e);
        return owner === undefined ? undefined : { owner, epoch: fence?.(e) ?? 0 };
      },
    });
    return toWireInspectReply(reply);
  }

  #locked<T>(entity: EntityRef, run: () => Promise<T>): Promise<T> {
    return this.#locks.run(entityKey(entity), run);
  }

  #replicate(call: grpc.ServerDuplexStream<WireBatch, WireAck>): void {
    const maxQueued = this.#opts.maxQueuedBatches ?? 16;
    let chain: Promise<void> = Promise.resolve();
    let queued = 0;
    let paused = false;
    let failed = false;
    call.on("data", (batch: WireBatch) => {
      queued++;
      if (queued >= maxQueued && !paused) {
        paused = true;
        call.pause();
      }
      chain = chain.then(async () => {
        if (failed) return;
        try {
          const ack = await this.#applyBatch(batch);
          if (!call.cancelled && call.writable) call.write(ack);
        } catch (err) {
          // End the stream with a status the owner sees (it opens the stream again and sends
          // what is unacknowledged); a destroyed call would leave its side waiting for acks.
          failed = true;
          this.#log.error({ err }, `replication: a batch from ${batch.fromNode} failed`);
          if (!call.cancelled) {
            call.emit("error", {
              code: statusOf(err) === grpc.status.INTERNAL
                ? grpc.status.UNAVAILABLE
                : statusOf(err),
              details: err instanceof Error ? err.message : String(err),
            });
          }
        } finally {
          queued--;
          if (paused && queued < maxQueued / 2) {
            paused = false;
            call.resume();
          }
        }
      });
    });
    call.on("end", () => {
      chain.then(() => {
        if (!failed && call.writable) call.end();
      });
    });
    call.on("error", () => {
      failed = true;
    });
  }

  async #applyBatch(batch: WireBatch): Promise<WireAck> {
    const results = new Map<string, EntityResult>();
    for (const w of batch.snapshots ?? []) {
      const snap = fromWireSnapshot(w);
      const fence = this.#opts.fence?.(snap.entity) ?? 0;
      const owner = this.#opts.ownerOf?.(snap.entity);
      const key = entityKey(snap.entity);
      const refusal = snap.epoch < fence
        ? `snapshot epoch ${snap.epoch} is older than ${fence}`
        : owner !== undefined && owner !== batch.fromNode && snap.epoch <= fence
        ? `${batch.fromNode} is not the owner of ${key} at epoch ${fence} (${owner} is)`
        : "";
      results.set(
        key,
        await this.#locked(snap.entity, async () => {
          this.#positions.delete(key);
          if (refusal) {
            const p = await readPosition(this.#opts.redis, snap.entity);
            return {
              entity: snap.entity,
              seq: p.seq,
              epoch: Math.max(p.epoch, fence),
              error: "stale_epoch",
              detail: refusal,
            };
          }
          try {
            await restoreSnapshot(this.#opts.redis, snap);
          } catch (err) {
            const p = await readPosition(this.#opts.redis, snap.entity);
            const stale = err instanceof BrokerError && err.code === "stale_epoch";
            return {
              entity: snap.entity,
              seq: p.seq,
              epoch: p.epoch,
              error: stale ? "stale_epoch" : "failed",
              detail: err instanceof Error ? err.message : String(err),
            };
          }
          return { entity: snap.entity, seq: snap.seq, epoch: snap.epoch, error: "", detail: "" };
        }),
      );
    }
    const groups = new Map<string, ReplicationRecord[]>();
    for (const w of batch.records ?? []) {
      const r = fromWireRecord(w);
      const key = entityKey(r.entity);
      const list = groups.get(key);
      if (list) list.push(r);
      else groups.set(key, [r]);
    }
    await Promise.all([...groups].map(async ([key, records]) => {
      const prior = results.get(key);
      if (prior?.error) return; // the snapshot failed: its records cannot follow
      results.set(key, await this.#locked(records[0].entity, () => this.#applyEntity(records)));
    }));
    return { batchId: batch.batchId, entities: [...results.values()].map(toWireAck) };
  }

  /**
   * Applies one entity's records of a batch, from the position this server's last clean apply
   * left when the batch follows it, else from the position read from Redis. A run from the
   * remembered position counts only when it is clean (each record applied, no refusal): a record
   * already held or refused there means the copy changed behind this server's back (it must not
   * be acknowledged under the batch's epoch), so the position is read and the batch planned
   * again; what did apply is then a record already held.
   */
  async #applyEntity(records: ReplicationRecord[]): Promise<EntityResult> {
    const entity = records[0].entity;
    const key = entityKey(entity);
    const sorted = records.length > 1 ? [...records].sort((a, b) => a.seq - b.seq) : records;
    const applying = { stale: false };
    this.#applying.set(key, applying);
    const known = this.#positions.get(key);
    this.#positions.delete(key); // remembered again only after a clean run
    try {
      let run: EntityRun | undefined;
      if (known && sorted[0].seq === known.seq + 1 && sorted[0].epoch === known.epoch) {
        run = await this.#run(entity, sorted, known);
        if (!run.clean || run.applied === 0 || run.result.error) run = undefined;
      }
      run ??= await this.#run(entity, sorted, await readPosition(this.#opts.redis, entity));
      const { result } = run;
      if (run.clean && run.applied > 0 && !result.error && !applying.stale) {
        this.#positions.set(key, { seq: result.seq, epoch: result.epoch });
      }
      return result;
    } finally {
      this.#applying.delete(key);
    }
  }

  /** Plans the records (sorted by seq) from position `pos`, applies the plan, and answers. */
  async #run(
    entity: EntityRef,
    records: ReplicationRecord[],
    pos: KnownPosition,
  ): Promise<EntityRun> {
    let seq = pos.seq;
    let epoch = pos.epoch;
    const fence = Math.max(epoch, this.#opts.fence?.(entity) ?? 0);
    const result = (error: AckError, detail: string): EntityResult => ({
      entity,
      seq,
      epoch,
      error,
      detail,
    });
    // Decide what to apply first, then send it all at once: Redis runs the scripts in order on
    // one connection, and each script checks its sequence number, so nothing applies out of
    // order even when one in the middle fails.
    const plan: ReplicationRecord[] = [];
    let refusal: EntityResult | null = null;
    let expectSeq = seq;
    let expectEpoch = epoch;
    for (const r of records) {
      if (r.epoch < fence) {
        refusal = result("stale_epoch", `record epoch ${r.epoch} is older than ${fence}`);
        break;
      }
      if (r.epoch > expectEpoch && expectSeq > 0) {
        refusal = result("resync", `record epoch ${r.epoch} is newer than the replica's ${epoch}`);
        break;
      }
      if (r.seq <= expectSeq) continue;
      if (r.seq > expectSeq + 1) {
        refusal = result("gap", `record ${r.seq} does not follow ${expectSeq}`);
        break;
      }
      plan.push(r);
      expectSeq = r.seq;
      expectEpoch = r.epoch;
    }
    const outcomes = await Promise.allSettled(plan.map((r) => this.#opts.applier.apply(r)));
    let applied = 0;
    for (let i = 0; i < plan.length; i++) {
      const outcome = outcomes[i];
      if (outcome.status === "rejected") {
        const err = outcome.reason;
        const failed = (res: EntityResult): EntityRun => ({ result: res, applied, clean: false });
        if (err instanceof BrokerError && err.code === "stale_epoch") {
          return failed(result("stale_epoch", err.detail));
        }
        const now = await readPosition(this.#opts.redis, entity);
        seq = now.seq;
        epoch = now.epoch;
        if (err instanceof BrokerError && err.code === "conflict") {
          return failed(result("gap", err.detail));
        }
        return failed(result("failed", err instanceof Error ? err.message : String(err)));
      }
      if (outcome.value === "applied") applied++;
      seq = plan[i].seq;
      epoch = plan[i].epoch;
    }
    const clean = applied === plan.length;
    if (refusal) return { result: { ...refusal, seq, epoch }, applied, clean };
    return { result: result("", ""), applied, clean };
  }

  /**
   * Forward.Stream: serves each request as it arrives and writes its answer, with its call id,
   * as soon as it is ready; a request that fails gets an answer with `error` set, and the stream
   * goes on. When the caller ends the stream, it ends once the last answer is written.
   */
  // deno-lint-ignore no-explicit-any
  #forwardStream(call: grpc.ServerDuplexStream<any, any>): void {
    if (!this.#opts.forward) {
      call.emit("error", {
        code: grpc.status.UNIMPLEMENTED,
        details: "this node does not serve forwarded requests",
      });
      return;
    }
    let running = 0;
    let ended = false;
    /** Requests that may wait (long polls), by call id: what a cancel message aborts. */
    const waiting = new Map<string, AbortController>();
    const endIfDone = () => {
      if (ended && running === 0 && call.writable) call.end();
    };
    // deno-lint-ignore no-explicit-any
    call.on("data", (req: any) => {
      const id = String(req.callId);
      if (req.cancel) {
        waiting.get(id)?.abort();
        return;
      }
      let stop: AbortController | undefined;
      if (mayWait(String(req.path ?? ""))) waiting.set(id, stop = new AbortController());
      running++;
      this.#forward(req, stop?.signal).then(
        (res) => ({ ...res, callId: req.callId }),
        (err) => ({
          callId: req.callId,
          error: `${grpc.status[statusOf(err)]} ${err instanceof Error ? err.message : err}`,
        }),
      ).then((answer) => {
        running--;
        if (stop) waiting.delete(id);
        if (!call.cancelled && call.writable) call.write(answer);
        endIfDone();
      });
    });
    call.on("end", () => {
      ended = true;
      endIfDone();
    });
    call.on("error", () => {}); // the caller went away: answers still being served are dropped
  }

  // deno-lint-ignore no-explicit-any
  async #forward(req: any, signal?: AbortSignal): Promise<any> {
    this.#serving++;
    try {
      return await this.#serveForwarded(req, signal);
    } finally {
      this.#serving--;
    }
  }

  // deno-lint-ignore no-explicit-any
  async #serveForwarded(req: any, signal?: AbortSignal): Promise<any> {
    const path = String(req.path ?? "/");
    if (!path.startsWith("/")) throw new Error("invalid path");
    const headers = new Headers();
    for (const h of req.headers ?? []) headers.append(h.name, h.value);
    const method = String(req.method || "GET").toUpperCase();
    const body: Uint8Array<ArrayBuffer> | undefined =
      req.body && req.body.length > 0 && method !== "GET" && method !== "HEAD"
        ? req.body
        : undefined;
    // The length is known: without it the body-size limit would stream and copy the body again
    // (the receiving node checked that limit already).
    if (body) headers.set("content-length", String(body.length));
    const request = new Request(`http://forwarded${path}`, { method, headers, body, signal });
    const role = req.principal?.role;
    // Taken as verified by the sending node; the app still checks that the user exists now with
    // this token version (it may have been deleted while the request was on its way).
    // "0" is a node of an earlier version, which sends none; a version that is no safe integer
    // (NaN) matches no user.
    const version = String(req.principal?.tokenVersion ?? "0");
    const principal: Principal | null =
      req.principal?.username && (role === "admin" || role === "user")
        ? {
          username: req.principal.username,
          role,
          ...(version === "0" ? {} : { tokenVersion: safeVersion(version) }),
        }
        : null;
    const res = await this.#opts.forward!({ request, principal });
    const out: { name: string; value: string }[] = [];
    res.headers.forEach((value, name) => out.push({ name, value }));
    return {
      status: res.status,
      headers: out,
      body: Buffer.from(await res.arrayBuffer()),
    };
  }
}

/** A token version from the wire; NaN (never equal to a user's) when it is no safe integer. */
function safeVersion(wire: string): number {
  const n = Number(wire);
  return Number.isSafeInteger(n) ? n : NaN;
}
