/**
 * The backup sync loop: every interval, each entity this node owns whose state changed since its
 * last backup is snapshotted (src/replication/snapshot.ts, one atomic Lua read) and written to
 * the central backup Redis by the fenced write script (store.ts). An unchanged entity costs one
 * HMGET in a pipeline shared by every owned entity, and nothing on the backup Redis.
 *
 * Fencing happens twice: an entity is backed up only while `epochOf` says this node may write it
 * (it throws for a zombie, a paused entity, an entity being taken over), and the script refuses
 * to overwrite a backup of a newer epoch, or of the same epoch and a higher or equal seq.
 *
 * A delete is a state change too: the store's delete record (`queue_delete`, `topic_delete`),
 * seen through `recordSink()`, removes the entity's backup with the delete's epoch. An owned
 * entity that is merely missing from the local Redis is NOT treated as deleted (a wiped Redis
 * looks the same); its backup is kept for the take-over restore.
 */
import type { Redis } from "ioredis";
import { type EntityRef, queueKeys, registryKey, topicKeys } from "../broker/keys.ts";
import type { RecordSink, ReplicationRecord } from "../replication/record.ts";
import { takeSnapshot } from "../replication/snapshot.ts";
import {
  type BackupVersion,
  DEFAULT_TOMBSTONE_TTL_MS,
  dropBackup,
  type DropStatus,
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
  /** Time between the starts of two passes (default 1000 ms). */
  intervalMs?: number;
  /** How long a deleted entity's tombstone refuses late writes (default 24 h). */
  tombstoneTtlMs?: number;
  /** Where errors and fencing go (default console.error). */
  log?: (message: string) => void;
  /** The clock stored as `savedAt`. */
  now?: () => number;
}

/** What one pass did, per owned entity. */
export interface PassResult {
  /** Owned entities looked at. */
  checked: number;
  /** Backups written (the entity changed since its last backup). */
  written: number;
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

const entityKey = (e: EntityRef) => `${e.type}/${e.name}`;
const metaKey = (e: EntityRef) =>
  e.type === "queue" ? queueKeys(e.name).meta : topicKeys(e.name).meta;
const DELETE_OPS = new Set(["queue_delete", "topic_delete"]);

function emptyPass(): PassResult {
  return { checked: 0, written: 0, unchanged: 0, skipped: 0, fenced: 0, failed: 0 };
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
  readonly #intervalMs: number;
  readonly #tombstoneTtlMs: number;
  readonly #log: (message: string) => void;
  readonly #now: () => number;
  /** The version of each entity last written (or found) in the backup by this node. */
  readonly #backed = new Map<string, BackupVersion>();
  /** Entities already reported as missing locally (reported once, not every pass). */
  readonly #missing = new Set<string>();
  /** Deletes whose backup removal failed (backup unreachable): tried again every pass. */
  readonly #pendingDrops = new Map<string, { entity: EntityRef; epoch: number }>();
  /** The pass or forget in progress; the next one runs after it (one at a time). */
  #tail: Promise<unknown> = Promise.resolve();
  #timer?: ReturnType<typeof setTimeout>;
  #running = false;
  #stats: BackupStats = { ...emptyPass(), passes: 0, deleted: 0 };

  constructor(opts: BackupSyncOptions) {
    this.#local = opts.local;
    this.#backup = opts.backup;
    this.#owned = opts.owned;
    this.#epochOf = opts.epochOf;
    this.#intervalMs = opts.intervalMs ?? 1000;
    this.#tombstoneTtlMs = opts.tombstoneTtlMs ?? DEFAULT_TOMBSTONE_TTL_MS;
    this.#log = opts.log ?? ((m) => console.error(m));
    this.#now = opts.now ?? Date.now;
  }

  /** Totals since the loop was built (passes, written, unchanged, fenced, deleted, ...). */
  get stats(): BackupStats {
    return { ...this.#stats };
  }

  /** The version this node last wrote (or found current) for the entity, if any. */
  lastBackup(entity: EntityRef): BackupVersion | undefined {
    const v = this.#backed.get(entityKey(entity));
    return v && { ...v };
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
      this.#missing.add(k); // gone on purpose: no "missing locally" report
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
   * Wraps the store's record sink: every record goes on to `inner` unchanged; a delete record
   * also removes the entity's backup (in the background: acknowledgements never wait for it).
   */
  recordSink(inner: RecordSink): RecordSink {
    return {
      ship: (record: ReplicationRecord) => {
        this.observe(record);
        return inner.ship(record);
      },
    };
  }

  /** Looks at one record of the store: a delete removes the entity's backup (background). */
  observe(record: ReplicationRecord): void {
    if (!DELETE_OPS.has(record.op)) return;
    this.forget(record.entity, record.epoch).catch((err) =>
      this.#log(`backup: removing the backup of ${entityKey(record.entity)} failed: ${err}`)
    );
  }

  #enqueue<T>(job: () => Promise<T>): Promise<T> {
    const run = this.#tail.catch(() => {}).then(job);
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
    const result = emptyPass();
    for (const { entity, epoch } of [...this.#pendingDrops.values()]) {
      await this.#drop(entity, epoch).catch(() => {}); // still unreachable: next pass
    }
    const entities: { entity: EntityRef; epoch: number }[] = [];
    for (const entity of await this.#owned()) {
      result.checked++;
      try {
        entities.push({ entity, epoch: this.#epochOf(entity) });
      } catch {
        result.skipped++; // not writable here now: someone else's, or moving
      }
    }
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
      if (!this.#missing.has(k)) {
        this.#missing.add(k);
        this.#log(`backup: ${k} is owned but missing locally; its backup is kept`);
      }
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
    const snapshot = await takeSnapshot(this.#local, entity, { epoch });
    // Deleted (or deleted and created again) since the HMGET: the next pass sees it as it is.
    if (snapshot.keys.length === 0 || snapshot.seq < version.seq) {
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
    this.#backed.set(k, { ...version, seq: snapshot.seq });
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
