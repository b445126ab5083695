/**
 * Cluster membership: each node holds an ephemeral znode `<root>/nodes/<id>` with JSON
 * `{id, http, grpc, startedAt, session, store, storeUp, version}` for as long as its ZooKeeper session
 * lives, and watches the children of `<root>/nodes` (and each member's data, which changes when
 * its store does) to know the live nodes.
 *
 * Fast restart (KAFKA-7165): after a crash the previous session's znode stays until ZooKeeper
 * expires that session. A new process finding `<root>/nodes/<id>` owned by another session WAITS
 * for it to disappear (at most `staleWaitMs`, default twice the session timeout plus a second),
 * and fails if it is still there then: a znode that outlives a session timeout belongs to a live
 * process, i.e. a second node configured with the same id. Deleting it instead would let two
 * processes with one id take turns, and would hide the previous session's end from the
 * controller, which must move that session's entities (ownership grants name the owner's
 * session, see ownership.ts). A znode owned by our own session (a create whose answer was lost)
 * counts as registered.
 */
import { isZkError, jsonData, parseJson, type ZkSession } from "./zk.ts";
import { VERSION } from "../version.ts";
import { fallbackLogger, type Logger } from "../log/logger.ts";

/** What a node publishes about itself. */
export interface MemberInfo {
  id: string;
  /** host:port of its HTTP API. */
  http: string;
  /** host:port of its gRPC server. */
  grpc: string;
  /** When the process registered (ISO 8601). */
  startedAt: string;
  /** ZooKeeper session id (hex) holding the registration. */
  session: string;
  /** The incarnation of its local store ("" when unknown); a wiped store gets a new one. */
  store?: string;
  /** Whether its local store answers; a node whose store is down is elected for nothing. */
  storeUp?: boolean;
  /** The momd version it runs (absent: a node from before versions were published). */
  version?: string;
}

/** What a node says about its local store. */
export interface StoreState {
  store: string;
  storeUp: boolean;
}

/** Options of Membership. */
export interface MembershipOptions {
  /** Where failures are logged (default: warnings and errors on standard error). */
  log?: Logger;
  nodeId: string;
  http: string;
  grpc: string;
  /** ZooKeeper root of momd's znodes (default `/momd`). */
  root?: string;
  /** How long to wait for a previous session's znode to expire (default 2x session + 1 s). */
  staleWaitMs?: number;
}

/** Registers this node and keeps the list of live nodes current. */
export class Membership {
  readonly #log: Logger;
  readonly #zk: ZkSession;
  readonly #opts: MembershipOptions;
  readonly #dir: string;
  /** Persistent znodes of every node that ever joined, until an admin forgets it. */
  readonly #knownDir: string;
  readonly #startedAt = new Date().toISOString();
  #members = new Map<string, MemberInfo>();
  #listeners = new Set<(members: MemberInfo[]) => void>();
  #registeredSession = "";
  #store: StoreState = { store: "", storeUp: true };
  #refreshing: Promise<void> | null = null;
  #again = false;
  /** Members whose znode has a data watch armed. */
  #dataWatched = new Set<string>();
  #stopped = false;
  #unsubscribe?: () => void;

  constructor(zk: ZkSession, opts: MembershipOptions) {
    this.#zk = zk;
    this.#opts = opts;
    this.#log = opts.log ?? fallbackLogger();
    this.#dir = `${opts.root ?? "/momd"}/nodes`;
    this.#knownDir = `${opts.root ?? "/momd"}/known`;
  }

  /** This node's znode path. */
  get path(): string {
    return `${this.#dir}/${this.#opts.nodeId}`;
  }

  /** Registers (waiting out a previous session's znode) and starts watching the live nodes. */
  async start(): Promise<void> {
    await this.#zk.mkdirp(this.#dir);
    await this.#zk.mkdirp(this.#knownDir);
    await this.#register();
    await this.#remember();
    await this.refresh();
    this.#unsubscribe = this.#zk.onSession(() => this.#rejoin());
  }

  /** True while our znode exists in the current session. */
  isRegistered(): boolean {
    return this.#registeredSession !== "" && this.#registeredSession === this.#zk.sessionId &&
      this.#zk.state === "connected";
  }

  /**
   * Publishes this node's store state in its znode (now when registered, else at the next
   * registration). Owners and the controller act on it: a new incarnation means every copy this
   * node held is gone, a store that is down means it can hold nothing now.
   */
  async publishStore(state: StoreState): Promise<void> {
    this.#store = { ...state };
    if (!this.#registeredSession || this.#registeredSession !== this.#zk.sessionId) return;
    await this.#zk.setData(this.path, jsonData(this.#info(this.#registeredSession)), -1);
  }

  /**
   * Every node that joined the cluster and was not forgotten, live or not: a node that stopped
   * (crashed or drained) is still part of the cluster, down, as a stopped RabbitMQ node is,
   * until it comes back or an admin forgets it.
   */
  async knownNodes(): Promise<string[]> {
    return (await this.#zk.getChildren(this.#knownDir)).sort();
  }

  /** Forgets a node that is not live (it was removed for good); a live one is left alone. */
  async forget(id: string): Promise<"forgotten" | "unknown" | "live"> {
    if (this.#members.has(id) || (await this.readLive()).has(id)) return "live";
    try {
      await this.#zk.remove(`${this.#knownDir}/${id}`);
      return "forgotten";
    } catch (err) {
      if (isZkError(err, "no_node")) return "unknown";
      throw err;
    }
  }

  /** The live nodes as last seen, sorted by id. */
  members(): MemberInfo[] {
    return [...this.#members.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  /** One live node as last seen. */
  member(id: string): MemberInfo | undefined {
    return this.#members.get(id);
  }

  /** Reads the live nodes from ZooKeeper now (no cache, no watch). */
  async readLive(): Promise<Map<string, MemberInfo>> {
    const out = new Map<string, MemberInfo>();
    const children = await this.#zk.getChildren(this.#dir);
    await Promise.all(children.map(async (id) => {
      try {
        const { data, stat } = await this.#zk.getData(`${this.#dir}/${id}`);
        const info = parseJson<MemberInfo>(data);
        out.set(id, { ...info, id, session: stat.ephemeralOwner });
      } catch (err) {
        if (!isZkError(err, "no_node")) throw err;
      }
    }));
    return out;
  }

  /** Calls `fn` with the live nodes each time they change; returns a function removing it. */
  onChange(fn: (members: MemberInfo[]) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Re-reads the live nodes and re-arms the watch. */
  refresh(): Promise<void> {
    if (this.#refreshing) {
      this.#again = true;
      return this.#refreshing;
    }
    this.#refreshing = (async () => {
      try {
        do {
          this.#again = false;
          await this.#refreshOnce();
        } while (this.#again && !this.#stopped);
      } finally {
        this.#refreshing = null;
      }
    })();
    return this.#refreshing;
  }

  /** Removes our znode (a clean leave) and stops watching. The session stays open. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#unsubscribe?.();
    if (!this.#registeredSession) return;
    try {
      const stat = await this.#zk.exists(this.path);
      if (stat && stat.ephemeralOwner === this.#zk.sessionId) {
        await this.#zk.remove(this.path, stat.version);
      }
    } catch {
      // gone with the session anyway
    }
    this.#registeredSession = "";
  }

  async #refreshOnce(): Promise<void> {
    const watcher = () => {
      if (!this.#stopped) this.refresh().catch(() => this.#retryLater());
    };
    const children = await this.#zk.getChildren(this.#dir, watcher);
    const next = new Map<string, MemberInfo>();
    await Promise.all(children.map(async (id) => {
      try {
        // One data watch per member: a store that changes shows at once.
        const arm = !this.#dataWatched.has(id);
        if (arm) this.#dataWatched.add(id);
        const { data, stat } = await this.#zk.getData(
          `${this.#dir}/${id}`,
          arm
            ? () => {
              this.#dataWatched.delete(id);
              watcher();
            }
            : undefined,
        ).catch((err) => {
          if (arm) this.#dataWatched.delete(id);
          throw err;
        });
        const info = parseJson<MemberInfo>(data);
        next.set(id, { ...info, id, session: stat.ephemeralOwner });
      } catch (err) {
        if (!isZkError(err, "no_node")) throw err;
      }
    }));
    const changed = next.size !== this.#members.size ||
      [...next].some(([id, m]) => {
        const was = this.#members.get(id);
        return was?.session !== m.session || was.store !== m.store || was.storeUp !== m.storeUp;
      });
    this.#members = next;
    if (changed) {
      const list = this.members();
      for (const fn of [...this.#listeners]) {
        try {
          fn(list);
        } catch (err) {
          this.#log.error({ err }, `membership listener`);
        }
      }
    }
  }

  #retryLater() {
    if (this.#stopped) return;
    setTimeout(() => this.refresh().catch(() => this.#retryLater()), 200);
  }

  #info(session: string): MemberInfo {
    return {
      id: this.#opts.nodeId,
      http: this.#opts.http,
      grpc: this.#opts.grpc,
      startedAt: this.#startedAt,
      version: VERSION,
      session,
      ...this.#store,
    };
  }

  async #register(): Promise<void> {
    const session = this.#zk.sessionId;
    const info = this.#info(session);
    const waitMs = this.#opts.staleWaitMs ?? 2 * this.#zk.sessionTimeoutMs + 1000;
    const until = Date.now() + waitMs;
    while (!this.#stopped) {
      try {
        await this.#zk.create(this.path, jsonData(info), "ephemeral");
        this.#registeredSession = session;
        return;
      } catch (err) {
        if (!isZkError(err, "node_exists")) throw err;
      }
      let gone!: () => void;
      const deleted = new Promise<void>((r) => gone = r);
      const stat = await this.#zk.exists(this.path, (e) => {
        if (e.type === "deleted") gone();
      });
      if (!stat) continue;
      if (stat.ephemeralOwner === session) {
        // Our own create went through but its answer was lost.
        this.#registeredSession = session;
        return;
      }
      const left = until - Date.now();
      if (left <= 0) {
        throw new Error(
          `node id '${this.#opts.nodeId}' is registered by another live ZooKeeper session ` +
            `(${stat.ephemeralOwner}); is a second node running with this id?`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([deleted, new Promise((r) => timer = setTimeout(r, left))]);
      clearTimeout(timer);
    }
  }

  /** Records this node among the known ones (a persistent znode; once is enough). */
  async #remember(): Promise<void> {
    try {
      await this.#zk.create(
        `${this.#knownDir}/${this.#opts.nodeId}`,
        jsonData({
          id: this.#opts.nodeId,
          firstSeen: this.#startedAt,
        }),
      );
    } catch (err) {
      if (!isZkError(err, "node_exists")) throw err;
    }
  }

  async #rejoin(): Promise<void> {
    this.#registeredSession = "";
    this.#dataWatched.clear();
    while (!this.#stopped) {
      try {
        await this.#register();
        await this.refresh();
        return;
      } catch (err) {
        this.#log.error({ err }, `membership: re-registering failed`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }
}
