/**
 * The central backup Redis: one entity's backup is a snapshot (src/replication/snapshot.ts)
 * followed by a log of the replication records made after it. One fenced Lua script
 * (`scripts/backup_write.lua`) writes a snapshot, appends records or deletes the backup; a
 * restore is the replicas' atomic snapshot restore followed by the records, applied the way a
 * replica applies them.
 */
import { Buffer } from "node:buffer";
import type { Redis } from "ioredis";
import type { EntityRef } from "../broker/keys.ts";
import { fromScriptError } from "../broker/errors.ts";
import type { LoadedScript } from "../broker/scripts.ts";
import type { ReplicationRecord } from "../replication/record.ts";
import type { EntitySnapshot, RegistrySnapshot } from "../replication/snapshot.ts";
import { backupIndexKey, backupKeys } from "./keys.ts";

/**
 * Which state of an entity a copy holds, compared in field order: the incarnation (the entity's
 * `createdAt`, so a deleted and re-created name is told apart), the ownership epoch, the seq.
 */
export interface BackupVersion {
  created: number;
  epoch: number;
  seq: number;
}

/** A backup's head: its version, when it was written, and whether it is a tombstone. */
export interface BackupHead extends BackupVersion {
  entity: EntityRef;
  /** When the owner wrote it (ms since the epoch, the owner's clock). */
  savedAt: number;
  /** How many keys of the entity its snapshot holds. */
  keys: number;
  /** The seq of its snapshot; the log holds the records `base + 1 .. seq`. */
  base: number;
  /** The size of the snapshot's DUMP payloads, in bytes. */
  bytes: number;
  /** How many records the log holds, and their size in bytes. */
  logLen: number;
  logBytes: number;
  /** A deleted entity's tombstone: no data, refuses writes of its incarnation. */
  deleted: boolean;
}

/** What a write did: replaced the backup, found it equal, or was refused by a newer one. */
export type WriteStatus = "written" | "same" | "fenced";

/**
 * What an append did: extended the log, or found a backup the records do not continue (another
 * incarnation, epoch or seq; a tombstone; none at all), where a snapshot must be written instead.
 */
export type AppendStatus = "appended" | "mismatch";

/** What a drop did: tombstoned the backup, found none, or was refused by a newer one. */
export type DropStatus = "deleted" | "absent" | "fenced";

/** The answer of the write script: what it did and the version stored afterwards. */
export interface ScriptOutcome<S extends string> {
  status: S;
  stored: BackupVersion;
}

/** How long a deleted entity's tombstone refuses late writes of it (default 24 h). */
export const DEFAULT_TOMBSTONE_TTL_MS = 24 * 3600_000;

/** -1, 0 or 1 as version `a` is older than, equal to or newer than `b`. */
export function compareVersions(a: BackupVersion, b: BackupVersion): -1 | 0 | 1 {
  if (a.created !== b.created) return a.created < b.created ? -1 : 1;
  if (a.epoch !== b.epoch) return a.epoch < b.epoch ? -1 : 1;
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1;
  return 0;
}

const SCRIPT_URL = new URL("./scripts/backup_write.lua", import.meta.url);
let script: Promise<LoadedScript> | undefined;

async function load(): Promise<LoadedScript> {
  const source = await Deno.readTextFile(SCRIPT_URL);
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(source));
  const sha = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  return { name: "backup_write", source, sha };
}

/** Reads the write script once per process (a failed read is tried again next time). */
function backupScript(): Promise<LoadedScript> {
  if (!script) {
    script = load();
    script.catch(() => script = undefined);
  }
  return script;
}

async function runWrite<S extends string>(
  backup: Redis,
  entity: EntityRef,
  args: (string | Buffer)[],
): Promise<ScriptOutcome<S>> {
  const s = await backupScript();
  const k = backupKeys(entity);
  const keys = [k.head, k.data, k.ttl, backupIndexKey(entity.type), k.log];
  let reply: string[];
  try {
    try {
      reply = await backup.evalsha(s.sha, keys.length, ...keys, ...args) as string[];
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith("NOSCRIPT"))) throw err;
      reply = await backup.eval(s.source, keys.length, ...keys, ...args) as string[];
    }
  } catch (err) {
    throw fromScriptError(err);
  }
  return {
    status: reply[0] as S,
    stored: { created: Number(reply[1]), epoch: Number(reply[2]), seq: Number(reply[3]) },
  };
}

/** Options of writeBackup. */
export interface WriteBackupOptions {
  /** The entity's incarnation (its meta `createdAt`). */
  created: number;
  /** The writer's clock, stored as `savedAt`. */
  now?: number;
}

/**
 * Stores a snapshot as the entity's backup, version (created, snapshot.epoch, snapshot.seq),
 * unless the backup already holds that version or a newer one.
 */
export function writeBackup(
  backup: Redis,
  snapshot: EntitySnapshot,
  opts: WriteBackupOptions,
): Promise<ScriptOutcome<WriteStatus>> {
  const triples: (string | Buffer)[] = [];
  for (const k of snapshot.keys) triples.push(k.key, Buffer.from(k.value), String(k.pttl));
  return runWrite<WriteStatus>(backup, snapshot.entity, [
    "put",
    snapshot.entity.name,
    snapshot.entity.type,
    String(opts.created),
    String(snapshot.epoch),
    String(snapshot.seq),
    String(opts.now ?? Date.now()),
    "0",
    snapshot.registry.kind,
    snapshot.registry.value,
    ...triples,
  ]);
}

/** A record as the log stores it (the entity is the backup's own). */
export function encodeRecord(r: ReplicationRecord): string {
  return JSON.stringify([r.seq, r.epoch, r.op, r.at, r.args]);
}

/** A record of the entity's log; throws on anything but what encodeRecord writes. */
export function decodeRecord(entity: EntityRef, text: string): ReplicationRecord {
  const v = JSON.parse(text);
  if (
    !Array.isArray(v) || v.length !== 5 || !Number.isSafeInteger(v[0]) ||
    !Number.isSafeInteger(v[1]) || typeof v[2] !== "string" || typeof v[3] !== "number" ||
    !Array.isArray(v[4]) || !v[4].every((a: unknown) => typeof a === "string")
  ) {
    throw new Error(`backup of ${entity.type} '${entity.name}': malformed log record`);
  }
  return { entity, seq: v[0], epoch: v[1], op: v[2], at: v[3], args: v[4] };
}

/** Options of appendBackup. */
export interface AppendBackupOptions {
  /** The entity's incarnation (its meta `createdAt`). */
  created: number;
  /** The epoch every record was written with. */
  epoch: number;
  /** The writer's clock, stored as `savedAt`. */
  now?: number;
}

/**
 * Appends encoded records (consecutive seqs from `firstSeq`, one epoch) to the entity's backup
 * log, if the backup holds exactly the state just before them.
 */
export function appendBackup(
  backup: Redis,
  entity: EntityRef,
  firstSeq: number,
  encoded: readonly string[],
  opts: AppendBackupOptions,
): Promise<ScriptOutcome<AppendStatus>> {
  return runWrite<AppendStatus>(backup, entity, [
    "append",
    entity.name,
    entity.type,
    String(opts.created),
    String(opts.epoch),
    String(firstSeq + encoded.length - 1),
    String(opts.now ?? Date.now()),
    String(firstSeq),
    "",
    "",
    ...encoded,
  ]);
}

/** Options of dropBackup. */
export interface DropBackupOptions {
  /** The epoch of the delete; a backup of a higher epoch of the same incarnation is kept. */
  epoch: number;
  /** The deleted incarnation; omitted: whichever the backup holds. */
  created?: number;
  now?: number;
  /** How long the tombstone refuses late writes of the deleted incarnation. */
  tombstoneTtlMs?: number;
}

/** Removes a deleted entity's backup (leaving a tombstone), unless a newer owner wrote it. */
export function dropBackup(
  backup: Redis,
  entity: EntityRef,
  opts: DropBackupOptions,
): Promise<ScriptOutcome<DropStatus>> {
  return runWrite<DropStatus>(backup, entity, [
    "drop",
    entity.name,
    entity.type,
    opts.created === undefined ? "" : String(opts.created),
    String(opts.epoch),
    "0",
    String(opts.now ?? Date.now()),
    String(opts.tombstoneTtlMs ?? DEFAULT_TOMBSTONE_TTL_MS),
    "",
    "",
  ]);
}

const HEAD_FIELDS = [
  "created",
  "epoch",
  "seq",
  "savedAt",
  "keys",
  "deleted",
  "base",
  "bytes",
  "logLen",
  "logBytes",
] as const;

function parseHead(entity: EntityRef, values: (string | null)[]): BackupHead | undefined {
  if (values[1] === null) return undefined;
  const seq = Number(values[2] ?? 0);
  return {
    entity,
    created: Number(values[0] ?? 0),
    epoch: Number(values[1]),
    seq,
    savedAt: Number(values[3] ?? 0),
    keys: Number(values[4] ?? 0),
    deleted: values[5] === "1",
    base: Number(values[6] ?? seq), // written before logs existed: all snapshot
    bytes: Number(values[7] ?? 0),
    logLen: Number(values[8] ?? 0),
    logBytes: Number(values[9] ?? 0),
  };
}

/** The entity's backup head (undefined when there is neither a backup nor a tombstone). */
export async function readBackupHead(
  backup: Redis,
  entity: EntityRef,
): Promise<BackupHead | undefined> {
  return parseHead(entity, await backup.hmget(backupKeys(entity).head, ...HEAD_FIELDS));
}

/** The heads of several entities in one round trip (pipelined). */
export async function readBackupHeads(
  backup: Redis,
  entities: readonly EntityRef[],
): Promise<(BackupHead | undefined)[]> {
  if (entities.length === 0) return [];
  const pipe = backup.pipeline();
  for (const e of entities) pipe.hmget(backupKeys(e).head, ...HEAD_FIELDS);
  const replies = (await pipe.exec()) ?? [];
  return entities.map((e, i) => {
    const [err, values] = replies[i] ?? [new Error("no reply"), null];
    if (err) throw err;
    return parseHead(e, values as (string | null)[]);
  });
}

/** A whole backup: its head, the snapshot at `head.base`, the records up to `head.seq`. */
export interface StoredBackup {
  head: BackupHead;
  snapshot: EntitySnapshot;
  records: ReplicationRecord[];
}

/**
 * The entity's backup, read in one MULTI (the write script changes head, data and log together,
 * so they belong together). Undefined when there is no live backup (never written, or a
 * tombstone). Throws when the log does not continue the snapshot record by record.
 */
export async function readBackup(
  backup: Redis,
  entity: EntityRef,
): Promise<StoredBackup | undefined> {
  const k = backupKeys(entity);
  const replies = await backup.multi()
    .hmget(k.head, ...HEAD_FIELDS, "regKind", "regValue")
    .hgetallBuffer(k.data)
    .hgetall(k.ttl)
    .lrange(k.log, 0, -1)
    .exec();
  if (!replies) throw new Error(`backup of ${entity.type} '${entity.name}': transaction aborted`);
  for (const [err] of replies) if (err) throw err;
  const values = replies[0][1] as (string | null)[];
  const head = parseHead(entity, values);
  if (!head || head.deleted) return undefined;
  const data = replies[1][1] as Record<string, Buffer>;
  const ttl = replies[2][1] as Record<string, string>;
  const keys = Object.keys(data).sort().map((key) => ({
    key,
    value: new Uint8Array(data[key]),
    pttl: ttl[key] === undefined ? -1 : Number(ttl[key]),
  }));
  const registry: RegistrySnapshot = {
    kind: (values[HEAD_FIELDS.length] ?? "") as RegistrySnapshot["kind"],
    value: values[HEAD_FIELDS.length + 1] ?? "",
  };
  const records = (replies[3][1] as string[]).map((text) => decodeRecord(entity, text));
  records.forEach((r, i) => {
    if (r.seq !== head.base + i + 1) {
      throw new Error(
        `backup of ${entity.type} '${entity.name}': log record ${i + 1} has seq ${r.seq}, ` +
          `expected ${head.base + i + 1}`,
      );
    }
  });
  if (head.base + records.length !== head.seq) {
    throw new Error(
      `backup of ${entity.type} '${entity.name}': the log ends at ${head.base + records.length}, ` +
        `the head says ${head.seq}`,
    );
  }
  return {
    head,
    snapshot: { entity, seq: head.base, epoch: head.epoch, keys, registry },
    records,
  };
}
