import { Redis } from "ioredis";
import { createApp } from "../../src/api/app.ts";
import { UserStore } from "../../src/auth/users.ts";
import { TokenService, watchUserChanges } from "../../src/auth/tokens.ts";
import { RedisRateLimiter } from "../../src/auth/redis_rate_limiter.ts";
import type { RateLimit } from "../../src/auth/rate_limit.ts";
import { Store } from "../../src/broker/store.ts";
import { Notifier } from "../../src/broker/notifier.ts";
import { QueueService } from "../../src/broker/queues.ts";
import { TopicService } from "../../src/broker/topics.ts";
import { RequestService } from "../../src/broker/requests.ts";
import { connectRedis } from "../../src/redis.ts";
import { localOnlySink, type RecordSink } from "../../src/replication/record.ts";
import { type RedisServer, startRedis } from "./services.ts";

/** An in-process API over a real Redis, for route tests without a port. */
export interface TestApi {
  app: ReturnType<typeof createApp>;
  redis: RedisServer;
  local: Redis;
  usersRedis: Redis;
  users: UserStore;
  tokens: TokenService;
  limiter: RedisRateLimiter;
  store: Store;
  /** A token of the bootstrap admin. */
  adminToken: string;
  /** Creates a plain user and returns its token. */
  userToken(username: string, password?: string): Promise<string>;
  /** Logs in through the API and returns the token (throws unless 200). */
  login(username: string, password: string): Promise<string>;
  /** JSON request helper: returns status, headers and parsed body. */
  call(
    method: string,
    path: string,
    opts?: CallOptions,
    // deno-lint-ignore no-explicit-any
  ): Promise<{ status: number; headers: Headers; body: any }>;
  close(): Promise<void>;
}

/** Options of one test request. */
export interface CallOptions {
  token?: string;
  body?: unknown;
  rawBody?: string;
  headers?: Record<string, string>;
  /** The address the request comes from (the connection's peer); unset: no connection info. */
  peer?: string;
}

/** Options of startTestApi. */
export interface TestApiOptions {
  sink?: RecordSink;
  /** The broker store's clock. */
  now?: () => number;
  /** The default rate limit (default: none) and how long a call over it is held (default 0). */
  rateLimit?: RateLimit;
  rateLimitMaxDelayMs?: number;
  loginFailuresPerMinute?: number;
  loginFailuresPerAddressPerMinute?: number;
  loginFailuresClusterPerMinute?: number;
  /** Password hashes computed at once, and how many may wait (defaults of UserStore). */
  hashConcurrency?: number;
  hashQueue?: number;
  /** The rate limiter's sync interval (default 200 ms) and clock. */
  rateLimitSyncMs?: number;
  rateLimitNow?: () => number;
  maxBodyBytes?: number;
  tokenTtlSeconds?: number;
  /** The token service's clock (expire tokens without sleeping). */
  tokenNow?: () => number;
  trustedProxies?: string[];
  /** Subscribe to the users change channel (default true); off shows what a route does alone. */
  watchUserChanges?: boolean;
}

/** Starts a Redis and builds the API over it (local store in db 0, users in db 1). */
export async function startTestApi(opts: TestApiOptions = {}): Promise<TestApi> {
  const redis = await startRedis();
  const local = connectRedis(`${redis.url}/0`, "test-local");
  const usersRedis = connectRedis(`${redis.url}/1`, "test-users");
  const users = new UserStore(usersRedis, {
    hashCost: 10,
    hashConcurrency: opts.hashConcurrency,
    hashQueue: opts.hashQueue,
  });
  const tokens = new TokenService(users, {
    secret: "test-secret-test-secret-test-secret-0123",
    ttlSeconds: opts.tokenTtlSeconds ?? 600,
    now: opts.tokenNow,
  });
  const userEvents = connectRedis(`${redis.url}/1`, "test-events");
  if (opts.watchUserChanges !== false) await watchUserChanges(userEvents, tokens);
  const limiter = new RedisRateLimiter(usersRedis, {
    defaultLimit: opts.rateLimit ?? null,
    maxDelayMs: opts.rateLimitMaxDelayMs ?? 0,
    loginFailuresPerMinute: opts.loginFailuresPerMinute ?? 1000,
    loginFailuresPerAddressPerMinute: opts.loginFailuresPerAddressPerMinute ?? 10_000,
    loginFailuresClusterPerMinute: opts.loginFailuresClusterPerMinute ?? 100_000,
    syncIntervalMs: opts.rateLimitSyncMs,
    now: opts.rateLimitNow,
  });
  const store = await Store.open(local, { sink: opts.sink ?? localOnlySink, now: opts.now });
  const notifier = new Notifier();
  const app = createApp({
    config: {
      maxBodyBytes: opts.maxBodyBytes ?? 1024 * 1024,
      trustedProxies: opts.trustedProxies ?? [],
      loginFailuresPerMinute: opts.loginFailuresPerMinute ?? 1000,
      nodeId: "test",
      rateLimitPerSecond: opts.rateLimit?.requestsPerSecond ?? 0,
      rateLimitBurst: opts.rateLimit?.burst,
    },
    users,
    tokens,
    limiter,
    queues: new QueueService(store, notifier),
    topics: new TopicService(store, notifier),
    requests: new RequestService(store, notifier),
    readiness: async () => ({ localRedis: (await local.ping()) === "PONG" }),
  });

  async function call(method: string, path: string, o: CallOptions = {}) {
    const headers: Record<string, string> = { ...o.headers };
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    let body: string | undefined = o.rawBody;
    if (o.body !== undefined) body = JSON.stringify(o.body);
    if (body !== undefined) headers["content-type"] ??= "application/json";
    // The Deno adapter's getConnInfo reads the peer from the env, as Deno.serve passes it.
    const env = o.peer === undefined
      ? undefined
      : { remoteAddr: { hostname: o.peer, port: 40000, transport: "tcp" } };
    const res = await app.request(path, { method, headers, body }, env);
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: keep the text
    }
    // deno-lint-ignore no-explicit-any
    return { status: res.status, headers: res.headers, body: parsed as any };
  }

  async function login(username: string, password: string): Promise<string> {
    const res = await call("POST", "/v1/auth/token", { body: { username, password } });
    if (res.status !== 200) {
      throw new Error(`login ${username}: ${res.status} ${JSON.stringify(res.body)}`);
    }
    return res.body.token;
  }

  await users.create("admin", "admin-password", "admin");
  const adminToken = await login("admin", "admin-password");

  return {
    app,
    redis,
    local,
    usersRedis,
    users,
    tokens,
    limiter,
    store,
    adminToken,
    login,
    async userToken(username: string, password = "user-password") {
      if (!(await users.get(username))) await users.create(username, password, "user");
      return login(username, password);
    },
    call,
    async close() {
      await limiter.close();
      local.disconnect();
      usersRedis.disconnect();
      userEvents.disconnect();
      await redis.stop();
    },
  };
}

/** A test API served on a free loopback port, for what needs a URL (the client, the CLI). */
export interface ServedNode {
  api: TestApi;
  url: string;
  close(): Promise<void>;
}

/** Starts a test API (real Redis) and serves it with Deno.serve on a free loopback port. */
export async function serveNode(opts: TestApiOptions = {}): Promise<ServedNode> {
  const api = await startTestApi(opts);
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    api.app.fetch,
  );
  return {
    api,
    url: `http://127.0.0.1:${server.addr.port}`,
    async close() {
      await server.shutdown();
      await api.close();
    },
  };
}
