/**
 * The cluster side of one node, wired together: ZooKeeper membership, ownership and controller,
 * the gRPC server (replication and forwarding), the shipper (this node's records to its
 * replicas), routing of entity requests to their owners, clean hand-over and rebalancing.
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
import type { Principal } from "../auth/users.ts";
import type {
  ClusterStatus,
  EntityRouter,
  EntityStatus,
  NodeStatus,
  Route,
} from "../api/routing.ts";
import type { RecordSink, ReplicationRecord } from "../replication/record.ts";
import { PeerClients } from "../replication/peers.ts";
import { ReplicationServer } from "../replication/server.ts";
import { Shipper } from "../replication/shipper.ts";
import { adoptEpoch, type EntitySnapshot } from "../replication/snapshot.ts";
import { ZkError, ZkSession } from "./zk.ts";
import { Membership } from "./membership.ts";
import { type EntityEntry, Ownership } from "./ownership.ts";
import { Controller, loadByNode, placeEntity } from "./controller.ts";

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
}

const key = (e: EntityRef) => `${e.type}/${e.name}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One node's membership in the cluster. */
export class ClusterNode implements EntityRouter {
  readonly #config: Config;
  readonly #local: Redis;
  readonly #opts: Required<ClusterNodeOptions>;
  #hooks: TakeOverHooks = {};
  readonly zk: ZkSession;
  readonly membership: Membership;
  readonly ownership: Ownership;
  readonly peers: PeerClients;
  readonly shipper: Shipper;
  #controller?: Controller;
  #server?: ReplicationServer;
  #store?: Store;
  /** Entities this node owns but must not write now (hand-over or take-over in progress). */
  readonly #paused = new Set<string>();
  /** Entities whose take-over preparation (restore) is running or done, per epoch. */
  readonly #prepared = new Map<string, number>();
  /** Take-over preparations still running. */
  readonly #preparing = new Map<string, Promise<void>>();
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
    this.#opts = { rebalanceIntervalMs: 2000, moveCooldownMs: 30_000, ...opts };
    this.zk = zk;
    const me = { nodeId: config.nodeId, root: config.zkRoot };
    this.membership = new Membership(zk, {
      ...me,
      http: config.httpAdvertise ?? config.httpListen,
      grpc: config.grpcAdvertise ?? config.grpcListen,
    });
    this.ownership = new Ownership(zk, me);
    this.peers = new PeerClients({ secret: config.clusterSecret!, tls: config.grpcTls });
    this.shipper = new Shipper({
      nodeId: config.nodeId,
      peers: this.peers,
      redis: local,
      minInSyncReplicas: config.minInSyncReplicas,
      replicasOf: (e) => this.ownership.get(e)?.replicas ?? [],
      addressOf: (id) => this.membership.member(id)?.grpc,
      epochOf: (e) => this.ownership.epochOf(e),
      isWritable: (e) => this.ownership.isWritable(e),
      ackTimeoutMs: config.replicationAckTimeoutMs,
      onFenced: (e, detail) => console.error(`cluster: fenced off ${key(e)}: ${detail}`),
    });
  }

  /** Opens the ZooKeeper session and prepares replication (nothing is served yet). */
  static async connect(
    config: Config,
    local: Redis,
    opts: ClusterNodeOptions = {},
  ): Promise<ClusterNode> {
    const zk = await ZkSession.open({
      connect: config.zookeeper!,
      sessionTimeoutMs: config.zkSessionTimeoutMs,
    });
    return new ClusterNode(config, local, zk, opts);
  }

  /** The sink the store ships its records through. */
  get sink(): RecordSink {
    return { ship: (r: ReplicationRecord) => this.shipper.ship(r) };
  }

  /**
   * The entity as one of its replicas holds it, from a replica this node ships to without a
   * resync in progress; undefined when there is none. Backup snapshots are read there: the read
   * is atomic and holds that Redis for a time proportional to the entity's size, and with
   * `minInSyncReplicas` below the copies, the other replica's acknowledgements keep writes going.
   */
  async replicaSnapshot(entity: EntityRef): Promise<EntitySnapshot | undefined> {
    const k = key(entity);
    const link = this.shipper.lag().find((l) => key(l.entity) === k && l.connected && !l.syncing);
    const member = link && this.membership.member(link.peer);
    return member ? await this.peers.snapshot(member.grpc, entity) : undefined;
  }

  /** The epoch the store writes an entity with; refuses unless this node may write it now. */
  epochOf(entity: EntityRef): number {
    const epoch = this.ownership.epochOf(entity);
    if (this.#paused.has(key(entity))) {
      throw new BrokerError("unavailable", `${key(entity)} is moving to another node`, 1);
    }
    return epoch;
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
    await this.membership.start();
    // A replica that came back in a new session may have lost its copy (wiped Redis): resync.
    const sessions = new Map(this.membership.members().map((m) => [m.id, m.session]));
    this.membership.onChange((members) => {
      for (const m of members) {
        const before = sessions.get(m.id);
        sessions.set(m.id, m.session);
        if (before === undefined || before === m.session) continue;
        const mine = this.ownership.list()
          .filter((e) => e.owner === this.#config.nodeId && e.replicas.includes(m.id));
        if (mine.length === 0) continue;
        console.log(
          `cluster: ${m.id} is back in a new session; resyncing its copies of ${mine.length} ` +
            "entities",
        );
        for (const e of mine) this.shipper.resync(e.entity);
      }
    });
    this.#controller = new Controller(this.zk, this.membership, this.ownership, {
      nodeId: this.#config.nodeId,
      root: this.#config.zkRoot,
      replicationFactor: this.#config.replicationFactor,
      positionOf: async (id, entity) => {
        const member = this.membership.member(id);
        return member ? await this.peers.position(member.grpc, entity) : null;
      },
    });
    await this.#controller.start();
    for (const entry of this.ownership.list()) this.#onOwnershipChange(entry, entry.entity);
    this.#rebalanceTimer = setInterval(() => this.#rebalance(), this.#opts.rebalanceIntervalMs);
  }

  // ---- routing (EntityRouter) ----

  get nodeId(): string {
    return this.#config.nodeId;
  }

  route(entity: EntityRef, opts: { create?: { creator: string } } = {}): Promise<Route> {
    return unavailableOnZkError(this.#route(entity, opts));
  }

  async #route(entity: EntityRef, opts: { create?: { creator: string } }): Promise<Route> {
    let entry = this.ownership.get(entity) ?? await this.ownership.read(entity);
    let claimed = false;
    if (!entry && opts.create) {
      const live = this.membership.members().map((m) => m.id);
      const placed = placeEntity(live, this.ownership.list(), this.#config.replicationFactor);
      const owner = this.membership.member(placed.owner);
      if (!owner) throw new BrokerError("unavailable", "the chosen owner left the cluster", 1);
      const info: CreationInfo = {
        creator: opts.create.creator,
        createdAt: new Date().toISOString(),
      };
      try {
        entry = await this.ownership.create(entity, {
          owner: placed.owner,
          ownerSession: owner.session,
          replicas: placed.replicas,
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
      throw new BrokerError("unavailable", `the owner of ${key(entity)} is not reachable`, 1);
    }
    return { here: false, owner: entry.owner, address: owner.grpc, claimed };
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
    signal?: AbortSignal,
  ): Promise<Response> {
    return this.peers.forwardHttp(address, request, principal, {
      deadlineMs: this.#config.forwardTimeoutMs,
      signal,
    });
  }

  createFailed(entity: EntityRef): Promise<void> {
    return this.#forget(entity);
  }

  deleted(entity: EntityRef): Promise<void> {
    return this.#forget(entity);
  }

  async #forget(entity: EntityRef): Promise<void> {
    const entry = await unavailableOnZkError(this.ownership.read(entity));
    if (entry) await this.ownership.remove(entity, entry.version).catch(() => {});
  }

  list(
    type: EntityType,
    query: { prefix?: string; after?: string; limit: number },
  ): { name: string; owner: string; createdAt: string }[] {
    const prefix = query.prefix ?? "";
    return this.ownership.list(type)
      .filter((e) => e.entity.name.startsWith(prefix))
      .filter((e) => query.after === undefined || e.entity.name > query.after)
      .sort((a, b) => a.entity.name < b.entity.name ? -1 : a.entity.name > b.entity.name ? 1 : 0)
      .slice(0, query.limit)
      .map((e) => {
        const info = (e.config ?? {}) as Partial<CreationInfo>;
        return { name: e.entity.name, owner: info.creator ?? "", createdAt: info.createdAt ?? "" };
      });
  }

  async status(opts: { localOnly?: boolean } = {}): Promise<ClusterStatus> {
    const live = new Map(this.membership.members().map((m) => [m.id, m]));
    const entries = this.ownership.list();
    const known = new Set<string>(live.keys());
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
          { username: "momd-cluster", role: "admin" },
          { deadlineMs: 2000 },
        );
        if (res.ok) addLag(((await res.json()) as ClusterStatus).entities);
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
        inSync: e.replicas.filter((r) => known[r] === 0),
      };
    });
    return {
      node: this.#config.nodeId,
      mode: "cluster",
      controller: this.#controller?.controllerId ?? null,
      nodes,
      entities,
    };
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
    if (!entry) {
      this.#prepared.delete(k);
      return;
    }
    if (entry.owner !== this.#config.nodeId) {
      this.#prepared.delete(k);
      return;
    }
    if (this.#prepared.get(k) === entry.epoch) {
      // Same grant; the replica set may have changed: bring new replicas up to date.
      this.shipper.resync(entity);
      return;
    }
    this.#prepared.set(k, entry.epoch);
    this.#movedAt.set(k, Date.now());
    this.#paused.add(k);
    // Epoch 1 is a create; anything later is a failover, a hand-over or a restart.
    if (entry.epoch > 1) console.log(`cluster: taking ${k} over at epoch ${entry.epoch}`);
    const prepare = (this.#hooks.beforeServing?.(entity) ?? Promise.resolve())
      // The replicas' copies get the granted epoch with the resync snapshot; so does this one.
      .then(() => adoptEpoch(this.#local, entity, entry.epoch))
      .catch((err) => console.error(`cluster: preparing ${k} failed: ${err}`))
      .finally(() => {
        this.#paused.delete(k);
        this.#preparing.delete(k);
        this.shipper.resync(entity);
      });
    this.#preparing.set(k, prepare);
  }

  /**
   * Moves an entity this node owns to `target` without losing an acknowledged change: stop
   * writing, wait until the target acknowledged everything, then pass ownership with epoch + 1.
   */
  async handOver(entity: EntityRef, target: string, timeoutMs = 5000): Promise<boolean> {
    const k = key(entity);
    const entry = this.ownership.get(entity);
    const member = this.membership.member(target);
    if (!entry || entry.owner !== this.#config.nodeId || !member) return false;
    this.#paused.add(k);
    try {
      const until = Date.now() + timeoutMs;
      const seqOf = async () => Number(await this.#store!.redis.hget(metaKey(entity), "seq") ?? 0);
      while (Date.now() < until) {
        const seq = await seqOf();
        const lag = this.shipper.lag().find((l) => l.peer === target && key(l.entity) === k);
        if (lag && lag.connected && !lag.syncing && lag.ackedSeq >= seq) {
          const replicas = [...entry.replicas.filter((r) => r !== target), this.#config.nodeId];
          await this.ownership.transfer(entity, { id: target, session: member.session }, {
            expectedVersion: entry.version,
            replicas,
          });
          this.#movedAt.set(k, Date.now());
          console.log(`cluster: handed ${k} over to ${target}`);
          return true;
        }
        await sleep(20);
      }
      return false;
    } catch (err) {
      console.error(`cluster: hand-over of ${k} to ${target} failed: ${err}`);
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
      const live = this.membership.members().map((m) => m.id);
      if (live.length < 2) return;
      const entries = this.ownership.list();
      const load = loadByNode(entries, live);
      const mine = load.get(this.#config.nodeId)?.owned ?? 0;
      const [lightest, lightLoad] = [...load.entries()]
        .sort((a, b) => a[1].owned - b[1].owned || a[0].localeCompare(b[0]))[0];
      if (lightest === this.#config.nodeId || mine - lightLoad.owned < 2) return;
      const now = Date.now();
      // Only to a replica that is in sync now: a hand-over pauses writes until the target has
      // everything, so a lagging target would stall the entity.
      const inSync = new Set(
        this.shipper.lag()
          .filter((l) => l.peer === lightest && l.connected && !l.syncing && l.lag === 0)
          .map((l) => key(l.entity)),
      );
      const candidate = entries.find((e) =>
        e.owner === this.#config.nodeId && e.replicas.includes(lightest) &&
        inSync.has(key(e.entity)) &&
        now - (this.#movedAt.get(key(e.entity)) ?? 0) > this.#opts.moveCooldownMs
      );
      if (candidate) await this.handOver(candidate.entity, lightest);
    } catch (err) {
      console.error(`cluster: rebalance failed: ${err}`);
    } finally {
      this.#rebalancing = false;
    }
  }

  /** Stops rebalancing and hands every owned entity to a live replica (the first of a shutdown). */
  async handOverAll(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#rebalanceTimer);
    const owned = this.ownership.list().filter((e) => e.owner === this.#config.nodeId);
    await Promise.all(owned.map(async (e) => {
      const live = e.replicas.filter((r) => this.membership.member(r));
      for (const target of live) {
        if (await this.handOver(e.entity, target, 3000)) return;
      }
    }));
  }

  /** Hands every owned entity over (unless `handOver: false`), then leaves the cluster. */
  async stop(opts: { handOver?: boolean } = {}): Promise<void> {
    if (opts.handOver !== false) await this.handOverAll();
    this.#stopped = true;
    clearInterval(this.#rebalanceTimer);
    await this.#controller?.stop();
    await this.membership.stop();
    this.ownership.stop();
    this.shipper.close();
    await this.#server?.stop();
    this.peers.close();
    this.zk.close();
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
