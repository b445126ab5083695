/**
 * What the queue and topic services share: the caller, access lists as the scripts store them,
 * how script answers are read, message sizes and the registry listing.
 */
import type { Redis } from "ioredis";
import type { Principal } from "../auth/users.ts";
import { type EntityType, queueKeys, registryKey, topicKeys } from "./keys.ts";

/** Who makes a call (from the verified token). */
export type Caller = Principal;

/** Who may send to and receive from an entity besides its owner and the admins. */
export interface EntityAccess {
  /** false: any authenticated user may send and receive. */
  restricted: boolean;
  senders: string[];
  receivers: string[];
}

/** One entry of a queue or topic listing. */
export interface EntitySummary {
  name: string;
  owner: string;
  createdAt: string;
}

function uniqueSorted(list: readonly string[]): string[] {
  return [...new Set(list)].sort();
}

/** The access fields as the meta hash keeps them ('1'/'0', JSON arrays sorted and unique). */
export function storeAccess(a: EntityAccess): Record<keyof EntityAccess, string> {
  return {
    restricted: a.restricted ? "1" : "0",
    senders: JSON.stringify(uniqueSorted(a.senders)),
    receivers: JSON.stringify(uniqueSorted(a.receivers)),
  };
}

/** The access fields of a meta hash as the scripts return it. */
export function readAccess(v: Partial<Record<keyof EntityAccess, string>>): EntityAccess {
  return {
    restricted: v.restricted === "1",
    senders: JSON.parse(v.senders || "[]"),
    receivers: JSON.parse(v.receivers || "[]"),
  };
}

/** A time in ms as the API shows it (ISO 8601). */
export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** cjson encodes an empty Lua table as {}: read it as an empty list. */
export function list<T>(value: T[] | Record<string, never> | undefined): T[] {
  return Array.isArray(value) ? value : [];
}

const utf8 = new TextEncoder();

/** UTF-8 bytes of a body and the names and values of its attributes (what size limits count). */
export function bodySize(body: string, attributes: Record<string, string> | undefined): number {
  let size = utf8.encode(body).length;
  for (const [k, v] of Object.entries(attributes ?? {})) {
    size += utf8.encode(k).length + utf8.encode(v).length;
  }
  return size;
}

/**
 * Entities of one type held by this node's Redis, by name, a page at a time: names after `after`
 * (exclusive) starting with `prefix`, at most `limit`; `next` continues the listing.
 */
export async function listEntities(
  redis: Redis,
  type: EntityType,
  opts: { prefix?: string; after?: string; limit: number },
): Promise<{ entities: EntitySummary[]; next: string | null }> {
  const prefix = opts.prefix ?? "";
  let min = prefix ? `[${prefix}` : "-";
  if (opts.after !== undefined && opts.after >= prefix) min = `(${opts.after}`;
  const max = prefix ? `(${prefix}~` : "+"; // '~' sorts after every name character
  const names = await redis.zrangebylex(registryKey(type), min, max, "LIMIT", 0, opts.limit + 1);
  const more = names.length > opts.limit;
  const page = names.slice(0, opts.limit);
  const entities: EntitySummary[] = [];
  if (page.length > 0) {
    const pipeline = redis.pipeline();
    for (const name of page) {
      const meta = type === "queue" ? queueKeys(name).meta : topicKeys(name).meta;
      pipeline.hmget(meta, "owner", "createdAt");
    }
    const metas = (await pipeline.exec()) ?? [];
    page.forEach((name, i) => {
      const [err, value] = metas[i] ?? [null, null];
      const [owner, createdAt] = (err ? [null, null] : value) as (string | null)[];
      if (owner) entities.push({ name, owner, createdAt: iso(Number(createdAt)) });
    });
  }
  return { entities, next: more ? page[page.length - 1] : null };
}

/** Access fields as one caller sees them: the lists may be left out. */
export type SeenAccess =
  & Pick<EntityAccess, "restricted">
  & Partial<Pick<EntityAccess, "senders" | "receivers">>;

/** A queue or topic with its access fields as one caller sees them. */
export type SeenEntity<T extends { config: { access: EntityAccess } }> =
  & Omit<T, "config">
  & { config: Omit<T["config"], "access"> & { access: SeenAccess } };

/**
 * A queue or topic as a caller may read it: who else may send and receive is for the owner and
 * the admins (who may change it); others learn only whether the entity is restricted.
 */
export function seenBy<T extends { owner: string; config: { access: EntityAccess } }>(
  caller: Caller,
  entity: T,
): SeenEntity<T> {
  const manages = caller.role === "admin" || caller.username === entity.owner;
  const access: SeenAccess = manages
    ? entity.config.access
    : { restricted: entity.config.access.restricted };
  // The spread of a generic object types as an intersection, which keeps the lists required.
  return { ...entity, config: { ...entity.config, access } } as unknown as SeenEntity<T>;
}
