/**
 * What a node's local store holds, for the consistency check (src/cluster/check.ts): each copy's
 * sequence number, epoch, incarnation and a content digest taken consistently with that sequence
 * number, the registry listings, and every momd key grouped by the entity it belongs to.
 *
 * **Digest.** A SHA-256 over every key of the entity (its subscriptions' keys included) and its
 * registry member, canonical and independent of the order Redis returns unordered data in:
 * keys in name order; a hash or set as the sum (mod 2^256) of one SHA-256 per field and value
 * (fields de-duplicated: HSCAN may return one twice); a list, sorted set or stream in its own
 * order. Two copies at the same (seq, epoch) hold the same logical state exactly when their
 * digests are equal (TTLs and stream metadata are not part of it: momd sets neither).
 *
 * **Never holding Redis for long.** First one small read-only Lua call measures the entity
 * (O(keys): its meta hash, its subscriptions, each key's type and length). An entity of up to
 * `smallLimit` elements is then read whole in one MULTI of plain reads (atomic, and short because
 * it is small), which also reads every key's type and the subscriptions again: when they are as
 * measured, the MULTI read every key of one state, and the seq reported is the one it read. A
 * bigger entity is read in pages (HSCAN, SSCAN, LRANGE, ZRANGE, XRANGE of `pageSize`), each a
 * short command sent with a read of the entity's seq and epoch: when those moved, the read stops
 * at once (a reader never chases a growing key). At the end the meta hash is read again: every
 * change of an entity rewrites it (the sequence number) in the same script, so an unchanged meta
 * means the pages saw one state. A copy that changed meanwhile is read again (up to three times);
 * after that it has no digest (`note` says why) and the checker asks again later.
 *
 * **Keys.** SCAN with MATCH and COUNT (never KEYS) lists every `momd:` key; each is classified
 * by keys.ts's layout: a key of an entity (and whether it is one of that entity's keys given its
 * current subscriptions), the store's bookkeeping (identity, registries), keys of the central
 * users or backup Redis when they share this Redis, or anything else.
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import {
  type EntityRef,
  type EntityType,
  queueKeys,
  registryKey,
  STORE_KEY,
  topicKeys,
} from "../broker/keys.ts";
import { entityKeys } from "../broker/store.ts";
import { fromWireEntity, safeInt, type WireEntity } from "./proto.ts";

/** What the checker asks a node about its store. */
export interface InspectRequest {
  /** Entities whose owner and epoch, as this node knows them, to report. */
  views: EntityRef[];
  /** Entities whose copy to read (seq, epoch, incarnation, digest). */
  copies: EntityRef[];
  /** Scan the whole store: every momd key grouped by entity, and the registries. */
  scan: boolean;
  /** Keys to classify again (only those that still exist are reported). */
  keys: string[];
}

/** An entity's owner and epoch as one node knows them ("" and 0: unknown to it). */
export interface EntityView {
  entity: EntityRef;
  owner: string;
  epoch: number;
}

/** One node's copy of one entity. */
export interface CopyFacts {
  entity: EntityRef;
  /** Whether the copy exists (its meta hash does). */
  exists: boolean;
  seq: number;
  epoch: number;
  /** The entity's incarnation (its meta `createdAt`, ms); 0 when unknown. */
  created: number;
  /** Hex SHA-256 of the copy at `seq`; "" when none could be taken (see `note`). */
  digest: string;
  /** Keys the copy has. */
  keys: number;
  /** Whether the entity is in its type's registry here (listed). */
  registered: boolean;
  /** Why there is no digest. */
  note: string;
}

/** Keys of one entity (or of none) found in the store. */
export interface KeyGroup {
  /** null: `momd:` keys that belong to no queue or topic and are no bookkeeping. */
  entity: EntityRef | null;
  count: number;
  /** Up to SAMPLE keys of the group. */
  sample: string[];
  /** Keys named after the entity that are not among its keys now (up to SAMPLE). */
  stray: string[];
  strayCount: number;
}

/** What a node reports about its store. */
export interface InspectReply {
  /** The store's incarnation ("" when it has none: it lost its data). */
  store: string;
  views: EntityView[];
  copies: CopyFacts[];
  /** Entities in the registries (what the node's own listings hold); only with `scan`. */
  registry: EntityRef[];
  /** Every `momd:` key grouped (with `scan`), or the requested keys that still exist. */
  groups: KeyGroup[];
  /** `momd:` keys seen by the scan (0 without). */
  scanned: number;
}

/** Options of inspectStore. */
export interface InspectOptions {
  /** The node's view of an entity (its ownership cache); absent: unknown. */
  viewOf?: (entity: EntityRef) => { owner: string; epoch: number } | undefined;
  /** Entities up to this many elements are read whole in one MULTI (default 10,000). */
  smallLimit?: number;
  /** Elements per page of a bigger entity (default 1,000). */
  pageSize?: number;
}

/** Keys per group reported by name. */
export const SAMPLE = 5;

const PREFIX = STORE_KEY.slice(0, STORE_KEY.indexOf(":") + 1); // "momd:"
/** Bookkeeping of the store itself, not of any entity (`momd:format`: the data format). */
const BOOKKEEPING = new Set([
  STORE_KEY,
  registryKey("queue"),
  registryKey("topic"),
  `${PREFIX}format`,
]);
/** Keys of the central users and backup Redis, which may share a node's Redis. */
const FOREIGN = [
  `${PREFIX}user:`,
  `${PREFIX}users`,
  `${PREFIX}login-fail`,
  `${PREFIX}rate-bucket:`,
  `${PREFIX}backup:`,
];

function base(type: EntityType, name: string): string {
  const meta = type === "queue" ? queueKeys(name).meta : topicKeys(name).meta;
  return meta.slice(0, -"meta".length);
}

/** The part of a key after `momd:q:{name}:` of each queue key, and the topic's own. */
const QUEUE_PARTS = new Set(
  Object.values(queueKeys("n")).map((k) => k.slice(base("queue", "n").length)),
);
const TOPIC_PARTS = new Set(
  [topicKeys("n").meta, topicKeys("n").log, topicKeys("n").subs].map((k) =>
    k.slice(base("topic", "n").length)
  ),
);
/** `s:` before a subscription's name, and the parts after `<sub>:`. */
const SUB_HEAD = topicKeys("n").sub("s").state.slice(base("topic", "n").length, -"s:state".length);
const SUB_PARTS = new Set(
  Object.values(topicKeys("n").sub("s")).map((k) =>
    k.slice(base("topic", "n").length + SUB_HEAD.length + "s:".length)
  ),
);
const TYPE_HEADS: [EntityType, string][] = [
  ["queue", base("queue", "").slice(0, -"{}:".length)],
  ["topic", base("topic", "").slice(0, -"{}:".length)],
];

/** What a `momd:` key is. */
export type KeyClass =
  | { kind: "entity"; entity: EntityRef; part: string; sub?: string; known: boolean }
  | { kind: "bookkeeping" }
  | { kind: "foreign" }
  | { kind: "unknown" };

/**
 * Classifies a key by the layout of keys.ts. `known` says whether the part after the entity's
 * name is one of its type's keys (a subscription key's subscription is checked by the caller).
 */
export function classifyKey(key: string): KeyClass {
  if (BOOKKEEPING.has(key)) return { kind: "bookkeeping" };
  if (FOREIGN.some((p) => key.startsWith(p))) return { kind: "foreign" };
  for (const [type, head] of TYPE_HEADS) {
    if (!key.startsWith(`${head}{`)) continue;
    const close = key.indexOf("}:", head.length + 1);
    if (close < 0) return { kind: "unknown" };
    const name = key.slice(head.length + 1, close);
    const part = key.slice(close + 2);
    const entity = { type, name };
    if (!name) return { kind: "unknown" };
    if (type === "queue") return { kind: "entity", entity, part, known: QUEUE_PARTS.has(part) };
    if (TOPIC_PARTS.has(part)) return { kind: "entity", entity, part, known: true };
    if (part.startsWith(SUB_HEAD)) {
      const rest = part.slice(SUB_HEAD.length);
      const colon = rest.lastIndexOf(":");
      const sub = rest.slice(0, colon);
      if (colon > 0 && SUB_PARTS.has(rest.slice(colon + 1))) {
        return { kind: "entity", entity, part, sub, known: true };
      }
    }
    return { kind: "entity", entity, part, known: false };
  }
  return key.startsWith(PREFIX) ? { kind: "unknown" } : { kind: "foreign" };
}

// ---- digests ------------------------------------------------------------------------------------

const MOD = 1n << 256n;

function lengthPrefixed(b: Buffer): Buffer[] {
  const n = Buffer.alloc(4);
  n.writeUInt32BE(b.length);
  return [n, b];
}

function buf(v: unknown): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.from(String(v ?? ""));
}

/** One key's digest, fed as it is read (whole or in pages). */
class KeyDigest {
  readonly #ordered: boolean;
  readonly #hash = createHash("sha256");
  #sum = 0n;
  readonly #seen = new Set<string>();
  elements = 0;

  constructor(readonly type: string) {
    this.#ordered = type !== "hash" && type !== "set";
  }

  /** An element of an ordered key (list, zset, stream, string), as its parts. */
  push(...parts: Buffer[]): void {
    this.elements++;
    for (const p of parts) for (const b of lengthPrefixed(p)) this.#hash.update(b);
  }

  /** An element of an unordered key (a hash field and its value, a set member). */
  add(field: Buffer, value: Buffer = Buffer.alloc(0)): void {
    const id = field.toString("latin1");
    if (this.#seen.has(id)) return;
    this.#seen.add(id);
    this.elements++;
    const h = createHash("sha256");
    for (const b of [...lengthPrefixed(field), ...lengthPrefixed(value)]) h.update(b);
    this.#sum = (this.#sum + BigInt(`0x${h.digest("hex")}`)) % MOD;
  }

  digest(): Buffer {
    if (this.#ordered) return this.#hash.digest();
    return Buffer.from(this.#sum.toString(16).padStart(64, "0"), "hex");
  }
}

/** The entity's digest from its keys' digests (in key order) and its registry member. */
function entityDigest(
  keys: Map<string, KeyDigest>,
  registry: { kind: string; value: string },
): string {
  const h = createHash("sha256");
  for (const name of [...keys.keys()].sort()) {
    const d = keys.get(name)!;
    for (const p of [Buffer.from(name), Buffer.from(d.type), d.digest()]) {
      for (const b of lengthPrefixed(p)) h.update(b);
    }
  }
  for (const p of [Buffer.from(registry.kind), Buffer.from(registry.value)]) {
    for (const b of lengthPrefixed(p)) h.update(b);
  }
  return h.digest("hex");
}

/** Feeds a whole key's reply (the read FULL_READ names for its type) into its digest. */
function feed(d: KeyDigest, reply: unknown): void {
  switch (d.type) {
    case "string":
      d.push(buf(reply));
      break;
    case "hash": {
      const flat = reply as Buffer[];
      for (let i = 0; i + 1 < flat.length; i += 2) d.add(flat[i], flat[i + 1]);
      break;
    }
    case "set":
      for (const m of reply as Buffer[]) d.add(m);
      break;
    case "list":
      for (const m of reply as Buffer[]) d.push(m);
      break;
    case "zset": {
      // Inside a MULTI, ioredis answers WITHSCORES as [member, score] pairs; elsewhere flat.
      const flat = (reply as (Buffer | Buffer[])[]).flat();
      for (let i = 0; i + 1 < flat.length; i += 2) d.push(flat[i], flat[i + 1]);
      break;
    }
    case "stream":
      for (const [id, fields] of reply as [Buffer, Buffer[]][]) d.push(id, ...fields);
      break;
  }
}

/** The whole-key read of each type. */
const FULL_READ: Record<string, (key: string) => string[]> = {
  string: (k) => ["GET", k],
  hash: (k) => ["HGETALL", k],
  set: (k) => ["SMEMBERS", k],
  list: (k) => ["LRANGE", k, "0", "-1"],
  zset: (k) => ["ZRANGE", k, "0", "-1", "WITHSCORES"],
  stream: (k) => ["XRANGE", k, "-", "+"],
};

// Measures an entity without reading its elements: O(number of keys). KEYS: the entity's own
// keys (meta first). ARGV[1] registry key, ARGV[2] name, ARGV[3] subs hash ('' for a queue),
// ARGV[4..] subscription key templates (\1 = the subscription). Returns the meta hash, the
// registry member (kind, value) and (key, type, length) of every key it may have ('none', 0 for
// those it has not).
const MEASURE_LUA = `
local meta = redis.call('HGETALL', KEYS[1])
local kind = redis.call('TYPE', ARGV[1])['ok']
local value = false
if kind == 'zset' then value = redis.call('ZSCORE', ARGV[1], ARGV[2])
elseif kind == 'set' then
  if redis.call('SISMEMBER', ARGV[1], ARGV[2]) == 1 then value = '' end
elseif kind == 'hash' then value = redis.call('HGET', ARGV[1], ARGV[2]) end
if not value then kind = '' value = '' end
local names = {}
for i = 1, #KEYS do names[#names + 1] = KEYS[i] end
if ARGV[3] ~= '' then
  for _, s in ipairs(redis.call('HKEYS', ARGV[3])) do
    for i = 4, #ARGV do
      local tpl = ARGV[i]
      local p = string.find(tpl, '\\1', 1, true)
      names[#names + 1] = string.sub(tpl, 1, p - 1) .. s .. string.sub(tpl, p + 1)
    end
  end
end
local sizes = {}
for _, k in ipairs(names) do
  local t = redis.call('TYPE', k)['ok']
  local n = 1
  if t == 'hash' then n = redis.call('HLEN', k)
  elseif t == 'list' then n = redis.call('LLEN', k)
  elseif t == 'zset' then n = redis.call('ZCARD', k)
  elseif t == 'set' then n = redis.call('SCARD', k)
  elseif t == 'stream' then n = redis.call('XLEN', k) end
  if t == 'none' then n = 0 end
  sizes[#sizes + 1] = k
  sizes[#sizes + 1] = t
  sizes[#sizes + 1] = tostring(n)
end
return { meta, { kind, value }, sizes }
`;

const SUB_MARK = "\u0001";

interface Measure {
  meta: Map<string, string>;
  registry: { kind: string; value: string };
  /** Every key the entity may have now, with its type ("none": absent) and length. */
  names: { key: string; type: string; size: number }[];
  /** Those it has. */
  keys: { key: string; type: string; size: number }[];
  /** A topic's subscriptions (sorted). */
  subs: string[];
}

/** The keys read, and the meta hash and registry member of that same state. */
interface Read {
  digests: Map<string, KeyDigest>;
  meta: Map<string, string>;
  registry: { kind: string; value: string };
}

function layout(entity: EntityRef): { keys: string[]; subs: string; templates: string[] } {
  const registry = registryKey(entity.type);
  if (entity.type === "queue") {
    return {
      keys: entityKeys(entity, ["", "", ""]).filter((k) => k !== registry),
      subs: "",
      templates: [],
    };
  }
  const t = topicKeys(entity.name);
  return {
    keys: [t.meta, t.log, t.subs],
    subs: t.subs,
    templates: Object.values(t.sub(SUB_MARK)),
  };
}

function str(v: unknown): string {
  return Buffer.isBuffer(v) ? v.toString("utf8") : String(v ?? "");
}

async function measure(redis: Redis, entity: EntityRef): Promise<Measure> {
  const l = layout(entity);
  const reply = await redis.callBuffer(
    "EVAL",
    MEASURE_LUA,
    l.keys.length,
    ...l.keys,
    registryKey(entity.type),
    entity.name,
    l.subs,
    ...l.templates,
  ) as [Buffer[], Buffer[], Buffer[]];
  const meta = new Map<string, string>();
  for (let i = 0; i + 1 < reply[0].length; i += 2) meta.set(str(reply[0][i]), str(reply[0][i + 1]));
  const names: Measure["names"] = [];
  for (let i = 0; i + 2 < reply[2].length; i += 3) {
    names.push({
      key: str(reply[2][i]),
      type: str(reply[2][i + 1]),
      size: Number(str(reply[2][i + 2])),
    });
  }
  const subs = new Set<string>();
  if (entity.type === "topic") {
    const [head, tail] = topicKeys(entity.name).sub(SUB_MARK).state.split(SUB_MARK);
    for (const { key } of names) {
      if (key.startsWith(head) && key.endsWith(tail)) {
        subs.add(key.slice(head.length, key.length - tail.length));
      }
    }
  }
  return {
    meta,
    registry: { kind: str(reply[1][0]), value: str(reply[1][1]) },
    names,
    keys: names.filter((k) => k.type !== "none"),
    subs: [...subs].sort(),
  };
}

function metaOf(flat: unknown): Map<string, string> {
  const out = new Map<string, string>();
  const b = (flat ?? []) as Buffer[];
  for (let i = 0; i + 1 < b.length; i += 2) out.set(str(b[i]), str(b[i + 1]));
  return out;
}

function sameMeta(a: Map<string, string>, flat: unknown): boolean {
  const b = flat as Buffer[];
  if (!Array.isArray(b) || b.length !== a.size * 2) return false;
  for (let i = 0; i + 1 < b.length; i += 2) {
    if (a.get(str(b[i])) !== str(b[i + 1])) return false;
  }
  return true;
}

/**
 * Reads every key whole in one MULTI (atomic: one state); null when the entity's set of keys
 * changed since it was measured (a key created or gone, a subscription added or removed), since
 * the MULTI then did not read all of them. Its meta hash is read inside the MULTI too, so the
 * digest and the seq it reports are of that one state even when the seq moved since measuring.
 */
async function readWhole(redis: Redis, entity: EntityRef, m: Measure): Promise<Read | null> {
  const tx = redis.multi();
  // deno-lint-ignore no-explicit-any
  const call = (args: string[]) => (tx as any).callBuffer(...args);
  for (const k of m.names) call(["TYPE", k.key]);
  const subs = entity.type === "topic";
  if (subs) call(["HKEYS", topicKeys(entity.name).subs]);
  const registry = registryKey(entity.type);
  const member: Record<string, string[]> = {
    zset: ["ZSCORE", registry, entity.name],
    set: ["SISMEMBER", registry, entity.name],
    hash: ["HGET", registry, entity.name],
  };
  call(member[m.registry.kind] ?? ["TYPE", registry]);
  for (const k of m.keys) call(FULL_READ[k.type]?.(k.key) ?? ["TYPE", k.key]);
  const replies = await tx.exec();
  if (!replies) return null;
  for (const [err] of replies) if (err) throw err;
  let i = 0;
  for (const k of m.names) if (str(replies[i++][1]) !== k.type) return null;
  if (subs) {
    const now = (replies[i++][1] as Buffer[]).map(str).sort();
    if (now.join("\n") !== m.subs.join("\n")) return null;
  }
  const reg = replies[i++][1];
  const value = m.registry.kind === "set" ? (Number(reg) === 1 ? "" : null) : reg;
  if (m.registry.kind && value === null) return null;
  const digests = new Map<string, KeyDigest>();
  let meta = new Map<string, string>();
  for (const k of m.keys) {
    const d = new KeyDigest(k.type);
    const reply = replies[i++][1];
    feed(d, reply);
    digests.set(k.key, d);
    if (k === m.keys[0]) meta = metaOf(reply);
  }
  return {
    digests,
    meta,
    registry: m.registry.kind ? { kind: m.registry.kind, value: str(value) } : m.registry,
  };
}

/**
 * Reads every key in pages; null when the meta hash changed meanwhile. (Typed commands, not
 * callBuffer: inside ioredis's auto-pipeline callBuffer loses its command name.)
 */
async function readPaged(redis: Redis, m: Measure, pageSize: number): Promise<Read | null> {
  const metaKey = m.keys[0]?.key ?? "";
  const position = `${m.meta.get("seq")}/${m.meta.get("epoch")}`;
  /**
   * One page, and whether the entity is still where it was measured (asked in the same round
   * trip): a changed entity ends the read at once, rather than a reader chasing a growing key.
   */
  const page = async <T>(read: Promise<T>): Promise<T | null> => {
    const [items, [seq, epoch]] = await Promise.all([read, redis.hmget(metaKey, "seq", "epoch")]);
    return `${seq}/${epoch}` === position ? items : null;
  };
  const out = new Map<string, KeyDigest>();
  for (const k of m.keys) {
    const d = new KeyDigest(k.type);
    out.set(k.key, d);
    switch (k.type) {
      case "hash":
      case "set": {
        let cursor = "0";
        do {
          const got = await page(
            k.type === "hash"
              ? redis.hscanBuffer(k.key, cursor, "COUNT", pageSize)
              : redis.sscanBuffer(k.key, cursor, "COUNT", pageSize),
          );
          if (!got) return null;
          cursor = str(got[0]);
          feed(d, got[1]);
        } while (cursor !== "0");
        break;
      }
      case "list":
      case "zset": {
        for (let start = 0; start < k.size; start += pageSize) {
          const stop = start + pageSize - 1;
          const items = await page(
            k.type === "list"
              ? redis.lrangeBuffer(k.key, start, stop)
              : redis.zrangeBuffer(k.key, String(start), String(stop), "WITHSCORES"),
          );
          if (!items) return null;
          feed(d, items);
        }
        break;
      }
      case "stream": {
        let from = "-";
        for (let read = 0; read < k.size;) {
          const items = await page(redis.xrangeBuffer(k.key, from, "+", "COUNT", pageSize));
          if (!items) return null;
          feed(d, items);
          read += items.length;
          if (items.length < pageSize) break;
          from = `(${str(items[items.length - 1][0])}`;
        }
        break;
      }
      case "string": {
        const value = await page(redis.getBuffer(k.key));
        if (value === null) return null;
        feed(d, value);
        break;
      }
    }
  }
  // The whole meta hash at the end: every change rewrites it, so unchanged means one state.
  const after = await redis.hgetallBuffer(metaKey);
  const flat = Object.entries(after).flatMap(([f, v]) => [Buffer.from(f), v]);
  return sameMeta(m.meta, flat) ? { digests: out, meta: m.meta, registry: m.registry } : null;
}

/**
 * One copy's facts: seq, epoch and incarnation with a digest of the same state (see the module
 * comment for how it is read without holding Redis for long).
 */
export async function copyFacts(
  redis: Redis,
  entity: EntityRef,
  opts: Pick<InspectOptions, "smallLimit" | "pageSize"> = {},
): Promise<CopyFacts> {
  const smallLimit = opts.smallLimit ?? 10_000;
  const pageSize = opts.pageSize ?? 1_000;
  let last: Measure | undefined;
  const factsOf = (m: Pick<Measure, "meta" | "keys" | "registry">) => ({
    entity,
    exists: m.meta.size > 0,
    seq: Number(m.meta.get("seq") ?? 0),
    epoch: Number(m.meta.get("epoch") ?? 0),
    created: Number(m.meta.get("createdAt") ?? 0),
    keys: m.keys.length,
    registered: m.registry.kind !== "",
  });
  for (let attempt = 0; attempt < 3; attempt++) {
    const m = await measure(redis, entity);
    last = m;
    if (m.meta.size === 0) return { ...factsOf(m), digest: "", note: "" };
    const elements = m.keys.reduce((n, k) => n + k.size, 0);
    const read = elements <= smallLimit
      ? await readWhole(redis, entity, m)
      : await readPaged(redis, m, pageSize);
    if (read && read.meta.size > 0) {
      return {
        ...factsOf({ ...read, keys: m.keys }),
        digest: entityDigest(read.digests, read.registry),
        note: "",
      };
    }
  }
  return {
    entity,
    exists: true,
    seq: Number(last?.meta.get("seq") ?? 0),
    epoch: Number(last?.meta.get("epoch") ?? 0),
    created: Number(last?.meta.get("createdAt") ?? 0),
    keys: last?.keys.length ?? 0,
    registered: (last?.registry.kind ?? "") !== "",
    digest: "",
    note: "it changed during each of three reads (busy)",
  };
}

// ---- keys ---------------------------------------------------------------------------------------

/** Groups keys by entity; keys of topic subscriptions that do not exist now are stray. */
async function groupKeys(redis: Redis, keys: Iterable<string>): Promise<KeyGroup[]> {
  const groups = new Map<string, KeyGroup>();
  const subsOf = new Map<string, Set<string>>();
  const entries: { key: string; c: Extract<KeyClass, { kind: "entity" }> | null }[] = [];
  for (const key of keys) {
    const c = classifyKey(key);
    if (c.kind === "bookkeeping" || c.kind === "foreign") continue;
    if (c.kind === "unknown") entries.push({ key, c: null });
    else {
      entries.push({ key, c });
      if (c.sub !== undefined) subsOf.set(`${c.entity.type}/${c.entity.name}`, new Set());
    }
  }
  // The subscriptions of every topic with subscription keys, in one pipeline.
  const topics = [...subsOf.keys()];
  if (topics.length) {
    const pipe = redis.pipeline();
    for (const t of topics) pipe.hkeys(topicKeys(t.slice("topic/".length)).subs);
    const replies = (await pipe.exec()) ?? [];
    topics.forEach((t, i) => {
      const [err, names] = replies[i] ?? [new Error("no reply"), null];
      if (err) throw err;
      subsOf.set(t, new Set(names as string[]));
    });
  }
  for (const { key, c } of entries) {
    const id = c ? `${c.entity.type}/${c.entity.name}` : "";
    let g = groups.get(id);
    if (!g) {
      g = { entity: c?.entity ?? null, count: 0, sample: [], stray: [], strayCount: 0 };
      groups.set(id, g);
    }
    g.count++;
    if (g.sample.length < SAMPLE) g.sample.push(key);
    const stray = c !== null &&
      (!c.known || (c.sub !== undefined && !subsOf.get(id)?.has(c.sub)));
    if (stray) {
      g.strayCount++;
      if (g.stray.length < SAMPLE) g.stray.push(key);
    }
  }
  return [...groups.values()];
}

/** Every `momd:` key of the store (SCAN with COUNT: Redis serves others between the calls). */
async function scanKeys(redis: Redis): Promise<string[]> {
  const out: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${PREFIX}*`, "COUNT", 1000);
    cursor = next;
    out.push(...keys);
  } while (cursor !== "0");
  return [...new Set(out)];
}

// ---- the node's answer --------------------------------------------------------------------------

/** Runs `fn` over `items`, at most `limit` at once, keeping their order. */
async function pool<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Answers the checker's request about this node's store. */
export async function inspectStore(
  redis: Redis,
  req: InspectRequest,
  opts: InspectOptions = {},
): Promise<InspectReply> {
  const store = (await redis.hget(STORE_KEY, "id")) ?? "";
  const views = req.views.map((entity) => {
    const v = opts.viewOf?.(entity);
    return { entity, owner: v?.owner ?? "", epoch: v?.epoch ?? 0 };
  });
  // A few at a time: each read is short, and the store keeps serving between them.
  const copies = await pool(req.copies, 4, (e) => copyFacts(redis, e, opts));
  let registry: EntityRef[] = [];
  let groups: KeyGroup[] = [];
  let scanned = 0;
  if (req.scan) {
    const [queues, topics, keys] = await Promise.all([
      redis.zrange(registryKey("queue"), "0", "-1"),
      redis.zrange(registryKey("topic"), "0", "-1"),
      scanKeys(redis),
    ]);
    registry = [
      ...queues.map((name) => ({ type: "queue" as const, name })),
      ...topics.map((name) => ({ type: "topic" as const, name })),
    ];
    scanned = keys.length;
    groups = await groupKeys(redis, keys);
  } else if (req.keys.length) {
    const pipe = redis.pipeline();
    for (const k of req.keys) pipe.exists(k);
    const replies = (await pipe.exec()) ?? [];
    groups = await groupKeys(redis, req.keys.filter((_, i) => replies[i]?.[1] === 1));
  }
  return { store, views, copies, registry, groups, scanned };
}

// ---- on the wire (proto/momd.proto InspectRequest, InspectReply) --------------------------------

/** InspectRequest on the wire. */
export interface WireInspectRequest {
  views: WireEntity[];
  copies: WireEntity[];
  scan: boolean;
  keys: string[];
}

/** InspectReply on the wire (64-bit numbers as decimal strings). */
export interface WireInspectReply {
  store: string;
  views: { entity: WireEntity; owner: string; epoch: string }[];
  copies: {
    entity: WireEntity;
    exists: boolean;
    seq: string;
    epoch: string;
    created: string;
    digest: string;
    keys: number;
    registered: boolean;
    note: string;
  }[];
  registry: WireEntity[];
  groups: {
    entity: WireEntity | null;
    count: string;
    sample: string[];
    stray: string[];
    strayCount: string;
  }[];
  scanned: string;
}

/** A request for the wire. */
export function toWireInspectRequest(r: InspectRequest): WireInspectRequest {
  return { views: r.views, copies: r.copies, scan: r.scan, keys: r.keys };
}

/** A checked request from the wire. */
export function fromWireInspectRequest(w: WireInspectRequest): InspectRequest {
  return {
    views: (w.views ?? []).map(fromWireEntity),
    copies: (w.copies ?? []).map(fromWireEntity),
    scan: w.scan === true,
    keys: [...(w.keys ?? [])],
  };
}

/** An answer for the wire. */
export function toWireInspectReply(r: InspectReply): WireInspectReply {
  return {
    store: r.store,
    views: r.views.map((v) => ({ entity: v.entity, owner: v.owner, epoch: String(v.epoch) })),
    copies: r.copies.map((c) => ({
      ...c,
      seq: String(c.seq),
      epoch: String(c.epoch),
      created: String(c.created),
    })),
    registry: r.registry,
    groups: r.groups.map((g) => ({
      ...g,
      count: String(g.count),
      strayCount: String(g.strayCount),
    })),
    scanned: String(r.scanned),
  };
}

/** A checked answer from the wire. */
export function fromWireInspectReply(w: WireInspectReply): InspectReply {
  return {
    store: w.store ?? "",
    views: (w.views ?? []).map((v) => ({
      entity: fromWireEntity(v.entity),
      owner: v.owner ?? "",
      epoch: safeInt(v.epoch, "epoch"),
    })),
    copies: (w.copies ?? []).map((c) => ({
      entity: fromWireEntity(c.entity),
      exists: c.exists === true,
      seq: safeInt(c.seq, "seq"),
      epoch: safeInt(c.epoch, "epoch"),
      created: safeInt(c.created, "created"),
      digest: c.digest ?? "",
      keys: c.keys ?? 0,
      registered: c.registered === true,
      note: c.note ?? "",
    })),
    registry: (w.registry ?? []).map(fromWireEntity),
    groups: (w.groups ?? []).map((g) => ({
      entity: g.entity ? fromWireEntity(g.entity) : null,
      count: safeInt(g.count, "count"),
      sample: [...(g.sample ?? [])],
      stray: [...(g.stray ?? [])],
      strayCount: safeInt(g.strayCount, "strayCount"),
    })),
    scanned: safeInt(w.scanned, "scanned"),
  };
}
