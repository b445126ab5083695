/**
 * The backup sync loop: every interval, each entity this node owns whose state changed since its
 * last backup is written to the central backup Redis by the fenced write script (store.ts). An
 * unchanged entity costs one HMGET in a pipeline shared by every owned entity, and nothing on
 * the backup Redis.
 *
 * A change is shipped as the store's records (seen through `recordSink()`), appended to the
 * backup's log: the cost follows the traffic, not the size of the entity. A snapshot
 * (src/replication/snapshot.ts, one atomic Lua read) replaces backup and log when the records
 * cannot continue what the backup holds (first pass after start or take-over, a new epoch or
 * incarnation, records dropped while the backup was unreachable) and when the log has grown past
 * `compactRatio` times the snapshot's size or `maxLogRecords` (so a restore replays a bounded log,
 * and the cost of snapshots stays a fixed fraction of the traffic, like Redis's AOF rewrite). The
 * ratio is well above 1 because a snapshot is one atomic read that holds the local Redis for a
 * time proportional to the entity's size: fewer of them means fewer such pauses.
 *
 * Fencing happens twice: an entity is backed up only while `epochOf` says this node may write it
 * (it throws for a zombie, a paused entity, an entity being taken over), and the script refuses
 * to overwrite a backup of a newer epoch, or of the same epoch and a higher or equal seq, and to
 * append to anything but the exact state the records follow.
 *
 * A delete is a state change too: the store's delete record (`queue_delete`, `topic_delete`)
 * removes the entity's backup with the delete's epoch. An owned entity that is merely missing
 * from the local Redis is NOT treated as deleted (a wiped Redis looks the same); its backup is
 * kept for the take-over restore.
 */
import type { Redis } from "ioredis";
import { type EntityRef, queueKeys, registryKey, topicKeys } from "../broker/keys.ts";
import type { RecordSink, ReplicationRecord } from "../replication/record.ts";
import { type EntitySnapshot, takeSnapshot } from "../replication/snapshot.ts";
import {
  appendBackup,
  type BackupVersion,
  DEFAULT_TOMBSTONE_TTL_MS,
  dropBackup,
  type DropStatus,
  encodeRecord,
  writeBackup,
} from "./store.ts";

/** Options of a BackupSync. */
export interface BackupSyncOptions {
  /** This node's local Redis (the store's). */
  local: Redis;
  /** The central backup Redis. */
  backup: Redis;
  /** The entities this node owns now (read at the start of every pass). */
  owned: () => EntityRef[] | Promise<EntityRef[]>;
  /**
   * The epoch this node writes the entity with; throws when it may not write it now (not the
   * owner, lease lost, take-over or hand-over in progress): the entity is skipped this pass.
   */
  epochOf: (entity: EntityRef) => number;
  /**
   * The entity as one of its replicas holds it (a cluster), or undefined. A snapshot that
   * replaces a log is read there when that copy continues the backup (same incarnation and
   * epoch, past its seq), so the atomic read does not hold this node's Redis.
   */
  replicaSnapshot?: (entity: EntityRef) => Promise<EntitySnapshot | undefined>;
  /**
   * Runs before every pass and drop: throws (the job fails and is logged) while the backup Redis
   * holds a data format this build cannot read (DataFormatGuard).
   */
  verify?: () => Promise<void>;
  /** Time between the starts of two passes (default 1000 ms). */
  intervalMs?: number;
  /** How long a deleted entity's tombstone refuses late writes (default 24 h). */
  tombstoneTtlMs?: number;
  /**
   * A log may grow to `compactRatio` times the size of its snapshot, or to `minCompactBytes` when
   * that is more, before a snapshot replaces both (defaults 4 and 8 MiB).
   */
  compactRatio?: number;
  minCompactBytes?: number;
  /** At most this many records in a log, which bounds a restore's replay (default 100,000). */
  maxLogRecords?: number;
  /**
   * Records kept per entity between passes; past it (the backup unreachable for long) they are
   * dropped and the next pass writes a snapshot (default 200,000).
   */
  maxPendingRecords?: number;
  /** Where errors and fencing go (default console.error). */
  log?: (message: string) => void;
  /** The clock stored as `savedAt`. */
  now?: () => number;
}

/** What one pass did, per owned entity. */
export interface PassResult {
  /** Owned entities looked at. */
  checked: number;
  /** Snapshots written (the entity changed, and its records could not be appended). */
  written: number;
  /** Logs extended with the entity's records since its last backup. */
  appended: number;
  /** Records appended, over every entity. */
  records: number;
  /** Unchanged since their last backup: one HMGET each, nothing written. */
  unchanged: number;
  /** Not writable by this node now, or missing from the local Redis. */
  skipped: number;
  /** Refused by the backup: it holds a newer version (a newer owner wrote it). */
  fenced: number;
  /** Failed (Redis errors); retried next pass. */
  failed: number;
}

/** Totals since the loop was built. */
export interface BackupStats extends PassResult {
  passes: number;
  /** Backups removed because their entity was deleted. */
  deleted: number;
}

/** What the backup holds of an entity, as this node last wrote it. */
interface Backed extends BackupVersion {
  /** The snapshot's payload bytes, and the records and bytes of the log after it. */
  bytes: number;
  logLen: number;
  logBytes: number;
}

const entityKey = (e: EntityRef) => `${e.type}/${e.name}`;
const metaKey = (e: EntityRef) =>
  e.type === "queue" ? queueKeys(e.name).meta : topicKeys(e.name).meta;
const DELETE_OPS = new Set(["queue_delete", "topic_delete"]);
const CREATE_OPS = new Set(["queue_create", "topic_create"]);

function emptyPass(): PassResult {
  return {
    checked: 0,
    written: 0,
    appended: 0,
    records: 0,
    unchanged: 0,
    skipped: 0,
    fenced: 0,
    failed: 0,
  };
}

/** Every entity registered in a Redis (a single node owns all of them). */
export async function registeredEntities(redis: Redis): Promise<EntityRef[]> {
  const [queues, topics] = await Promise.all([
    redis.zrange(registryKey("queue"), "0", "-1"),
    redis.zrange(registryKey("topic"), "0", "-1"),
  ]);
  return [
    ...queues.map((name) => ({ type: "queue" as const, name })),
    ...topics.map((name) => ({ type: "topic" as const, name })),
  ];
}

/** Copies the state of the entities this node owns to the backup Redis, incrementally. */
export class BackupSync {
  readonly #local: Redis;
  readonly #backup: Redis;
  readonly #owned: BackupSyncOptions["owned"];
  readonly #epochOf: BackupSyncOptions["epochOf"];
  readonly #replicaSnapshot: BackupSyncOptions["replicaSnapshot"];
  readonly #verify: () => Promise<void>;
  readonly #intervalMs: number;
  readonly #tombstoneTtlMs: number;
  readonly #compactRatio: number;
  readonly #minCompactBytes: number;
  readonly #maxLogRecords: number;
  readonly #maxPendingRecords: number;
  readonly #log: (message: string) => void;
  readonly #now: () => number;
  /** What the backup holds of each entity, as last written (or found) there by this node. */
  readonly #backed = new Map<string, Backed>();
  /** The store's records of each entity not yet in the backup, in the order they came. */
  readonly #pending = new Map<string, ReplicationRecord[]>();
  /**
   * Owned entities missing locally: passes in a row they were (reported at the second, once; a
   * create or a delete in progress is missing for a moment). Infinity: deleted on purpose.
   */
  readonly #missing = new Map<string, number>();
  /** Deletes whose backup removal failed (backup unreachable): tried again every pass. */
  readonly #pendingDrops = new Map<string, { entity: EntityRef; epoch: number }>();
  /** The pass or forget in progress; the next one runs after it (one at a time). */
  #tail: Promise<unknown> = Promise.resolve();
  #timer?: ReturnType<typeof setTimeout>;
  #running = false;
  #stats: BackupStats = { ...emptyPass(), passes: 0, deleted: 0 };
  /** When the last pass that backed up every owned entity started (the recovery point). */
  #recoveryPoint: number | null = null;

  constructor(opts: BackupSyncOptions) {
    this.#local = opts.local;
    this.#backup = opts.backup;
    this.#owned = opts.owned;
    this.#epochOf = opts.epochOf;
    this.#replicaSnapshot = opts.replicaSnapshot;
    this.#verify = opts.verify ?? (() => Promise.resolve());
    this.#intervalMs = opts.intervalMs ?? 1000;
    this.#tombstoneTtlMs = opts.tombstoneTtlMs ?? DEFAULT_TOMBSTONE_TTL_MS;
    this.#compactRatio = opts.compactRatio ?? 4;
    this.#minCompactBytes = opts.minCompactBytes ?? 8 * 1024 * 1024;
    this.#maxLogRecords = opts.maxLogRecords ?? 100_000;
    this.#maxPendingRecords = opts.maxPendingRecords ?? 200_000;
    this.#log = opts.log ?? ((m) => console.error(m));
    this.#now = opts.now ?? Date.now;
  }

  /** Totals since the loop was built (passes, written, unchanged, fenced, deleted, ...). */
  get stats(): BackupStats {
    return { ...this.#stats };
  }

  /**
   * How far the backup trails this node: the recovery point (the start of the last pass that
   * left every owned entity backed up; what a restore would bring back is at least that recent)
   * and the store records not in the backup yet.
   */
  progress(): { recoveryPoint: number | null; pendingRecords: number; pendingEntities: number } {
    let pendingRecords = 0;
    for (const records of this.#pending.values()) pendingRecords += records.length;
    return {
      recoveryPoint: this.#recoveryPoint,
      pendingRecords,
      pendingEntities: this.#pending.size,
    };
  }

  /** The version this node last wrote (or found current) for the entity, if any. */
  lastBackup(entity: EntityRef): BackupVersion | undefined {
    const v = this.#backed.get(entityKey(entity));
    return v && { created: v.created, epoch: v.epoch, seq: v.seq };
  }

  /** Runs a pass every `intervalMs` (start to start; never two at once) until stop(). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#schedule(0);
  }

  /** Stops the timer and waits for the pass in progress to finish. */
  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#tail.catch(() => {});
  }

  /**
   * Runs one full pass now, after the one in progress (tests; a clean shutdown's final pass).
   * Works whether or not the loop is started.
   */
  flush(): Promise<PassResult> {
    return this.#enqueue(() => this.#pass());
  }

  /**
   * The entity was deleted under `epoch`: removes its backup, leaving a tombstone that refuses
   * late writes of it, after the pass in progress. Does nothing while the entity still exists
   * in the local Redis (then it was not deleted here, or it was created again). `epoch`
   * defaults to the one this node last backed it up with.
   */
  forget(entity: EntityRef, epoch?: number): Promise<DropStatus | "exists" | "unknown"> {
    return this.#enqueue(() => this.#drop(entity, epoch));
  }

  async #drop(entity: EntityRef, epoch?: number): Promise<DropStatus | "exists" | "unknown"> {
    const k = entityKey(entity);
    const last = this.#backed.get(k);
    const at = epoch ?? last?.epoch;
    if (at === undefined) return "unknown";
    this.#pendingDrops.delete(k);
    try {
      if ((await this.#local.exists(metaKey(entity))) === 1) return "exists";
      const out = await dropBackup(this.#backup, entity, {
        epoch: at,
        created: last?.created,
        now: this.#now(),
        tombstoneTtlMs: this.#tombstoneTtlMs,
      });
      this.#backed.delete(k);
      this.#missing.set(k, Infinity); // gone on purpose: no "missing locally" report
      if (out.status === "deleted") this.#stats.deleted++;
      if (out.status === "fenced") {
        this.#log(
          `backup: kept the backup of ${k}: it holds a newer version (epoch ` +
            `${out.stored.epoch}) than the delete (epoch ${at})`,
        );
      }
      return out.status;
    } catch (err) {
      this.#pendingDrops.set(k, { entity, epoch: at });
      throw err;
    }
  }

  /**
   * Wraps the store's record sink: every record goes on to `inner` unchanged and, once `inner`
   * acknowledged it, is kept for the next pass; a delete record also removes the entity's backup
   * (in the background: acknowledgements never wait for it).
   */
  recordSink(inner: RecordSink): RecordSink {
    return {
      admit: inner.admit?.bind(inner),
      // Only acknowledged changes reach the log: a failed one leaves a gap there, and the next
      // pass takes a snapshot instead.
      ship: async (record: ReplicationRecord) => {
        await inner.ship(record);
        this.observe(record);
      },
    };
  }

  /**
   * Takes one record of the store: kept for the next pass's append; a delete removes the
   * entity's backup (background).
   */
  observe(record: ReplicationRecord): void {
    const k = entityKey(record.entity);
    if (DELETE_OPS.has(record.op)) {
      this.#pending.delete(k);
      this.forget(record.entity, record.epoch).catch((err) =>
        this.#log(`backup: removing the backup of ${k} failed: ${err}`)
      );
      return;
    }
    const list = this.#pending.get(k);
    // A new incarnation starts a new history; past the bound the next pass snapshots instead.
    if (!list || CREATE_OPS.has(record.op) || list.length >= this.#maxPendingRecords) {
      this.#pending.set(k, [record]);
    } else {
      list.push(record);
    }
  }

  #enqueue<T>(job: () => Promise<T>): Promise<T> {
    const run = this.#tail.catch(() => {}).then(async () => {
      await this.#verify();
      return await job();
    });
    this.#tail = run;
    return run;
  }

  #schedule(delayMs: number): void {
    if (!this.#running) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const started = Date.now();
      this.#enqueue(() => this.#pass())
        .catch((err) => this.#log(`backup: pass failed: ${err}`))
        .finally(() => this.#schedule(Math.max(0, this.#intervalMs - (Date.now() - started))));
    }, delayMs);
  }

  async #pass(): Promise<PassResult> {
    const startedAt = this.#now();
    const result = emptyPass();
    for (const { entity, epoch } of [...this.#pendingDrops.values()]) {
      await this.#drop(entity, epoch).catch(() => {}); // still unreachable: next pass
    }
    const entities: { entity: EntityRef; epoch: number }[] = [];
    const writable = new Set<string>();
    for (const entity of await this.#owned()) {
      result.checked++;
      try {
        entities.push({ entity, epoch: this.#epochOf(entity) });
        writable.add(entityKey(entity));
      } catch {
        result.skipped++; // not writable here now: someone else's, or moving
      }
    }
    // Records of entities this node no longer writes: when it does again, a snapshot starts.
    for (const k of this.#pending.keys()) if (!writable.has(k)) this.#pending.delete(k);
    for (const k of this.#missing.keys()) if (!writable.has(k)) this.#missing.delete(k);
    const errors: string[] = [];
    if (entities.length > 0) {
      // One round trip for every owned entity: its seq and incarnation.
      const pipe = this.#local.pipeline();
      for (const { entity } of entities) pipe.hmget(metaKey(entity), "seq", "createdAt");
      const replies = (await pipe.exec()) ?? [];
      for (let i = 0; i < entities.length; i++) {
        const { entity, epoch } = entities[i];
        const [err, values] = replies[i] ?? [new Error("no reply"), null];
        try {
          if (err) throw err;
          const [seq, created] = values as (string | null)[];
          await this.#backupOne(entity, epoch, seq, created, result);
        } catch (e) {
          result.failed++;
          errors.push(`${entityKey(entity)}: ${e instanceof Error ? e.message : e}`);
        }
      }
    }
    if (errors.length > 0) {
      const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : "";
      this.#log(`backup: ${errors[0]}${more}`);
    }
    this.#stats.passes++;
    if (result.failed === 0 && this.#pendingDrops.size === 0) this.#recoveryPoint = startedAt;
    for (const f of Object.keys(result) as (keyof PassResult)[]) this.#stats[f] += result[f];
    return result;
  }

  async #backupOne(
    entity: EntityRef,
    epoch: number,
    seqText: string | null,
    createdText: string | null,
    result: PassResult,
  ): Promise<void> {
    const k = entityKey(entity);
    if (seqText === null) {
      // Owned but not here: a wiped local Redis, or a delete whose record forget() handles.
      const passes = (this.#missing.get(k) ?? 0) + 1;
      this.#missing.set(k, passes);
      if (passes === 2) this.#log(`backup: ${k} is owned but missing locally; its backup is kept`);
      this.#pending.delete(k);
      result.skipped++;
      return;
    }
    this.#missing.delete(k);
    const version: BackupVersion = {
      created: Number(createdText ?? 0),
      epoch,
      seq: Number(seqText),
    };
    const last = this.#backed.get(k);
    if (
      last && last.created === version.created && last.epoch === version.epoch &&
      last.seq === version.seq
    ) {
      result.unchanged++;
      return;
    }
    if (last && last.created === version.created && last.epoch === epoch) {
      const appended = await this.#append(entity, last, version.seq, result);
      if (appended) return;
    }
    await this.#snapshot(entity, version, result);
  }

  /**
   * Appends the pending records `last.seq + 1 ..` (at least up to `upTo`) to the backup's log.
   * False when they cannot be appended (some are missing, the log is due for compaction, or the
   * backup is not the state they follow): the caller writes a snapshot.
   */
  async #append(entity: EntityRef, last: Backed, upTo: number, result: PassResult) {
    const k = entityKey(entity);
    const run = this.#pendingRun(k, last.seq + 1, last.epoch);
    if (run.length === 0 || run[run.length - 1].seq < upTo) return false;
    const encoded = run.map(encodeRecord);
    let bytes = 0;
    for (const e of encoded) bytes += e.length;
    if (
      last.logLen + run.length > this.#maxLogRecords ||
      last.logBytes + bytes > Math.max(this.#minCompactBytes, this.#compactRatio * last.bytes)
    ) {
      return false; // compaction: a snapshot replaces snapshot and log
    }
    const out = await appendBackup(this.#backup, entity, run[0].seq, encoded, {
      created: last.created,
      epoch: last.epoch,
      now: this.#now(),
    });
    if (out.status !== "appended") return false;
    last.seq = run[run.length - 1].seq;
    last.logLen += run.length;
    last.logBytes += bytes;
    this.#trimPending(k, last.seq);
    result.appended++;
    result.records += run.length;
    return true;
  }

  /** The pending records of `k` from seq `from` on, consecutive and all of `epoch`. */
  #pendingRun(k: string, from: number, epoch: number): ReplicationRecord[] {
    const list = this.#pending.get(k);
    if (!list) return [];
    // Records come in seq order but for the odd reordering of concurrent changes.
    for (let i = 1; i < list.length; i++) {
      if (list[i].seq < list[i - 1].seq) {
        list.sort((a, b) => a.seq - b.seq);
        break;
      }
    }
    const start = list.findIndex((r) => r.seq === from);
    if (start < 0) return [];
    let end = start;
    while (
      end < list.length && list[end].seq === from + (end - start) && list[end].epoch === epoch
    ) end++;
    return list.slice(start, end);
  }

  /** Drops the pending records of `k` the backup holds now (seq at most `seq`). */
  #trimPending(k: string, seq: number): void {
    const list = this.#pending.get(k);
    if (!list) return;
    const rest = list.filter((r) => r.seq > seq);
    if (rest.length > 0) this.#pending.set(k, rest);
    else this.#pending.delete(k);
  }

  /**
   * A replica's copy of the entity when it can replace the backup: of the same incarnation and
   * epoch as what this node backed up last, and newer than it (an older or equal one would not
   * replace it). Undefined otherwise, or when the replica cannot be reached: then the local copy.
   */
  async #fromReplica(entity: EntityRef, version: BackupVersion) {
    const last = this.#backed.get(entityKey(entity));
    if (
      !this.#replicaSnapshot || !last || last.created !== version.created ||
      last.epoch !== version.epoch
    ) return undefined;
    try {
      const s = await this.#replicaSnapshot(entity);
      const usable = s && s.keys.length > 0 && s.created === version.created &&
        s.epoch === version.epoch && s.seq > last.seq;
      return usable ? s : undefined;
    } catch {
      return undefined;
    }
  }

  /** Replaces the entity's backup (snapshot and log) with a snapshot of its local state. */
  async #snapshot(entity: EntityRef, version: BackupVersion, result: PassResult): Promise<void> {
    const k = entityKey(entity);
    const epoch = version.epoch;
    const replica = await this.#fromReplica(entity, version);
    const snapshot = replica ?? await takeSnapshot(this.#local, entity, { epoch });
    // Deleted (or deleted and created again) since the HMGET: the next pass sees it as it is.
    // (A replica's copy may be a little behind the HMGET: the next append carries the rest.)
    if (snapshot.keys.length === 0 || (!replica && snapshot.seq < version.seq)) {
      result.skipped++;
      return;
    }
    // Still the owner with the same epoch after the snapshot (a hand-over may have started).
    let now: number;
    try {
      now = this.#epochOf(entity);
    } catch {
      result.skipped++;
      return;
    }
    if (now !== epoch) {
      result.skipped++;
      return;
    }
    const out = await writeBackup(this.#backup, snapshot, {
      created: version.created,
      now: this.#now(),
    });
    // Also after 'fenced': retrying the same state every pass would not change the answer.
    let bytes = 0;
    for (const key of snapshot.keys) bytes += key.value.length;
    this.#backed.set(k, { ...version, seq: snapshot.seq, bytes, logLen: 0, logBytes: 0 });
    this.#trimPending(k, snapshot.seq);
    if (out.status === "written") result.written++;
    else if (out.status === "same") result.unchanged++;
    else {
      result.fenced++;
      const s = out.stored;
      this.#log(
        `backup: ${k} (epoch ${snapshot.epoch}, seq ${snapshot.seq}) refused: the backup holds ` +
          `epoch ${s.epoch}, seq ${s.seq}${
            s.created !== version.created ? " (newer incarnation)" : ""
          }`,
      );
    }
  }
}
