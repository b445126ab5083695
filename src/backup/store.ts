/**
 * The central backup Redis: one entity's backup is written or deleted by one fenced Lua script
 * (`scripts/backup_write.lua`) and read back as an EntitySnapshot (src/replication/snapshot.ts),
 * so restoring uses the same atomic restore as a replica's catch-up.
 */
import { Buffer } from "node:buffer";
import type { Redis } from "ioredis";
import type { EntityRef } from "../broker/keys.ts";
import { fromScriptError } from "../broker/errors.ts";
import type { LoadedScript } from "../broker/scripts.ts";
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
  /** How many keys of the entity it holds. */
  keys: number;
  /** A deleted entity's tombstone: no data, refuses writes of its incarnation. */
  deleted: boolean;
}

/** What a write did: replaced the backup, found it equal, or was refused by a newer one. */
export type WriteStatus = "written" | "same" | "fenced";

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
  const keys = [k.head, k.data, k.ttl, backupIndexKey(entity.type)];
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

const HEAD_FIELDS = ["created", "epoch", "seq", "savedAt", "keys", "deleted"] as const;

function parseHead(entity: EntityRef, values: (string | null)[]): BackupHead | undefined {
  if (values[1] === null) return undefined;
  return {
    entity,
    created: Number(values[0] ?? 0),
    epoch: Number(values[1]),
    seq: Number(values[2] ?? 0),
    savedAt: Number(values[3] ?? 0),
    keys: Number(values[4] ?? 0),
    deleted: values[5] === "1",
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

/**
 * The entity's backup as a snapshot ready for restoreSnapshot, read in one MULTI (the write
 * script replaced it whole, so head and data belong together). Undefined when there is no live
 * backup (never written, or a tombstone).
 */
export async function readBackup(
  backup: Redis,
  entity: EntityRef,
): Promise<{ head: BackupHead; snapshot: EntitySnapshot } | undefined> {
  const k = backupKeys(entity);
  const replies = await backup.multi()
    .hmget(k.head, ...HEAD_FIELDS, "regKind", "regValue")
    .hgetallBuffer(k.data)
    .hgetall(k.ttl)
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
    kind: (values[6] ?? "") as RegistrySnapshot["kind"],
    value: values[7] ?? "",
  };
  return {
    head,
    snapshot: { entity, seq: head.seq, epoch: head.epoch, keys, registry },
  };
}
