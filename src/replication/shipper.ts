/**
 * The cluster's RecordSink: ships every record of the entities this node owns to their replicas
 * and resolves `ship(record)` once enough copies hold it.
 *
 * - One Replicate stream per peer. Records are batched (a batch goes when it holds
 *   `batchMaxRecords`, or at the end of the event-loop turn that produced its first record, or
 *   `flushDelayMs` after it when that is set) and pipelined: the next batch does not wait for the
 *   previous Ack.
 * - Each peer keeps the records it has not acknowledged, per entity. After a reconnect they are
 *   sent again (a replica skips what it holds). A replica answering `gap` gets them again from
 *   its sequence number, or a snapshot when they are no longer here; `resync` (a change of
 *   owner) or `failed` gets a snapshot, taken atomically from the local Redis and stamped with
 *   the current epoch (`epochOf`); only the owner sends snapshots (a node that may not write the
 *   entity drops it instead); `stale_epoch` means this node was deposed: waiting ships fail and
 *   `onFenced` is told.
 * - `ship(record)` resolves when `minInSyncReplicas - 1` replicas (the owner is one copy) have
 *   acknowledged a sequence number at or above the record's under the record's epoch, and the
 *   node is still allowed to write the entity (`isWritable`, checked at that moment: a node that
 *   lost its ZooKeeper lease meanwhile acknowledges nothing). Otherwise it rejects with
 *   BrokerError("unavailable") after `ackTimeoutMs`, or at once when the entity has fewer
 *   replicas than needed.
 * - Lag per replica and entity: the highest sequence number shipped minus the highest
 *   acknowledged.
 */
import { setImmediate } from "node:timers";
import type { Redis } from "ioredis";
import { BrokerError } from "../broker/errors.ts";
import type { EntityRef } from "../broker/keys.ts";
import type { RecordSink, ReplicationRecord } from "./record.ts";
import type { PeerClients, ReplicateCall } from "./peers.ts";
import { safeInt, toWireRecord, toWireSnapshot, type WireAck, type WireSnapshot } from "./proto.ts";
import { type EntitySnapshot, takeSnapshot } from "./snapshot.ts";

/** Options of the Shipper. */
export interface ShipperOptions {
  /** This node's id. */
  nodeId: string;
  /** Channels to the other nodes. */
  peers: PeerClients;
  /** The local Redis, for snapshots. */
  redis: Redis;
  /** Copies that must hold a record before it is acknowledged, the owner included (>= 1). */
  minInSyncReplicas: number;
  /** Node ids holding copies of an entity (the ownership record's replicas). */
  replicasOf: (entity: EntityRef) => readonly string[];
  /** gRPC address of a node (from membership); undefined while it is not live. */
  addressOf: (nodeId: string) => string | undefined;
  /** The epoch this node owns the entity with now (throws when it does not own it). */
  epochOf?: (entity: EntityRef) => number;
  /** Whether this node may still write the entity; checked before acknowledging a record. */
  isWritable?: (entity: EntityRef) => boolean;
  /** Told when a replica knows a newer epoch: this node was deposed for the entity. */
  onFenced?: (entity: EntityRef, detail: string) => void;
  /** Records per batch (default 256). */
  batchMaxRecords?: number;
  /**
   * How long a record waits for companions before its batch goes (default 0: until the end of
   * the event-loop turn, which takes the records of every reply Redis sent in one read).
   */
  flushDelayMs?: number;
  /** How long ship() waits for enough acknowledgements (default 5000 ms). */
  ackTimeoutMs?: number;
  /** Unacknowledged records kept per replica and entity; beyond, a snapshot replaces them. */
  maxRetainedPerEntity?: number;
  /** Reconnect backoff bounds (default 50 ms .. 2 s). */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
}

/** How far one replica is behind for one entity. */
export interface ReplicaLag {
  peer: string;
  entity: EntityRef;
  /** Highest sequence number shipped to it. */
  shippedSeq: number;
  /** Highest sequence number it acknowledged. */
  ackedSeq: number;
  /** shippedSeq - ackedSeq. */
  lag: number;
  /** Whether its stream is open now. */
  connected: boolean;
  /** Whether a snapshot for it is pending or not yet acknowledged. */
  syncing: boolean;
}

interface EntityState {
  entity: EntityRef;
  /** Unacknowledged records in sequence order. */
  retained: ReplicationRecord[];
  /** Index in `retained` of the next record to send. */
  sendIdx: number;
  shippedSeq: number;
  ackedSeq: number;
  ackedEpoch: number;
  needSnapshot: boolean;
  snapshotting: boolean;
  /** Batch id that carried the last snapshot; 0 once acknowledged. */
  snapshotBatch: number;
  /** Errors from batches below this id predate the last correction and are ignored. */
  ignoreErrorsBefore: number;
}

interface Waiter {
  record: ReplicationRecord;
  need: number;
  peers: Set<string>;
  got: Set<string>;
  resolve: () => void;
  reject: (err: unknown) => void;
  timer: ReturnType<typeof setTimeout>;
}

function entityKey(e: EntityRef): string {
  return `${e.type}/${e.name}`;
}

/** One replica: its stream and what it still has to acknowledge. */
class PeerLink {
  address: string | undefined;
  call: ReplicateCall | undefined;
  open = false;
  draining = false;
  backoffMs: number;
  reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  flushTimer: ReturnType<typeof setTimeout> | undefined;
  /** A flush at the end of this event-loop turn is queued. */
  flushQueued = false;
  nextBatchId = 1;
  entities = new Map<string, EntityState>();
  pendingSnapshots: EntitySnapshot[] = [];

  constructor(readonly id: string, backoffMs: number) {
    this.backoffMs = backoffMs;
  }

  state(entity: EntityRef): EntityState {
    const key = entityKey(entity);
    let s = this.entities.get(key);
    if (!s) {
      s = {
        entity,
        retained: [],
        sendIdx: 0,
        shippedSeq: 0,
        ackedSeq: 0,
        ackedEpoch: 0,
        needSnapshot: false,
        snapshotting: false,
        snapshotBatch: 0,
        ignoreErrorsBefore: 0,
      };
      this.entities.set(key, s);
    }
    return s;
  }
}

/** Ships records to replicas; see the module comment. */
export class Shipper implements RecordSink {
  readonly #o:
    & Required<Omit<ShipperOptions, "epochOf" | "isWritable" | "onFenced">>
    & Pick<ShipperOptions, "epochOf" | "isWritable" | "onFenced">;
  #links = new Map<string, PeerLink>();
  #waiters = new Map<string, Waiter[]>();
  #closed = false;

  constructor(opts: ShipperOptions) {
    if (!Number.isInteger(opts.minInSyncReplicas) || opts.minInSyncReplicas < 1) {
      throw new Error("minInSyncReplicas must be an integer >= 1");
    }
    this.#o = {
      batchMaxRecords: 256,
      flushDelayMs: 0,
      ackTimeoutMs: 5_000,
      maxRetainedPerEntity: 100_000,
      reconnectMinMs: 50,
      reconnectMaxMs: 2_000,
      ...opts,
    };
  }

  /** Ships a record; resolves when enough copies hold it (see the module comment). */
  ship(record: ReplicationRecord): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new BrokerError("unavailable", "replication is shutting down", 1));
    }
    const replicas = [...new Set(this.#o.replicasOf(record.entity))].filter((id) =>
      id !== this.#o.nodeId
    );
    for (const id of replicas) this.#add(this.#link(id), record);
    // A node that no longer holds a copy gets nothing more for the entity.
    const key = entityKey(record.entity);
    for (const link of this.#links.values()) {
      if (!replicas.includes(link.id)) link.entities.delete(key);
    }
    const need = this.#o.minInSyncReplicas - 1;
    if (need === 0) return this.#settle(record);
    if (replicas.length < need) {
      return Promise.reject(
        new BrokerError(
          "unavailable",
          `${
            entityKey(record.entity)
          } has ${replicas.length} replicas, ${need} must hold each change`,
          1,
        ),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        record,
        need,
        peers: new Set(replicas),
        got: new Set(),
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#removeWaiter(key, waiter);
          reject(
            new BrokerError(
              "unavailable",
              `${key} #${record.seq}: ${waiter.got.size} of ${need} replicas acknowledged in ` +
                `${this.#o.ackTimeoutMs} ms`,
              1,
            ),
          );
        }, this.#o.ackTimeoutMs),
      };
      // A replica may hold it already (a snapshot taken just after the change).
      for (const id of replicas) {
        const s = this.#links.get(id)?.entities.get(key);
        if (s && s.ackedSeq >= record.seq && s.ackedEpoch === record.epoch) waiter.got.add(id);
      }
      if (waiter.got.size >= need) {
        clearTimeout(waiter.timer);
        this.#settle(record).then(resolve, reject);
        return;
      }
      const list = this.#waiters.get(key);
      if (list) list.push(waiter);
      else this.#waiters.set(key, [waiter]);
    });
  }

  /** Sends a fresh snapshot of the entity to each of its replicas (e.g. after taking it over). */
  resync(entity: EntityRef): void {
    for (const id of this.#o.replicasOf(entity)) {
      if (id === this.#o.nodeId) continue;
      const link = this.#link(id);
      const s = link.state(entity);
      s.needSnapshot = true;
      this.#scheduleFlush(link, true);
    }
  }

  /** Lag of every replica for every entity shipped to it. */
  lag(): ReplicaLag[] {
    const out: ReplicaLag[] = [];
    for (const link of this.#links.values()) {
      for (const s of link.entities.values()) {
        out.push({
          peer: link.id,
          entity: s.entity,
          shippedSeq: s.shippedSeq,
          ackedSeq: s.ackedSeq,
          lag: Math.max(0, s.shippedSeq - s.ackedSeq),
          connected: link.open,
          syncing: s.needSnapshot || s.snapshotting || s.snapshotBatch > 0,
        });
      }
    }
    return out.sort((a, b) =>
      a.peer.localeCompare(b.peer) || entityKey(a.entity).localeCompare(entityKey(b.entity))
    );
  }

  /** Stops every stream; waiting ships fail with unavailable. */
  close(): void {
    this.#closed = true;
    for (const link of this.#links.values()) {
      clearTimeout(link.reconnectTimer);
      clearTimeout(link.flushTimer);
      link.open = false;
      link.call?.cancel();
      link.call = undefined;
    }
    for (const [key, list] of this.#waiters) {
      for (const w of list) {
        clearTimeout(w.timer);
        w.reject(new BrokerError("unavailable", `${key}: replication is shutting down`, 1));
      }
    }
    this.#waiters.clear();
  }

  #settle(record: ReplicationRecord): Promise<void> {
    if (this.#o.isWritable && !this.#o.isWritable(record.entity)) {
      return Promise.reject(
        new BrokerError(
          "unavailable",
          `${entityKey(record.entity)}: no longer safely the owner`,
          1,
        ),
      );
    }
    return Promise.resolve();
  }

  #removeWaiter(key: string, waiter: Waiter) {
    const list = this.#waiters.get(key);
    if (!list) return;
    const i = list.indexOf(waiter);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#waiters.delete(key);
  }

  #link(id: string): PeerLink {
    let link = this.#links.get(id);
    if (!link) {
      link = new PeerLink(id, this.#o.reconnectMinMs);
      this.#links.set(id, link);
      this.#connect(link);
    }
    return link;
  }

  #add(link: PeerLink, record: ReplicationRecord) {
    const s = link.state(record.entity);
    if (record.seq > s.shippedSeq) s.shippedSeq = record.seq;
    if (record.seq <= s.ackedSeq && record.epoch === s.ackedEpoch) return;
    // Keep sequence order (concurrent changes may reach ship() out of order).
    let i = s.retained.length;
    while (i > 0 && s.retained[i - 1].seq > record.seq) i--;
    if (i > 0 && s.retained[i - 1].seq === record.seq) return;
    s.retained.splice(i, 0, record);
    if (i < s.sendIdx) s.sendIdx = i;
    if (s.retained.length > this.#o.maxRetainedPerEntity) {
      s.retained = [];
      s.sendIdx = 0;
      s.needSnapshot = true;
    }
    this.#scheduleFlush(link, s.retained.length - s.sendIdx >= this.#o.batchMaxRecords);
  }

  #scheduleFlush(link: PeerLink, now: boolean) {
    if (this.#closed) return;
    if (now) {
      clearTimeout(link.flushTimer);
      link.flushTimer = undefined;
      queueMicrotask(() => this.#flush(link));
      return;
    }
    if (this.#o.flushDelayMs === 0) {
      // setImmediate, not setTimeout(0): a Deno timer fires 1-2 ms late here, and every change
      // waits for its batch. (A 2 ms delay cost 3 ms per change and batched no better under load.)
      if (!link.flushQueued) {
        link.flushQueued = true;
        setImmediate(() => {
          link.flushQueued = false;
          this.#flush(link);
        });
      }
      return;
    }
    if (link.flushTimer === undefined) {
      link.flushTimer = setTimeout(() => {
        link.flushTimer = undefined;
        this.#flush(link);
      }, this.#o.flushDelayMs);
    }
  }

  #flush(link: PeerLink) {
    if (this.#closed) return;
    const address = this.#o.addressOf(link.id);
    if (link.open && address !== link.address) {
      // The peer moved (restarted elsewhere) or left: start over on its current address.
      link.call?.cancel();
      return;
    }
    if (!link.open || link.draining) return;
    for (const s of link.entities.values()) {
      if (s.needSnapshot && !s.snapshotting) this.#startSnapshot(link, s);
    }
    const snapshots = link.pendingSnapshots.splice(0);
    const records: ReplicationRecord[] = [];
    let more = false;
    for (const s of link.entities.values()) {
      if (s.needSnapshot || s.snapshotting) continue;
      const room = this.#o.batchMaxRecords - records.length;
      if (room <= 0) {
        more ||= s.sendIdx < s.retained.length;
        continue;
      }
      const take = s.retained.slice(s.sendIdx, s.sendIdx + room);
      s.sendIdx += take.length;
      records.push(...take);
      more ||= s.sendIdx < s.retained.length;
    }
    if (snapshots.length === 0 && records.length === 0) return;
    const batchId = link.nextBatchId++;
    for (const snap of snapshots) link.state(snap.entity).snapshotBatch = batchId;
    const ok = link.call!.write({
      batchId: String(batchId),
      fromNode: this.#o.nodeId,
      snapshots: snapshots.map(toWireSnapshot) as WireSnapshot[],
      records: records.map(toWireRecord),
    });
    if (!ok) {
      link.draining = true;
      link.call!.once("drain", () => {
        link.draining = false;
        this.#scheduleFlush(link, true);
      });
    } else if (more) {
      this.#scheduleFlush(link, true);
    }
  }

  #startSnapshot(link: PeerLink, s: EntityState) {
    s.needSnapshot = false;
    let epoch: number | undefined;
    try {
      epoch = this.#o.epochOf?.(s.entity);
    } catch {
      // Not the owner (any more, or in this session): its copy may be older than the owner's
      // and must not overwrite anyone's. Forget the entity; its owner resyncs the replicas.
      link.entities.delete(entityKey(s.entity));
      return;
    }
    s.snapshotting = true;
    takeSnapshot(this.#o.redis, s.entity, { epoch }).then(
      (snap) => {
        s.snapshotting = false;
        s.retained = s.retained.filter((r) => r.seq > snap.seq);
        s.sendIdx = 0;
        if (snap.seq > s.shippedSeq) s.shippedSeq = snap.seq;
        link.pendingSnapshots.push(snap);
        this.#scheduleFlush(link, true);
      },
      (err) => {
        console.error(`replication: snapshot of ${entityKey(s.entity)} failed: ${err}`);
        s.snapshotting = false;
        s.needSnapshot = true;
        setTimeout(() => this.#scheduleFlush(link, true), 500);
      },
    );
  }

  #connect(link: PeerLink) {
    if (this.#closed) return;
    clearTimeout(link.reconnectTimer);
    link.reconnectTimer = undefined;
    const address = this.#o.addressOf(link.id);
    if (!address) {
      this.#retry(link);
      return;
    }
    if (link.address && link.address !== address) this.#o.peers.forget(link.address);
    link.address = address;
    let call: ReplicateCall;
    try {
      call = this.#o.peers.replicate(address);
    } catch (err) {
      console.error(`replication: cannot open a stream to ${link.id} at ${address}: ${err}`);
      this.#retry(link);
      return;
    }
    link.call = call;
    link.open = true;
    link.draining = false;
    // Snapshots taken while the link was down were never sent: take them again.
    for (const snap of link.pendingSnapshots) link.state(snap.entity).needSnapshot = true;
    link.pendingSnapshots = [];
    // Everything not acknowledged goes again; a snapshot whose batch may be lost is taken again.
    for (const s of link.entities.values()) {
      s.sendIdx = 0;
      s.ignoreErrorsBefore = link.nextBatchId;
      if (s.snapshotBatch > 0) {
        s.snapshotBatch = 0;
        s.needSnapshot = true;
      }
    }
    let ended = false;
    const onEnd = () => {
      if (ended) return;
      ended = true;
      if (link.call === call) {
        link.call = undefined;
        link.open = false;
        this.#retry(link);
      }
    };
    call.on("data", (ack: WireAck) => {
      link.backoffMs = this.#o.reconnectMinMs;
      try {
        this.#onAck(link, ack);
      } catch (err) {
        console.error(`replication: bad ack from ${link.id}: ${err}`);
      }
    });
    call.on("error", onEnd);
    call.on("end", onEnd);
    call.on("close", onEnd);
    this.#scheduleFlush(link, true);
  }

  #retry(link: PeerLink) {
    if (this.#closed || link.reconnectTimer) return;
    const delay = link.backoffMs;
    link.backoffMs = Math.min(this.#o.reconnectMaxMs, link.backoffMs * 2);
    link.reconnectTimer = setTimeout(() => {
      link.reconnectTimer = undefined;
      this.#connect(link);
    }, delay);
  }

  #onAck(link: PeerLink, ack: WireAck) {
    const batchId = safeInt(ack.batchId, "batchId");
    for (const ea of ack.entities ?? []) {
      const key = `${ea.entity?.type}/${ea.entity?.name}`;
      const s = link.entities.get(key);
      if (!s) continue;
      const seq = safeInt(ea.seq, "seq");
      const epoch = safeInt(ea.epoch, "epoch");
      if (!ea.error) {
        if (s.snapshotBatch > 0 && batchId >= s.snapshotBatch) s.snapshotBatch = 0;
        this.#acked(link, s, seq, epoch);
        continue;
      }
      if (batchId < s.ignoreErrorsBefore) continue;
      s.ignoreErrorsBefore = link.nextBatchId;
      if (ea.error === "stale_epoch") {
        this.#fenced(s.entity, `${link.id}: ${ea.detail}`);
        s.retained = [];
        s.sendIdx = 0;
        continue;
      }
      if (ea.error === "gap" && s.retained.length > 0 && s.retained[0].seq <= seq + 1) {
        this.#acked(link, s, seq, epoch);
        s.sendIdx = 0;
      } else {
        s.needSnapshot = true;
      }
      this.#scheduleFlush(link, true);
    }
  }

  #acked(link: PeerLink, s: EntityState, seq: number, epoch: number) {
    if (seq > s.ackedSeq || epoch !== s.ackedEpoch) {
      s.ackedSeq = seq;
      s.ackedEpoch = epoch;
    }
    let drop = 0;
    while (drop < s.retained.length && s.retained[drop].seq <= seq) drop++;
    if (drop > 0) {
      s.retained.splice(0, drop);
      s.sendIdx = Math.max(0, s.sendIdx - drop);
    }
    const key = entityKey(s.entity);
    const list = this.#waiters.get(key);
    if (!list) return;
    for (const w of [...list]) {
      if (!w.peers.has(link.id) || w.record.seq > seq || w.record.epoch !== epoch) continue;
      w.got.add(link.id);
      if (w.got.size < w.need) continue;
      clearTimeout(w.timer);
      this.#removeWaiter(key, w);
      this.#settle(w.record).then(w.resolve, w.reject);
    }
  }

  #fenced(entity: EntityRef, detail: string) {
    const key = entityKey(entity);
    const list = this.#waiters.get(key) ?? [];
    this.#waiters.delete(key);
    for (const w of list) {
      clearTimeout(w.timer);
      w.reject(new BrokerError("unavailable", `${key}: fenced by a newer owner (${detail})`, 1));
    }
    this.#o.onFenced?.(entity, detail);
  }
}
