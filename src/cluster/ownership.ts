/**
 * Entity ownership in ZooKeeper: a persistent znode `<root>/entities/<queue|topic>/<name>` per
 * entity, holding `{owner, ownerSession, ownerStore, replicas, isr, epoch, moved, config?}`.
 *
 * - Creating the znode is how a name is taken: ZooKeeper's create is atomic, so of two concurrent
 *   creates of one name exactly one succeeds and the other gets `already_exists`.
 * - Every later change is a versioned setData (compare-and-set), optionally inside a `multi` with
 *   guard operations (the controller adds a check of its own election znode, so a deposed
 *   controller cannot write: KAFKA-6082). A change of owner bumps the epoch.
 * - **Epochs never repeat for a name**, not even across a delete and a create again: the epoch a
 *   node sees is the znode's creation zxid plus the number of grants stored in it. Every grant
 *   is a ZooKeeper transaction, so a later incarnation's creation zxid is above every epoch of
 *   the earlier one, and a node still holding a grant of the deleted incarnation is fenced by
 *   every store that saw the new one (lower epochs are refused).
 * - A grant names the owner's ZooKeeper session (`ownerSession`) and store incarnation
 *   (`ownerStore`). A node may write an entity only while it is the owner in that very session
 *   and holds the session's lease (zk.ts). After its session expires, or after a restart, it is
 *   not the owner any more until the controller grants the entity again with a new epoch,
 *   whatever its cache says. An owner that lost its store resigns by clearing `ownerSession`.
 * - `isr` (in-sync replicas, as Kafka's ISR) names the replicas, each with its store
 *   incarnation, that hold every acknowledged change: the owner acknowledges a change only once
 *   each of them has it, and shrinks or grows the set (in ZooKeeper first when shrinking, after
 *   waiting for the newcomer when growing). The controller elects new owners only from it.
 * - A local cache of every entity answers `get`, `list` and `epochOf`/`isWritable` without a
 *   round trip. **Every cached record is watched**: whatever puts a record in the cache (the
 *   children watch, a read on demand, a create, an update) also arms a data watch on its znode,
 *   so a change or a delete made anywhere reaches the cache; nothing stays cached unwatched.
 */
import { BrokerError } from "../broker/errors.ts";
import type { EntityRef, EntityType } from "../broker/keys.ts";
import {
  isZkError,
  jsonData,
  parseJson,
  type ZkEvent,
  type ZkOp,
  type ZkSession,
  type ZkStat,
} from "./zk.ts";
import { fallbackLogger, type Logger } from "../log/logger.ts";

/** A replica in the in-sync set, with the store incarnation it held every change in. */
export interface InSyncReplica {
  node: string;
  /** Its local store's incarnation (store.ts); "" when unknown. */
  store: string;
}

/** Why an entity last changed owner. */
export type MoveReason = "create" | "handover" | "failover";

/**
 * Where an entity is in its life: `claimed` when a node took the name for a create that its
 * owner has not made yet (it is not listed, and the owner gives the name back if the create
 * fails), `live` once the owner made it. Absent in records written before the state existed:
 * live.
 */
export type EntityState = "claimed" | "live";

/** Who holds an entity. */
export interface Assignment {
  /** Node id of the owner: the one node that writes the entity. */
  owner: string;
  /** The owner's ZooKeeper session (hex) the grant belongs to; "" once the owner resigned. */
  ownerSession: string;
  /** The owner's store incarnation when it was granted the entity ("" when unknown). */
  ownerStore?: string;
  /** Node ids holding copies, the owner excluded. */
  replicas: string[];
  /** The replicas holding every acknowledged change (a subset of `replicas`). */
  isr: InSyncReplica[];
  /** Ownership epoch: unique per grant, higher for later grants of the name (module comment). */
  epoch: number;
  /** Why the owner last changed. */
  moved?: MoveReason;
  /** Claimed or live (absent: live). */
  state?: EntityState;
  /** The entity's configuration, when the creator stores it here. */
  config?: unknown;
}

/** An entity's assignment with its znode identity (the compare-and-set token). */
export interface EntityEntry extends Assignment {
  entity: EntityRef;
  /** The znode's data version. */
  version: number;
  /** The znode's creation zxid: which incarnation of the name this is. */
  czxid: number;
}

/** The znode's JSON: the epoch is stored as the count of grants (see the module comment). */
interface StoredAssignment extends Omit<Assignment, "epoch" | "isr"> {
  epoch: number;
  isr?: InSyncReplica[];
}

/** Options of Ownership. */
export interface OwnershipOptions {
  /** Where failures are logged (default: warnings and errors on standard error). */
  log?: Logger;
  /** This node's id. */
  nodeId: string;
  /** ZooKeeper root of momd's znodes (default `/momd`). */
  root?: string;
}

const TYPES: readonly EntityType[] = ["queue", "topic"];

function key(entity: EntityRef): string {
  return `${entity.type}/${entity.name}`;
}

/** A zxid (hex, as ZkStat carries it) as a number; exact below 2^53 (ZooKeeper epoch < 2^21). */
function zxid(hex: string): number {
  return hex ? Number(BigInt(`0x${hex}`)) : 0;
}

/** Reads an entity's znode (data and stat) into an entry. Exported for tests and tools. */
export function decodeEntry(entity: EntityRef, data: Uint8Array, stat: ZkStat): EntityEntry {
  const stored = parseJson<StoredAssignment>(data);
  const czxid = zxid(stat.czxid);
  return {
    ...stored,
    ownerStore: stored.ownerStore ?? "",
    isr: stored.isr ?? [],
    epoch: czxid + stored.epoch,
    entity,
    version: stat.version,
    czxid,
  };
}

function encode(next: Assignment, czxid: number): Uint8Array {
  const stored: StoredAssignment = {
    owner: next.owner,
    ownerSession: next.ownerSession,
    ownerStore: next.ownerStore ?? "",
    replicas: next.replicas,
    isr: next.isr,
    epoch: next.epoch - czxid,
    moved: next.moved,
    state: next.state,
    config: next.config,
  };
  return jsonData(stored);
}

/** The in-sync members' node ids. */
export function isrNodes(entry: Pick<Assignment, "isr">): string[] {
  return entry.isr.map((m) => m.node);
}

/** The entities' ownership records, cached and watched. */
export class Ownership {
  readonly #log: Logger;
  readonly #zk: ZkSession;
  readonly #nodeId: string;
  readonly #dir: string;
  #cache = new Map<string, EntityEntry>();
  /** Keys whose znode has a data watch armed (at most one per znode). */
  #watched = new Set<string>();
  #listeners = new Set<(entry: EntityEntry | undefined, entity: EntityRef) => void>();
  #stopped = false;
  #unsubscribe?: () => void;
  #retryTimer?: ReturnType<typeof setTimeout>;

  constructor(zk: ZkSession, opts: OwnershipOptions) {
    this.#zk = zk;
    this.#nodeId = opts.nodeId;
    this.#log = opts.log ?? fallbackLogger();
    this.#dir = `${opts.root ?? "/momd"}/entities`;
  }

  /** The znode path of an entity. */
  path(entity: EntityRef): string {
    return `${this.#dir}/${entity.type}/${entity.name}`;
  }

  /** Loads every entity and watches for changes; reloads after a new session. */
  async start(): Promise<void> {
    for (const type of TYPES) await this.#zk.mkdirp(`${this.#dir}/${type}`);
    await this.#loadAll();
    this.#unsubscribe = this.#zk.onSession(() => {
      // Watches die with their session: every one must be armed again.
      this.#watched.clear();
      this.#loadAll().catch((err) => {
        this.#log.error({ err }, `ownership: reload failed`);
        this.#retryLater();
      });
    });
  }

  /** Stops watching. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    this.#unsubscribe?.();
  }

  /**
   * Takes a name for the cluster: creates the entity's znode with the first epoch. Throws
   * BrokerError("already_exists") when the name is taken (by this or any node).
   */
  async create(
    entity: EntityRef,
    assignment: Omit<Assignment, "epoch" | "isr"> & { isr?: InSyncReplica[] },
  ): Promise<EntityEntry> {
    const value: Assignment = {
      ...assignment,
      isr: assignment.isr ?? assignment.replicas.map((node) => ({ node, store: "" })),
      moved: "create",
      epoch: 1,
    };
    try {
      await this.#zk.create(this.path(entity), encode(value, 0), "persistent");
    } catch (err) {
      if (isZkError(err, "node_exists")) {
        throw new BrokerError("already_exists", `${entity.type} '${entity.name}' already exists`);
      }
      throw err;
    }
    // The epoch rests on the creation zxid, which only a read tells.
    const entry = await this.read(entity);
    if (!entry) {
      throw new BrokerError("conflict", `${key(entity)} was removed while being created`);
    }
    return entry;
  }

  /** Creates the entity with this node (in its current session) as the owner. */
  claim(
    entity: EntityRef,
    opts: { replicas: string[]; config?: unknown; ownerStore?: string; state?: EntityState },
  ): Promise<EntityEntry> {
    return this.create(entity, {
      owner: this.#nodeId,
      ownerSession: this.#zk.sessionId,
      ownerStore: opts.ownerStore ?? "",
      replicas: opts.replicas,
      state: opts.state,
      config: opts.config,
    });
  }

  /**
   * The entity's record read from ZooKeeper now (undefined when it does not exist); the cache
   * takes it, and its znode is watched from then on.
   */
  async read(entity: EntityRef): Promise<EntityEntry | undefined> {
    if (this.#stopped) return this.get(entity);
    const k = key(entity);
    const arm = !this.#watched.has(k);
    if (arm) this.#watched.add(k);
    try {
      const { data, stat } = await this.#zk.getData(
        this.path(entity),
        arm ? (event) => this.#onWatch(entity, event) : undefined,
      );
      const entry = decodeEntry(entity, data, stat);
      this.#put(entry);
      return this.#cache.get(k);
    } catch (err) {
      if (arm) this.#watched.delete(k);
      if (isZkError(err, "no_node")) {
        this.#drop(entity);
        return undefined;
      }
      throw err;
    }
  }

  /** The cached record of an entity. */
  get(entity: EntityRef): EntityEntry | undefined {
    return this.#cache.get(key(entity));
  }

  /** Every cached entity (of one type when given), sorted by type and name. */
  list(type?: EntityType): EntityEntry[] {
    return [...this.#cache.values()]
      .filter((e) => !type || e.entity.type === type)
      .sort((a, b) => key(a.entity).localeCompare(key(b.entity)));
  }

  /**
   * Compare-and-set: writes `next` only if the znode is still at `expectedVersion`, atomically
   * with the `guard` operations. Throws BrokerError("conflict") when the version moved on (a
   * stale write) or a guard failed, BrokerError("not_found") when the entity is gone.
   */
  async update(
    entity: EntityRef,
    expectedVersion: number,
    next: Assignment,
    guard: readonly ZkOp[] = [],
  ): Promise<EntityEntry> {
    const current = this.#cache.get(key(entity));
    if (!current) throw new BrokerError("not_found", `${key(entity)} is not known here`);
    const path = this.path(entity);
    const data = encode(next, current.czxid);
    let version = expectedVersion + 1;
    try {
      if (guard.length === 0) {
        const stat = await this.#zk.setData(path, data, expectedVersion);
        if (zxid(stat.czxid) !== current.czxid) {
          // The name was deleted and taken again meanwhile: what was written is not ours.
          this.#watchAgain(entity);
          throw new BrokerError("conflict", `${key(entity)} was created again meanwhile`);
        }
        version = stat.version;
      } else {
        await this.#zk.multi([...guard, { op: "setData", path, data, version: expectedVersion }]);
      }
    } catch (err) {
      if (isZkError(err, "bad_version")) {
        throw new BrokerError(
          "conflict",
          `${key(entity)} changed since version ${expectedVersion}`,
        );
      }
      if (isZkError(err, "no_node")) {
        // In a multi, no_node may come from a guard (e.g. the controller's election znode).
        throw new BrokerError(
          guard.length ? "conflict" : "not_found",
          `${key(entity)}: ${err.message}`,
        );
      }
      throw err;
    }
    const entry: EntityEntry = { ...next, entity, version, czxid: current.czxid };
    this.#put(entry);
    return this.#cache.get(key(entity)) ?? entry;
  }

  /**
   * Moves an entity to a new owner with epoch + 1 (compare-and-set on `expectedVersion`, or on
   * the version read now). Only the controller (after the owner's session ended or it resigned)
   * or the current owner (a clean hand-over, after it stopped writing) may call this.
   */
  async transfer(
    entity: EntityRef,
    newOwner: { id: string; session: string; store?: string },
    opts: {
      expectedVersion?: number;
      replicas?: string[];
      isr?: InSyncReplica[];
      reason?: MoveReason;
      guard?: readonly ZkOp[];
    } = {},
  ): Promise<EntityEntry> {
    let current = opts.expectedVersion === undefined ? await this.read(entity) : this.get(entity);
    if (opts.expectedVersion !== undefined && current?.version !== opts.expectedVersion) {
      current = await this.read(entity);
    }
    if (!current) throw new BrokerError("not_found", `${key(entity)} does not exist`);
    const version = opts.expectedVersion ?? current.version;
    const replicas = (opts.replicas ?? current.replicas).filter((r) => r !== newOwner.id);
    const isr = (opts.isr ?? current.isr).filter((m) =>
      m.node !== newOwner.id && replicas.includes(m.node)
    );
    return await this.update(entity, version, {
      owner: newOwner.id,
      ownerSession: newOwner.session,
      ownerStore: newOwner.store ?? "",
      replicas,
      isr,
      epoch: current.epoch + 1,
      moved: opts.reason ?? "failover",
      state: current.state,
      config: current.config,
    }, opts.guard);
  }

  /** Removes an entity's record (compare-and-set on the version). */
  async remove(entity: EntityRef, expectedVersion: number): Promise<void> {
    try {
      await this.#zk.remove(this.path(entity), expectedVersion);
    } catch (err) {
      if (isZkError(err, "bad_version")) {
        throw new BrokerError(
          "conflict",
          `${key(entity)} changed since version ${expectedVersion}`,
        );
      }
      if (!isZkError(err, "no_node")) throw err;
    }
    this.#drop(entity);
  }

  /**
   * True when this node may write the entity now: it is the owner in its current session and
   * the session's lease holds (not suspended, not expired, not paused past the lease).
   */
  isWritable(entity: EntityRef): boolean {
    const entry = this.#cache.get(key(entity));
    return !!entry && entry.owner === this.#nodeId && entry.ownerSession === this.#zk.sessionId &&
      this.#zk.hasLease();
  }

  /**
   * The epoch to write the entity with; throws BrokerError("unavailable") unless this node is
   * safely the owner right now (see isWritable). Pass it as the Store's `epochOf`.
   */
  epochOf(entity: EntityRef): number {
    const entry = this.#cache.get(key(entity));
    if (!entry) throw new BrokerError("unavailable", `${key(entity)} has no known owner`, 1);
    if (!this.isWritable(entity)) {
      const why = entry.owner !== this.#nodeId
        ? `owned by ${entry.owner}`
        : entry.ownerSession === ""
        ? "its owner resigned; a new owner is being elected"
        : this.#zk.hasLease()
        ? "ownership belongs to an earlier session of this node"
        : "ZooKeeper session not confirmed";
      throw new BrokerError("unavailable", `${key(entity)}: ${why}`, 1);
    }
    return entry.epoch;
  }

  /** The highest epoch known for an entity (0 when unknown): replicas refuse older records. */
  knownEpoch(entity: EntityRef): number {
    return this.#cache.get(key(entity))?.epoch ?? 0;
  }

  /** Calls `fn` whenever a cached record changes or disappears; returns a remover. */
  onChange(fn: (entry: EntityEntry | undefined, entity: EntityRef) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #notify(entry: EntityEntry | undefined, entity: EntityRef) {
    for (const fn of [...this.#listeners]) {
      try {
        fn(entry, entity);
      } catch (err) {
        this.#log.error({ err }, `ownership listener`);
      }
    }
  }

  #put(entry: EntityEntry) {
    const k = key(entry.entity);
    const old = this.#cache.get(k);
    // Never go back: to an earlier incarnation of the name, or an older version of this one.
    if (
      old && (old.czxid > entry.czxid || (old.czxid === entry.czxid && old.version > entry.version))
    ) {
      return;
    }
    this.#cache.set(k, entry);
    const same = old && old.czxid === entry.czxid && old.version === entry.version;
    if (!same) this.#notify(entry, entry.entity);
  }

  #drop(entity: EntityRef) {
    if (this.#cache.delete(key(entity))) this.#notify(undefined, entity);
  }

  #onWatch(entity: EntityRef, event: ZkEvent) {
    this.#watched.delete(key(entity));
    if (this.#stopped) return;
    if (event.type === "deleted") {
      this.#drop(entity);
      // Created again at once? The children watch sees the name; this read only makes sure.
    }
    this.#watchAgain(entity);
  }

  /** Reads the entity again (arming a watch); on a failure the whole cache is reloaded. */
  #watchAgain(entity: EntityRef) {
    this.read(entity).catch(() => this.#retryLater());
  }

  async #loadAll(): Promise<void> {
    const seen = new Set<string>();
    for (const type of TYPES) {
      const names = await this.#watchChildren(type);
      await Promise.all(names.map((name) => {
        seen.add(`${type}/${name}`);
        return this.read({ type, name });
      }));
    }
    for (const entry of [...this.#cache.values()]) {
      if (!seen.has(key(entry.entity))) this.#drop(entry.entity);
    }
  }

  /** Lists a type's names and arms a children watch that follows creates and deletes. */
  async #watchChildren(type: EntityType): Promise<string[]> {
    return await this.#zk.getChildren(`${this.#dir}/${type}`, () => {
      if (this.#stopped) return;
      this.#watchChildren(type).then(async (names) => {
        const now = new Set(names);
        for (const entry of this.list(type)) {
          if (!now.has(entry.entity.name)) this.#drop(entry.entity);
        }
        await Promise.all(
          names.filter((name) => !this.#watched.has(`${type}/${name}`))
            .map((name) => this.read({ type, name })),
        );
      }).catch(() => this.#retryLater());
    });
  }

  #retryLater() {
    if (this.#stopped || this.#retryTimer !== undefined) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#loadAll().catch(() => this.#retryLater());
    }, 500);
  }
}
