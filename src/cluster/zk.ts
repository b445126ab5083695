/**
 * A small promise wrapper over node-zookeeper-client, with the session handling momd needs:
 *
 * - `state`: `connected` (session live and recently confirmed), `suspended` (disconnected, or
 *   nothing heard from the server for a while: act at once, the session may be about to expire),
 *   `expired` (the session is gone: every ephemeral node and watch of it is lost), `closed`.
 * - `hasLease()`: true only while connected and a request sent less than
 *   `leaseFraction * sessionTimeout` ago was answered. The server cannot expire the session before
 *   `sessionTimeout` after it last heard from us, so while the lease holds our ephemeral nodes
 *   still exist. It is computed from a monotonic clock at the moment it is asked, so a process
 *   that was paused (SIGSTOP) sees the lease lapsed as soon as it runs again.
 * - After an expiry a new session is opened by itself; `onSession` listeners rebuild what lived in
 *   the old one (ephemeral nodes, watches).
 *
 * The client library does not notice a server that stops answering on an open connection; the
 * probe here does, and then drops the socket so the library reconnects (as the Java client does).
 */
import { Buffer } from "node:buffer";
import zookeeper from "node-zookeeper-client";
import { fallbackLogger, type Logger } from "../log/logger.ts";

/** The session's state, as the rest of momd sees it. */
export type ZkState = "connecting" | "connected" | "suspended" | "expired" | "closed";

/** How a znode is created. */
export type ZkCreateMode =
  | "persistent"
  | "ephemeral"
  | "persistent_sequential"
  | "ephemeral_sequential";

/** The parts of a znode's stat momd uses. */
export interface ZkStat {
  /** Data version: the compare-and-set token of setData and remove. */
  version: number;
  /** Children version. */
  cversion: number;
  /** Session id (hex) of the owner of an ephemeral node; all zeros for a persistent one. */
  ephemeralOwner: string;
  /** zxid (hex) of the transaction that created the node. */
  czxid: string;
  numChildren: number;
}

/** What a watch reports. */
export interface ZkEvent {
  type: "created" | "deleted" | "changed" | "children";
  path: string;
}

/** A watch callback; it fires at most once (ZooKeeper watches are one-shot). */
export type ZkWatcher = (event: ZkEvent) => void;

/** Codes of ZooKeeper refusals momd reacts to; anything else is `other`. */
export type ZkErrorCode =
  | "no_node"
  | "node_exists"
  | "bad_version"
  | "not_empty"
  | "connection_loss"
  | "session_expired"
  | "timeout"
  | "closed"
  | "other";

/** A refused or failed ZooKeeper operation. */
export class ZkError extends Error {
  constructor(readonly code: ZkErrorCode, message: string) {
    super(message);
    this.name = "ZkError";
  }
}

/** One operation of a `multi` (all succeed or none). Versions of -1 match any version. */
export type ZkOp =
  | { op: "create"; path: string; data?: Uint8Array | string; mode?: ZkCreateMode }
  | { op: "setData"; path: string; data: Uint8Array | string; version: number }
  | { op: "check"; path: string; version: number }
  | { op: "remove"; path: string; version: number };

/** Options of a ZkSession. */
export interface ZkSessionOptions {
  /** Where failures are logged (default: warnings and errors on standard error). */
  log?: Logger;
  /** Connect string, `host:port[,host:port...][/chroot]`. */
  connect: string;
  /** Requested session timeout; the server bounds it to 2..20 ticks. */
  sessionTimeoutMs: number;
  /** Part of the negotiated session timeout a confirmation stays good for (default 0.5). */
  leaseFraction?: number;
  /** How long open() waits for the first session (default 30 s). */
  connectTimeoutMs?: number;
  /** Bound on any single operation (default: the session timeout, at least 2 s). */
  operationTimeoutMs?: number;
}

const CODE_NAMES: Record<number, ZkErrorCode> = {
  [-101]: "no_node",
  [-110]: "node_exists",
  [-103]: "bad_version",
  [-111]: "not_empty",
  [-4]: "connection_loss",
  [-112]: "session_expired",
  [-7]: "timeout",
};

const MODES: Record<ZkCreateMode, number> = {
  persistent: zookeeper.CreateMode.PERSISTENT,
  ephemeral: zookeeper.CreateMode.EPHEMERAL,
  persistent_sequential: zookeeper.CreateMode.PERSISTENT_SEQUENTIAL,
  ephemeral_sequential: zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL,
};

const EVENT_TYPES: Record<number, ZkEvent["type"]> = {
  1: "created",
  2: "deleted",
  3: "changed",
  4: "children",
};

/** True when the error is a ZkError with the given code. */
export function isZkError(err: unknown, code: ZkErrorCode): err is ZkError {
  return err instanceof ZkError && err.code === code;
}

function toZkError(err: unknown, what: string): ZkError {
  if (err instanceof ZkError) return err;
  // deno-lint-ignore no-explicit-any
  const e = err as any;
  const code = typeof e?.getCode === "function" ? CODE_NAMES[e.getCode()] ?? "other" : "other";
  return new ZkError(code, `${what}: ${e?.message ?? String(err)}`);
}

function hex(value: unknown): string {
  return Buffer.isBuffer(value) ? value.toString("hex") : String(value ?? "");
}

// deno-lint-ignore no-explicit-any
function toStat(stat: any): ZkStat {
  return {
    version: Number(stat?.version ?? 0),
    cversion: Number(stat?.cversion ?? 0),
    ephemeralOwner: hex(stat?.ephemeralOwner),
    czxid: hex(stat?.czxid),
    numChildren: Number(stat?.numChildren ?? 0),
  };
}

function toBuffer(data: Uint8Array | string | undefined): Buffer | undefined {
  if (data === undefined) return undefined;
  return typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(data);
}

/** Encodes a value as a znode's JSON payload. */
export function jsonData(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

/** Decodes a znode's JSON payload. */
export function parseJson<T>(data: Uint8Array): T {
  return JSON.parse(new TextDecoder().decode(data)) as T;
}

/** A ZooKeeper session that reopens itself after expiry; see the module comment. */
export class ZkSession {
  readonly #log: Logger;
  readonly #opts: Required<ZkSessionOptions>;
  // deno-lint-ignore no-explicit-any
  #client: any;
  #state: ZkState = "connecting";
  #sessionId = "";
  #sessionTimeout: number;
  /** Monotonic time (ms) at which the last answered request was sent. */
  #confirmedAt = -Infinity;
  #probe?: ReturnType<typeof setInterval>;
  #probing = false;
  #suspendedSince = 0;
  #stateListeners = new Set<(state: ZkState) => void>();
  #sessionListeners = new Set<(sessionId: string) => void>();
  #closed = false;
  #reopening = false;

  private constructor(opts: ZkSessionOptions) {
    this.#log = opts.log ?? fallbackLogger();
    this.#opts = {
      log: this.#log,
      leaseFraction: 0.5,
      connectTimeoutMs: 30_000,
      operationTimeoutMs: Math.max(2000, opts.sessionTimeoutMs),
      ...opts,
    };
    this.#sessionTimeout = opts.sessionTimeoutMs;
  }

  /** Opens a session; rejects when none is established within connectTimeoutMs. */
  static async open(opts: ZkSessionOptions): Promise<ZkSession> {
    const session = new ZkSession(opts);
    try {
      await session.#connectNew(session.#opts.connectTimeoutMs);
    } catch (err) {
      session.close();
      throw err;
    }
    session.#probe = setInterval(() => session.#runProbe(), session.#probeInterval());
    return session;
  }

  /** The state now (see ZkState). */
  get state(): ZkState {
    if (this.#state === "connected" && !this.hasLease()) return "suspended";
    return this.#state;
  }

  /** The current session id (hex); it changes after an expiry. */
  get sessionId(): string {
    return this.#sessionId;
  }

  /** The session timeout the server granted. */
  get sessionTimeoutMs(): number {
    return this.#sessionTimeout;
  }

  /**
   * True while the session is surely alive: connected, and a request sent less than
   * `leaseFraction * sessionTimeout` ago was answered.
   */
  hasLease(): boolean {
    return this.#state === "connected" &&
      performance.now() - this.#confirmedAt < this.#opts.leaseFraction * this.#sessionTimeout;
  }

  /** Calls `fn` on every state change; returns a function that removes it. */
  onState(fn: (state: ZkState) => void): () => void {
    this.#stateListeners.add(fn);
    return () => this.#stateListeners.delete(fn);
  }

  /** Calls `fn` with the new id each time a new session replaces an expired one. */
  onSession(fn: (sessionId: string) => void): () => void {
    this.#sessionListeners.add(fn);
    return () => this.#sessionListeners.delete(fn);
  }

  /** Ends the session (its ephemeral nodes go at once) and stops reconnecting. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#probe);
    this.#setState("closed");
    try {
      this.#client?.close();
    } catch {
      // already closed
    }
  }

  /** Waits until the lease holds (or throws ZkError timeout). */
  async waitForLease(timeoutMs = this.#opts.operationTimeoutMs): Promise<void> {
    const until = performance.now() + timeoutMs;
    while (!this.hasLease()) {
      if (this.#closed) throw new ZkError("closed", "session closed");
      if (performance.now() > until) throw new ZkError("timeout", "no ZooKeeper lease");
      if (this.#state === "connected") await this.#runProbe();
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Creates a znode and returns its path (with the sequence suffix for sequential modes). */
  create(
    path: string,
    data?: Uint8Array | string,
    mode: ZkCreateMode = "persistent",
  ): Promise<string> {
    return this.#call(
      `create ${path}`,
      (c, cb) => c.create(path, toBuffer(data) ?? null, MODES[mode], cb),
      (p: string) => p,
    );
  }

  /** Creates a persistent path and any missing parents (no error when it exists). */
  mkdirp(path: string): Promise<void> {
    return this.#call(`mkdirp ${path}`, (c, cb) => c.mkdirp(path, cb), () => undefined);
  }

  /** Data and stat of a znode; throws ZkError no_node. The watcher fires on change or delete. */
  getData(path: string, watcher?: ZkWatcher): Promise<{ data: Uint8Array; stat: ZkStat }> {
    return this.#call(
      `getData ${path}`,
      (c, cb) => watcher ? c.getData(path, this.#wrap(watcher), cb) : c.getData(path, cb),
      // deno-lint-ignore no-explicit-any
      (data: any, stat: any) => ({
        data: data ? new Uint8Array(data) : new Uint8Array(),
        stat: toStat(stat),
      }),
    );
  }

  /** Sets data if the version matches (-1: any); throws ZkError bad_version or no_node. */
  setData(path: string, data: Uint8Array | string, version: number): Promise<ZkStat> {
    return this.#call(
      `setData ${path}`,
      (c, cb) => c.setData(path, toBuffer(data), version, cb),
      // deno-lint-ignore no-explicit-any
      (stat: any) => toStat(stat),
    );
  }

  /** The stat of a znode, or null. The watcher fires on create, change or delete. */
  exists(path: string, watcher?: ZkWatcher): Promise<ZkStat | null> {
    return this.#call(
      `exists ${path}`,
      (c, cb) => watcher ? c.exists(path, this.#wrap(watcher), cb) : c.exists(path, cb),
      // deno-lint-ignore no-explicit-any
      (stat: any) => stat ? toStat(stat) : null,
    );
  }

  /** Names of a znode's children; throws ZkError no_node. The watcher fires on any change. */
  getChildren(path: string, watcher?: ZkWatcher): Promise<string[]> {
    return this.#call(
      `getChildren ${path}`,
      (c, cb) => watcher ? c.getChildren(path, this.#wrap(watcher), cb) : c.getChildren(path, cb),
      (children: string[]) => [...children],
    );
  }

  /** Removes a znode if the version matches (-1: any). */
  remove(path: string, version = -1): Promise<void> {
    return this.#call(`remove ${path}`, (c, cb) => c.remove(path, version, cb), () => undefined);
  }

  /** Runs operations atomically: all succeed, or none does and the first failure is thrown. */
  multi(ops: readonly ZkOp[]): Promise<void> {
    return this.#call("multi", (c, cb) => {
      const tx = c.transaction();
      for (const op of ops) {
        if (op.op === "create") {
          tx.create(op.path, toBuffer(op.data) ?? null, MODES[op.mode ?? "persistent"]);
        } else if (op.op === "setData") tx.setData(op.path, toBuffer(op.data), op.version);
        else if (op.op === "check") tx.check(op.path, op.version);
        else tx.remove(op.path, op.version);
        // The library turns version 0 into -1 ("any"); put the real version back.
        if (op.op !== "create") tx.ops[tx.ops.length - 1].version = op.version;
      }
      tx.commit(cb);
    }, () => undefined);
  }

  #probeInterval(): number {
    return Math.max(20, Math.floor(this.#sessionTimeout * this.#opts.leaseFraction / 4));
  }

  #wrap(watcher: ZkWatcher) {
    // deno-lint-ignore no-explicit-any
    return (event: any) => {
      const type = EVENT_TYPES[event.getType()];
      if (type) watcher({ type, path: event.getPath() });
    };
  }

  #setState(state: ZkState) {
    if (this.#state === state) return;
    if (this.#state === "closed") return;
    this.#state = state;
    for (const fn of [...this.#stateListeners]) {
      try {
        fn(state);
      } catch (err) {
        this.#log.error({ err }, `zk state listener`);
      }
    }
  }

  #call<T>(
    what: string,
    // deno-lint-ignore no-explicit-any
    start: (client: any, cb: (err: unknown, ...rest: any[]) => void) => void,
    // deno-lint-ignore no-explicit-any
    map: (...rest: any[]) => T,
  ): Promise<T> {
    if (this.#closed) return Promise.reject(new ZkError("closed", `${what}: session closed`));
    const sent = performance.now();
    const client = this.#client;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new ZkError("timeout", `${what}: no answer in ${this.#opts.operationTimeoutMs} ms`),
          ),
        this.#opts.operationTimeoutMs,
      );
      try {
        start(client, (err, ...rest) => {
          clearTimeout(timer);
          if (err) {
            reject(toZkError(err, what));
            return;
          }
          if (client === this.#client) this.#confirm(sent);
          resolve(map(...rest));
        });
      } catch (err) {
        clearTimeout(timer);
        reject(toZkError(err, what));
      }
    });
  }

  #confirm(sentAt: number) {
    if (sentAt > this.#confirmedAt) this.#confirmedAt = sentAt;
  }

  #dropSocket() {
    try {
      this.#client?.connectionManager?.socket?.destroy();
    } catch {
      // nothing to drop
    }
  }

  async #runProbe(): Promise<void> {
    if (this.#closed) return;
    if (this.#state === "suspended") {
      // The library waits without a limit for the server's answer to a session request on a
      // connection that opened. Give each attempt a third of the session timeout, as the Java
      // client does, so a server that restarts leaves time for two more before expiry.
      if (performance.now() - this.#suspendedSince > this.#sessionTimeout / 3) {
        this.#suspendedSince = performance.now();
        this.#dropSocket();
      }
      return;
    }
    if (this.#probing || this.#state !== "connected") return;
    this.#probing = true;
    const client = this.#client;
    const sent = performance.now();
    try {
      await new Promise<void>((resolve, reject) => {
        // The Java client's read timeout: two thirds of the session, so a reconnect still fits.
        const timer = setTimeout(
          () => reject(new Error("probe timeout")),
          this.#sessionTimeout * 2 / 3,
        );
        client.exists("/", (err: unknown) => {
          clearTimeout(timer);
          if (err) reject(err);
          else resolve();
        });
      });
      if (client === this.#client) this.#confirm(sent);
    } catch {
      // No answer on an open connection: the library would wait forever, so drop the socket;
      // it reconnects and learns whether the session survived.
      if (client === this.#client && this.#state === "connected") this.#dropSocket();
    } finally {
      this.#probing = false;
    }
  }

  #connectNew(timeoutMs: number): Promise<void> {
    const client = zookeeper.createClient(this.#opts.connect, {
      sessionTimeout: this.#opts.sessionTimeoutMs,
      spinDelay: 100,
      retries: 0,
    });
    this.#client = client;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        if (client === this.#client) this.#client = undefined;
        try {
          client.close();
        } catch {
          // never connected
        }
        reject(
          new ZkError(
            "timeout",
            `no ZooKeeper session at ${this.#opts.connect} in ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      // deno-lint-ignore no-explicit-any
      client.on("state", (s: any) => {
        if (client !== this.#client || this.#closed) return;
        if (s === zookeeper.State.SYNC_CONNECTED) {
          this.#sessionId = hex(client.getSessionId());
          this.#sessionTimeout = client.getSessionTimeout();
          this.#confirm(performance.now());
          this.#setState("connected");
          if (!settled) {
            settled = true;
            clearTimeout(timer);
            resolve();
          }
        } else if (s === zookeeper.State.DISCONNECTED) {
          this.#suspendedSince = performance.now();
          this.#setState("suspended");
        } else if (s === zookeeper.State.EXPIRED) {
          this.#onExpired();
        }
      });
      client.connect();
    });
  }

  #onExpired() {
    if (this.#closed || this.#reopening) return;
    this.#reopening = true;
    this.#setState("expired");
    const old = this.#client;
    try {
      old.close();
    } catch {
      // already closed
    }
    const reopen = async () => {
      while (!this.#closed) {
        try {
          await this.#connectNew(this.#opts.connectTimeoutMs);
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      this.#reopening = false;
      if (this.#closed) return;
      for (const fn of [...this.#sessionListeners]) {
        try {
          fn(this.#sessionId);
        } catch (err) {
          this.#log.error({ err }, `zk session listener`);
        }
      }
    };
    reopen();
  }
}
