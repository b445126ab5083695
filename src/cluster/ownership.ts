/**
 * Entity ownership in ZooKeeper: a persistent znode `<root>/entities/<queue|topic>/<name>` with
 * JSON `{owner, ownerSession, replicas, epoch, config?}` per entity.
 *
 * - Creating the znode is how a name is taken: ZooKeeper's create is atomic, so of two concurrent
 *   creates of one name exactly one succeeds and the other gets `already_exists`.
 * - Every later change is a versioned setData (compare-and-set), optionally inside a `multi` with
 *   guard operations (the controller adds a check of its own election znode, so a deposed
 *   controller cannot write: KAFKA-6082). A change of owner bumps the epoch.
 * - A grant names the owner's ZooKeeper session (`ownerSession`). A node may write an entity only
 *   while it is the owner in that very session and holds the session's lease (zk.ts). After its
 *   session expires, or after a restart, it is not the owner any more until the controller grants
 *   the entity again with a new epoch, whatever its cache says.
 * - A local cache of every entity, kept current by watches, answers `get`, `list` and
 *   `epochOf`/`isWritable` without a round trip.
 */
import { BrokerError } from "../broker/errors.ts";
import type { EntityRef, EntityType } from "../broker/keys.ts";
import { isZkError, jsonData, parseJson, type ZkOp, type ZkSession } from "./zk.ts";

/** Who holds an entity, as stored in its znode. */
export interface Assignment {
  /** Node id of the owner: the one node that writes the entity. */
  owner: string;
  /** The owner's ZooKeeper session (hex) the grant belongs to. */
  ownerSession: string;
  /** Node ids holding copies, the owner excluded. */
  replicas: string[];
  /** Ownership epoch; +1 on every change of owner. Records carry it; older ones are refused. */
  epoch: number;
  /** The entity's configuration, when the creator stores it here. */
  config?: unknown;
}

/** An entity's assignment with its znode version (the compare-and-set token). */
export interface EntityEntry extends Assignment {
  entity: EntityRef;
  version: number;
}

/** Options of Ownership. */
export interface OwnershipOptions {
  /** This node's id. */
  nodeId: string;
  /** ZooKeeper root of momd's znodes (default `/momd`). */
  root?: string;
}

const TYPES: readonly EntityType[] = ["queue", "topic"];

function key(entity: EntityRef): string {
  return `${entity.type}/${entity.name}`;
}

/** The entities' ownership records, cached and watched. */
export class Ownership {
  readonly #zk: ZkSession;
  readonly #nodeId: string;
  readonly #dir: string;
  #cache = new Map<string, EntityEntry>();
  #czxid = new Map<string, string>();
  #listeners = new Set<(entry: EntityEntry | undefined, entity: EntityRef) => void>();
  #stopped = false;
  #unsubscribe?: () => void;

  constructor(zk: ZkSession, opts: OwnershipOptions) {
    this.#zk = zk;
    this.#nodeId = opts.nodeId;
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
      this.#loadAll().catch((err) => console.error(`ownership: reload failed: ${err}`));
    });
  }

  /** Stops watching. */
  stop(): void {
    this.#stopped = true;
    this.#unsubscribe?.();
  }

  /**
   * Takes a name for the cluster: creates the entity's znode with epoch 1. Throws
   * BrokerError("already_exists") when the name is taken (by this or any node).
   */
  async create(
    entity: EntityRef,
    assignment: Omit<Assignment, "epoch"> & { epoch?: number },
  ): Promise<EntityEntry> {
    const value: Assignment = { ...assignment, epoch: assignment.epoch ?? 1 };
    try {
      await this.#zk.create(this.path(entity), jsonData(value), "persistent");
    } catch (err) {
      if (isZkError(err, "node_exists")) {
        throw new BrokerError("already_exists", `${entity.type} '${entity.name}' already exists`);
      }
      throw err;
    }
    const entry: EntityEntry = { ...value, entity, version: 0 };
    this.#put(entry);
    this.#watchEntity(entity).catch(() => this.#retryLater());
    return entry;
  }

  /** Creates the entity with this node (in its current session) as the owner. */
  claim(
    entity: EntityRef,
    opts: { replicas: string[]; config?: unknown },
  ): Promise<EntityEntry> {
    return this.create(entity, {
      owner: this.#nodeId,
      ownerSession: this.#zk.sessionId,
      replicas: opts.replicas,
      config: opts.config,
    });
  }

  /** The entity's record read from ZooKeeper now (undefined when it does not exist). */
  async read(entity: EntityRef): Promise<EntityEntry | undefined> {
    try {
      const { data, stat } = await this.#zk.getData(this.path(entity));
      const entry: EntityEntry = { ...parseJson<Assignment>(data), entity, version: stat.version };
      this.#put(entry, stat.czxid);
      return entry;
    } catch (err) {
      if (isZkError(err, "no_node")) return undefined;
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
    const path = this.path(entity);
    const data = jsonData(next);
    try {
      if (guard.length === 0) {
        const stat = await this.#zk.setData(path, data, expectedVersion);
        const entry: EntityEntry = { ...next, entity, version: stat.version };
        this.#put(entry);
        return entry;
      }
      await this.#zk.multi([...guard, { op: "setData", path, data, version: expectedVersion }]);
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
    const entry: EntityEntry = { ...next, entity, version: expectedVersion + 1 };
    this.#put(entry);
    return entry;
  }

  /**
   * Moves an entity to a new owner with epoch + 1 (compare-and-set on `expectedVersion`, or on
   * the version read now). Only the controller (after the owner's session ended) or the current
   * owner (a clean hand-over, after it stopped writing) may call this.
   */
  async transfer(
    entity: EntityRef,
    newOwner: { id: string; session: string },
    opts: { expectedVersion?: number; replicas?: string[]; guard?: readonly ZkOp[] } = {},
  ): Promise<EntityEntry> {
    let current = opts.expectedVersion === undefined ? await this.read(entity) : this.get(entity);
    if (opts.expectedVersion !== undefined && current?.version !== opts.expectedVersion) {
      current = await this.read(entity);
    }
    if (!current) throw new BrokerError("not_found", `${key(entity)} does not exist`);
    const version = opts.expectedVersion ?? current.version;
    const replicas = (opts.replicas ?? current.replicas).filter((r) => r !== newOwner.id);
    return await this.update(entity, version, {
      owner: newOwner.id,
      ownerSession: newOwner.session,
      replicas,
      epoch: current.epoch + 1,
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
        console.error(`ownership listener: ${err}`);
      }
    }
  }

  #put(entry: EntityEntry, czxid?: string) {
    const k = key(entry.entity);
    const old = this.#cache.get(k);
    // Never go back to an older version of the same znode; a deleted and re-created znode (a
    // new czxid) starts again at version 0.
    const sameZnode = czxid === undefined || this.#czxid.get(k) === undefined ||
      this.#czxid.get(k) === czxid;
    if (czxid !== undefined) this.#czxid.set(k, czxid);
    if (old && sameZnode && old.version > entry.version) return;
    if (old && old.version === entry.version && old.epoch === entry.epoch) {
      this.#cache.set(k, entry);
      return;
    }
    this.#cache.set(k, entry);
    this.#notify(entry, entry.entity);
  }

  #drop(entity: EntityRef) {
    this.#czxid.delete(key(entity));
    if (this.#cache.delete(key(entity))) this.#notify(undefined, entity);
  }

  async #loadAll(): Promise<void> {
    const seen = new Set<string>();
    for (const type of TYPES) {
      for (const name of await this.#watchChildren(type)) {
        seen.add(`${type}/${name}`);
        await this.#watchEntity({ type, name });
      }
    }
    for (const entry of [...this.#cache.values()]) {
      if (!seen.has(key(entry.entity))) this.#drop(entry.entity);
    }
  }

  async #watchChildren(type: EntityType): Promise<string[]> {
    const names = await this.#zk.getChildren(`${this.#dir}/${type}`, () => {
      if (this.#stopped) return;
      this.#watchChildren(type).then(async (list) => {
        for (const name of list) {
          if (!this.#cache.has(`${type}/${name}`)) await this.#watchEntity({ type, name });
        }
      }).catch(() => this.#retryLater());
    });
    return names;
  }

  async #watchEntity(entity: EntityRef): Promise<void> {
    if (this.#stopped) return;
    try {
      const { data, stat } = await this.#zk.getData(this.path(entity), (e) => {
        if (this.#stopped) return;
        if (e.type === "deleted") this.#drop(entity);
        else this.#watchEntity(entity).catch(() => this.#retryLater());
      });
      this.#put({ ...parseJson<Assignment>(data), entity, version: stat.version }, stat.czxid);
    } catch (err) {
      if (isZkError(err, "no_node")) this.#drop(entity);
      else throw err;
    }
  }

  #retryLater() {
    if (this.#stopped) return;
    setTimeout(() => this.#loadAll().catch(() => this.#retryLater()), 500);
  }
}
