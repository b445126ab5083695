/**
 * The consistency check (`GET /v1/cluster/check`, `momd check`; docs/check.md): the node that is
 * asked reads ZooKeeper's entity records and live members, the backup heads, and asks every live
 * node (the `Inspect` RPC, authenticated like every inter-node call) what its store holds, then
 * compares:
 *
 * - ZooKeeper's owner and epoch of every entity with each node's view (its ownership cache);
 * - each replica's copy with the owner's: sequence number, epoch, incarnation, and a content
 *   digest taken consistently with the sequence number (src/replication/inspect.ts), compared
 *   only at equal sequence numbers;
 * - the store incarnations ZooKeeper names (grants, in-sync entries) with the nodes' stores;
 * - each backup's version with the owner's copy;
 * - every `momd:` key of every node's Redis with what ZooKeeper places on that node (orphans),
 *   and each node's registry (its listings) with ZooKeeper's records.
 *
 * **A live cluster.** Replicas trail their owner by the records in flight, views follow ZooKeeper
 * by a watch, a delete reaches a replica a moment after its owner. So a finding that may resolve
 * by itself (`settles`) is looked at again: the entities concerned are read again from
 * ZooKeeper, the backup, their replicas and then their owners (in that order, so that a copy
 * read after another cannot be ahead of it unless it really is), for up to `settleMs`. A replica
 * still behind then is `lagging`, a warning. What never happens in a healthy cluster stays an
 * error: a replica ahead of its owner, or with another digest at the same sequence number, a
 * store or epoch other than ZooKeeper says, a backup ahead of the owner, orphan keys.
 *
 * The comparison (`compareFacts`) is a pure function of the facts gathered (`CheckFacts`), so it
 * is tested with hand-made facts; `runCheck` gathers them through `CheckSources`, which
 * `clusterChecker` and `singleNodeChecker` build from a node's own parts.
 */
import type { Redis } from "ioredis";
import {
  type CheckedNode,
  type CheckOptions,
  type CheckProblem,
  type CheckReport,
  type ConsistencyChecker,
  PROBLEM_KINDS,
  type ProblemKind,
} from "../api/schemas/check.ts";
import type { Config } from "../config/schema.ts";
import type { EntityRef } from "../broker/keys.ts";
import { type BackupHead, compareVersions, readBackupHeads } from "../backup/store.ts";
import {
  type CopyFacts,
  type InspectReply,
  type InspectRequest,
  inspectStore,
  type KeyGroup,
} from "../replication/inspect.ts";
import type { ClusterNode } from "./node.ts";
import { decodeEntry } from "./ownership.ts";
import { isZkError } from "./zk.ts";

// The report's shape and the checker's interface are the API's (src/api/schemas/check.ts).
export type { CheckOptions, CheckProblem, CheckReport, ConsistencyChecker, ProblemKind };

// ---- the facts ----------------------------------------------------------------------------------

/** One read of one node's copy, with when it was asked and answered (the checker's clock). */
export interface CopyRead extends Omit<CopyFacts, "entity"> {
  askedAt: number;
  answeredAt: number;
}

/** An entity's ZooKeeper record, as the check compares it. */
export interface ZkRecord {
  /** `queue/orders`. */
  entity: string;
  owner: string;
  ownerSession: string;
  ownerStore: string;
  replicas: string[];
  isr: { node: string; store: string }[];
  epoch: number;
  state: "claimed" | "live";
}

/** A live node, as its membership znode says. */
export interface MemberFacts {
  id: string;
  session: string;
  store: string;
  storeUp: boolean;
}

/** What one node told about its store (merged over the rounds it was asked). */
export interface NodeFacts {
  id: string;
  /** Set when it did not answer (in any round): unreachable. */
  error?: string;
  store: string;
  /** Its view of each entity it was asked about (the latest answer). */
  views: Record<string, { owner: string; epoch: number }>;
  /** Its copy of each entity, every read in order. */
  reads: Record<string, CopyRead[]>;
  /** Entities in its registries (`queue/orders`). */
  registry: string[];
  /** Its `momd:` keys by entity (orphan groups as last looked at). */
  groups: KeyGroup[];
  /** `momd:` keys its store held at the scan. */
  scanned: number;
}

/** One read of an entity's backup head (null: no backup). */
export interface BackupRead {
  head: Pick<BackupHead, "created" | "epoch" | "seq" | "savedAt" | "deleted"> | null;
  askedAt: number;
  answeredAt: number;
}

/** Everything the comparison looks at. */
export interface CheckFacts {
  mode: "cluster" | "single";
  /** The node running the check. */
  node: string;
  /** Wall clock (ms), for the age of backups. */
  now: number;
  replicationFactor: number;
  /** ZooKeeper's records and live members (cluster mode). */
  zookeeper?: { error?: string; records: ZkRecord[]; members: MemberFacts[] };
  nodes: NodeFacts[];
  backup: { error?: string; reads: Record<string, BackupRead[]> };
}

/** A problem, and whether it may resolve by itself on a live cluster (then it is asked again). */
export interface Finding extends CheckProblem {
  settles: boolean;
  /** Keys to look at again (orphan findings). */
  probe?: string[];
}

const refKey = (e: EntityRef) => `${e.type}/${e.name}`;

function refOf(key: string): EntityRef {
  const i = key.indexOf("/");
  return { type: key.slice(0, i) as EntityRef["type"], name: key.slice(i + 1) };
}

function latest<T extends { answeredAt: number }>(reads: T[] | undefined): T | undefined {
  if (!reads?.length) return undefined;
  return reads.reduce((a, b) => b.answeredAt >= a.answeredAt ? b : a);
}

function list(items: string[]): string {
  return items.length ? items.join(", ") : "none";
}

function seconds(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)} s`;
}

// ---- the comparison -----------------------------------------------------------------------------

/** The latest reads of a replica and its owner at the same state, both with digests. */
function latestPair(
  replicaReads: CopyRead[],
  ownerReads: CopyRead[],
): [CopyRead, CopyRead] | undefined {
  let pair: [CopyRead, CopyRead] | undefined;
  for (const r of replicaReads) {
    for (const o of ownerReads) {
      if (!r.exists || !o.exists || !r.digest || !o.digest) continue;
      if (r.seq !== o.seq || r.epoch !== o.epoch || r.created !== o.created) continue;
      const at = Math.max(r.answeredAt, o.answeredAt);
      if (!pair || at >= Math.max(pair[0].answeredAt, pair[1].answeredAt)) pair = [r, o];
    }
  }
  return pair;
}

/**
 * Replica copies whose digest equals their owner's at the same sequence number, and replica
 * copies in all (of live records, on nodes that answered).
 */
export function countVerified(facts: CheckFacts): { verified: number; copies: number } {
  let verified = 0;
  let copies = 0;
  const nodes = new Map(facts.nodes.filter((n) => !n.error).map((n) => [n.id, n]));
  for (const rec of facts.zookeeper?.records ?? []) {
    const owner = nodes.get(rec.owner);
    if (rec.state === "claimed" || !owner) continue;
    for (const r of rec.replicas) {
      const n = nodes.get(r);
      if (!n) continue;
      copies++;
      const pair = latestPair(n.reads[rec.entity] ?? [], owner.reads[rec.entity] ?? []);
      if (pair && pair[0].digest === pair[1].digest) verified++;
    }
  }
  return { verified, copies };
}

/** Compares one replica's copy with its owner's. */
function compareCopies(
  out: Finding[],
  rec: ZkRecord,
  replica: string,
  inSync: boolean,
  replicaReads: CopyRead[],
  ownerReads: CopyRead[],
): void {
  const base = { entity: rec.entity, node: replica };
  const R = latest(replicaReads);
  const O = latest(ownerReads);
  if (!R || !O || !O.exists) return; // not read, or the owner's copy is missing (reported)
  if (!R.exists) {
    out.push(
      inSync
        ? {
          ...base,
          severity: "error",
          kind: "missing_copy",
          detail: `in the in-sync set, but holds no copy (the owner is at seq ${O.seq})`,
          settles: true,
        }
        : {
          ...base,
          severity: "warning",
          kind: "lagging",
          detail: `no copy yet (catching up outside the in-sync set; the owner is at seq ${O.seq})`,
          settles: true,
        },
    );
    return;
  }
  if (R.epoch > rec.epoch) {
    out.push({
      ...base,
      severity: "error",
      kind: "epoch_mismatch",
      detail: `its copy has epoch ${R.epoch}, above ZooKeeper's ${rec.epoch}`,
      settles: true,
    });
  }
  // A read of the owner that started after a read of the replica ended: the owner's seq then
  // cannot be below the replica's, unless the replica holds changes the owner never made.
  for (const r of replicaReads) {
    if (!r.exists) continue;
    // (Of the same epoch: after a failover a replica may hold records of the earlier epoch
    // its new owner never got; the new owner's resync replaces them.)
    const after = ownerReads.find((o) =>
      o.exists && o.askedAt >= r.answeredAt && o.created === r.created && o.epoch === r.epoch &&
      r.seq > o.seq
    );
    if (after) {
      out.push({
        ...base,
        severity: "error",
        kind: "ahead",
        detail: `its copy is at seq ${r.seq}, ahead of the owner ${rec.owner} (seq ${after.seq}, ` +
          "read after it): it holds changes its owner never made",
        settles: false,
      });
      return;
    }
  }
  // The latest pair of reads at the same state (seq, epoch, incarnation) with digests decides.
  const pair = latestPair(replicaReads, ownerReads);
  if (pair) {
    if (pair[0].digest !== pair[1].digest) {
      out.push({
        ...base,
        severity: "error",
        kind: "digest_mismatch",
        detail: `at seq ${pair[0].seq} (epoch ${pair[0].epoch}) its copy differs from the ` +
          `owner ${rec.owner}'s: digest ${pair[0].digest.slice(0, 12)} (${pair[0].keys} keys) ` +
          `!= ${pair[1].digest.slice(0, 12)} (${pair[1].keys} keys)`,
        settles: true,
      });
    }
    if (!inSync) {
      out.push({
        ...base,
        severity: "warning",
        kind: "out_of_sync",
        detail: `not in the in-sync set (in sync: ${list(rec.isr.map((m) => m.node))})`,
        settles: true,
      });
    }
    return;
  }
  const where = inSync ? "in the in-sync set" : "catching up outside the in-sync set";
  if (R.created !== O.created) {
    out.push(
      inSync
        ? {
          ...base,
          severity: "error",
          kind: "incarnation_mismatch",
          detail: `its copy is of another incarnation (created ${R.created}) than the owner's ` +
            `(created ${O.created})`,
          settles: true,
        }
        : {
          ...base,
          severity: "warning",
          kind: "lagging",
          detail: `holds an earlier incarnation (created ${R.created}; ${where})`,
          settles: true,
        },
    );
    return;
  }
  if (R.seq < O.seq || (R.seq === O.seq && R.epoch < O.epoch)) {
    out.push({
      ...base,
      severity: "warning",
      kind: "lagging",
      detail: R.seq < O.seq
        ? `${O.seq - R.seq} records behind the owner ${rec.owner} (seq ${R.seq} of ${O.seq}; ` +
          `${where})`
        : `at the owner's seq ${O.seq} but of the earlier epoch ${R.epoch} (a resync is due; ` +
          `${where})`,
      settles: true,
    });
    return;
  }
  const why = R.seq > O.seq
    ? `reported seq ${R.seq} above the owner's ${O.seq} in reads that overlapped in time`
    : !R.digest
    ? `no digest of its copy: ${R.note || "not taken"}`
    : !O.digest
    ? `no digest of the owner's copy: ${O.note || "not taken"}`
    : `its epoch ${R.epoch} differs from the owner's ${O.epoch}`;
  out.push({
    ...base,
    severity: "warning",
    kind: "unverified",
    detail: `its copy could not be compared with the owner's: ${why}`,
    settles: true,
  });
}

/** Compares the backup of one entity with the owner's copy. */
function compareBackup(
  out: Finding[],
  entity: string,
  owner: string,
  ownerReads: CopyRead[],
  backups: BackupRead[] | undefined,
  now: number,
): void {
  const O = latest(ownerReads);
  const B = latest(backups);
  if (!O || !O.exists || !B) return;
  const base = { entity, node: owner };
  if (!B.head) {
    out.push({
      entity,
      severity: "warning",
      kind: "backup_missing",
      detail: "no backup yet (the owner writes one within MOMD_BACKUP_INTERVAL_MS of a change)",
      settles: true,
    });
    return;
  }
  const head = B.head;
  if (head.deleted) {
    if (head.created === O.created) {
      out.push({
        ...base,
        severity: "error",
        kind: "backup_deleted",
        detail: "the backup holds a tombstone of this very incarnation: a restore would lose it",
        settles: true,
      });
    } else {
      out.push({
        entity,
        severity: "warning",
        kind: "backup_missing",
        detail: "the backup holds only the tombstone of an earlier incarnation",
        settles: true,
      });
    }
    return;
  }
  const cmp = compareVersions(head, O);
  if (cmp > 0) {
    // Read before the owner: the owner's copy can only have moved on since.
    const ordered = ownerReads.some((o) =>
      o.askedAt >= B.answeredAt && compareVersions(head, o) > 0
    );
    const what = head.created !== O.created
      ? `a later incarnation (created ${head.created}) than the owner's (created ${O.created})`
      : `seq ${head.seq} epoch ${head.epoch}, ahead of the owner ${owner} (seq ${O.seq} epoch ` +
        `${O.epoch})`;
    out.push(
      ordered
        ? {
          ...base,
          severity: "error",
          kind: "backup_ahead",
          detail: `the backup holds ${what}: a restore would bring back changes that do not exist`,
          settles: true,
        }
        : {
          ...base,
          severity: "warning",
          kind: "unverified",
          detail: `the backup seemed ahead of the owner (${what}) in reads that overlapped in time`,
          settles: true,
        },
    );
    return;
  }
  if (cmp < 0) {
    const detail = head.created !== O.created
      ? `the backup holds an earlier incarnation (created ${head.created})`
      : head.seq < O.seq
      ? `the backup is ${O.seq - head.seq} records behind (seq ${head.seq} of ${O.seq}), ` +
        `written ${seconds(now - head.savedAt)} ago`
      : `the backup is of the earlier epoch ${head.epoch} (the owner's next pass replaces it)`;
    out.push({ ...base, severity: "warning", kind: "backup_behind", detail, settles: false });
  }
}

/** Orphan keys and registry entries of one node, given the entities it should hold. */
function compareKeys(
  out: Finding[],
  n: NodeFacts,
  held: Set<string>,
  placement: (entity: string) => string | undefined,
): void {
  const node = n.id;
  for (const g of n.groups) {
    const probe = [...new Set([...g.sample, ...g.stray])];
    const e = g.entity ? refKey(g.entity) : undefined;
    const some = `${g.count} key${g.count === 1 ? "" : "s"} (${g.sample.join(", ")}` +
      `${g.count > g.sample.length ? ", ..." : ""})`;
    if (!e) {
      out.push({
        node,
        severity: "error",
        kind: "orphan_keys",
        detail: `${some} of no queue or topic`,
        settles: true,
        probe,
      });
    } else if (!held.has(e)) {
      out.push({
        node,
        entity: e,
        severity: "error",
        kind: "orphan_keys",
        detail: `${some} of ${e}, ${placement(e) ?? "which has no ZooKeeper record"}`,
        settles: true,
        probe,
      });
    } else if (g.strayCount > 0) {
      out.push({
        node,
        entity: e,
        severity: "error",
        kind: "orphan_keys",
        detail: `${g.strayCount} key${g.strayCount === 1 ? "" : "s"} named after ${e} that ` +
          `are not among its keys (${g.stray.join(", ")}${
            g.strayCount > g.stray.length ? ", ..." : ""
          })`,
        settles: true,
        probe,
      });
    }
  }
  for (const e of n.registry) {
    // A copy read since the scan says whether it is still listed (a delete in flight).
    if (held.has(e) || latest(n.reads[e])?.registered === false) continue;
    const where = placement(e);
    out.push({
      node,
      entity: e,
      severity: "error",
      kind: where ? "orphan_keys" : "unrecorded_entity",
      detail: where
        ? `listed in this node's registry, ${where}`
        : "listed in this node's registry, but ZooKeeper has no record of it",
      settles: true,
    });
  }
}

/** Whether each held copy and the registry agree on one node. */
function compareRegistry(out: Finding[], n: NodeFacts, held: Set<string>): void {
  const listed = new Set(n.registry);
  for (const e of held) {
    const R = latest(n.reads[e]);
    if (!R) continue;
    if (R.exists && !R.registered) {
      out.push({
        node: n.id,
        entity: e,
        severity: "error",
        kind: "registry_mismatch",
        detail: "its copy exists but is missing from its registry (the node's listing)",
        settles: true,
      });
    } else if (!R.exists && R.registered && listed.has(e)) {
      out.push({
        node: n.id,
        entity: e,
        severity: "error",
        kind: "registry_mismatch",
        detail: "listed in its registry, but the copy does not exist",
        settles: true,
      });
    }
  }
}

function compareCluster(facts: CheckFacts, out: Finding[]): void {
  const zk = facts.zookeeper!;
  const members = new Map(zk.members.map((m) => [m.id, m]));
  const nodes = new Map(facts.nodes.map((n) => [n.id, n]));
  const reached = (id: string) => {
    const n = nodes.get(id);
    return n && !n.error ? n : undefined;
  };
  const records = new Map(zk.records.map((r) => [r.entity, r]));
  const heldBy = new Map<string, Set<string>>();
  const named = new Map<string, { owns: number; replicates: number }>();
  for (const r of zk.records) {
    for (const id of [r.owner, ...r.replicas]) {
      if (!heldBy.has(id)) heldBy.set(id, new Set());
      heldBy.get(id)!.add(r.entity);
      const c = named.get(id) ?? { owns: 0, replicates: 0 };
      if (id === r.owner) c.owns++;
      else c.replicates++;
      named.set(id, c);
    }
  }

  // Nodes: every live member must answer; a node ZooKeeper's records name must be live.
  for (const m of zk.members) {
    const n = nodes.get(m.id);
    if (!n || n.error) {
      out.push({
        node: m.id,
        severity: "error",
        kind: "unreachable",
        detail: `a live member that did not answer (${n?.error ?? "not asked"}): its copies, ` +
          "keys and view are not verified",
        settles: false,
      });
    } else if (!n.store) {
      out.push({
        node: m.id,
        severity: "error",
        kind: "store_mismatch",
        detail: "its store has no identity: it lost its data and has not taken a new one yet",
        settles: true,
      });
    }
  }
  for (const [id, c] of named) {
    if (members.has(id)) continue;
    out.push({
      node: id,
      severity: "error",
      kind: "unreachable",
      detail: `not live (no membership in ZooKeeper), yet named as the owner of ${c.owns} and ` +
        `a replica of ${c.replicates} entities: down, or its session expired`,
      settles: true,
    });
  }

  for (const rec of zk.records) {
    const e = rec.entity;
    // Every node's view of the record.
    for (const n of facts.nodes) {
      if (n.error) continue;
      const v = n.views[e];
      if (!v) continue;
      if (v.owner !== rec.owner || v.epoch !== rec.epoch) {
        out.push({
          node: n.id,
          entity: e,
          severity: "error",
          kind: "view_mismatch",
          detail: v.owner
            ? `sees owner ${v.owner} at epoch ${v.epoch}, ZooKeeper ${rec.owner} at epoch ${rec.epoch}`
            : `does not know it (ZooKeeper: owner ${rec.owner} at epoch ${rec.epoch})`,
          settles: true,
        });
      }
    }
    if (rec.state === "claimed") {
      out.push({
        entity: e,
        severity: "warning",
        kind: "claimed",
        detail:
          `its name is taken by a create its owner ${rec.owner} has not finished (unlisted; ` +
          "the next create of the name makes it)",
        settles: true,
      });
      continue;
    }
    const member = members.get(rec.owner);
    if (!rec.ownerSession || !member || member.session !== rec.ownerSession) {
      out.push({
        entity: e,
        node: rec.owner,
        severity: "error",
        kind: "no_owner",
        detail: !rec.ownerSession
          ? `its owner ${rec.owner} resigned; a new owner is being elected`
          : !member
          ? `its owner ${rec.owner} is not live; a failover is due`
          : `its owner ${rec.owner} is live in another ZooKeeper session than its grant; a ` +
            "failover is due",
        settles: true,
      });
    }
    const live = [rec.owner, ...rec.replicas].filter((id) => members.has(id));
    if (live.length < facts.replicationFactor) {
      const down = [rec.owner, ...rec.replicas].filter((id) => !members.has(id));
      out.push({
        entity: e,
        severity: "warning",
        kind: "under_replicated",
        detail: `${live.length} of ${facts.replicationFactor} copies on live nodes` +
          (down.length ? ` (${down.join(", ")} down)` : " (too few nodes to place more)"),
        settles: false,
      });
    }
    const owner = reached(rec.owner);
    const ownerReads = owner?.reads[e] ?? [];
    const O = latest(ownerReads);
    if (owner) {
      if (rec.ownerStore && owner.store && owner.store !== rec.ownerStore) {
        out.push({
          entity: e,
          node: rec.owner,
          severity: "error",
          kind: "store_mismatch",
          detail: `ZooKeeper granted it to store ${rec.ownerStore} of ${rec.owner}, which now ` +
            `has store ${owner.store}`,
          settles: true,
        });
      }
      if (O && !O.exists) {
        out.push({
          entity: e,
          node: rec.owner,
          severity: "error",
          kind: "missing_copy",
          detail: "ZooKeeper names it the owner, but it holds no copy",
          settles: true,
        });
      } else if (O && O.epoch !== rec.epoch) {
        out.push({
          entity: e,
          node: rec.owner,
          severity: "error",
          kind: "epoch_mismatch",
          detail: `the owner's copy has epoch ${O.epoch}, ZooKeeper ${rec.epoch}` +
            (O.epoch < rec.epoch ? " (its take-over has not finished)" : ""),
          settles: true,
        });
      }
    }
    for (const r of rec.replicas) {
      const n = reached(r);
      if (!n) continue;
      const isr = rec.isr.find((m) => m.node === r);
      if (isr?.store && n.store && isr.store !== n.store) {
        out.push({
          entity: e,
          node: r,
          severity: "error",
          kind: "store_mismatch",
          detail: `in the in-sync set with store ${isr.store}, but it has store ${n.store} now`,
          settles: true,
        });
      }
      if (owner) compareCopies(out, rec, r, !!isr, n.reads[e] ?? [], ownerReads);
    }
    if (owner && !facts.backup.error) {
      compareBackup(out, e, rec.owner, ownerReads, facts.backup.reads[e], facts.now);
    }
  }

  for (const n of facts.nodes) {
    if (n.error) continue;
    const held = heldBy.get(n.id) ?? new Set<string>();
    compareKeys(out, n, held, (e) => {
      const r = records.get(e);
      return r
        ? `which ZooKeeper places on ${list([r.owner, ...r.replicas])} (owner ${r.owner}): a ` +
          "copy left from an earlier placement"
        : undefined;
    });
    compareRegistry(out, n, held);
  }
}

function compareSingle(facts: CheckFacts, out: Finding[]): void {
  for (const n of facts.nodes) {
    if (n.error) {
      out.push({
        node: n.id,
        severity: "error",
        kind: "unreachable",
        detail: `its store did not answer: ${n.error}`,
        settles: false,
      });
      continue;
    }
    const held = new Set(n.registry);
    for (const e of held) {
      const R = latest(n.reads[e]);
      if (R && !R.exists) {
        out.push({
          entity: e,
          node: n.id,
          severity: "error",
          kind: "missing_copy",
          detail: "listed in the registry, but it has no data",
          settles: true,
        });
      }
      if (!facts.backup.error) {
        compareBackup(out, e, n.id, n.reads[e] ?? [], facts.backup.reads[e], facts.now);
      }
    }
    compareKeys(out, n, held, () => "which is not in the registry (not listed)");
  }
}

const ORDER = new Map(PROBLEM_KINDS.map((k, i) => [k, i]));

/**
 * Compares the facts: every problem found, each with whether it may resolve by itself. Pure:
 * the same facts give the same findings.
 */
export function compareFacts(facts: CheckFacts): Finding[] {
  const out: Finding[] = [];
  if (facts.backup.error) {
    out.push({
      severity: "error",
      kind: "backup_unreachable",
      detail: `the backup Redis did not answer (${facts.backup.error}): backups not verified`,
      settles: false,
    });
  }
  if (facts.mode === "single") compareSingle(facts, out);
  else if (!facts.zookeeper || facts.zookeeper.error) {
    out.push({
      severity: "error",
      kind: "zookeeper_unreachable",
      detail: `ZooKeeper could not be read (${facts.zookeeper?.error ?? "not connected"}): ` +
        "nothing in the cluster is verified",
      settles: false,
    });
  } else compareCluster(facts, out);
  // One finding per kind, entity and node; errors first.
  const seen = new Set<string>();
  return out.filter((f) => {
    const k = `${f.kind}|${f.entity ?? ""}|${f.node ?? ""}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  }).sort((a, b) =>
    (a.severity === b.severity ? 0 : a.severity === "error" ? -1 : 1) ||
    ORDER.get(a.kind)! - ORDER.get(b.kind)! ||
    (a.entity ?? "").localeCompare(b.entity ?? "") || (a.node ?? "").localeCompare(b.node ?? "")
  );
}

// ---- gathering the facts ------------------------------------------------------------------------

/** Where the facts come from (a node's own parts; tests may give others). */
export interface CheckSources {
  mode: "cluster" | "single";
  /** The node running the check. */
  node: string;
  replicationFactor: number;
  /**
   * ZooKeeper's records (all, or only `only`: those missing are gone) and live members (cluster).
   */
  readZooKeeper?: (
    only?: EntityRef[],
  ) => Promise<{ records: ZkRecord[]; members: MemberFacts[] }>;
  /** Asks one node about its store; throws when it does not answer in `deadlineMs`. */
  inspect(node: string, request: InspectRequest, deadlineMs: number): Promise<InspectReply>;
  /** The backup heads of the entities (undefined: no backup). */
  backupHeads(entities: EntityRef[]): Promise<(BackupHead | undefined)[]>;
  /** The wall clock (ms). */
  now?: () => number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `p`, or a rejection once `ms` passed (the node's own store has no gRPC deadline). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Gathers the facts in rounds, compares them, and reports. */
export async function runCheck(
  sources: CheckSources,
  opts: CheckOptions = {},
): Promise<CheckReport> {
  const settleMs = opts.settleMs ?? 2000;
  const timeoutMs = opts.timeoutMs ?? 3000;
  const wall = sources.now ?? Date.now;
  const clock = () => performance.now();
  const started = clock();
  const checkedAt = new Date(wall()).toISOString();
  const facts: CheckFacts = {
    mode: sources.mode,
    node: sources.node,
    now: wall(),
    replicationFactor: sources.replicationFactor,
    nodes: [],
    backup: { reads: {} },
  };

  const nodeFacts = (id: string): NodeFacts => {
    let n = facts.nodes.find((x) => x.id === id);
    if (!n) {
      n = { id, store: "", views: {}, reads: {}, registry: [], groups: [], scanned: 0 };
      facts.nodes.push(n);
    }
    return n;
  };

  const readBackups = async (entities: string[]) => {
    if (entities.length === 0) return;
    const askedAt = clock();
    try {
      const heads = await within(
        sources.backupHeads(entities.map(refOf)),
        timeoutMs,
        "the backup Redis",
      );
      const answeredAt = clock();
      entities.forEach((e, i) => {
        const h = heads[i];
        (facts.backup.reads[e] ??= []).push({
          head: h
            ? {
              created: h.created,
              epoch: h.epoch,
              seq: h.seq,
              savedAt: h.savedAt,
              deleted: h.deleted,
            }
            : null,
          askedAt,
          answeredAt,
        });
      });
    } catch (err) {
      facts.backup.error = message(err);
    }
  };

  /** Asks a node and merges its answer; a node that fails is unreachable from then on. */
  const ask = async (id: string, req: InspectRequest) => {
    const n = nodeFacts(id);
    if (n.error) return;
    const askedAt = clock();
    let reply: InspectReply;
    try {
      reply = await within(sources.inspect(id, req, timeoutMs), timeoutMs + 500, id);
    } catch (err) {
      n.error = message(err);
      return;
    }
    const answeredAt = clock();
    n.store = reply.store;
    for (const v of reply.views) n.views[refKey(v.entity)] = { owner: v.owner, epoch: v.epoch };
    for (const c of reply.copies) {
      const { entity, ...rest } = c;
      (n.reads[refKey(entity)] ??= []).push({ ...rest, askedAt, answeredAt });
    }
    if (req.scan) {
      n.registry = reply.registry.map(refKey);
      n.groups = reply.groups;
      n.scanned = reply.scanned;
    } else if (req.keys.length) {
      // The probed groups as they are now; a group with none of its keys left is gone.
      const probed = new Set(req.keys);
      const again = new Map(reply.groups.map((g) => [g.entity ? refKey(g.entity) : "", g]));
      n.groups = n.groups.flatMap((g) => {
        const id = g.entity ? refKey(g.entity) : "";
        if (![...g.sample, ...g.stray].some((k) => probed.has(k))) return [g];
        const now = again.get(id);
        again.delete(id);
        if (!now) return [];
        return [{
          ...now,
          count: Math.max(now.count, g.count),
          strayCount: now.strayCount ? Math.max(now.strayCount, g.strayCount) : 0,
        }];
      });
      n.groups.push(...again.values());
    }
  };

  const members = new Set<string>();
  let records = new Map<string, ZkRecord>();
  const readZk = async (only?: string[]) => {
    try {
      const zk = await sources.readZooKeeper!(only?.map(refOf));
      if (only) {
        for (const e of only) records.delete(e);
        for (const r of zk.records) records.set(r.entity, r);
      } else records = new Map(zk.records.map((r) => [r.entity, r]));
      members.clear();
      for (const m of zk.members) members.add(m.id);
      facts.zookeeper = { records: [...records.values()], members: zk.members };
    } catch (err) {
      facts.zookeeper = { error: message(err), records: [], members: [] };
    }
  };
  const holders = (r: ZkRecord) => [r.owner, ...r.replicas];

  // ---- round 1: everything ----
  if (sources.mode === "cluster") {
    await readZk();
    if (!facts.zookeeper?.error) {
      const all = [...records.values()];
      // The backup first: the owners' copies read after it can only be further on.
      await readBackups(all.filter((r) => r.state !== "claimed").map((r) => r.entity));
      await Promise.all([...members].map((id) =>
        ask(id, {
          views: all.map((r) => refOf(r.entity)),
          copies: all.filter((r) => holders(r).includes(id)).map((r) => refOf(r.entity)),
          scan: true,
          keys: [],
        })
      ));
    }
  } else {
    await ask(sources.node, { views: [], copies: [], scan: true, keys: [] });
    const listed = nodeFacts(sources.node).registry;
    await readBackups(listed);
    await ask(sources.node, { views: [], copies: listed.map(refOf), scan: false, keys: [] });
  }

  // ---- later rounds: what may resolve by itself, until it did or settleMs passed ----
  let findings = compareFacts(facts);
  const until = clock() + settleMs;
  while (clock() < until) {
    const settling = findings.filter((f) => f.settles);
    if (settling.length === 0) break;
    await sleep(Math.min(150, Math.max(0, until - clock())));
    const entities = [...new Set(settling.flatMap((f) => f.entity ? [f.entity] : []))];
    const probes = new Map<string, string[]>();
    for (const f of settling) {
      if (f.probe && f.node) probes.set(f.node, [...(probes.get(f.node) ?? []), ...f.probe]);
    }
    if (sources.mode === "cluster") {
      // A node named by records but not live: every record again (the controller drops it).
      const named = settling.some((f) => f.kind === "unreachable");
      if (named) await readZk();
      else if (entities.length) await readZk(entities);
      if (facts.zookeeper?.error) break;
    }
    const backupFor = settling.filter((f) => f.kind.startsWith("backup") || f.kind === "unverified")
      .flatMap((f) => f.entity ? [f.entity] : []);
    await readBackups(
      [...new Set(backupFor)].filter((e) => sources.mode === "single" || records.has(e)),
    );
    const reachable = facts.nodes.filter((n) => !n.error).map((n) => n.id);
    if (sources.mode === "cluster") {
      // Replicas first, then owners: an owner's copy read later cannot be behind a replica's.
      await Promise.all(reachable.map((id) => {
        // Its replicas' copies, and copies it lists or holds though ZooKeeper places none here.
        const stray = settling.filter((f) =>
          f.node === id && f.entity && !records.get(f.entity)?.replicas.includes(id) &&
          records.get(f.entity)?.owner !== id
        ).map((f) => f.entity!);
        const copies = [
          ...new Set([...entities.filter((e) => records.get(e)?.replicas.includes(id)), ...stray]),
        ];
        const keys = probes.get(id) ?? [];
        const views = entities.filter((e) => records.has(e));
        if (!copies.length && !keys.length && !views.length) return;
        return ask(id, { views: views.map(refOf), copies: copies.map(refOf), scan: false, keys });
      }));
      await Promise.all(reachable.map((id) => {
        const copies = entities.filter((e) => records.get(e)?.owner === id);
        if (!copies.length) return;
        return ask(id, { views: [], copies: copies.map(refOf), scan: false, keys: [] });
      }));
    } else {
      const listed = new Set(nodeFacts(sources.node).registry);
      await ask(sources.node, {
        views: [],
        copies: entities.filter((e) => listed.has(e)).map(refOf),
        scan: false,
        keys: probes.get(sources.node) ?? [],
      });
    }
    facts.now = wall();
    findings = compareFacts(facts);
  }

  const problems: CheckProblem[] = findings.map(({ settles: _s, probe: _p, ...p }) => p);
  const errors = problems.filter((p) => p.severity === "error").length;
  const known = new Set([...facts.nodes.map((n) => n.id), ...members]);
  for (const r of records.values()) holders(r).forEach((id) => known.add(id));
  const nodes: CheckedNode[] = [...known].sort().map((id) => {
    const n = facts.nodes.find((x) => x.id === id);
    const ok = !!n && !n.error;
    return {
      id,
      reached: ok,
      store: ok ? n!.store : null,
      copies: ok ? Object.values(n!.reads).filter((r) => latest(r)?.exists).length : 0,
      keys: ok ? n!.scanned : 0,
    };
  });
  return {
    consistent: errors === 0,
    checkedAt,
    node: sources.node,
    mode: sources.mode,
    durationMs: Math.round(clock() - started),
    entities: sources.mode === "cluster" ? records.size : nodeFacts(sources.node).registry.length,
    replicaCopies: countVerified(facts),
    nodes,
    errors,
    warnings: problems.length - errors,
    notApplicable: sources.mode === "single"
      ? [
        "ownership views, replica copies and in-sync sets: a single node has no ZooKeeper and " +
        "owns every queue and topic",
      ]
      : [],
    problems,
  };
}

// ---- a node's own sources -----------------------------------------------------------------------

/** The checker of a cluster node: ZooKeeper, its peers over gRPC, its own store, the backup. */
export function clusterChecker(deps: {
  cluster: ClusterNode;
  local: Redis;
  backup: Redis;
  config: Pick<Config, "nodeId" | "zkRoot" | "replicationFactor">;
}): ConsistencyChecker {
  const { cluster, local, backup, config } = deps;
  const dir = `${config.zkRoot}/entities`;
  const readRecord = async (e: EntityRef): Promise<ZkRecord | undefined> => {
    try {
      const { data, stat } = await cluster.zk.getData(`${dir}/${e.type}/${e.name}`);
      const entry = decodeEntry(e, data, stat);
      return {
        entity: refKey(e),
        owner: entry.owner,
        ownerSession: entry.ownerSession,
        ownerStore: entry.ownerStore ?? "",
        replicas: [...entry.replicas],
        isr: entry.isr.map((m) => ({ node: m.node, store: m.store })),
        epoch: entry.epoch,
        state: entry.state ?? "live",
      };
    } catch (err) {
      if (isZkError(err, "no_node")) return undefined;
      throw err;
    }
  };
  const sources: CheckSources = {
    mode: "cluster",
    node: config.nodeId,
    replicationFactor: config.replicationFactor,
    async readZooKeeper(only) {
      let refs = only;
      if (!refs) {
        refs = [];
        for (const type of ["queue", "topic"] as const) {
          try {
            const names = await cluster.zk.getChildren(`${dir}/${type}`);
            refs.push(...names.map((name) => ({ type, name })));
          } catch (err) {
            if (!isZkError(err, "no_node")) throw err;
          }
        }
      }
      const [found, live] = await Promise.all([
        Promise.all(refs.map(readRecord)),
        cluster.membership.readLive(),
      ]);
      return {
        records: found.filter((r): r is ZkRecord => r !== undefined),
        members: [...live.values()].map((m) => ({
          id: m.id,
          session: m.session,
          store: m.store ?? "",
          storeUp: m.storeUp !== false,
        })),
      };
    },
    inspect(node, request, deadlineMs) {
      if (node === config.nodeId) {
        return inspectStore(local, request, {
          viewOf: (e) => {
            const entry = cluster.ownership.get(e);
            return entry && { owner: entry.owner, epoch: entry.epoch };
          },
        });
      }
      const member = cluster.membership.member(node);
      if (!member) return Promise.reject(new Error(`${node} is not a live member`));
      return cluster.peers.inspect(member.grpc, request, deadlineMs);
    },
    backupHeads: (entities) => readBackupHeads(backup, entities),
  };
  return { check: (opts) => runCheck(sources, opts) };
}

/** The checker of a single node (no ZooKeeper): its store and the backup. */
export function singleNodeChecker(deps: {
  local: Redis;
  backup: Redis;
  config: Pick<Config, "nodeId">;
}): ConsistencyChecker {
  const sources: CheckSources = {
    mode: "single",
    node: deps.config.nodeId,
    replicationFactor: 1,
    inspect: (_node, request) => inspectStore(deps.local, request),
    backupHeads: (entities) => readBackupHeads(deps.backup, entities),
  };
  return { check: (opts) => runCheck(sources, opts) };
}
