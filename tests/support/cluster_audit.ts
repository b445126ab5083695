/**
 * End-of-run audits of a settled cluster, read from the sources of truth rather than through the
 * API under test:
 *
 * - ownership: what ZooKeeper holds (`<root>/entities/<type>/<name>`) against every node's own
 *   view (`GET /v1/cluster?scope=local` on its own address): the same entities with the same
 *   owner, epoch and replicas, and never two nodes that both see themselves as an owner;
 * - replica copies: every replica's local Redis holds the owner's copy (same `seq` in the meta
 *   hash, same SHA-256 of the canonical dump of every key of the entity).
 *
 * Both retry until they hold or their time is up (views follow ZooKeeper by watches, replicas
 * follow their owner by a stream), and report what they saw last.
 */
import { Redis } from "ioredis";
import type { EntityRef, EntityType } from "../../src/broker/keys.ts";
import { queueKeys, topicKeys } from "../../src/broker/keys.ts";
import * as ownershipModule from "../../src/cluster/ownership.ts";
import { ZkSession, type ZkStat } from "../../src/cluster/zk.ts";
import type { Cluster, ClusterStatus } from "./cluster.ts";
import { dumpEntity } from "./state.ts";

/** An entity's ownership, as ZooKeeper or one node sees it. */
export interface OwnershipRecord {
  type: EntityType;
  name: string;
  owner: string;
  epoch: number;
  replicas: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const TYPES: readonly EntityType[] = ["queue", "topic"];

function key(e: { type: string; name: string }): string {
  return `${e.type}/${e.name}`;
}

/**
 * An entity znode's record. The epoch a node uses may be derived from the znode (e.g. its
 * creation zxid), so the ownership module's own decoder is used when it exports one; otherwise
 * the stored JSON is the record.
 */
function decode(entity: EntityRef, data: Uint8Array, stat: ZkStat): OwnershipRecord {
  const decodeEntry = (ownershipModule as Record<string, unknown>).decodeEntry as
    | ((e: EntityRef, d: Uint8Array, s: ZkStat) => OwnershipRecord)
    | undefined;
  const entry = decodeEntry
    ? decodeEntry(entity, data, stat)
    : JSON.parse(new TextDecoder().decode(data)) as OwnershipRecord;
  return {
    type: entity.type,
    name: entity.name,
    owner: entry.owner,
    epoch: entry.epoch,
    replicas: [...(entry.replicas ?? [])].sort(),
  };
}

/** Every entity znode under `<root>/entities`, read now with a session of its own. */
export async function readZooKeeperOwnership(
  connect: string,
  root = "/momd",
): Promise<OwnershipRecord[]> {
  const zk = await ZkSession.open({ connect, sessionTimeoutMs: 4000, connectTimeoutMs: 15_000 });
  try {
    const out: OwnershipRecord[] = [];
    for (const type of TYPES) {
      let names: string[] = [];
      try {
        names = await zk.getChildren(`${root}/entities/${type}`);
      } catch {
        continue; // no entity of this type was ever created
      }
      for (const name of names.sort()) {
        try {
          const { data, stat } = await zk.getData(`${root}/entities/${type}/${name}`);
          out.push(decode({ type, name }, data, stat));
        } catch {
          // deleted between the listing and the read
        }
      }
    }
    return out;
  } finally {
    zk.close();
  }
}

/** One node's own view (`scope=local` on its own address), or why it gave none. */
export async function nodeView(c: Cluster, id: string): Promise<OwnershipRecord[] | string> {
  try {
    const res = await c.call("GET", "/v1/cluster?scope=local", {
      base: c.nodeUrl(id),
      timeoutMs: 5_000,
    });
    if (res.status !== 200) return `${res.status} ${JSON.stringify(res.body)}`;
    return (res.body as ClusterStatus).entities.map((e) => ({
      type: e.type,
      name: e.name,
      owner: e.owner,
      epoch: e.epoch,
      replicas: [...e.replicas].sort(),
    }));
  } catch (err) {
    return `no answer: ${(err as Error).message}`;
  }
}

/** What the ownership audit found. */
export interface OwnershipAudit {
  /** ZooKeeper's records. */
  zookeeper: OwnershipRecord[];
  /** Per node: its view differs from ZooKeeper (missing, extra, other owner/epoch/replicas). */
  mismatches: string[];
  /** Entities that two or more nodes each see themselves owning. */
  doubleOwners: string[];
  /** How long the audit waited for views to agree (ms). */
  waitedMs: number;
}

function describe(r: OwnershipRecord): string {
  return `${r.owner}@${r.epoch} [${r.replicas.join(" ")}]`;
}

/** Compares one round of views with ZooKeeper. */
function compareViews(
  zk: OwnershipRecord[],
  views: Map<string, OwnershipRecord[] | string>,
): { mismatches: string[]; doubleOwners: string[] } {
  const mismatches: string[] = [];
  const truth = new Map(zk.map((r) => [key(r), r]));
  const claims = new Map<string, string[]>();
  for (const [node, view] of views) {
    if (typeof view === "string") {
      mismatches.push(`${node}: ${view}`);
      continue;
    }
    const seen = new Map(view.map((r) => [key(r), r]));
    for (const r of view) {
      if (r.owner === node) claims.set(key(r), [...(claims.get(key(r)) ?? []), node]);
      const z = truth.get(key(r));
      if (!z) {
        mismatches.push(`${node} lists ${key(r)} (${describe(r)}), ZooKeeper has no such entity`);
      } else if (describe(z) !== describe(r)) {
        mismatches.push(`${node} sees ${key(r)} as ${describe(r)}, ZooKeeper ${describe(z)}`);
      }
    }
    for (const z of zk) {
      if (!seen.has(key(z))) {
        mismatches.push(`${node} does not list ${key(z)} (ZooKeeper ${describe(z)})`);
      }
    }
  }
  const doubleOwners = [...claims].filter(([, nodes]) => nodes.length > 1)
    .map(([entity, nodes]) => `${entity}: owned by ${nodes.join(" and ")} in their own views`);
  return { mismatches, doubleOwners };
}

/**
 * Reads ZooKeeper and every node's view until they agree or `timeoutMs` passed; a view that
 * lags ZooKeeper by a watch gets that long to catch up.
 */
export async function auditOwnership(
  c: Cluster,
  opts: { timeoutMs?: number } = {},
): Promise<OwnershipAudit> {
  const started = Date.now();
  const until = started + (opts.timeoutMs ?? 20_000);
  while (true) {
    let zookeeper: OwnershipRecord[] = [];
    let found: { mismatches: string[]; doubleOwners: string[] };
    try {
      zookeeper = await readZooKeeperOwnership(c.zookeeper);
      const views = new Map<string, OwnershipRecord[] | string>();
      for (const id of c.nodeIds) views.set(id, await nodeView(c, id));
      // ZooKeeper again: a change between the two reads is not a stale view.
      const again = await readZooKeeperOwnership(c.zookeeper);
      if (JSON.stringify(again) !== JSON.stringify(zookeeper)) {
        found = { mismatches: ["ZooKeeper changed during the audit"], doubleOwners: [] };
      } else {
        found = compareViews(zookeeper, views);
      }
    } catch (err) {
      found = { mismatches: [`ZooKeeper: ${(err as Error).message}`], doubleOwners: [] };
    }
    const clean = found.mismatches.length === 0 && found.doubleOwners.length === 0;
    if (clean || Date.now() >= until) {
      return { zookeeper, ...found, waitedMs: Date.now() - started };
    }
    await sleep(500);
  }
}

/** One copy of an entity on one node. */
interface Copy {
  node: string;
  seq: string;
  digest: string;
  keys: number;
}

/** What the replica audit found. */
export interface ReplicaAudit {
  /** Entities checked. */
  entities: number;
  /** Copies compared (replicas). */
  copies: number;
  /** `queue/q1: node3 seq 812 (sha 1a2b3c4d, 9 keys) != owner node1 seq 815 (...)`. */
  mismatches: string[];
  waitedMs: number;
}

async function copyOf(url: string, node: string, entity: EntityRef): Promise<Copy> {
  const redis = new Redis(`${url}/0`, { maxRetriesPerRequest: 1, lazyConnect: true });
  try {
    await redis.connect();
    const meta = entity.type === "queue"
      ? queueKeys(entity.name).meta
      : topicKeys(entity.name).meta;
    const seq = (await redis.hget(meta, "seq")) ?? "-";
    const dump = await dumpEntity(redis, entity);
    const bytes = new TextEncoder().encode(JSON.stringify(dump));
    const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    const digest = [...hash].map((b) => b.toString(16).padStart(2, "0")).join("");
    return { node, seq, digest, keys: Object.keys(dump).length };
  } finally {
    redis.disconnect();
  }
}

function showCopy(c: Copy): string {
  return `seq ${c.seq} (sha ${c.digest.slice(0, 8)}, ${c.keys} keys)`;
}

/**
 * Compares every replica's copy of every entity with its owner's, until all are equal or
 * `timeoutMs` passed.
 */
export async function auditReplicas(
  c: Cluster,
  entities: readonly OwnershipRecord[],
  opts: { timeoutMs?: number } = {},
): Promise<ReplicaAudit> {
  const started = Date.now();
  const until = started + (opts.timeoutMs ?? 30_000);
  while (true) {
    const mismatches: string[] = [];
    let copies = 0;
    for (const e of entities) {
      const ref: EntityRef = { type: e.type, name: e.name };
      try {
        const owner = await copyOf(c.redisUrl(e.owner), e.owner, ref);
        for (const r of e.replicas) {
          copies++;
          const replica = await copyOf(c.redisUrl(r), r, ref);
          if (replica.seq !== owner.seq || replica.digest !== owner.digest) {
            mismatches.push(
              `${key(e)}: ${r} ${showCopy(replica)} != owner ${e.owner} ${showCopy(owner)}`,
            );
          }
        }
      } catch (err) {
        mismatches.push(`${key(e)}: ${(err as Error).message}`);
      }
    }
    if (mismatches.length === 0 || Date.now() >= until) {
      return { entities: entities.length, copies, mismatches, waitedMs: Date.now() - started };
    }
    await sleep(500);
  }
}
