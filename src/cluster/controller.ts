/**
 * The controller: one node, elected through ZooKeeper, that moves entities away from nodes whose
 * session ended and keeps every entity's replica set filled from the live nodes.
 *
 * Election: each node creates an ephemeral sequential `<root>/controller/c-<seq>` with its id as
 * data; the lowest sequence is the controller; every other node watches only its predecessor
 * (no herd effect) and re-checks when it goes. Every ownership write of the controller is a
 * `multi` with a check of its own election znode, so a controller whose session expired cannot
 * write any more (KAFKA-6082).
 *
 * Reconcile (on each membership or ownership change, and every `reconcileIntervalMs`):
 * - An entity whose owner is not live, is live in another session than the one it was granted
 *   in (restarted, or its session expired), or resigned (its store was lost or is down), moves
 *   with epoch + 1 to an **in-sync replica** (ownership.ts): one that is live with the very store
 *   it joined the set with, so it holds every acknowledged change. Among them the one holding
 *   the newest state according to `positionOf` (epoch first, then sequence) wins, which keeps
 *   the most of what was written but not yet acknowledged; a candidate that does not answer is
 *   waited for up to `probeGraceMs`, then passed over (or chosen by load if none answered).
 * - With no such replica, the previous owner gets the entity again if it is live with the store
 *   it was granted the entity with (it made every acknowledged change). Failing that the entity
 *   stays unavailable, since electing a replica outside the set could lose acknowledged changes,
 *   unless every node that held it (the owner and each in-sync replica) is back with another
 *   store: nothing better can come back, so the live replica with the newest state takes it and
 *   restores what the backup holds.
 * - Dead replicas are dropped (from the in-sync set too) and the replica set is filled up to
 *   `replicationFactor - 1` with the live nodes holding the fewest entities (the epoch does not
 *   change: same owner). New replicas join the in-sync set once the owner has caught them up.
 */
import type { EntityRef } from "../broker/keys.ts";
import { BrokerError } from "../broker/errors.ts";
import type { MemberInfo, Membership } from "./membership.ts";
import type { EntityEntry, InSyncReplica, Ownership } from "./ownership.ts";
import { storeHolds } from "./in_sync.ts";
import { isZkError, type ZkSession } from "./zk.ts";
import { fallbackLogger, type Logger } from "../log/logger.ts";

/** A replica's position in an entity's record stream. */
export interface EntityPosition {
  seq: number;
  epoch: number;
  /** The incarnation of the store it answered from, when the answer says. */
  store?: string;
}

/** Options of the Controller. */
export interface ControllerOptions {
  /** Where failures are logged (default: warnings and errors on standard error). */
  log?: Logger;
  nodeId: string;
  /** ZooKeeper root of momd's znodes (default `/momd`). */
  root?: string;
  /** Copies of each entity, the owner included (default 3). */
  replicationFactor?: number;
  /** Period of the safety-net reconcile (default 2000 ms). */
  reconcileIntervalMs?: number;
  /** Asks a node for its position in an entity (over gRPC); null when it cannot tell. */
  positionOf?: (nodeId: string, entity: EntityRef) => Promise<EntityPosition | null>;
  /**
   * How long a failover waits for every live candidate to answer `positionOf` before it picks
   * the best of those that answered (default 1.5 s). Every candidate holds each acknowledged
   * change; waiting only keeps more of what was not acknowledged yet.
   */
  probeGraceMs?: number;
}

/** What one reconcile round did. */
export interface ReconcileReport {
  moved: { entity: EntityRef; from: string; to: string; epoch: number }[];
  replicasChanged: { entity: EntityRef; replicas: string[] }[];
  /** Entities with no owner that could take them now. */
  stuck: EntityRef[];
}

/** Counts of entities per node, owner roles and replica roles. */
export interface Load {
  owned: number;
  total: number;
}

/** Entities owned and held (as owner or replica) per live node. */
export function loadByNode(
  entries: readonly EntityEntry[],
  live: Iterable<string>,
): Map<string, Load> {
  const load = new Map<string, Load>();
  for (const id of live) load.set(id, { owned: 0, total: 0 });
  for (const e of entries) {
    const o = load.get(e.owner);
    if (o) {
      o.owned++;
      o.total++;
    }
    for (const r of e.replicas) {
      const l = load.get(r);
      if (l) l.total++;
    }
  }
  return load;
}

function byLoad(load: Map<string, Load>, owner: boolean) {
  return (a: string, b: string): number => {
    const la = load.get(a) ?? { owned: 0, total: 0 };
    const lb = load.get(b) ?? { owned: 0, total: 0 };
    if (owner && la.owned !== lb.owned) return la.owned - lb.owned;
    if (la.total !== lb.total) return la.total - lb.total;
    return a.localeCompare(b);
  };
}

/**
 * Where a new entity goes: the live node owning the fewest entities owns it, and the
 * `replicationFactor - 1` nodes holding the fewest entities hold copies.
 */
export function placeEntity(
  live: readonly string[],
  entries: readonly EntityEntry[],
  replicationFactor: number,
): { owner: string; replicas: string[] } {
  if (live.length === 0) {
    throw new BrokerError("unavailable", "no live node to place an entity on", 1);
  }
  const load = loadByNode(entries, live);
  const owner = [...live].sort(byLoad(load, true))[0];
  const replicas = [...live].filter((id) => id !== owner).sort(byLoad(load, false))
    .slice(0, Math.max(0, replicationFactor - 1));
  return { owner, replicas };
}

/** Controller election and the failover/replica reconcile loop. */
export class Controller {
  readonly #log: Logger;
  readonly #zk: ZkSession;
  readonly #membership: Membership;
  readonly #ownership: Ownership;
  readonly #opts:
    & Required<Omit<ControllerOptions, "positionOf">>
    & Pick<ControllerOptions, "positionOf">;
  readonly #dir: string;
  #myPath = "";
  #mySession = "";
  #leader = false;
  #controllerId: string | undefined;
  #listeners = new Set<(controllerId: string | undefined, isMe: boolean) => void>();
  #timer?: ReturnType<typeof setInterval>;
  #stopped = false;
  #reconciling: Promise<ReconcileReport> | null = null;
  #again = false;
  #unsubscribe: (() => void)[] = [];
  /** When the controller first probed an entity's candidates without every answer. */
  #probeWaits = new Map<string, number>();
  /** Entities reported as having no possible owner (logged once until they move). */
  #stuck = new Set<string>();

  constructor(
    zk: ZkSession,
    membership: Membership,
    ownership: Ownership,
    opts: ControllerOptions,
  ) {
    this.#zk = zk;
    this.#membership = membership;
    this.#ownership = ownership;
    this.#log = opts.log ?? fallbackLogger();
    this.#opts = {
      log: this.#log,
      root: "/momd",
      replicationFactor: 3,
      reconcileIntervalMs: 2000,
      probeGraceMs: 1_500,
      ...opts,
    };
    this.#dir = `${this.#opts.root}/controller`;
  }

  /** Joins the election and starts reconciling when elected. */
  async start(): Promise<void> {
    await this.#zk.mkdirp(this.#dir);
    await this.#join();
    this.#unsubscribe.push(this.#zk.onSession(() => this.#rejoin()));
    this.#unsubscribe.push(this.#membership.onChange(() => this.#kick()));
    // An owner that resigns changes only its record: act on that at once too.
    this.#unsubscribe.push(this.#ownership.onChange((entry) => {
      if (entry && entry.ownerSession === "") this.#kick();
    }));
    this.#timer = setInterval(() => this.#kick(), this.#opts.reconcileIntervalMs);
  }

  /** Leaves the election (another node takes over) and stops. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    for (const u of this.#unsubscribe) u();
    this.#setLeader(false);
    await this.#reconciling?.catch(() => {});
    if (this.#myPath && this.#mySession === this.#zk.sessionId) {
      await this.#zk.remove(this.#myPath).catch(() => {});
    }
    this.#myPath = "";
  }

  /** True while this node is the controller and its session is confirmed. */
  isController(): boolean {
    return this.#leader && this.#mySession === this.#zk.sessionId && this.#zk.hasLease();
  }

  /** The controller's node id as last seen. */
  get controllerId(): string | undefined {
    return this.#controllerId;
  }

  /** Calls `fn` when the controller changes; returns a remover. */
  onChange(fn: (controllerId: string | undefined, isMe: boolean) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /**
   * One reconcile round (only on the controller; a no-op elsewhere). Concurrent calls share a
   * round and run one more after it.
   */
  reconcile(): Promise<ReconcileReport> {
    if (this.#reconciling) {
      this.#again = true;
      return this.#reconciling;
    }
    this.#reconciling = (async () => {
      let report: ReconcileReport = { moved: [], replicasChanged: [], stuck: [] };
      try {
        do {
          this.#again = false;
          report = await this.#reconcileOnce();
        } while (this.#again && !this.#stopped);
      } finally {
        this.#reconciling = null;
      }
      return report;
    })();
    return this.#reconciling;
  }

  #kick() {
    if (!this.#stopped && this.isController()) {
      this.reconcile().catch((err) => this.#log.error({ err }, `controller: reconcile failed`));
    }
  }

  #setLeader(leader: boolean) {
    const was = this.#leader;
    this.#leader = leader;
    if (leader) this.#controllerId = this.#opts.nodeId;
    if (was !== leader) this.#notify();
    if (leader && !was) this.#kick();
  }

  #notify() {
    for (const fn of [...this.#listeners]) {
      try {
        fn(this.#controllerId, this.#leader);
      } catch (err) {
        this.#log.error({ err }, `controller listener`);
      }
    }
  }

  async #join(): Promise<void> {
    this.#mySession = this.#zk.sessionId;
    this.#myPath = await this.#zk.create(
      `${this.#dir}/c-`,
      this.#opts.nodeId,
      "ephemeral_sequential",
    );
    await this.#check();
  }

  async #rejoin(): Promise<void> {
    this.#setLeader(false);
    while (!this.#stopped) {
      try {
        await this.#join();
        return;
      } catch (err) {
        this.#log.error({ err }, `controller: rejoining the election failed`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  /** Decides leadership from the sorted candidates and watches the predecessor. */
  async #check(): Promise<void> {
    while (!this.#stopped) {
      const session = this.#zk.sessionId;
      if (session !== this.#mySession) return; // a new session rejoins by itself
      const children = (await this.#zk.getChildren(this.#dir)).sort();
      const mine = this.#myPath.slice(this.#dir.length + 1);
      const i = children.indexOf(mine);
      if (i < 0) {
        // Our znode is gone with an old session; onSession rejoins.
        this.#setLeader(false);
        return;
      }
      await this.#readControllerId(children[0]);
      if (i === 0) {
        this.#setLeader(true);
        return;
      }
      this.#setLeader(false);
      const predecessor = `${this.#dir}/${children[i - 1]}`;
      const stat = await this.#zk.exists(predecessor, (e) => {
        if (e.type === "deleted" && !this.#stopped) {
          this.#check().catch((err) =>
            this.#log.error({ err }, `controller: election check failed`)
          );
        }
      });
      if (stat) {
        // Also follow the controller's own znode, for controllerId, when it is not our predecessor.
        if (i > 1) {
          await this.#zk.exists(`${this.#dir}/${children[0]}`, (e) => {
            if (e.type === "deleted" && !this.#stopped) this.#check().catch(() => {});
          });
        }
        return;
      }
    }
  }

  async #readControllerId(child: string): Promise<void> {
    try {
      const { data } = await this.#zk.getData(`${this.#dir}/${child}`);
      const id = new TextDecoder().decode(data);
      if (id !== this.#controllerId) {
        this.#controllerId = id;
        this.#notify();
      }
    } catch (err) {
      if (!isZkError(err, "no_node")) throw err;
    }
  }

  async #reconcileOnce(): Promise<ReconcileReport> {
    const report: ReconcileReport = { moved: [], replicasChanged: [], stuck: [] };
    if (!this.isController()) return report;
    const guard = [{ op: "check" as const, path: this.#myPath, version: -1 }];
    const live = await this.#membership.readLive();
    const entries = this.#ownership.list();
    const load = loadByNode(entries, live.keys());
    const want = this.#opts.replicationFactor - 1;

    // Decisions use the cached records; every write is a compare-and-set on the cached version,
    // so a stale one fails, refreshes the record and the entity is looked at again.
    for (const e of entries) {
      if (!this.isController() || this.#stopped) break;
      const ownerMember = live.get(e.owner);
      const ownerOk = ownerMember !== undefined && ownerMember.session === e.ownerSession &&
        e.ownerSession !== "";
      try {
        if (!ownerOk) {
          const to = await this.#chooseNewOwner(e, live, load);
          if (!to) {
            report.stuck.push(e.entity);
            const k = entityKey(e.entity);
            if (!this.#stuck.has(k)) {
              this.#stuck.add(k);
              this.#log.info(
                `controller: ${k} has no owner that holds every acknowledged change yet ` +
                  `(was ${e.owner}; in sync: ${e.isr.map((m) => m.node).join(",") || "none"})`,
              );
            }
            continue;
          }
          const replicas = this.#fill(
            e.replicas.filter((r) => r !== to.id && live.has(r)).concat(
              // The previous owner, back in a new session, may hold copies again (it is resynced).
              ownerMember && ownerMember.id !== to.id ? [ownerMember.id] : [],
            ),
            to.id,
            live,
            load,
            want,
          );
          // The other in-sync replicas still hold every acknowledged change; the new owner takes
          // them on (they get its snapshot, and leave the set if they cannot keep up).
          const isr = e.isr.filter((m) =>
            m.node !== to.id && replicas.includes(m.node) && storeHolds(live.get(m.node), m)
          );
          const moved = await this.#ownership.transfer(e.entity, to, {
            expectedVersion: e.version,
            replicas,
            isr,
            reason: "failover",
            guard,
          });
          adjustLoad(load, e, moved);
          report.moved.push({ entity: e.entity, from: e.owner, to: to.id, epoch: moved.epoch });
          this.#stuck.delete(entityKey(e.entity));
          const why = !ownerMember
            ? "gone"
            : e.ownerSession === "" && ownerMember.session !== ""
            ? "resigned"
            : "back in a new session";
          this.#log.info(
            `controller: failover of ${entityKey(e.entity)} from ${e.owner} (${why}) to ` +
              `${to.id}${to.unclean ? " (no in-sync copy left: unclean)" : ""}, epoch ` +
              `${moved.epoch}`,
          );
          continue;
        }
        const kept = e.replicas.filter((r) => live.has(r) && r !== e.owner);
        const replicas = this.#fill(kept, e.owner, live, load, want);
        if (!sameList(replicas, e.replicas)) {
          const updated = await this.#ownership.update(e.entity, e.version, {
            ...e,
            replicas,
            isr: e.isr.filter((m) => replicas.includes(m.node)),
          }, guard);
          adjustLoad(load, e, updated);
          report.replicasChanged.push({ entity: e.entity, replicas });
          this.#log.info(
            `controller: replicas of ${entityKey(e.entity)}: ${e.replicas.join(",") || "none"} ` +
              `-> ${replicas.join(",") || "none"}`,
          );
        }
      } catch (err) {
        // A concurrent change (or a lost guard): the next round starts from fresh data.
        if (!(err instanceof BrokerError && err.code === "conflict")) throw err;
        await this.#ownership.read(e.entity);
        await new Promise((r) => setTimeout(r, 50));
        this.#again = true;
      }
    }
    return report;
  }

  async #chooseNewOwner(
    e: EntityEntry,
    live: Map<string, MemberInfo>,
    load: Map<string, Load>,
  ): Promise<{ id: string; session: string; store: string; unclean?: boolean } | undefined> {
    const member = (id: string) => {
      const m = live.get(id)!;
      return { id: m.id, session: m.session, store: m.store ?? "" };
    };
    const inSync = e.isr.filter((m) => m.node !== e.owner && storeHolds(live.get(m.node), m));
    if (inSync.length > 0) {
      const chosen = await this.#mostAdvanced(e, inSync);
      return chosen ? member(chosen) : undefined;
    }
    // The previous owner made every acknowledged change, if its store is the one it had then.
    const previous = live.get(e.owner);
    if (previous && storeHolds(previous, { node: e.owner, store: e.ownerStore ?? "" })) {
      return member(previous.id);
    }
    // Nothing holds every acknowledged change unless a holder comes back with its store; once
    // every holder is back with another one, nothing better can come.
    const holders: InSyncReplica[] = [{ node: e.owner, store: e.ownerStore ?? "" }, ...e.isr];
    const gone = holders.every((h) => {
      const m = live.get(h.node);
      return m && m.storeUp !== false && (m.store ?? "") !== h.store;
    });
    if (!gone) return undefined;
    const candidates = [e.owner, ...e.replicas].filter((id) =>
      live.get(id) && live.get(id)!.storeUp !== false
    ).map((node) => ({ node, store: live.get(node)!.store ?? "" }));
    const chosen = await this.#mostAdvanced(e, candidates, load);
    return chosen ? { ...member(chosen), unclean: true } : undefined;
  }

  /**
   * The candidate holding the newest state (epoch, then sequence) among those answering
   * `positionOf` from the store they are listed with; one that is silent is waited for up to
   * `probeGraceMs`. Without a probe, or when none answered by then, the least loaded.
   */
  async #mostAdvanced(
    e: EntityEntry,
    candidates: InSyncReplica[],
    load?: Map<string, Load>,
  ): Promise<string | undefined> {
    const order = byLoad(load ?? new Map(), true);
    const probe = this.#opts.positionOf;
    if (!probe) return candidates.map((c) => c.node).sort(order)[0];
    const answers = await Promise.all(candidates.map(async (c) => {
      try {
        return { c, pos: await probe(c.node, e.entity) };
      } catch {
        return { c, pos: null };
      }
    }));
    // A store that answers without the identity it joined with lost the data: not a candidate.
    const known = answers.filter((a): a is { c: InSyncReplica; pos: EntityPosition } =>
      !!a.pos && (a.pos.store === undefined || a.pos.store === a.c.store)
    );
    const key = entityKey(e.entity);
    const since = this.#probeWaits.get(key) ?? Date.now();
    this.#probeWaits.set(key, since);
    const patient = Date.now() - since < this.#opts.probeGraceMs;
    const silent = answers.filter((a) => !a.pos).map((a) => a.c.node);
    if (silent.length > 0 && patient) return undefined;
    this.#probeWaits.delete(key);
    if (known.length === 0) {
      // Every candidate that could is silent (paused, busy): each holds what was acknowledged.
      return silent.sort(order)[0];
    }
    known.sort((a, b) =>
      b.pos.epoch - a.pos.epoch || b.pos.seq - a.pos.seq || order(a.c.node, b.c.node)
    );
    return known[0].c.node;
  }

  #fill(
    kept: string[],
    owner: string,
    live: Map<string, MemberInfo>,
    load: Map<string, Load>,
    want: number,
  ): string[] {
    const out = [...new Set(kept)].slice(0, want);
    const spare = [...live.keys()].filter((id) => id !== owner && !out.includes(id))
      .sort(byLoad(load, false));
    while (out.length < want && spare.length > 0) out.push(spare.shift()!);
    return out;
  }
}

function entityKey(e: EntityRef): string {
  return `${e.type}/${e.name}`;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function adjustLoad(load: Map<string, Load>, before: EntityEntry, after: EntityEntry) {
  const dec = (id: string, owned: boolean) => {
    const l = load.get(id);
    if (!l) return;
    l.total--;
    if (owned) l.owned--;
  };
  const inc = (id: string, owned: boolean) => {
    const l = load.get(id);
    if (!l) return;
    l.total++;
    if (owned) l.owned++;
  };
  dec(before.owner, true);
  for (const r of before.replicas) dec(r, false);
  inc(after.owner, true);
  for (const r of after.replicas) inc(r, false);
}
