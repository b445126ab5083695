import type { Answer } from "./http.ts";
import { Transport, type TransportOptions } from "./http.ts";
import { defaultWebSocket, type StreamDeps, type WebSocketFactory } from "./stream.ts";
import type { RequestSpec } from "./caller.ts";
import { MomdError } from "./errors.ts";
import { QueuesApi } from "./queues.ts";
import { TopicsApi } from "./topics.ts";
import { UsersApi } from "./users.ts";
import { type ConsumeOptions, type Consumer, type Handler, startConsumer } from "./consumer.ts";
import { type RequestOptions, RequestsApi, type TaskResult } from "./requests.ts";
import type {
  CheckReport,
  ClusterStatus,
  Delivery,
  Me,
  SubscriptionRef,
  TokenInfo,
  TopicDelivery,
} from "./types.ts";

/** Options of a MomdClient. */
export interface ClientOptions extends Omit<TransportOptions, "url"> {
  /** Base URL of the API, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** A token to start with (e.g. one saved by `momd login`). Not renewed without credentials. */
  token?: string;
  /** Credentials: the client logs in on its first call and renews its token before expiry. */
  username?: string;
  password?: string;
  /**
   * Renew the token this many seconds before it expires (default: a fifth of its lifetime, at
   * most 60 s).
   */
  renewBeforeSeconds?: number;
  /** The client's clock in ms (tests). Token expiry is measured against it, not the server's. */
  now?: () => number;
  /**
   * Give every queue message sent without a `dedupId` one of its own (default true, as Kafka's
   * idempotent producer), so that a send whose answer was lost (a 504, a dropped connection) is
   * retried without storing the message twice. Each id is kept by the queue for its
   * de-duplication window (`dedupWindowSeconds`); turn this off to save that memory and let a
   * retried send store a second copy.
   */
  idempotentSends?: boolean;
  /**
   * Opens the WebSockets of producers and stream consumers (default: the global WebSocket, with
   * the owner hint as a header where the runtime allows headers, i.e. Deno).
   */
  webSocket?: WebSocketFactory;
}

interface TokenState {
  token: string;
  expiresAt: string;
  /** Expiry by the client's clock (ms), corrected for clock skew with the server. */
  localExpiry: number;
  /** Lifetime as issued (ms). */
  lifetime: number;
}

/**
 * A typed client of the momd REST API for Deno, Node 18+ and browsers.
 *
 * ```ts
 * const momd = new MomdClient({ url: "http://127.0.0.1:8080" });
 * await momd.login("alice", "a-long-password");
 * await momd.queues.create("jobs");
 * await momd.queues.send("jobs", "hello");
 * const [m] = await momd.queues.receive("jobs", { waitSeconds: 5 });
 * await momd.queues.ack("jobs", [m]);
 * ```
 */
export class MomdClient {
  /** Queue management, send, receive, ack, nack, visibility. */
  readonly queues: QueuesApi;
  /** Topic management, publish, subscriptions, receive, ack, nack, seek. */
  readonly topics: TopicsApi;
  /** User management. */
  readonly users: UsersApi;
  readonly #transport: Transport;
  readonly #requests: RequestsApi;
  readonly #now: () => number;
  readonly #renewBeforeMs?: number;
  #credentials?: { username: string; password: string };
  #token?: TokenState;
  #staticToken?: string;
  #renewing?: Promise<TokenState>;

  constructor(options: ClientOptions) {
    this.#transport = new Transport(options);
    this.#now = options.now ?? Date.now;
    this.#renewBeforeMs = options.renewBeforeSeconds === undefined
      ? undefined
      : options.renewBeforeSeconds * 1000;
    this.#staticToken = options.token;
    if (options.username !== undefined && options.password !== undefined) {
      this.#credentials = { username: options.username, password: options.password };
    }
    const call = <T>(spec: RequestSpec) => this.#call<T>(spec);
    const streams = this.#streamDeps(options);
    this.queues = new QueuesApi(call, {
      idempotentSends: options.idempotentSends ?? true,
      streams,
    });
    this.topics = new TopicsApi(call, { streams });
    this.users = new UsersApi(call, (name, password) => {
      if (this.#credentials?.username === name) {
        this.#credentials = { username: name, password };
        this.#token = undefined; // the server revoked it; the next call logs in again
      }
    });
    this.#requests = new RequestsApi(call);
  }

  /** Base URL of the API. */
  get url(): string {
    return this.#transport.url;
  }

  /** The current token, if any. */
  get token(): string | undefined {
    return this.#token?.token ?? this.#staticToken;
  }

  /** When the current token expires (ISO 8601, server time), if known. */
  get tokenExpiresAt(): string | undefined {
    return this.#token?.expiresAt;
  }

  /**
   * Logs in and keeps the credentials (in memory) to renew the token before it expires, and
   * once more when the server answers 401 token_expired.
   */
  async login(username: string, password: string): Promise<TokenInfo> {
    this.#credentials = { username, password };
    this.#staticToken = undefined;
    const state = await this.#renew(true);
    return { token: state.token, expiresAt: state.expiresAt };
  }

  /** Forgets the token and the credentials (tokens cannot be revoked one by one server-side). */
  logout(): void {
    this.#credentials = undefined;
    this.#token = undefined;
    this.#staticToken = undefined;
  }

  /** Who the token belongs to. */
  async me(): Promise<Me> {
    return (await this.#call<Me>({ method: "GET", path: "/v1/auth/me", retry: true })).body;
  }

  /**
   * The cluster as the answering node sees it (`GET /v1/cluster`): its nodes, the controller,
   * and every queue's and topic's owner, replicas, epoch and replication lag. `local: true` skips
   * asking the peers for their lag. A single node answers with `mode: "single"`. Admins only
   * (403 otherwise).
   */
  async cluster(options: { local?: boolean } = {}): Promise<ClusterStatus> {
    return (await this.#call<ClusterStatus>({
      method: "GET",
      path: "/v1/cluster",
      query: { scope: options.local ? "local" : undefined },
      retry: true,
    })).body;
  }

  /**
   * Forgets a node removed from the cluster for good (`DELETE /v1/cluster/nodes/{id}`): it no
   * longer shows as down. 409 for a live node, 404 for an unknown one. Admins only.
   */
  async forgetNode(id: string): Promise<void> {
    await this.#call({
      method: "DELETE",
      path: `/v1/cluster/nodes/${encodeURIComponent(id)}`,
      retry: true,
    });
  }

  /**
   * Runs the consistency check (`GET /v1/cluster/check`): every node's view, copies, keys and
   * the backups compared with ZooKeeper and with each other; `consistent` is false when an error
   * was found. `waitSeconds` (default 2): how long what may resolve by itself on a live cluster
   * is looked at again; `timeoutSeconds` (default 3): how long each node has to answer. Admins
   * only (403 otherwise).
   */
  async checkCluster(
    options: { waitSeconds?: number; timeoutSeconds?: number } = {},
  ): Promise<CheckReport> {
    const wait = options.waitSeconds ?? 2;
    const timeout = options.timeoutSeconds ?? 3;
    return (await this.#call<CheckReport>({
      method: "GET",
      path: "/v1/cluster/check",
      query: { wait: options.waitSeconds, timeout: options.timeoutSeconds },
      retry: true,
      // Round one, the rounds of waiting, and a node that does not answer in each.
      extraTimeMs: (wait + 3 * timeout) * 1000,
    })).body;
  }

  /**
   * Consumes a queue (by name) or a topic subscription (`{topic, subscription}`): long-polls,
   * runs `handler` for each message (up to `concurrency` at once), acks when it resolves, nacks
   * with an exponential backoff delay when it throws, extends the visibility of long-running
   * work, and stops cleanly on `stop()` or `options.signal`.
   */
  consume(queue: string, handler: Handler<Delivery>, options?: ConsumeOptions<Delivery>): Consumer;
  consume(
    subscription: SubscriptionRef,
    handler: Handler<TopicDelivery>,
    options?: ConsumeOptions<TopicDelivery>,
  ): Consumer;
  consume(
    target: string | SubscriptionRef,
    // deno-lint-ignore no-explicit-any
    handler: Handler<any>,
    // deno-lint-ignore no-explicit-any
    options: ConsumeOptions<any> = {},
  ): Consumer {
    return startConsumer({ queues: this.queues, topics: this.topics, target }, handler, options);
  }

  /**
   * Request/reply: sends `payload` (a string as is, anything else as JSON) to the service's
   * queue as a request with a deadline `timeoutSeconds` away, and waits for the worker's reply
   * (long-polling the task). Resolves with the task: `completed` with its `result`, `failed`
   * with its `error`, `expired`, or still open when `waitSeconds` was shorter than the timeout.
   */
  request(service: string, payload: unknown, options: RequestOptions = {}): Promise<TaskResult> {
    return this.#requests.request(service, payload, options);
  }

  /** The request/reply calls one by one: send a request, read a task, reply to one. */
  get tasks(): RequestsApi {
    return this.#requests;
  }

  /** What producers and stream consumers need: the token, its renewal, owner hints, retries. */
  #streamDeps(options: ClientOptions): StreamDeps {
    const f = options.fetch ?? globalThis.fetch;
    return {
      url: this.#transport.url,
      token: () => this.#currentToken(),
      renewToken: async () => {
        if (!this.#credentials) return false;
        await this.#renew(true);
        return true;
      },
      ownerHint: (p) => this.#transport.ownerHint(p),
      renewAt: () => {
        if (!this.#credentials || !this.#token) return undefined;
        return Date.now() + this.#renewAt(this.#token) - this.#now();
      },
      fetch: (input, init) => f(input, init),
      webSocket: options.webSocket ?? defaultWebSocket,
      timeoutMs: options.timeoutMs ?? 30_000,
      retry: {
        retries: options.retry?.retries ?? 4,
        baseDelayMs: options.retry?.baseDelayMs ?? 200,
        maxDelayMs: options.retry?.maxDelayMs ?? 5_000,
        maxRetryAfterMs: options.retry?.maxRetryAfterMs ?? 30_000,
      },
      random: options.random ?? Math.random,
    };
  }

  async #call<T>(spec: RequestSpec): Promise<Answer<T>> {
    const token = await this.#currentToken();
    try {
      return await this.#transport.call<T>({ ...spec, token });
    } catch (err) {
      // The server refused the token before doing anything: log in again once and repeat.
      if (
        err instanceof MomdError && err.status === 401 && err.code === "token_expired" &&
        this.#credentials
      ) {
        const fresh = await this.#renew(token === this.#token?.token);
        return await this.#transport.call<T>({ ...spec, token: fresh.token });
      }
      throw err;
    }
  }

  async #currentToken(): Promise<string | undefined> {
    if (!this.#credentials) return this.#staticToken;
    const t = this.#token;
    if (t && this.#now() < this.#renewAt(t)) return t.token;
    return (await this.#renew(true)).token;
  }

  /** When a token is renewed, by the client's clock (ms). */
  #renewAt(t: TokenState): number {
    return t.localExpiry - (this.#renewBeforeMs ?? Math.min(60_000, t.lifetime / 5));
  }

  /** Logs in with the kept credentials; concurrent callers share one login. */
  #renew(force: boolean): Promise<TokenState> {
    if (this.#renewing) return this.#renewing;
    if (!force && this.#token) return Promise.resolve(this.#token);
    const creds = this.#credentials;
    if (!creds) return Promise.reject(new Error("not logged in: call login() first"));
    this.#renewing = (async () => {
      const sentAt = this.#now();
      const res = await this.#transport.call<TokenInfo>({
        method: "POST",
        path: "/v1/auth/token",
        body: creds,
        retry: true,
      });
      const state = tokenState(res.body, res.headers.get("date"), sentAt);
      this.#token = state;
      return state;
    })().finally(() => this.#renewing = undefined);
    return this.#renewing;
  }
}

/**
 * Places a token's expiry on the client's clock: its remaining lifetime by the server's clock
 * (expiresAt - Date header, less a second for the header's rounding) from when it was asked for.
 */
function tokenState(info: TokenInfo, dateHeader: string | null, sentAt: number): TokenState {
  const expires = Date.parse(info.expiresAt);
  const serverNow = dateHeader ? Date.parse(dateHeader) : NaN;
  const lifetime = Number.isNaN(serverNow)
    ? Math.max(0, expires - sentAt)
    : Math.max(0, expires - serverNow - 1000);
  return { token: info.token, expiresAt: info.expiresAt, localExpiry: sentAt + lifetime, lifetime };
}
