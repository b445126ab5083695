import type { Redis } from "ioredis";
import { userKeys } from "../broker/keys.ts";
import {
  type LoginAttempt,
  type RateDecision,
  type RateLimit,
  type RateLimiter,
  unlimitedDecision,
} from "./rate_limit.ts";
import { loadAuthScripts, runAuthScript } from "./scripts.ts";
import { fallbackLogger, type Logger } from "../log/logger.ts";

/** Length of the failed-login windows. */
export const LOGIN_WINDOW_MS = 60_000;

/** Options of a RedisRateLimiter. */
export interface RedisRateLimiterOptions {
  /** Where failures are logged (default: warnings and errors on standard error). */
  log?: Logger;
  /** The limit of users without their own (null: not limited). */
  defaultLimit: RateLimit;
  /** The longest a call over the rate is held before it is served; beyond it, 429 (0: never). */
  maxDelayMs?: number;
  /** Failed logins per (username, client address) per minute, cluster-wide. */
  loginFailuresPerMinute: number;
  /** Failed logins per client address per minute, any username, cluster-wide. */
  loginFailuresPerAddressPerMinute?: number;
  /** Failed logins per minute over the cluster, past which only addresses without failures try. */
  loginFailuresClusterPerMinute?: number;
  /** How often local counts are pushed to Redis and buckets read back (default 200 ms). */
  syncIntervalMs?: number;
  /** The clock in ms (tests move it instead of sleeping). */
  now?: () => number;
}

/** What one node knows of one user's bucket. */
interface UserBucket {
  /** The limit in force at the last sync (the default before the first). */
  limit: RateLimit;
  /** This node's estimate of the bucket at `at`: the cluster's at the last sync, refilled, less
   * the calls this node admitted since. */
  tokens: number;
  /** This node's clock when `tokens` was last brought up to date. */
  at: number;
  /** Calls of this node being pushed by the sync that is running. */
  inflight: number;
  /** Calls of this node not pushed yet. */
  pending: number;
  /** When this node last saw a call of the user. */
  lastSeen: number;
  /** Set until the first sync of a user new to this node has answered (or taken too long). */
  ready?: Promise<void>;
}

/** Refills a bucket estimate up to `now`. */
function refill(state: UserBucket, now: number): void {
  if (state.limit !== null && now > state.at) {
    const added = (now - state.at) * state.limit.requestsPerSecond / 1000;
    state.tokens = Math.min(state.limit.burst, state.tokens + added);
  }
  state.at = Math.max(state.at, now);
}

/** A user counts as active, and its bucket is read on every sync, this long after its last call. */
const ACTIVE_MS = 10_000;
/** The longest a user's first call on this node waits for its bucket (users Redis slow or down). */
const FIRST_SYNC_WAIT_MS = 500;
/** Users per script call of a sync (one pipeline carries all of them). */
const SYNC_CHUNK = 256;

/**
 * One call against a token bucket holding `tokens` now (may be negative: calls on credit). The call
 * takes a token; if that leaves the bucket below zero, the call waits until refill covers it,
 * allowed when that wait is at most `maxDelayMs`. Refused calls take nothing.
 */
export function bucketDecision(
  tokens: number,
  limit: { requestsPerSecond: number; burst: number },
  maxDelayMs: number,
): RateDecision {
  const rate = limit.requestsPerSecond / 1000; // tokens per ms
  const left = tokens - 1;
  const delayMs = left >= 0 ? 0 : Math.ceil(-left / rate);
  const resetSeconds = Math.ceil((limit.burst - left) / rate / 1000);
  if (delayMs <= maxDelayMs) {
    return {
      allowed: true,
      retryAfterSeconds: 0,
      delayMs,
      limit,
      remaining: Math.max(0, Math.floor(left)),
      resetSeconds,
    };
  }
  return {
    allowed: false,
    // Back when one whole token is there: the call then goes through without waiting.
    retryAfterSeconds: Math.max(1, Math.ceil((1 - tokens) / rate / 1000)),
    delayMs: 0,
    limit,
    remaining: 0,
    resetSeconds: Math.ceil((limit.burst - tokens) / rate / 1000),
  };
}

function parseLimit(tokens: string, rps: string, burst: string): [RateLimit, number] {
  if (rps === "") return [null, 0];
  return [{ requestsPerSecond: Number(rps), burst: Number(burst) }, Number(tokens)];
}

/**
 * Cluster-wide rate limits kept in the central users Redis.
 *
 * **API calls per user** (`take`, no Redis round trip per request): a token bucket per user
 * (`momd:rate-bucket:<user>`) refilled at the user's rate up to its burst, by the user's own
 * limit when an admin set one, else the cluster default. Each node counts the calls it admits and
 * every `syncIntervalMs` runs one script for its active users (`rate_sync.lua`): it refills each
 * bucket by Redis's clock, takes off the node's calls and returns the bucket and limit. Between
 * syncs a node decides from that plus refill minus its own calls since. A call over the rate is
 * held up to `maxDelayMs` (on credit) before it is served, and refused with 429 beyond that.
 *
 * Overshoot bound: a node does not see calls other nodes admitted since its last sync. With N
 * nodes, a user gets at most its rate plus what the other N-1 nodes admitted in one sync interval
 * plus one Redis round trip (about 200 ms); a single node is exact. A limit changed by an admin
 * takes effect at each node's next sync. When the users Redis is unreachable, counts stay local
 * and are pushed once it is back; the API keeps serving.
 *
 * **Failed logins** (`loginAttempt`): strict, one Lua script per attempt (a login spends far
 * longer in scrypt): sliding logs per (username, client), per client address and for the
 * cluster (see `login_attempt.lua`). Each attempt is reserved before the password check and counts
 * as a failure unless it succeeds, so parallel guesses cannot exceed a bound. A success does not
 * reset earlier failures: they age out on their own, so a correct login buys an attacker nothing.
 */
export class RedisRateLimiter implements RateLimiter {
  readonly #log: Logger;
  readonly #redis: Redis;
  readonly #default: RateLimit;
  readonly #maxDelayMs: number;
  readonly #loginPair: number;
  readonly #loginAddress: number;
  readonly #loginCluster: number;
  readonly #syncMs: number;
  readonly #now: () => number;
  readonly #users = new Map<string, UserBucket>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #syncing: Promise<void> | undefined;
  #next: Promise<void> | undefined;
  #closed = false;
  #failing = false;
  /** Whether Redis is known to hold the sync script (loaded once, again after a NOSCRIPT). */
  #scriptLoaded = false;

  constructor(redis: Redis, opts: RedisRateLimiterOptions) {
    this.#log = opts.log ?? fallbackLogger();
    this.#redis = redis;
    this.#default = opts.defaultLimit;
    this.#maxDelayMs = opts.maxDelayMs ?? 0;
    this.#loginPair = opts.loginFailuresPerMinute;
    this.#loginAddress = opts.loginFailuresPerAddressPerMinute ?? 3 * opts.loginFailuresPerMinute;
    this.#loginCluster = opts.loginFailuresClusterPerMinute ?? 60 * opts.loginFailuresPerMinute;
    this.#syncMs = opts.syncIntervalMs ?? 200;
    this.#now = opts.now ?? Date.now;
    this.#schedule();
  }

  /**
   * Takes one call from the user's bucket, decided locally. The first call of a user this node
   * has not seen for a while waits for one sync (shared with other such calls, at most
   * FIRST_SYNC_WAIT_MS), so a user's own limit holds from its first call on every node.
   */
  async take(user: string): Promise<RateDecision> {
    const now = this.#now();
    let state = this.#users.get(user);
    if (!state) {
      // Until the sync answers: the default limit and a full bucket.
      const tokens = this.#default?.burst ?? 0;
      state = { limit: this.#default, tokens, at: now, inflight: 0, pending: 0, lastSeen: now };
      this.#users.set(user, state); // first: the sync below may start at once and reads it
      state.ready = this.#firstSync();
    }
    state.lastSeen = now;
    if (state.ready) {
      await state.ready;
      state.ready = undefined;
    }
    if (state.limit === null) return unlimitedDecision();
    refill(state, this.#now());
    const decision = bucketDecision(state.tokens, state.limit, this.#maxDelayMs);
    if (decision.allowed) {
      state.tokens--;
      state.pending++;
    }
    return decision;
  }

  /** The next sync to start (joined by every caller until it starts), bounded in time. */
  #firstSync(): Promise<void> {
    if (!this.#next) {
      this.#next = (async () => {
        await null; // `#next` is assigned before it is cleared below
        while (this.#syncing) await this.#syncing;
        this.#next = undefined; // users added from here on need the sync after this one
        await this.flush();
      })();
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const bound = new Promise<void>((resolve) => timer = setTimeout(resolve, FIRST_SYNC_WAIT_MS));
    return Promise.race([this.#next, bound]).finally(() => clearTimeout(timer));
  }

  /** Reserves a login attempt for the pair, or refuses it (one Lua script in Redis). */
  async loginAttempt(username: string, client: string): Promise<LoginAttempt> {
    const keys = [
      userKeys.loginFailures(username, client),
      userKeys.addressLoginFailures(client),
      userKeys.clusterLoginFailures,
    ];
    const id = crypto.randomUUID();
    const [ok, waitMs, by] = await runAuthScript(this.#redis, "login_attempt", keys, [
      this.#now(),
      LOGIN_WINDOW_MS,
      this.#loginPair,
      this.#loginAddress,
      this.#loginCluster,
      id,
    ]) as [number, number, string];
    if (ok !== 1) {
      return {
        allowed: false,
        retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)),
        refusedBy: by as LoginAttempt["refusedBy"],
        succeeded: () => Promise.resolve(),
      };
    }
    return {
      allowed: true,
      retryAfterSeconds: 0,
      succeeded: async () => {
        const tx = this.#redis.multi();
        for (const key of keys) tx.zrem(key, id);
        await tx.exec();
      },
    };
  }

  /**
   * Syncs with Redis now: pushes every local count and reads back the buckets of active users.
   * Resolves when done (waits for a sync already running first). Never throws.
   */
  async flush(): Promise<void> {
    while (this.#syncing) await this.#syncing;
    this.#syncing = this.#sync().finally(() => this.#syncing = undefined);
    await this.#syncing;
  }

  /**
   * Stops syncing; resolves once a sync that is running has finished. Counts not yet pushed (at
   * most one sync interval of this node's calls) are dropped.
   */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#syncing) await this.#syncing;
  }

  #schedule(): void {
    if (this.#closed) return;
    const timer = setTimeout(async () => {
      this.#timer = undefined;
      await this.flush();
      this.#schedule();
    }, this.#syncMs);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  async #sync(): Promise<void> {
    const now = this.#now();
    const batch: { user: string; state: UserBucket; pushed: number }[] = [];
    for (const [user, state] of this.#users) {
      if (now - state.lastSeen >= ACTIVE_MS && state.pending === 0) {
        this.#users.delete(user);
        continue;
      }
      state.inflight += state.pending;
      batch.push({ user, state, pushed: state.pending });
      state.pending = 0;
    }
    if (batch.length === 0) return;

    const pipe = this.#redis.pipeline();
    const chunks: typeof batch[] = [];
    for (let i = 0; i < batch.length; i += SYNC_CHUNK) chunks.push(batch.slice(i, i + SYNC_CHUNK));
    const script = (await loadAuthScripts()).rate_sync;
    for (const chunk of chunks) {
      const keys = chunk.flatMap((b) => [userKeys.bucket(b.user), userKeys.user(b.user)]);
      pipe.evalsha(
        script.sha,
        keys.length,
        ...keys,
        this.#default?.requestsPerSecond ?? 0,
        this.#default?.burst ?? 0,
        ...chunk.map((b) => b.pushed),
      );
    }
    let results: [Error | null, unknown][] = [];
    let failure: unknown;
    try {
      if (!this.#scriptLoaded) {
        await this.#redis.script("LOAD", script.source);
        this.#scriptLoaded = true;
      }
      results = (await pipe.exec()) ?? [];
      // Redis restarted empty: load the script again at the next sync, which pushes these calls.
      if (results.some(([err]) => err?.message.startsWith("NOSCRIPT"))) this.#scriptLoaded = false;
    } catch (err) {
      failure = err;
    }
    chunks.forEach((chunk, c) => {
      const [err, reply] = results[c] ?? [failure ?? new Error("no reply"), null];
      chunk.forEach((b, i) => {
        b.state.inflight -= b.pushed;
        const row = (reply as string[][] | null)?.[i];
        if (err || !row) {
          b.state.pending += b.pushed; // pushed again by the next sync
          failure ??= err;
          return;
        }
        const [limit, tokens] = parseLimit(row[0], row[1], row[2]);
        // The cluster's bucket as of the sync's start, refilled since, less this node's calls
        // admitted while the sync ran (they are in `pending`, pushed by the next sync).
        b.state.limit = limit;
        b.state.ready = undefined;
        b.state.tokens = tokens;
        b.state.at = now;
        refill(b.state, this.#now());
        b.state.tokens -= b.state.pending;
      });
    });
    if (failure && !this.#failing) {
      const message = failure instanceof Error ? failure.message : String(failure);
      this.#log.warn(
        `rate limiter: cannot sync with the users Redis (${message}); counting locally`,
      );
    } else if (!failure && this.#failing) {
      this.#log.warn("rate limiter: syncing with the users Redis again");
    }
    this.#failing = failure !== undefined;
  }
}
