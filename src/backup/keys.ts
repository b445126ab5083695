/**
 * Every key momd uses in the central backup Redis is built here. One entity's backup keys share
 * one hash tag, like its keys in a node's local Redis (src/broker/keys.ts).
 *
 * - `momd:backup:q:{<name>}:head` (or `:t:` for a topic): hash `type, name, created, epoch, seq,
 *   base, savedAt, keys, bytes, logLen, logBytes, regKind, regValue`, plus `deleted = 1` for a
 *   tombstone (a deleted entity's head, kept `tombstoneTtlMs` so a late write of the deleted
 *   incarnation is refused).
 * - `...:data`: hash key name -> DUMP payload of that key of the entity, at seq `base`.
 * - `...:ttl`: hash key name -> remaining time to live in ms, only for keys that had one.
 * - `...:log`: list of the entity's records `base + 1 .. seq` (JSON), replayed on restore.
 * - `momd:backup:index:<queue|topic>`: zset (score 0) of the names with a live backup, so
 *   listing needs no KEYS or SCAN; the write script keeps it in step.
 */
import type { EntityRef, EntityType } from "../broker/keys.ts";

const PREFIX = "momd:backup";

/** Keys of one entity's backup. */
export function backupKeys(
  entity: EntityRef,
): { head: string; data: string; ttl: string; log: string } {
  const b = `${PREFIX}:${entity.type === "queue" ? "q" : "t"}:{${entity.name}}`;
  return {
    head: `${b}:head`, // hash: version (created, epoch, seq), savedAt, registry entry, deleted
    data: `${b}:data`, // hash: key -> DUMP payload
    ttl: `${b}:ttl`, // hash: key -> pttl in ms (keys without a TTL are absent)
    log: `${b}:log`, // list: the records after the snapshot, in sequence order
  };
}

/** The index of backed-up entities of one type (zset of names, score 0). */
export function backupIndexKey(type: EntityType): string {
  return `${PREFIX}:index:${type}`;
}
