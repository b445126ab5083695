/**
 * The cluster side of one node, wired together: ZooKeeper membership, ownership and controller,
 * the gRPC server (replication and forwarding), the shipper (this node's records to its
 * replicas) and the in-sync sets of what it owns, the guard of its local store, routing of
 * entity requests to their owners, take-over, clean hand-over and rebalancing.
 *
 * Started in two steps because the store and the HTTP app depend on the cluster and the gRPC
 * server depends on them: `ClusterNode.connect()` gives the store its sink and epochs, then
 * `serve()` starts serving once the store and the app exist.
 */
import type { Redis } from "ioredis";
import type { Config } from "../config/schema.ts";
import { BrokerError } from "../broker/errors.ts";
import { type EntityRef, type EntityType, queueKeys, topicKeys } from "../broker/keys.ts";
import type { Store } from "../broker/store.ts";
import { resumeInFlight } from "../broker/resume.ts";
import { QUEUE_LIMITS } from "../broker/queues.ts";
import type { Principal } from "../auth/users.ts";
import {
  type ClusterStatus,
  type EntityRouter,
  type EntityStatus,
  mayWait,
  type NodeStatus,
  NotOwnerError,
  type ReplicationHealth,
  type Route,
} from "../api/routing.ts";
import type { RecordSink, ReplicationRecord } from "../replication/record.ts";
import { PeerClients } from "../replication/peers.ts";
import { ReplicationServer } from "../replication/server.ts";
import { Shipper } from "../replication/shipper.ts";
import {
  adoptEpoch,
  discardEarlierIncarnation,
  type EntitySnapshot,
  readPosition,
} from "../replication/snapshot.ts";
import { ZkError, ZkSession } from "./zk.ts";
import { Membership } from "./membership.ts";
import { type EntityEntry, type InSyncReplica, isrNodes, Ownership } from "./ownership.ts";
import { Controller, loadByNode, placeEntity } from "./controller.ts";
import { InSyncSets } from "./in_sync.ts";
import { StoreGuard } from "../broker/store_guard.ts";
import { PerKey } from "../serial.ts";
import { VERSION } from "../version.ts";
import { type ClusterEvent, logEvent, type Logger, silentLogger } from "../log/logger.ts";

/** Creation facts kept in the ownership record, so listings need no node's store. */
interface CreationInfo {
  creator: string;
  createdAt: string;
}

/** Hooks the node runs around a take-over (restoring from the backup before serving). */
export interface TakeOverHooks {
  /** Runs before this node serves an entity it just became the owner of. */
  beforeServing?: (entity: EntityRef) => Promise<void>;
}

/** Options of ClusterNode.connect beyond the configuration. */
export interface ClusterNodeOptions {
  /** How often the node checks whether it owns more than its share (default 2 s). */
  rebalanceIntervalMs?: number;
  /** An entity that moved stays put at least this long (hysteresis, default 30 s). */
  moveCooldownMs?: number;
  /** How often the local store is probed (default 250 ms). */
  storeProbeMs?: number;
  /** The node's log (default: nothing logged). */
  log?: Logger;
  /** Told of every cluster event (take-overs, hand-overs, fencing...), after it is logged. */
  onEvent?: (event: ClusterEvent) => void;
  /** Told when an entity this node owned is no longer its own (moved away, or deleted). */
  onReleased?: (entity: EntityRef) => void;
}

const key = (e: EntityRef) => `${e.type}/${e.name}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The controller's reconcile period: how late it may notice that an owner is gone. */
const CONTROLLER_REACTION_MS = 2000;
/** The longest long poll. */
const MAX_WAIT_MS = QUEUE_LIMITS.waitSecondsMax * 1000;

/** One node's membership in the cluster. */
export class ClusterNode implements EntityRouter {
  readonly #config: Config;
  readonly #local: Redis;
  readonly #opts: Required<ClusterNodeOptions>;
  #hooks: TakeOverHooks = {};
  readonly #log: Logger;
  readonly zk: ZkSession;
  readonly membership: Membership;
  readonly ownership: Ownership;
  readonly peers: PeerClients;
  readonly shipper: Shipper;
  readonly inSync: InSyncSets;
  #controller?: Controller;
  #guard?: StoreGuard;
  /** Set while the local store is lost or down: nothing owned is written or read. */
  #storeTrouble: string | undefined;
  #server?: ReplicationServer;
  #store?: Store;
  /** Entities this node owns but must not write now (hand-over or take-over in progress). */
  readonly #paused = new Set<string>();
  /** Entities whose take-over preparation (restore) is running or done, per epoch. */
  readonly #prepared = new Map<string, number>();
  /** Take-over preparations still running. */
  readonly #preparing = new Map<string, Promise<void>>();
  /** The create or delete each entity is going through here (one at a time per entity). */
  readonly #lifecycles = new PerKey();
  /** Entities deleted here whose ownership record is still to be removed. */
  readonly #unrecorded = new Set<string>();
  /** The replicas of each owned entity as last seen (new ones get a snapshot). */
  readonly #replicasOf = new Map<string, string[]>();
  /** When each entity last changed owner (hysteresis of rebalancing). */
  readonly #movedAt = new Map<string, number>();
  #rebalanceTimer?: ReturnType<typeof setInterval>;
  #rebalancing = false;
  #stopped = false;

  private constructor(
    config: Config,
    local: Redis,
    zk: ZkSession,
    opts: ClusterNodeOptions,
  ) {
    this.#config = config;
    this.#local = local;
    this.#opts = {
      rebalanceIntervalMs: 2000,
      moveCooldownMs: 30_000,
      storeProbeMs: 250,
      log: silentLogger(),
      onEvent: () => {},
      onReleased: () => {},
      ...opts,
    };
    this.#log = this.#opts.log;
    this.zk = zk;
    const me = { nodeId: config.nodeId, root: config.zkRoot, log: this.#log };
    this.membership = new Membership(zk, {
      ...me,
      http: config.httpAdvertise ?? config.httpListen,
      grpc: config.grpcAdvertise ?? config.grpcListen,
    });
    this.ownership = new Ownership(zk, me);
    this.peers = new PeerClients({
      secret: config.clusterSecret!,
      tls: config.grpcTls,
      // A frozen peer is noticed within two thirds of a session: before it could be replaced.
      keepaliveMs: Math.max(1000, Math.floor(config.zkSessionTimeoutMs / 3)),
    });
    this.shipper = new Shipper({
      log: this.#log,
      nodeId: config.nodeId,
      peers: this.peers,
      redis: local,
      minInSyncReplicas: config.minInSyncReplicas,
      replicasOf: (e) => this.ownership.get(e)?.replicas ?? [],
      inSyncOf: (e) => this.inSync.required(e),
      addressOf: (id) => this.membership.member(id)?.grpc,
      epochOf: (e) => this.ownership.epochOf(e),
      isWritable: (e) => this.ownership.isWritable(e) && this.#storeTrouble === undefined,
      ackTimeoutMs: config.replicationAckTimeoutMs,
      onFenced: (e, detail) =>
        this.#event({ event: "fenced", entity: key(e), detail }, `fenced off ${key(e)}`),
      // A replica outside the in-sync set that caught up joins without waiting for a review.
      onCaughtUp: (e) => this.inSync.reviewOne(e),
    });
    this.inSync = new InSyncSets({
      nodeId: config.nodeId,
      ownership: this.ownership,
      membership: this.membership,
      shipper: this.shipper,
      minInSyncReplicas: config.minInSyncReplicas,
      lagMs: config.replicaLagMs,
      serving: (e) => this.#serving(e),
      onChange: (e, before, after) =>
        this.#event(
          { event: "in_sync_change", entity: key(e), inSync: after },
          `in-sync replicas of ${key(e)}: ${before.join(",") || "none"} -> ` +
            `${after.join(",") || "none"}`,
        ),
      onError: (message, err) => this.#log.warn({ err }, message),
    });
  }

  /** Opens the ZooKeeper session and prepares replication (nothing is served yet). */
  static async connect(
    config: Config,
    local: Redis,
    opts: ClusterNodeOptions = {},
  ): Promise<ClusterNode> {
    const zk = await ZkSession.open({
      log: opts.log,
      connect: config.zookeeper!,
      sessionTimeoutMs: config.zkSessionTimeoutMs,
    });
    return new ClusterNode(config, local, zk, opts);
  }

  /** The sink the store ships its records through. */
  get sink(): RecordSink {
    return {
      admit: (e: EntityRef) => this.shipper.admit(e),
      ship: (r: ReplicationRecord) => this.shipper.ship(r),
    };
  }

  /** The store reported that it lost its data (Store's `onLost`). */
  storeLost(): void {
    this.#guard?.reportLost();
  }

  /**
   * The entity as one of its replicas holds it, from a replica this node ships to without a
   * resync in progress; undefined when there is none. Backup snapshots are read there: the read
   * is atomic and holds that Redis for a time proportional to the entity's size, and with
   * `minInSyncReplicas` below the copies, the other replica's acknowledgements keep writes going.
   */
  async replicaSnapshot(entity: EntityRef): Promise<EntitySnapshot | undefined> {
    const entry = this.ownership.get(entity);
    const id = entry?.isr.map((m) => m.node).find((peer) => {
      const r = this.shipper.replica(entity, peer);
      return r && r.connected && !r.syncing;
    });
    const member = id ? this.membership.member(id) : undefined;
    return member ? await this.peers.snapshot(member.grpc, entity) : undefined;
  }

  /** The epoch the store writes an entity with; refuses unless this node may write it now. */
  epochOf(entity: EntityRef): number {
    const epoch = this.ownership.epochOf(entity);
    if (this.#storeTrouble !== undefined) {
      throw new BrokerError("unavailable", `${key(entity)}: ${this.#storeTrouble}`, 1);
    }
    if (this.#paused.has(key(entity))) {
      throw new BrokerError("unavailable", `${key(entity)} is moving to another node`, 1);
    }
    return epoch;
  }

  /** Whether this node serves the entity now (owns it, may write it, is not moving it). */
  #serving(entity: EntityRef): boolean {
    return this.ownership.isWritable(entity) && this.#storeTrouble === undefined &&
      !this.#paused.has(key(entity));
  }

  /** This node's store incarnation, as its in-sync entries and grants name it. */
  get #incarnation(): string {
    return this.#store?.incarnation ?? "";
  }

  /**
   * Starts the gRPC server, registers in ZooKeeper, loads ownership and joins the controller
   * election. `handle` serves requests forwarded by other nodes (the HTTP app); `hooks` run
   * around each take-over.
   */
  async serve(
    store: Store,
    handle: (request: Request, principal: Principal | null) => Promise<Response>,
    hooks: TakeOverHooks = {},
  ): Promise<void> {
    this.#store = store;
    this.#hooks = hooks;
    this.#server = await ReplicationServer.start({
      log: this.#log,
      listen: this.#config.grpcListen,
      secret: this.#config.clusterSecret!,
      tls: this.#config.grpcTls,
      redis: this.#local,
      applier: store,
      fence: (e) => this.ownership.knownEpoch(e),
      ownerOf: (e) => this.ownership.get(e)?.owner,
      forward: ({ request, principal }) => handle(request, principal),
    });
    this.ownership.onChange((entry, entity) => this.#onOwnershipChange(entry, entity));
    await this.ownership.start();
    await this.membership.publishStore({ store: store.incarnation, storeUp: true });
    await this.membership.start();
    // A replica back in a new session, or with another store, may have lost its copies (a wiped
    // Redis): resync them. It is out of the in-sync sets until it caught up again.
    const seen = new Map(this.membership.members().map((m) => [m.id, m]));
    this.membership.onChange((members) => {
      for (const m of members) {
        const before = seen.get(m.id);
        seen.set(m.id, m);
        if (!before || (before.session === m.session && before.store === m.store)) continue;
        const mine = this.ownership.list()
          .filter((e) => e.owner === this.#config.nodeId && e.replicas.includes(m.id));
        if (mine.length === 0) continue;
        const why = before.session !== m.session ? "in a new session" : "with another store";
        this.#log.info(`${m.id} is back ${why}; resyncing its copies of ${mine.length} entities`);
        for (const e of mine) {
          this.#event(
            { event: "replica_resync", entity: key(e.entity), replica: m.id, reason: why },
            `resyncing ${m.id}'s copy of ${key(e.entity)}`,
          );
          this.shipper.resync(e.entity, m.id);
        }
      }
      this.inSync.review();
    });
    this.#controller = new Controller(this.zk, this.membership, this.ownership, {
      log: this.#log,
      nodeId: this.#config.nodeId,
      root: this.#config.zkRoot,
      replicationFactor: this.#config.replicationFactor,
      positionOf: async (id, entity) => {
        const member = this.membership.member(id);
        return member ? await this.peers.position(member.grpc, entity) : null;
      },
    });
    let controlling = false;
    this.#controller.onChange((_, isMe) => {
      if (isMe === controlling) return;
      controlling = isMe;
      this.#event(
        { event: "controller", role: isMe ? "elected" : "resigned" },
        isMe ? "this node is the controller" : "this node is no longer the controller",
      );
    });
    await this.#controller.start();
    for (const entry of this.ownership.list()) this.#onOwnershipChange(entry, entry.entity);
    this.inSync.start();
    this.#guard = new StoreGuard({
      log: this.#log,
      store,
      intervalMs: this.#opts.storeProbeMs,
      downAfterMs: this.#config.storeDownMs,
      onLost: () => this.#onStoreLost(),
      onDown: () => this.#onStoreDown(),
      onUp: (wasDown) => this.#onStoreUp(wasDown),
    });
    this.#guard.start();
    this.#rebalanceTimer = setInterval(() => this.#rebalance(), this.#opts.rebalanceIntervalMs);
  }

  // ---- the local store ----

  /**
   * The local store lost its data: whatever this node owns is gone here (its in-sync replicas
   * still hold every acknowledged change). Stop serving at once, forget what the replica side
   * remembered of the old store, give the store a new identity (so that no owner counts this
   * node's copies as in sync any more, and it gets snapshots), and resign everything it owns, so
   * that the controller moves each entity to an in-sync replica.
   */
  async #onStoreLost(): Promise<void> {
    const store = this.#store!;
    if (await store.currentIdentity() === store.incarnation) return; // dealt with already
    this.#storeTrouble = "the local store lost its data; a new owner is being elected";
    this.#server?.forgetAll();
    const previous = store.incarnation;
    const id = await store.renew();
    this.#event(
      { event: "store_lost", previous, incarnation: id },
      `the local store lost its data (was ${previous}); now ${id}`,
    );
    await this.#publishStore(true);
    await this.#resignAll("its store lost its data");
    this.#storeTrouble = undefined;
  }

  /** The local store stopped answering: let in-sync replicas serve what this node owns. */
  async #onStoreDown(): Promise<void> {
    this.#storeTrouble = "the local store does not answer";
    this.#event({ event: "store_down" }, "the local store does not answer");
    await this.#publishStore(false);
    await this.#resignAll("its store does not answer");
  }

  /**
   * The store answers again with its identity. After a short outage (not down long enough to
   * resign), a store that restarted from older files would hold less than this node shipped:
   * that is a loss too.
   */
  async #onStoreUp(wasDown: boolean): Promise<void> {
    this.#server?.forgetAll();
    const owned = this.ownership.list().filter((e) => e.owner === this.#config.nodeId);
    const seqs = await Promise.all(
      owned.map((e) => this.#local.hget(metaKey(e.entity), "seq").then(Number)),
    );
    const behind = owned.find((e, i) => {
      const last = this.shipper.lastShipped(e.entity);
      return last !== undefined && last.epoch === e.epoch && seqs[i] < last.seq;
    });
    if (behind) {
      this.#log.error(`the local store came back without changes of ${key(behind.entity)}`);
      await this.#onStoreLost();
      return;
    }
    if (wasDown) {
      this.#event({ event: "store_up" }, "the local store answers again");
      await this.#publishStore(true);
    }
    this.#storeTrouble = undefined;
  }

  /** Publishes the store's state, retrying while ZooKeeper does not answer. */
  async #publishStore(up: boolean): Promise<void> {
    while (!this.#stopped) {
      try {
        await this.membership.publishStore({ store: this.#incarnation, storeUp: up });
        return;
      } catch (err) {
        this.#log.warn({ err }, "publishing the store's state failed");
        await sleep(200);
      }
    }
  }

  /**
   * Gives up every entity this node owns (clears `ownerSession` in its record), so that the
   * controller elects a new owner at once, as if this node's session had ended.
   */
  async #resignAll(why: string): Promise<void> {
    for (let attempt = 0; !this.#stopped; attempt++) {
      const owned = this.ownership.list()
        .filter((e) => e.owner === this.#config.nodeId && e.ownerSession !== "");
      if (owned.length === 0) return;
      const results = await Promise.allSettled(owned.map((e) => this.#resignOnce(e, why)));
      for (const [i, r] of results.entries()) {
        if (r.status === "rejected") {
          // Moved on meanwhile: read it again; the next round resigns it if still ours.
          await this.ownership.read(owned[i].entity).catch(() => {});
        }
      }
      if (attempt > 0) await sleep(200);
    }
  }

  /** Gives up one entity (see #resignAll), retrying a few times. */
  async #resign(entity: EntityRef, why: string): Promise<void> {
    for (let attempt = 0; attempt < 5 && !this.#stopped; attempt++) {
      const entry = this.ownership.get(entity);
      if (!entry || entry.owner !== this.#config.nodeId || entry.ownerSession === "") return;
      try {
        await this.#resignOnce(entry, why);
        return;
      } catch {
        await this.ownership.read(entity).catch(() => {});
        await sleep(200);
      }
    }
  }

  async #resignOnce(entry: EntityEntry, why: string): Promise<void> {
    await this.ownership.update(entry.entity, entry.version, { ...entry, ownerSession: "" });
    this.#event(
      { event: "resign", entity: key(entry.entity), reason: why },
      `resigned ${key(entry.entity)} (${why})`,
    );
  }

  #event(e: ClusterEvent, msg: string): void {
    logEvent(this.#log, e, msg);
    this.#opts.onEvent(e);
  }

  // ---- routing (EntityRouter) ----

  get nodeId(): string {
    return this.#config.nodeId;
  }

  route(entity: EntityRef, opts: { create?: { creator: string } } = {}): Promise<Route> {
    return unavailableOnZkError(this.#route(entity, opts));
  }

  async #route(
    entity: EntityRef,
    opts: { create?: { creator: string } },
    reread = true,
  ): Promise<Route> {
    let entry = this.ownership.get(entity) ?? await this.ownership.read(entity);
    let claimed = false;
    if (!entry && opts.create) {
      // Nodes whose store is down can hold nothing.
      const live = this.membership.members().filter((m) => m.storeUp !== false);
      const placed = placeEntity(
        live.map((m) => m.id),
        this.ownership.list(),
        this.#config.replicationFactor,
      );
      const owner = this.membership.member(placed.owner);
      if (!owner) throw new BrokerError("unavailable", "the chosen owner left the cluster", 1);
      const info: CreationInfo = {
        creator: opts.create.creator,
        createdAt: new Date().toISOString(),
      };
      // Nothing is acknowledged yet: every replica starts in sync.
      const isr: InSyncReplica[] = placed.replicas.map((node) => ({
        node,
        store: this.membership.member(node)?.store ?? "",
      }));
      try {
        entry = await this.ownership.create(entity, {
          owner: placed.owner,
          ownerSession: owner.session,
          ownerStore: owner.store ?? "",
          replicas: placed.replicas,
          isr,
          state: "claimed",
          config: info,
        });
        claimed = true;
        this.#movedAt.set(key(entity), Date.now());
      } catch (err) {
        if (!(err instanceof BrokerError && err.code === "already_exists")) throw err;
        entry = await this.ownership.read(entity);
      }
    }
    if (!entry) {
      throw new BrokerError("not_found", `${entity.type} '${entity.name}' does not exist`);
    }
    if (entry.owner === this.#config.nodeId) return { here: true, owner: entry.owner, claimed };
    const owner = this.membership.member(entry.owner);
    if (!owner || owner.session !== entry.ownerSession) {
      if (reread) {
        // The entity may have moved already, and this node not heard of it yet: look again.
        await this.ownership.read(entity);
        return await this.#route(entity, opts, false);
      }
      throw new BrokerError("unavailable", `the owner of ${key(entity)} is not reachable`, 1);
    }
    return { here: false, owner: entry.owner, address: owner.grpc, claimed };
  }

  async isOwner(entity: EntityRef): Promise<boolean> {
    if (this.ownership.isWritable(entity)) return true;
    const entry = await unavailableOnZkError(this.ownership.read(entity));
    return entry?.owner === this.#config.nodeId;
  }

  async ready(entity: EntityRef): Promise<void> {
    if (!this.ownership.isWritable(entity)) {
      await unavailableOnZkError(this.ownership.read(entity));
    }
    await this.#preparing.get(key(entity));
  }

  forward(
    address: string,
    request: Request,
    principal: Principal | null,
    opts: { signal?: AbortSignal; forwards?: number; deadline?: number } = {},
  ): Promise<Response> {
    // A long poll may wait up to MAX_WAIT_MS on the owner; anything else is answered by the
    // owner within the replication ack timeout. A frozen owner fails the call sooner still
    // (gRPC keepalive).
    const deadlineMs = this.#config.forwardTimeoutMs + (mayWait(request.url) ? MAX_WAIT_MS : 0);
    const deadlineAt = Math.min(opts.deadline ?? Infinity, Date.now() + deadlineMs);
    return this.peers.forwardHttp(address, request, principal, {
      signal: opts.signal,
      forwards: opts.forwards,
      deadlineMs,
      deadlineAt,
    });
  }

  deadlineFrom(startMs: number, path: string): number {
    return startMs + this.#config.forwardTimeoutMs + (mayWait(path) ? MAX_WAIT_MS : 0);
  }

  lifecycle(
    entity: EntityRef,
    kind: "create" | "delete",
    run: () => Promise<Response>,
    succeeded: (res: Response) => Promise<boolean>,
  ): Promise<Response> {
    const k = key(entity);
    return this.#lifecycles.run(k, async () => {
      if (kind === "create" && this.#unrecorded.has(k)) {
        throw new BrokerError("unavailable", `${k} is being deleted; try again`, 1);
      }
      // Queued behind a delete (or a move) that made the name someone else's, or nobody's.
      if (!this.#owns(this.ownership.get(entity))) {
        throw new NotOwnerError(`${k} changed owner before this ${kind} ran; try again`);
      }
      // The name may have been granted anew while this waited its turn: let its take-over
      // finish (ready() only waited for the one in progress then).
      await this.#preparing.get(k);
      const res = await run();
      const ok = await succeeded(res.clone());
      if (kind === "delete") {
        if (ok) await this.#dropRecord(entity);
      } else if (ok) {
        await this.#markLive(entity);
      } else if (!(await readPosition(this.#local, entity)).exists) {
        await this.#giveBack(entity);
      }
      return res;
    });
  }

  /** Whether this node owns the entity in its current session (resigned or not). */
  #owns(entry: EntityEntry | undefined): entry is EntityEntry {
    return !!entry && entry.owner === this.#config.nodeId &&
      entry.ownerSession === this.zk.sessionId;
  }

  /** A claimed name whose create this node made: it is live (listed) from now on. */
  async #markLive(entity: EntityRef): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const entry = this.ownership.get(entity);
      if (!this.#owns(entry) || entry.state !== "claimed") return;
      try {
        await this.ownership.update(entity, entry.version, { ...entry, state: "live" });
        return;
      } catch (err) {
        // Another change of the record (its in-sync set) came first: look again.
        if (!(err instanceof BrokerError && err.code === "conflict")) break;
        await this.ownership.read(entity).catch(() => {});
      }
    }
    // ZooKeeper did not answer: the entity is made all the same; only listings lag behind.
    setTimeout(() => this.#markLive(entity).catch(() => {}), 500);
  }

  /**
   * A create that claimed the name failed and nothing exists: the name goes back. (If that
   * fails, the claim stays: unlisted, and the next create of the name makes it.)
   */
  async #giveBack(entity: EntityRef): Promise<void> {
    const entry = this.ownership.get(entity);
    if (!this.#owns(entry) || entry.state !== "claimed") return;
    await this.ownership.remove(entity, entry.version).catch(() => {});
  }

  /**
   * The entity was deleted here: its record goes, compare-and-set, while this node still owns
   * that incarnation. Until then (ZooKeeper not answering) creates of the name are refused, so
   * that the removal cannot take away a record a new create made live; the removal is retried.
   * Should this node lose the entity meanwhile, the record stays with its new owner: an empty
   * name, made again by the next create.
   */
  async #dropRecord(entity: EntityRef): Promise<void> {
    const k = key(entity);
    const deleted = this.ownership.get(entity);
    if (!deleted) return;
    this.#unrecorded.add(k);
    const attempt = async (): Promise<boolean> => {
      const entry = this.ownership.get(entity);
      if (!this.#owns(entry) || entry.czxid !== deleted.czxid || this.#stopped) return true;
      try {
        await this.ownership.remove(entity, entry.version);
        return true;
      } catch (err) {
        if (err instanceof BrokerError && err.code === "conflict") {
          await this.ownership.read(entity).catch(() => {});
        }
        return false;
      }
    };
    let done = await attempt();
    for (let i = 0; !done && i < 3; i++) done = await attempt();
    if (done) {
      this.#unrecorded.delete(k);
      return;
    }
    const retry = () =>
      attempt().then((ok) => {
        if (ok) this.#unrecorded.delete(k);
        else setTimeout(retry, 500);
      });
    setTimeout(retry, 500);
  }

  list(
    type: EntityType,
    query: { prefix?: string; after?: string; limit: number },
  ): { name: string; owner: string; createdAt: string }[] {
    const prefix = query.prefix ?? "";
    return this.ownership.list(type)
      .filter((e) => e.state !== "claimed" && e.entity.name.startsWith(prefix))
      .filter((e) => query.after === undefined || e.entity.name > query.after)
      .sort((a, b) => a.entity.name < b.entity.name ? -1 : a.entity.name > b.entity.name ? 1 : 0)
      .slice(0, query.limit)
      .map((e) => {
        const info = (e.config ?? {}) as Partial<CreationInfo>;
        return { name: e.entity.name, owner: info.creator ?? "", createdAt: info.createdAt ?? "" };
      });
  }

  async status(opts: { localOnly?: boolean; caller?: Principal } = {}): Promise<ClusterStatus> {
    const live = new Map(this.membership.members().map((m) => [m.id, m]));
    const entries = this.ownership.list();
    const known = new Set<string>(live.keys());
    // Nodes that joined once and are down now are listed too (ZooKeeper unreachable: those
    // the entries name).
    for (const id of await this.membership.knownNodes().catch(() => [])) known.add(id);
    for (const e of entries) {
      known.add(e.owner);
      e.replicas.forEach((r) => known.add(r));
    }
    const load = loadByNode(entries, known);
    const nodes: NodeStatus[] = [...known].sort().map((id) => {
      const m = live.get(id);
      const l = load.get(id) ?? { owned: 0, total: 0 };
      return {
        id,
        http: m?.http ?? null,
        grpc: m?.grpc ?? null,
        alive: !!m,
        owned: l.owned,
        replicated: l.total - l.owned,
        startedAt: m?.startedAt ?? null,
        version: m?.version ?? null,
        ready: null,
        recoveryPoint: null,
      };
    });
    // Lag is known by each entity's owner: ask every live peer for its own view.
    const lags = new Map<string, Record<string, number>>();
    const addLag = (entities: EntityStatus[]) => {
      for (const e of entities) {
        const mine = Object.entries(e.lag).filter(([, v]) => v !== null) as [string, number][];
        if (mine.length) lags.set(`${e.type}/${e.name}`, Object.fromEntries(mine));
      }
    };
    const own = this.#ownLag();
    for (const [k, v] of own) lags.set(k, v);
    if (!opts.localOnly) {
      const peers = [...live.values()].filter((m) => m.id !== this.#config.nodeId);
      const answers = await Promise.allSettled(peers.map(async (m) => {
        const res = await this.peers.forwardHttp(
          m.grpc,
          new Request("http://internal/v1/cluster?scope=local"),
          // As the admin who asked: a peer serves forwards only for users that exist.
          opts.caller ?? null,
          { deadlineMs: 2000 },
        );
        if (!res.ok) return;
        const view = (await res.json()) as ClusterStatus;
        addLag(view.entities);
        const self = nodes.find((n) => n.id === m.id);
        const theirs = view.nodes.find((n) => n.id === m.id);
        if (self) {
          self.ready = theirs?.ready ?? null;
          self.recoveryPoint = theirs?.recoveryPoint ?? null;
        }
      }));
      void answers;
    }
    const entities: EntityStatus[] = entries.map((e) => {
      const lag: Record<string, number | null> = {};
      const known = lags.get(key(e.entity)) ?? {};
      for (const r of e.replicas) lag[r] = known[r] ?? null;
      return {
        type: e.entity.type,
        name: e.entity.name,
        owner: e.owner,
        replicas: e.replicas,
        epoch: e.epoch,
        lag,
        // What the owner recorded: the replicas every acknowledged change is on.
        inSync: e.isr.map((m) => m.node),
      };
    });
    return {
      node: this.#config.nodeId,
      version: VERSION,
      mode: "cluster",
      controller: this.#controller?.controllerId ?? null,
      nodes,
      entities,
      backup: { recoveryPoint: null }, // the API fills it in with this node's own
    };
  }

  /** Forgets a node removed for good, so the cluster no longer counts it as down. */
  async forgetNode(id: string): Promise<boolean> {
    const outcome = await this.membership.forget(id);
    if (outcome === "live") {
      throw new BrokerError("conflict", `node '${id}' is live: stop it before forgetting it`);
    }
    return outcome === "forgotten";
  }

  /**
   * How well this node's part of the cluster is replicated, for /readyz and metrics. An owned
   * entity is under-replicated when a live replica is missing from its in-sync set (a dead one
   * cannot be helped from here and only counts in `replicasDown`); this node is catching up
   * while it is a replica of a live owner but not in that entity's in-sync set with its store.
   */
  replicationHealth(): ReplicationHealth {
    const me = this.#config.nodeId;
    const live = new Set(this.membership.members().map((m) => m.id));
    const health: ReplicationHealth = {
      owned: 0,
      underReplicated: [],
      replicasDown: 0,
      catchingUp: [],
    };
    for (const e of this.ownership.list()) {
      if (e.owner === me) {
        health.owned++;
        const inSync = new Set(isrNodes(e));
        if (e.replicas.some((r) => live.has(r) && !inSync.has(r))) {
          health.underReplicated.push(key(e.entity));
        }
        health.replicasDown += e.replicas.filter((r) => !live.has(r)).length;
      } else if (e.replicas.includes(me) && live.has(e.owner)) {
        const mine = e.isr.some((m) => m.node === me && m.store === this.#incarnation);
        if (!mine) health.catchingUp.push(key(e.entity));
      }
    }
    return health;
  }

  #ownLag(): Map<string, Record<string, number>> {
    const out = new Map<string, Record<string, number>>();
    for (const l of this.shipper.lag()) {
      const entry = this.ownership.get(l.entity);
      if (entry?.owner !== this.#config.nodeId) continue;
      const k = key(l.entity);
      const row = out.get(k) ?? {};
      row[l.peer] = l.connected && !l.syncing ? l.lag : Math.max(1, l.lag);
      out.set(k, row);
    }
    return out;
  }

  // ---- take-over, hand-over, rebalancing ----

  #onOwnershipChange(entry: EntityEntry | undefined, entity: EntityRef): void {
    const k = key(entity);
    // This node may now write the entity itself (or restore it): the replica side's remembered
    // position no longer holds.
    this.#server?.forget(entity);
    // Its in-sync set may have changed: records waiting for a replica dropped from it go.
    this.shipper.recheck(entity);
    if (!entry || entry.owner !== this.#config.nodeId) {
      if (this.#prepared.delete(k)) this.#opts.onReleased(entity);
      this.#replicasOf.delete(k);
      return;
    }
    if (this.#prepared.get(k) === entry.epoch) {
      // Same grant; replicas may have been added: bring those up to date.
      const before = this.#replicasOf.get(k) ?? [];
      this.#replicasOf.set(k, entry.replicas);
      if (entry.ownerSession !== this.zk.sessionId) return;
      for (const r of entry.replicas) if (!before.includes(r)) this.shipper.resync(entity, r);
      return;
    }
    this.#replicasOf.set(k, entry.replicas);
    this.#prepared.set(k, entry.epoch);
    this.#movedAt.set(k, Date.now());
    this.#paused.add(k);
    if (entry.moved !== "create") {
      this.#event(
        { event: "take_over", entity: k, epoch: entry.epoch, reason: String(entry.moved) },
        `taking ${k} over at epoch ${entry.epoch} (${entry.moved})`,
      );
    }
    const prepare = this.#prepare(entry)
      .catch((err) => {
        // It cannot serve what it could not prepare (its store refuses writes, say): another
        // in-sync replica may.
        this.#log.error({ err, entity: k }, `preparing ${k} failed`);
        return this.#resign(entity, "its take-over failed");
      })
      .finally(() => {
        this.#paused.delete(k);
        this.#preparing.delete(k);
        this.shipper.resync(entity);
      });
    this.#preparing.set(k, prepare);
  }

  /**
   * Before serving an entity it was just granted: the take-over hook (a restore from the backup
   * when that is newer), the granted epoch on the local copy (the replicas' resync snapshots
   * carry it too), and after a failover the time the entity could not be reached given back to
   * its deliveries in flight.
   */
  async #prepare(entry: EntityEntry): Promise<void> {
    const { entity } = entry;
    if (await discardEarlierIncarnation(this.#local, entity, entry.czxid)) {
      this.#log.warn(
        { entity: key(entity) },
        `${key(entity)}: dropped a local copy of an earlier incarnation (deleted while away)`,
      );
    }
    await this.#hooks.beforeServing?.(entity);
    await adoptEpoch(this.#local, entity, entry.epoch);
    if (entry.moved === "failover") {
      // The owner stopped at most a session timeout before the grant, plus the controller's
      // reaction; a busy entity's last change tells more precisely (the scripts take the later).
      const since = Date.now() - this.zk.sessionTimeoutMs - 2 * CONTROLLER_REACTION_MS;
      const extended = await resumeInFlight(this.#store!, entity, {
        epoch: entry.epoch,
        unreachableSince: since,
      });
      if (extended > 0) {
        this.#log.info(`${key(entity)}: ${extended} deliveries in flight extended`);
      }
    }
  }

  /**
   * Moves an entity this node owns to `target` without losing an acknowledged change: stop
   * writing, wait until the target (an in-sync replica) acknowledged everything, then pass
   * ownership with epoch + 1.
   */
  async handOver(entity: EntityRef, target: string, timeoutMs = 5000): Promise<boolean> {
    const k = key(entity);
    const entry = this.ownership.get(entity);
    const member = this.membership.member(target);
    if (!entry || entry.owner !== this.#config.nodeId || !member) return false;
    if (!entry.isr.some((m) => m.node === target) || member.storeUp === false) return false;
    this.#paused.add(k);
    try {
      const until = Date.now() + timeoutMs;
      while (Date.now() < until) {
        const seq = Number(await this.#local.hget(metaKey(entity), "seq") ?? 0);
        const r = this.shipper.replica(entity, target);
        const current = this.ownership.get(entity);
        if (!current || current.version !== entry.version) return false; // changed meanwhile
        if (r && r.connected && !r.syncing && r.ackedEpoch === entry.epoch && r.ackedSeq >= seq) {
          // This node holds everything too: it stays in sync as a replica of the target.
          const isr = [
            ...entry.isr.filter((m) => m.node !== target),
            { node: this.#config.nodeId, store: this.#incarnation },
          ];
          const replicas = [...entry.replicas.filter((r) => r !== target), this.#config.nodeId];
          await this.ownership.transfer(entity, {
            id: target,
            session: member.session,
            store: member.store,
          }, { expectedVersion: entry.version, replicas, isr, reason: "handover" });
          this.#movedAt.set(k, Date.now());
          this.#event(
            { event: "hand_over", entity: k, to: target },
            `handed ${k} over to ${target}`,
          );
          return true;
        }
        await sleep(20);
      }
      return false;
    } catch (err) {
      this.#event(
        { event: "hand_over_failed", entity: k, to: target, error: String(err) },
        `hand-over of ${k} to ${target} failed`,
      );
      return false;
    } finally {
      this.#paused.delete(k);
    }
  }

  /** Gives away one owned entity when this node owns at least two more than the least loaded. */
  async #rebalance(): Promise<void> {
    if (this.#rebalancing || this.#stopped || !this.zk.hasLease()) return;
    this.#rebalancing = true;
    try {
      const live = this.membership.members().filter((m) => m.storeUp !== false).map((m) => m.id);
      if (live.length < 2) return;
      const entries = this.ownership.list();
      const load = loadByNode(entries, live);
      const mine = load.get(this.#config.nodeId)?.owned ?? 0;
      const [lightest, lightLoad] = [...load.entries()]
        .sort((a, b) => a[1].owned - b[1].owned || a[0].localeCompare(b[0]))[0];
      if (lightest === this.#config.nodeId || mine - lightLoad.owned < 2) return;
      const now = Date.now();
      // Only to an in-sync replica that is caught up now: a hand-over pauses writes until the
      // target has everything, so a lagging target would stall the entity.
      const candidate = entries.find((e) => {
        if (e.owner !== this.#config.nodeId || !this.#serving(e.entity)) return false;
        if (!e.isr.some((m) => m.node === lightest)) return false;
        if (now - (this.#movedAt.get(key(e.entity)) ?? 0) <= this.#opts.moveCooldownMs) {
          return false;
        }
        const r = this.shipper.replica(e.entity, lightest);
        return !!r && r.connected && !r.syncing && r.behindMs === 0;
      });
      if (candidate) await this.handOver(candidate.entity, lightest);
    } catch (err) {
      this.#log.warn({ err }, "rebalance failed");
    } finally {
      this.#rebalancing = false;
    }
  }

  /** Stops rebalancing and hands every owned entity to a live in-sync replica. */
  async handOverAll(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#rebalanceTimer);
    const owned = this.ownership.list().filter((e) => e.owner === this.#config.nodeId);
    await Promise.all(owned.map(async (e) => {
      const live = e.isr.map((m) => m.node).filter((r) => this.membership.member(r));
      for (const target of live) {
        if (await this.handOver(e.entity, target, 3000)) return;
      }
    }));
  }

  /**
   * Leaves the cluster (after handOverAll): the controller election and membership, and waits
   * for requests other nodes forwarded here. The ZooKeeper session ends; the gRPC server and
   * the channels to peers stay open until close().
   */
  async leave(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#rebalanceTimer);
    this.inSync.stop();
    await this.#guard?.stop();
    await this.#controller?.stop();
    await this.membership.stop();
    await this.#server?.settle(5_000);
    this.ownership.stop();
    this.shipper.close();
    this.zk.close();
  }

  /** Stops the gRPC server and closes the channels to peers (after leave()). */
  async close(): Promise<void> {
    await this.#server?.stop();
    this.peers.close();
  }
}

/** ZooKeeper unreachable or slow is a passing condition of the cluster: 503, try again. */
async function unavailableOnZkError<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof ZkError) {
      throw new BrokerError("unavailable", `ZooKeeper: ${err.message}`, 1);
    }
    throw err;
  }
}

function metaKey(entity: EntityRef): string {
  return entity.type === "queue" ? queueKeys(entity.name).meta : topicKeys(entity.name).meta;
}
