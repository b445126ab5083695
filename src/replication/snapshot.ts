/**
 * Snapshots of one entity for catch-up: every key of the entity (DUMP payload and PTTL), its
 * member of the shared registry key, its sequence number and epoch, read in one atomic Lua call;
 * and the atomic restore of such a snapshot into another Redis (delete every key the entity has
 * there, subscriptions included, then RESTORE each key).
 *
 * The keys are the ones `entityKeys()` names (keys.ts builds every name); a topic adds, for each
 * subscription in its `subs` hash, the subscription's keys. Registry keys are shared by every
 * entity of a type, so only this entity's member travels. Both scripts refuse (`store_lost`) on a
 * store without its identity: a snapshot of a wiped store would wipe its replicas' copies.
 */
import { Buffer } from "node:buffer";
import type { Redis } from "ioredis";
import { BrokerError, fromScriptError } from "../broker/errors.ts";
import { type EntityRef, registryKey, STORE_KEY, topicKeys } from "../broker/keys.ts";
import { entityKeys } from "../broker/store.ts";

/** One key of an entity. */
export interface KeySnapshot {
  key: string;
  /** The DUMP payload. */
  value: Uint8Array;
  /** Remaining time to live in ms, -1 for none. */
  pttl: number;
}

/** The entity's member of its type's registry key. */
export interface RegistrySnapshot {
  /** The registry key's Redis type ("" when the entity is not registered). */
  kind: "" | "zset" | "set" | "hash";
  /** zset score or hash value; "" for a set. */
  value: string;
}

/** Every key of one entity at one sequence number. */
export interface EntitySnapshot {
  entity: EntityRef;
  seq: number;
  /** The epoch the snapshot is valid for; the restoring replica refuses older records after it. */
  epoch: number;
  /** The incarnation it is of (the entity's `createdAt`); absent or 0 when unknown. */
  created?: number;
  keys: KeySnapshot[];
  registry: RegistrySnapshot;
}

/** A replica's position for an entity. */
export interface Position {
  seq: number;
  epoch: number;
  exists: boolean;
  /** The incarnation of the store holding it ("" when the store has no identity). */
  store?: string;
}

const SUB_MARK = "\u0001";

/** KEYS of an entity without the shared registry key, and its subscription key templates. */
function layout(entity: EntityRef) {
  const registry = registryKey(entity.type);
  const keys = entityKeys(entity, ["", "", ""]);
  if (entity.type === "queue") {
    return {
      registry,
      keys: keys.filter((k) => k !== registry),
      subs: "",
      templates: [] as string[],
    };
  }
  const t = topicKeys(entity.name);
  return {
    registry,
    keys: [t.meta, t.log, t.subs],
    subs: t.subs,
    templates: Object.values(t.sub(SUB_MARK)),
  };
}

// Both scripts: a store without its identity lost its data (see Store).
const STORE_CHECK = `
if redis.call('EXISTS', KEYS[#KEYS]) == 0 then
  return redis.error_reply('MOMD store_lost the local store lost its data')
end
`;

// KEYS: the entity's own keys (meta first), then STORE_KEY. ARGV[1] registry key, ARGV[2]
// entity name, ARGV[3] subs hash ('' for a queue), ARGV[4..] subscription key templates
// (\1 = the name).
const SNAPSHOT_LUA = `${STORE_CHECK}
local out = {}
local function add(k)
  local d = redis.call('DUMP', k)
  if d then
    out[#out + 1] = k
    out[#out + 1] = d
    out[#out + 1] = tostring(redis.call('PTTL', k))
  end
end
for i = 1, #KEYS - 1 do add(KEYS[i]) end
if ARGV[3] ~= '' then
  local subs = redis.call('HKEYS', ARGV[3])
  table.sort(subs)
  for _, s in ipairs(subs) do
    for i = 4, #ARGV do
      local tpl = ARGV[i]
      local p = string.find(tpl, '\\1', 1, true)
      add(string.sub(tpl, 1, p - 1) .. s .. string.sub(tpl, p + 1))
    end
  end
end
local m = redis.call('HMGET', KEYS[1], 'seq', 'epoch', 'createdAt')
local kind = redis.call('TYPE', ARGV[1])['ok']
local value = false
if kind == 'zset' then
  value = redis.call('ZSCORE', ARGV[1], ARGV[2])
elseif kind == 'set' then
  if redis.call('SISMEMBER', ARGV[1], ARGV[2]) == 1 then value = '' end
elseif kind == 'hash' then
  value = redis.call('HGET', ARGV[1], ARGV[2])
end
if not value then kind = '' value = '' end
local head = { m[1] or '0', m[2] or '0', kind, value, m[3] or '0' }
for _, v in ipairs(out) do head[#head + 1] = v end
return head
`;

// KEYS: the entity's own keys (meta first), then STORE_KEY. ARGV[1] registry key, ARGV[2]
// entity name, ARGV[3] subs hash ('' for a queue), ARGV[4] number n of templates, ARGV[5..4+n]
// templates, then the epoch, the registry kind and value, then triples (key, DUMP payload,
// pttl).
const RESTORE_LUA = `${STORE_CHECK}
local n = tonumber(ARGV[4])
local i = 5 + n
local epoch = tonumber(ARGV[i])
local known = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if epoch < known then
  return redis.error_reply('MOMD stale_epoch snapshot epoch ' .. epoch .. ' is older than ' .. known)
end
if ARGV[3] ~= '' then
  for _, s in ipairs(redis.call('HKEYS', ARGV[3])) do
    for t = 5, 4 + n do
      local tpl = ARGV[t]
      local p = string.find(tpl, '\\1', 1, true)
      redis.call('DEL', string.sub(tpl, 1, p - 1) .. s .. string.sub(tpl, p + 1))
    end
  end
end
for i = 1, #KEYS - 1 do redis.call('DEL', KEYS[i]) end
local kind = redis.call('TYPE', ARGV[1])['ok']
if kind == 'zset' then redis.call('ZREM', ARGV[1], ARGV[2])
elseif kind == 'set' then redis.call('SREM', ARGV[1], ARGV[2])
elseif kind == 'hash' then redis.call('HDEL', ARGV[1], ARGV[2]) end
local rkind, rvalue = ARGV[i + 1], ARGV[i + 2]
if rkind == 'zset' then redis.call('ZADD', ARGV[1], rvalue, ARGV[2])
elseif rkind == 'set' then redis.call('SADD', ARGV[1], ARGV[2])
elseif rkind == 'hash' then redis.call('HSET', ARGV[1], ARGV[2], rvalue) end
local j = i + 3
while j + 2 <= #ARGV do
  local ttl = tonumber(ARGV[j + 2])
  if ttl < 0 then ttl = 0 end
  redis.call('RESTORE', ARGV[j], ttl, ARGV[j + 1], 'REPLACE')
  j = j + 3
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  local has = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
  if epoch > has then redis.call('HSET', KEYS[1], 'epoch', epoch) end
end
return 1
`;

function str(b: unknown): string {
  return Buffer.isBuffer(b) ? b.toString("utf8") : String(b ?? "");
}

/**
 * Reads every key of the entity atomically. `epoch` overrides the epoch recorded in the entity
 * (the owner passes its current ownership epoch, which may be newer than its last write).
 */
export async function takeSnapshot(
  redis: Redis,
  entity: EntityRef,
  opts: { epoch?: number } = {},
): Promise<EntitySnapshot> {
  const l = layout(entity);
  let reply: Buffer[];
  try {
    reply = await redis.callBuffer(
      "EVAL",
      SNAPSHOT_LUA,
      l.keys.length + 1,
      ...l.keys,
      STORE_KEY,
      l.registry,
      entity.name,
      l.subs,
      ...l.templates,
    ) as Buffer[];
  } catch (err) {
    throw fromScriptError(err);
  }
  const seq = Number(str(reply[0]));
  const epoch = Number(str(reply[1]));
  const kind = str(reply[2]) as RegistrySnapshot["kind"];
  const keys: KeySnapshot[] = [];
  for (let i = 5; i + 2 < reply.length; i += 3) {
    keys.push({
      key: str(reply[i]),
      value: new Uint8Array(reply[i + 1]),
      pttl: Number(str(reply[i + 2])),
    });
  }
  return {
    entity,
    seq,
    epoch: Math.max(epoch, opts.epoch ?? 0),
    created: Number(str(reply[4])),
    keys,
    registry: { kind, value: str(reply[3]) },
  };
}

/**
 * Replaces the entity in `redis` by the snapshot, atomically: every key the entity has there
 * (subscriptions included) is deleted, then each key of the snapshot restored. Throws
 * BrokerError("stale_epoch") when the entity there already knows a newer epoch.
 */
export async function restoreSnapshot(redis: Redis, snapshot: EntitySnapshot): Promise<void> {
  const l = layout(snapshot.entity);
  const own = new Set(l.keys);
  const triples: (string | Buffer)[] = [];
  for (const k of snapshot.keys) {
    if (!own.has(k.key) && !isSubKey(snapshot.entity, k.key)) {
      throw new BrokerError(
        "invalid",
        `snapshot key '${k.key}' is not a key of ${snapshot.entity.type} '${snapshot.entity.name}'`,
      );
    }
    triples.push(k.key, Buffer.from(k.value), String(k.pttl));
  }
  try {
    await redis.call(
      "EVAL",
      RESTORE_LUA,
      l.keys.length + 1,
      ...l.keys,
      STORE_KEY,
      l.registry,
      snapshot.entity.name,
      l.subs,
      String(l.templates.length),
      ...l.templates,
      String(snapshot.epoch),
      snapshot.registry.kind,
      snapshot.registry.value,
      ...triples,
    );
  } catch (err) {
    throw fromScriptError(err);
  }
}

function isSubKey(entity: EntityRef, key: string): boolean {
  if (entity.type !== "topic") return false;
  return Object.values(topicKeys(entity.name).sub(SUB_MARK)).some((tpl) => {
    const [prefix, suffix] = tpl.split(SUB_MARK);
    return key.startsWith(prefix) && key.endsWith(suffix) &&
      key.length > prefix.length + suffix.length;
  });
}

/**
 * The entity's sequence number and epoch in `redis` (0, 0 when it does not exist), and the
 * store's incarnation.
 */
export async function readPosition(redis: Redis, entity: EntityRef): Promise<Position> {
  const meta = entityKeys(entity, ["", "", ""])[0];
  const [[seq, epoch], store] = await Promise.all([
    redis.hmget(meta, "seq", "epoch"),
    redis.hget(STORE_KEY, "id"),
  ]);
  return {
    seq: Number(seq ?? 0),
    epoch: Number(epoch ?? 0),
    exists: seq !== null || (await redis.exists(meta)) === 1,
    store: store ?? "",
  };
}

// KEYS[1] the entity's meta; ARGV[1] the epoch granted.
const ADOPT_EPOCH_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1])
return 1
`;

/**
 * Raises the local copy's epoch to the one this node was just granted (never lowers it). A new
 * owner calls it before serving, so its copy and the snapshots its replicas get agree.
 */
export async function adoptEpoch(redis: Redis, entity: EntityRef, epoch: number): Promise<void> {
  await redis.eval(ADOPT_EPOCH_LUA, 1, entityKeys(entity, ["", "", ""])[0], epoch);
}

/**
 * Drops the local copy of an entity when it is left from an earlier incarnation of the name:
 * its epoch is below `since`, the first epoch of the incarnation ZooKeeper records now (epochs
 * never repeat for a name; cluster/ownership.ts). A node that was away (paused, down) while
 * the entity was deleted still holds it, and a create placed here again must not find it, old
 * messages and all. Returns whether there was such a copy.
 */
export async function discardEarlierIncarnation(
  redis: Redis,
  entity: EntityRef,
  since: number,
): Promise<boolean> {
  if (!(since > 0)) return false; // no incarnation known: keep whatever is there
  const position = await readPosition(redis, entity);
  if (!position.exists || position.epoch >= since) return false;
  // Restoring nothing deletes every key the entity has, subscriptions and registry entry too.
  await restoreSnapshot(redis, {
    entity,
    seq: 0,
    epoch: since,
    keys: [],
    registry: { kind: "", value: "" },
  });
  return true;
}
