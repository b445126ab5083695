/**
 * The in-sync replica set of every entity this node owns (Kafka's ISR): the replicas holding
 * every acknowledged change. The owner acknowledges a change only when each of them has it
 * (Shipper), and the controller elects a new owner only from them (controller.ts), so whichever
 * it elects holds everything that was acknowledged.
 *
 * The owner keeps the set in the entity's ZooKeeper record, where the controller reads it:
 *
 * - **Shrink** (written to ZooKeeper first, then used): a member that has been behind for
 *   `lagMs` (records or a snapshot unacknowledged, or its stream down: paused, failing to apply,
 *   cut off) or whose store went down leaves the set, as long as the owner and the rest still make
 *   `minInSyncReplicas` copies; below that, changes wait (and time out) rather than be
 *   acknowledged by fewer copies. A member whose store is not the one it joined with (its data
 *   was wiped) leaves at once, whatever the count: it holds nothing any more.
 * - **Grow** (used first, then written): a replica that holds everything shipped under the
 *   current epoch, with nothing outstanding, joins. From the moment it is chosen every change
 *   waits for it too, so nothing acknowledged can be missing from it once the record says it is
 *   in sync.
 */
import type { EntityRef } from "../broker/keys.ts";
import type { Shipper } from "../replication/shipper.ts";
import type { MemberInfo, Membership } from "./membership.ts";
import type { EntityEntry, InSyncReplica, Ownership } from "./ownership.ts";

/** Options of InSyncSets. */
export interface InSyncOptions {
  nodeId: string;
  ownership: Ownership;
  membership: Membership;
  shipper: Shipper;
  /** Copies (the owner's included) every acknowledged change is on. */
  minInSyncReplicas: number;
  /** How long a member may be behind before it leaves the set. */
  lagMs: number;
  /** Whether this node may write the entity now (it owns it and is not moving it). */
  serving: (entity: EntityRef) => boolean;
  /** Told when an entity's in-sync set changed (default: nothing). */
  onChange?: (entity: EntityRef, before: string[], after: string[]) => void;
  /** Where failures go (default: nothing). */
  onError?: (message: string, err: unknown) => void;
  /** How often the sets are reviewed (default a quarter of lagMs, at least 50 ms). */
  intervalMs?: number;
}

const key = (e: EntityRef) => `${e.type}/${e.name}`;

/** Whether a member still has the store it was in sync with, and that store is up. */
export function storeHolds(member: MemberInfo | undefined, m: InSyncReplica): boolean {
  return !!member && member.storeUp !== false && (member.store ?? "") === m.store;
}

/** Keeps the in-sync sets of the entities this node owns; see the module comment. */
export class InSyncSets {
  readonly #o: Required<InSyncOptions>;
  /** Replicas chosen to join, per entity, whose ZooKeeper write is under way. */
  readonly #joining = new Map<string, Set<string>>();
  /** Entities with a ZooKeeper write under way (one at a time per entity). */
  readonly #busy = new Set<string>();
  #timer?: ReturnType<typeof setInterval>;

  constructor(opts: InSyncOptions) {
    this.#o = {
      intervalMs: Math.max(50, Math.floor(opts.lagMs / 4)),
      onChange: () => {},
      onError: () => {},
      ...opts,
    };
  }

  /** Starts reviewing the sets. */
  start(): void {
    this.#timer ??= setInterval(() => this.review(), this.#o.intervalMs);
  }

  /** Stops reviewing. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** The replicas every change of the entity must reach: the set, and those joining it. */
  required(entity: EntityRef): string[] {
    const entry = this.#o.ownership.get(entity);
    const nodes = entry ? entry.isr.map((m) => m.node) : [];
    const joining = this.#joining.get(key(entity));
    if (joining) { for (const id of joining) if (!nodes.includes(id)) nodes.push(id); }
    return nodes;
  }

  /** Reviews the set of every entity this node owns now. */
  review(): void {
    for (const entry of this.#o.ownership.list()) this.#review(entry);
  }

  /** Reviews one entity's set now (a replica just caught up: it may join at once). */
  reviewOne(entity: EntityRef): void {
    const entry = this.#o.ownership.get(entity);
    if (entry) this.#review(entry);
  }

  #review(entry: EntityEntry): void {
    if (entry.owner !== this.#o.nodeId || this.#busy.has(key(entry.entity))) return;
    if (!this.#o.serving(entry.entity)) return;
    const next = this.#next(entry);
    if (next) this.#write(entry, next.isr, next.joining);
  }

  /** The set the entity should have now, or undefined when it is right as it is. */
  #next(entry: EntityEntry): { isr: InSyncReplica[]; joining?: string } | undefined {
    const { entity } = entry;
    const members = new Map(this.#o.membership.members().map((m) => [m.id, m]));
    const inReplicas = entry.isr.filter((m) => entry.replicas.includes(m.node));
    // Wiped (another store now) or no longer a replica: out at once.
    let isr = inReplicas.filter((m) => {
      const member = members.get(m.node);
      return !member || (member.store ?? "") === m.store;
    });
    // Behind for too long, or its store down: out while enough copies remain.
    const lagging = isr.filter((m) => {
      const member = members.get(m.node);
      if (member && member.storeUp === false) return true;
      const state = this.#o.shipper.replica(entity, m.node);
      return !!state && state.behindMs > this.#o.lagMs;
    }).sort((a, b) =>
      (this.#o.shipper.replica(entity, b.node)?.behindMs ?? 0) -
      (this.#o.shipper.replica(entity, a.node)?.behindMs ?? 0)
    );
    for (const m of lagging) {
      if (isr.length < this.#o.minInSyncReplicas) break; // the owner plus isr.length - 1 copies
      isr = isr.filter((x) => x !== m);
    }
    if (isr.length !== entry.isr.length) return { isr };
    // One replica at a time joins, once it holds everything shipped under this epoch.
    for (const id of entry.replicas) {
      if (isr.some((m) => m.node === id)) continue;
      const member = members.get(id);
      if (!member || member.storeUp === false) continue;
      const state = this.#o.shipper.replica(entity, id);
      if (!state || !state.connected || state.syncing || state.behindMs > 0) continue;
      if (state.ackedEpoch !== entry.epoch || state.ackedSeq < state.shippedSeq) continue;
      return { isr: [...isr, { node: id, store: member.store ?? "" }], joining: id };
    }
    return undefined;
  }

  #write(entry: EntityEntry, isr: InSyncReplica[], joining?: string) {
    const k = key(entry.entity);
    this.#busy.add(k);
    if (joining) {
      // Every change from now on waits for it: none acknowledged can be missing from it later.
      const set = this.#joining.get(k) ?? new Set<string>();
      set.add(joining);
      this.#joining.set(k, set);
    }
    const before = entry.isr.map((m) => m.node);
    this.#o.ownership.update(entry.entity, entry.version, { ...entry, isr })
      .then(() => this.#o.onChange(entry.entity, before, isr.map((m) => m.node)))
      .catch((err) => {
        // Moved on meanwhile (a new owner, replicas changed): the next review starts afresh.
        this.#o.onError(`changing the in-sync replicas of ${k} failed`, err);
      })
      .finally(() => {
        this.#busy.delete(k);
        if (joining) {
          const set = this.#joining.get(k);
          set?.delete(joining);
          if (set?.size === 0) this.#joining.delete(k);
        }
        this.#o.shipper.recheck(entry.entity);
      });
  }
}
