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
 * - `ship(record)` resolves when **every in-sync replica** (`inSyncOf`, the entity's ISR as the
 *   owner keeps it: cluster/in_sync.ts) has acknowledged a sequence number at or above the
 *   record's under the record's epoch, the in-sync replicas and the owner make at least
 *   `minInSyncReplicas` copies, and the node is still allowed to write the entity
 *   (`isWritable`, checked at that moment: a node that lost its ZooKeeper lease meanwhile
 *   acknowledges nothing). Otherwise it rejects with BrokerError("unavailable") after
 *   `ackTimeoutMs`. The in-sync set may change while a record waits (`recheck`): a replica that
 *   fell behind is dropped from it (in ZooKeeper first), and the record goes once the others
 *   have it. `admit(entity)` refuses a change before it is made when the set is too small.
 * - Per replica and entity it tracks how far behind the replica is and since when
 *   (`replica()`), which is what the in-sync set is decided on; a stream whose batches stay
 *   unacknowledged for `stallTimeoutMs` is cut and opened again.
 */
import { setImmediate } from "node:timers";
import type { Redis } from "ioredis";
import { BrokerError } from "../broker/errors.ts";
import type { EntityRef } from "../broker/keys.ts";
import type { RecordSink, ReplicationRecord } from "./record.ts";
import type { PeerClients, ReplicateCall } from "./peers.ts";
import { safeInt, toWireRecord, toWireSnapshot, type WireAck, type WireSnapshot } from "./proto.ts";
import { type EntitySnapshot, takeSnapshot } from "./snapshot.ts";
import { fallbackLogger, type Logger } from "../log/logger.ts";

/** Options of the Shipper. */
export interface ShipperOptions {
  /** Where failures are logged (default: warnings and errors on standard error). */
  log?: Logger;
  /** This node's id. */
  nodeId: string;
  /** Channels to the other nodes. */
  peers: PeerClients;
  /** The local Redis, for snapshots. */
  redis: Redis;
  /** Copies that must hold a record before it is acknowledged, the owner included (>= 1). */
  minInSyncReplicas: number;
  /** Node ids holding copies of an entity (the ownership record's replicas): records go there. */
  replicasOf: (entity: EntityRef) => readonly string[];
  /**
   * The replicas whose acknowledgement every change needs (the in-sync set, with replicas being
   * added to it); default: every replica.
   */
  inSyncOf?: (entity: EntityRef) => readonly string[];
  /** gRPC address of a node (from membership); undefined while it is not live. */
  addressOf: (nodeId: string) => string | undefined;
  /** The epoch this node owns the entity with now (throws when it does not own it). */
  epochOf?: (entity: EntityRef) => number;
  /** Whether this node may still write the entity; checked before acknowledging a record. */
  isWritable?: (entity: EntityRef) => boolean;
  /** Told when a replica knows a newer epoch: this node was deposed for the entity. */
  onFenced?: (entity: EntityRef, detail: string) => void;
  /** Told when a replica has acknowledged everything shipped to it for an entity. */
  onCaughtUp?: (entity: EntityRef, peer: string) => void;
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
  /** A stream whose oldest batch stays unacknowledged this long is opened again (default 15 s). */
  stallTimeoutMs?: number;
}

/** One replica's state for one entity, as the in-sync set is decided on. */
export interface ReplicaState {
  /** Whether its stream is open now. */
  connected: boolean;
  /** Whether a snapshot for it is pending or not yet acknowledged. */
  syncing: boolean;
  shippedSeq: number;
  ackedSeq: number;
  ackedEpoch: number;
  /** How long it has been behind (records or a snapshot unacknowledged, or its stream down). */
  behindMs: number;
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
  /** Since when (ms) the replica has had something unacknowledged; undefined: nothing. */
  behindSince: number | undefined;
}

interface Waiter {
  record: ReplicationRecord;
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
  /** Batches sent and not acknowledged yet, in order: id -> when sent (ms). */
  unacked = new Map<number, number>();
  /** Since when (ms) the stream has been down; undefined while it is open. */
  downSince: number | undefined = Date.now();

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
        behindSince: undefined,
      };
      this.entities.set(key, s);
    }
    return s;
  }
}

/** Ships records to replicas; see the module comment. */
export class Shipper implements RecordSink {
  readonly #log: Logger;
  readonly #o:
    & Required<
      Omit<ShipperOptions, "epochOf" | "isWritable" | "onFenced" | "onCaughtUp" | "inSyncOf">
    >
    & Pick<ShipperOptions, "epochOf" | "isWritable" | "onFenced" | "onCaughtUp" | "inSyncOf">;
  #links = new Map<string, PeerLink>();
  #waiters = new Map<string, Waiter[]>();
  /** The last record shipped per entity (the owner's own position). */
  #last = new Map<string, { seq: number; epoch: number }>();
  #stallTimer: ReturnType<typeof setInterval>;
  #closed = false;

  constructor(opts: ShipperOptions) {
    this.#log = opts.log ?? fallbackLogger();
    if (!Number.isInteger(opts.minInSyncReplicas) || opts.minInSyncReplicas < 1) {
      throw new Error("minInSyncReplicas must be an integer >= 1");
    }
    this.#o = {
      log: this.#log,
      batchMaxRecords: 256,
      flushDelayMs: 0,
      ackTimeoutMs: 5_000,
      maxRetainedPerEntity: 100_000,
      reconnectMinMs: 50,
      reconnectMaxMs: 2_000,
      stallTimeoutMs: 15_000,
      ...opts,
    };
    this.#stallTimer = setInterval(() => this.#cutStalled(), 1_000);
  }

  /**
   * Refuses a change before it is made when the in-sync replicas and the owner are fewer than
   * `minInSyncReplicas` copies: it could not be acknowledged (Kafka's NotEnoughReplicas).
   */
  admit(entity: EntityRef): void {
    if (this.#closed) throw new BrokerError("unavailable", "replication is shutting down", 1);
    const copies = this.#required(entity).length + 1;
    if (copies < this.#o.minInSyncReplicas) {
      throw new BrokerError(
        "unavailable",
        `${entityKey(entity)} has ${copies} in-sync ${copies === 1 ? "copy" : "copies"}; ` +
          `${this.#o.minInSyncReplicas} must hold each change`,
        1,
      );
    }
  }

  /** Ships a record; resolves when enough copies hold it (see the module comment). */
  ship(record: ReplicationRecord): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new BrokerError("unavailable", "replication is shutting down", 1));
    }
    const key = entityKey(record.entity);
    const last = this.#last.get(key);
    if (
      !last || record.epoch > last.epoch || (record.epoch === last.epoch && record.seq > last.seq)
    ) {
      this.#last.set(key, { seq: record.seq, epoch: record.epoch });
    }
    const replicas = this.#targets(record.entity);
    for (const id of replicas) this.#add(this.#link(id), record);
    // A node that no longer holds a copy gets nothing more for the entity.
    for (const link of this.#links.values()) {
      if (!replicas.includes(link.id)) link.entities.delete(key);
    }
    // Nothing to wait for (one copy is enough, no in-sync replica): no waiter, no timer.
    if (this.#o.minInSyncReplicas === 1 && this.#required(record.entity).length === 0) {
      return this.#settle(record);
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        record,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#removeWaiter(key, waiter);
          const missing = this.#required(record.entity).filter((id) =>
            !this.#holds(id, key, record)
          );
          const copies = this.#required(record.entity).length + 1;
          reject(
            new BrokerError(
              "unavailable",
              copies < this.#o.minInSyncReplicas
                ? `${key} #${record.seq}: ${copies} in-sync copies in ${this.#o.ackTimeoutMs} ms, ` +
                  `${this.#o.minInSyncReplicas} needed`
                : `${key} #${record.seq}: not acknowledged in ${this.#o.ackTimeoutMs} ms by ` +
                  `in-sync replica${missing.length === 1 ? "" : "s"} ${missing.join(", ")}`,
              1,
            ),
          );
        }, this.#o.ackTimeoutMs),
      };
      const list = this.#waiters.get(key);
      if (list) list.push(waiter);
      else this.#waiters.set(key, [waiter]);
      // A replica may hold it already (a snapshot taken just after the change), or none is needed.
      this.#check(key, record.entity);
    });
  }

  /**
   * Looks at the records waiting for an entity again: call it when its in-sync set changed (a
   * replica dropped from it no longer holds them up).
   */
  recheck(entity: EntityRef): void {
    this.#check(entityKey(entity), entity);
  }

  /** One replica's state for an entity (undefined when nothing was ever shipped to it). */
  replica(entity: EntityRef, peer: string): ReplicaState | undefined {
    const link = this.#links.get(peer);
    const s = link?.entities.get(entityKey(entity));
    if (!link || !s) return undefined;
    const now = Date.now();
    const since = Math.min(s.behindSince ?? Infinity, link.downSince ?? Infinity);
    return {
      connected: link.open,
      syncing: s.needSnapshot || s.snapshotting || s.snapshotBatch > 0,
      shippedSeq: s.shippedSeq,
      ackedSeq: s.ackedSeq,
      ackedEpoch: s.ackedEpoch,
      behindMs: since === Infinity ? 0 : now - since,
    };
  }

  /** The last record this node shipped for an entity (its own position as owner). */
  lastShipped(entity: EntityRef): { seq: number; epoch: number } | undefined {
    return this.#last.get(entityKey(entity));
  }

  /**
   * Sends a fresh snapshot of the entity to each of its replicas (e.g. after taking it over), or
   * only to `peer`.
   */
  resync(entity: EntityRef, peer?: string): void {
    for (const id of this.#targets(entity)) {
      if (peer !== undefined && id !== peer) continue;
      const link = this.#link(id);
      const s = link.state(entity);
      this.#wantSnapshot(s);
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
    clearInterval(this.#stallTimer);
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

  /** The replicas records go to: every replica, and any in-sync one not listed there. */
  #targets(entity: EntityRef): string[] {
    const all = new Set(this.#o.replicasOf(entity));
    for (const id of this.#o.inSyncOf?.(entity) ?? []) all.add(id);
    all.delete(this.#o.nodeId);
    return [...all];
  }

  /** The replicas every change must reach before it is acknowledged. */
  #required(entity: EntityRef): string[] {
    const list = this.#o.inSyncOf?.(entity) ?? this.#o.replicasOf(entity);
    return [...new Set(list)].filter((id) => id !== this.#o.nodeId);
  }

  /** Whether a replica acknowledged the record (its seq or later, under its epoch). */
  #holds(peer: string, key: string, record: ReplicationRecord): boolean {
    const s = this.#links.get(peer)?.entities.get(key);
    return !!s && s.ackedEpoch === record.epoch && s.ackedSeq >= record.seq;
  }

  /** Settles every waiting record of the entity that every in-sync replica holds now. */
  #check(key: string, entity: EntityRef) {
    const list = this.#waiters.get(key);
    if (!list) return;
    const required = this.#required(entity);
    if (required.length + 1 < this.#o.minInSyncReplicas) return;
    for (const w of [...list]) {
      if (!required.every((id) => this.#holds(id, key, w.record))) continue;
      clearTimeout(w.timer);
      this.#removeWaiter(key, w);
      this.#settle(w.record).then(w.resolve, w.reject);
    }
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
    s.behindSince ??= Date.now();
    if (i < s.sendIdx) s.sendIdx = i;
    if (s.retained.length > this.#o.maxRetainedPerEntity) {
      s.retained = [];
      s.sendIdx = 0;
      this.#wantSnapshot(s);
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
    link.unacked.set(batchId, Date.now());
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
        this.#log.error({ err }, `replication: snapshot of ${entityKey(s.entity)} failed`);
        s.snapshotting = false;
        this.#wantSnapshot(s);
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
      this.#log.error({ err }, `replication: cannot open a stream to ${link.id} at ${address}`);
      this.#retry(link);
      return;
    }
    link.call = call;
    link.open = true;
    link.draining = false;
    link.downSince = undefined;
    link.unacked.clear();
    // Snapshots taken while the link was down were never sent: take them again.
    for (const snap of link.pendingSnapshots) this.#wantSnapshot(link.state(snap.entity));
    link.pendingSnapshots = [];
    // Everything not acknowledged goes again; a snapshot whose batch may be lost is taken again.
    for (const s of link.entities.values()) {
      s.sendIdx = 0;
      s.ignoreErrorsBefore = link.nextBatchId;
      if (s.snapshotBatch > 0) {
        s.snapshotBatch = 0;
        this.#wantSnapshot(s);
      }
    }
    let ended = false;
    const onEnd = () => {
      if (ended) return;
      ended = true;
      if (link.call === call) {
        link.call = undefined;
        link.open = false;
        link.downSince = Date.now();
        link.unacked.clear();
        this.#retry(link);
      }
    };
    call.on("data", (ack: WireAck) => {
      link.backoffMs = this.#o.reconnectMinMs;
      try {
        this.#onAck(link, ack);
      } catch (err) {
        this.#log.error({ err }, `replication: bad ack from ${link.id}`);
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
    // Acks come in batch order: this one and every earlier batch are answered.
    for (const id of link.unacked.keys()) {
      if (id > batchId) break;
      link.unacked.delete(id);
    }
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
        this.#wantSnapshot(s);
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
    if (
      s.retained.length === 0 && !s.needSnapshot && !s.snapshotting && s.snapshotBatch === 0 &&
      s.behindSince !== undefined
    ) {
      s.behindSince = undefined;
      this.#o.onCaughtUp?.(s.entity, link.id);
    }
    this.#check(entityKey(s.entity), s.entity);
  }

  /** The replica needs a snapshot: it is behind from now on (if it was not already). */
  #wantSnapshot(s: EntityState) {
    s.needSnapshot = true;
    s.behindSince ??= Date.now();
  }

  /** Opens again every stream whose oldest batch waited too long for its acknowledgement. */
  #cutStalled() {
    const now = Date.now();
    for (const link of this.#links.values()) {
      const oldest = link.unacked.values().next();
      if (!link.open || oldest.done || now - oldest.value < this.#o.stallTimeoutMs) continue;
      this.#log.warn(
        `replication: ${link.id} acknowledged nothing for ${now - oldest.value} ms; ` +
          "opening its stream again",
      );
      link.call?.cancel();
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
