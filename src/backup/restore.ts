/**
 * Restoring from the central backup Redis: when a node becomes the owner of an entity (before
 * serving it), and at start-up for the entities it owns, the backup replaces the local copy if it
 * is newer. The restore is the replicas' catch-up: the atomic snapshot restore, then the log's
 * records applied in order the way a replica applies them. A local copy that already holds a
 * prefix of the log (same incarnation and epoch, at or past the snapshot) only gets the rest.
 */
import type { Redis } from "ioredis";
import type { EntityRef, EntityType } from "../broker/keys.ts";
import { queueKeys, topicKeys } from "../broker/keys.ts";
import type { ReplicationRecord } from "../replication/record.ts";
import type { RecordApplier } from "../replication/server.ts";
import { restoreSnapshot } from "../replication/snapshot.ts";
import { backupIndexKey } from "./keys.ts";
import {
  type BackupHead,
  type BackupVersion,
  compareVersions,
  readBackup,
  readBackupHead,
  readBackupHeads,
} from "./store.ts";

/** What restoreIfNewer did. */
export interface RestoreResult {
  /**
   * `restored`: the backup was newer and replaced the local copy; `up_to_date`: the local copy
   * is as new or newer; `no_backup`: there is no backup (or only a deleted entity's tombstone).
   */
  action: "restored" | "up_to_date" | "no_backup";
  /** The local copy's version before (all zero when it was missing). */
  local: BackupVersion & { exists: boolean };
  /** The backup's version, when there is one. */
  backup?: BackupVersion;
  /** How many log records were applied (when restored). */
  replayed?: number;
}

/** Records applied per round trip (in order on one connection; each checks its seq). */
const REPLAY_CHUNK = 500;

async function replay(applier: RecordApplier, records: readonly ReplicationRecord[]) {
  for (let i = 0; i < records.length; i += REPLAY_CHUNK) {
    await Promise.all(records.slice(i, i + REPLAY_CHUNK).map((r) => applier.apply(r)));
  }
}

async function localVersion(
  local: Redis,
  entity: EntityRef,
): Promise<RestoreResult["local"]> {
  const meta = entity.type === "queue" ? queueKeys(entity.name).meta : topicKeys(entity.name).meta;
  const [seq, epoch, created] = await local.hmget(meta, "seq", "epoch", "createdAt");
  return {
    created: Number(created ?? 0),
    epoch: Number(epoch ?? 0),
    seq: Number(seq ?? 0),
    exists: seq !== null,
  };
}

function versionOf(head: BackupHead): BackupVersion {
  return { created: head.created, epoch: head.epoch, seq: head.seq };
}

/**
 * Restores the entity from the backup into the local Redis if the backup holds a newer version
 * (incarnation, epoch, seq) than the local copy (a missing local copy is version zero): the
 * snapshot in one atomic script, then the log through `applier` (the node's store). Interrupted,
 * it leaves a consistent earlier state that the next call continues. Call it while the entity is
 * not being written (before serving it).
 */
export async function restoreIfNewer(
  local: Redis,
  backup: Redis,
  applier: RecordApplier,
  entity: EntityRef,
): Promise<RestoreResult> {
  const before = await localVersion(local, entity);
  const head = await readBackupHead(backup, entity);
  if (!head || head.deleted) return { action: "no_backup", local: before };
  if (compareVersions(versionOf(head), before) <= 0) {
    return { action: "up_to_date", local: before, backup: versionOf(head) };
  }
  // Read head and data together; the backup may have moved on since the head was read.
  const full = await readBackup(backup, entity);
  if (!full) return { action: "no_backup", local: before };
  const found = versionOf(full.head);
  if (compareVersions(found, before) <= 0) {
    return { action: "up_to_date", local: before, backup: found };
  }
  const h = full.head;
  if (
    before.exists && before.created === h.created && before.epoch === h.epoch &&
    before.seq >= h.base
  ) {
    // The local copy is this history up to before.seq (one owner per epoch): only the rest.
    const rest = full.records.slice(before.seq - h.base);
    await replay(applier, rest);
    return { action: "restored", local: before, backup: found, replayed: rest.length };
  }
  if (before.exists && before.epoch > found.epoch) {
    // A leftover of an earlier incarnation with a higher epoch: the restore script would refuse
    // the lower epoch, so the leftover is removed first (an empty snapshot deletes the entity).
    await restoreSnapshot(local, {
      entity,
      seq: 0,
      epoch: before.epoch,
      keys: [],
      registry: { kind: "", value: "" },
    });
  }
  await restoreSnapshot(local, full.snapshot);
  await replay(applier, full.records);
  return { action: "restored", local: before, backup: found, replayed: full.records.length };
}

/** Options of restoreBeforeServing. */
export interface RestoreBeforeServingOptions {
  /**
   * How long to keep trying while the backup Redis cannot be read (default 10 s). After that
   * the entity is served from its local copy, which holds every acknowledged change when this
   * node was an in-sync replica; a missing local copy is then served as missing (404), and its
   * backup stays untouched for a later take-over or restart.
   */
  patienceMs?: number;
  /** Pause between attempts (default 250 ms). */
  retryMs?: number;
  /** Where failures go (default console.error), and restores when `onRestored` is absent. */
  log?: (message: string) => void;
  /** Told of a restore that happened. */
  onRestored?: (result: RestoreResult) => void;
}

/**
 * The take-over step (ClusterNode's `beforeServing` hook, and start-up): restoreIfNewer, tried
 * again while the backup Redis is unreachable, for at most `patienceMs`. Resolves undefined when
 * it gave up; never rejects.
 */
export async function restoreBeforeServing(
  local: Redis,
  backup: Redis,
  applier: RecordApplier,
  entity: EntityRef,
  opts: RestoreBeforeServingOptions = {},
): Promise<RestoreResult | undefined> {
  const log = opts.log ?? ((m: string) => console.error(m));
  const until = Date.now() + (opts.patienceMs ?? 10_000);
  const label = `${entity.type}/${entity.name}`;
  for (let attempt = 1;; attempt++) {
    try {
      const result = await restoreIfNewer(local, backup, applier, entity);
      if (result.action === "restored" && opts.onRestored) {
        opts.onRestored(result);
      } else if (result.action === "restored") {
        const b = result.backup!;
        log(
          `backup: restored ${label} (epoch ${b.epoch}, seq ${b.seq}, ${result.replayed} log ` +
            `records; local seq ${result.local.seq})`,
        );
      }
      return result;
    } catch (err) {
      if (Date.now() >= until) {
        log(`backup: serving ${label} without checking the backup (${attempt} attempts): ${err}`);
        return undefined;
      }
      if (attempt === 1) log(`backup: restoring ${label} failed, retrying: ${err}`);
      await new Promise((r) => setTimeout(r, opts.retryMs ?? 250));
    }
  }
}

/** One entity held by the backup Redis. */
export interface BackupInfo extends BackupVersion {
  entity: EntityRef;
  /** When its owner wrote it (ms since the epoch). */
  savedAt: number;
  /** How many of the entity's keys its snapshot holds. */
  keys: number;
  /** How many records follow the snapshot in its log. */
  logLen: number;
}

/**
 * Every entity with a backup (of one type when given), sorted by type and name: the index the
 * write script keeps, then the heads in one pipeline. No KEYS or SCAN.
 */
export async function listBackups(backup: Redis, type?: EntityType): Promise<BackupInfo[]> {
  const types: EntityType[] = type ? [type] : ["queue", "topic"];
  const entities: EntityRef[] = [];
  for (const t of types) {
    for (const name of await backup.zrange(backupIndexKey(t), "0", "-1")) {
      entities.push({ type: t, name });
    }
  }
  const heads = await readBackupHeads(backup, entities);
  const out: BackupInfo[] = [];
  for (const head of heads) {
    if (!head || head.deleted) continue;
    out.push({
      entity: head.entity,
      created: head.created,
      epoch: head.epoch,
      seq: head.seq,
      savedAt: head.savedAt,
      keys: head.keys,
      logLen: head.logLen,
    });
  }
  return out;
}
