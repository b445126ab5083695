import type { Redis } from "ioredis";
import { userKeys } from "../broker/keys.ts";
import type { LoginAttempt, RateDecision, RateLimiter } from "./rate_limit.ts";
import { runAuthScript } from "./scripts.ts";

/** Length of a rate-limit window. */
export const WINDOW_MS = 60_000;

/** Options of a RedisRateLimiter. */
export interface RedisRateLimiterOptions {
  /** API calls per user per minute, cluster-wide. */
  perMinute: number;
  /** Failed logins per (username, client) per minute, cluster-wide. */
  loginFailuresPerMinute: number;
  /** How often local counts are pushed to Redis and cluster totals read back (default 200 ms). */
  syncIntervalMs?: number;
  /** The clock in ms (tests move it instead of sleeping). */
  now?: () => number;
}

/** Counts of one user in one window, as this node knows them. */
interface WindowCount {
  /** Cluster-wide total at the last sync (this node's pushed calls included). */
  total: number;
  /** Calls of this node being pushed by the sync that is running. */
  inflight: number;
  /** Calls of this node not pushed yet. */
  pending: number;
}

interface UserState {
  /** Window index (time / WINDOW_MS) -> counts; only the current and the previous are kept. */
  windows: Map<number, WindowCount>;
  /** When this node last saw a call of the user (its clock, ms). */
  lastSeen: number;
}

/** A user counts as active, and its cluster totals are read on every sync, this long. */
const ACTIVE_MS = 10_000;
/** A window's counter lives through the next window (the sliding estimate reads it), plus slack. */
const COUNTER_TTL_MS = 2 * WINDOW_MS + 10_000;

/** Decision of the sliding-window estimate, with the wait in ms when refused. */
export interface WindowDecision {
  allowed: boolean;
  retryAfterMs: number;
}

/**
 * The sliding-window counter: the calls of the last minute are estimated as the current fixed
 * window's count plus the previous window's count weighted by the part of it still inside the
 * last minute (`elapsed` is the fraction of the current window that has passed, 0 <= elapsed < 1).
 * A call is allowed when the estimate plus this call stays within the limit. When refused, the
 * wait is how long until the estimate (with no further calls) leaves room for one call.
 */
export function slidingWindow(
  counts: { previous: number; current: number; elapsed: number },
  limit: number,
): WindowDecision {
  const { previous, current, elapsed } = counts;
  if (previous * (1 - elapsed) + current + 1 <= limit) return { allowed: true, retryAfterMs: 0 };
  const room = limit - 1 - current; // what the previous window's weighted share must fall to
  if (room > 0 && previous > 0) {
    // Still in this window: previous * (1 - e) <= room once e >= 1 - room / previous.
    return { allowed: false, retryAfterMs: Math.ceil((1 - room / previous - elapsed) * WINDOW_MS) };
  }
  // Only the next window frees room: there, this window's count is the weighted one.
  const untilNext = (1 - elapsed) * WINDOW_MS;
  const into = current <= limit - 1 ? 0 : (1 - (limit - 1) / current) * WINDOW_MS;
  return { allowed: false, retryAfterMs: Math.ceil(untilNext + into) };
}

function seen(c: WindowCount | undefined): number {
  return c ? c.total + c.inflight + c.pending : 0;
}

/**
 * Cluster-wide rate limits kept in the central users Redis.
 *
 * **API calls per user** (`take`, no Redis round trip per request): a sliding one-minute window
 * (see `slidingWindow`) over fixed-window counters `momd:rate:<user>:<window>`. Each node counts
 * calls locally and every `syncIntervalMs` sends one pipeline: `INCRBY` of its unsent counts (with
 * `PEXPIRE`) and `GET` of the counters of users active in the last 10 s, reading back the cluster
 * totals. A decision is the cluster total at the last sync plus this node's calls since.
 *
 * Overshoot bound: a node does not see calls other nodes admitted since its last sync. With N
 * nodes, a user gets at most `perMinute` plus what the other N-1 nodes admitted in one sync
 * interval plus one Redis round trip (about 200 ms) — and never more than N x `perMinute` even if
 * it bursts on every node at once. A single node is exact. A user a node has not seen for 10 s is
 * decided from its last known totals until the next sync, which is within the same bound.
 * When the users Redis is unreachable, counts stay local (each node enforces the limit on its own
 * calls) and are pushed once Redis is back; the API keeps serving.
 *
 * **Failed logins per (username, client)** (`loginAttempt`): strict, one Lua script per attempt
 * (a login spends far longer in scrypt): a sliding log of attempts in a sorted set; each attempt
 * is reserved before the password check and counts as a failure unless it succeeds, so parallel
 * guesses cannot exceed the limit. After `loginFailuresPerMinute` failures within a minute every
 * attempt of the pair is refused, even with the right password, until the oldest failure is a
 * minute old. A success does not reset earlier failures: they age out on their own, so a correct
 * login (which the attacker does not have) buys nothing, and the rule stays one simple sliding
 * window.
 */
export class RedisRateLimiter implements RateLimiter {
  readonly #redis: Redis;
  readonly #perMinute: number;
  readonly #loginFailures: number;
  readonly #syncMs: number;
  readonly #now: () => number;
  readonly #users = new Map<string, UserState>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #syncing: Promise<void> | undefined;
  #closed = false;
  #failing = false;

  constructor(
    redis: Redis,
    opts: RedisRateLimiterOptions,
  ) {
    this.#redis = redis;
    this.#perMinute = opts.perMinute;
    this.#loginFailures = opts.loginFailuresPerMinute;
    this.#syncMs = opts.syncIntervalMs ?? 200;
    this.#now = opts.now ?? Date.now;
    this.#schedule();
  }

  /** Takes one call from the user's budget; decided locally. */
  take(user: string): RateDecision {
    const now = this.#now();
    const w = Math.floor(now / WINDOW_MS);
    let state = this.#users.get(user);
    if (!state) {
      state = { windows: new Map(), lastSeen: now };
      this.#users.set(user, state);
    }
    state.lastSeen = now;
    const decision = slidingWindow({
      previous: seen(state.windows.get(w - 1)),
      current: seen(state.windows.get(w)),
      elapsed: (now - w * WINDOW_MS) / WINDOW_MS,
    }, this.#perMinute);
    if (!decision.allowed) {
      return {
        allowed: false,
        retryAfterSeconds: Math.max(1, Math.ceil(decision.retryAfterMs / 1000)),
      };
    }
    let current = state.windows.get(w);
    if (!current) {
      current = { total: 0, inflight: 0, pending: 0 };
      state.windows.set(w, current);
    }
    current.pending++;
    return { allowed: true, retryAfterSeconds: 0 };
  }

  /** Reserves a login attempt for the pair, or refuses it (one Lua script in Redis). */
  async loginAttempt(username: string, client: string): Promise<LoginAttempt> {
    const key = userKeys.loginFailures(username, client);
    const id = crypto.randomUUID();
    const [ok, waitMs] = await runAuthScript(this.#redis, "login_attempt", [key], [
      this.#now(),
      WINDOW_MS,
      this.#loginFailures,
      id,
    ]) as [number, number];
    if (ok !== 1) {
      return {
        allowed: false,
        retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)),
        succeeded: () => Promise.resolve(),
      };
    }
    return {
      allowed: true,
      retryAfterSeconds: 0,
      succeeded: async () => {
        await this.#redis.zrem(key, id);
      },
    };
  }

  /**
   * Syncs with Redis now: pushes every local count and reads back the totals of active users.
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
      try {
        await this.flush();
      } catch (err) {
        console.error("rate limiter: sync failed", err);
      }
      this.#schedule();
    }, this.#syncMs);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  async #sync(): Promise<void> {
    const now = this.#now();
    const w = Math.floor(now / WINDOW_MS);
    const batch: { user: string; window: number; count: WindowCount; pushed: number }[] = [];
    for (const [user, state] of this.#users) {
      for (const index of state.windows.keys()) {
        if (index < w - 1) state.windows.delete(index);
      }
      const active = now - state.lastSeen < ACTIVE_MS;
      if (state.windows.size === 0 && !active) {
        this.#users.delete(user);
        continue;
      }
      for (const window of [w - 1, w]) {
        let count = state.windows.get(window);
        const pending = count?.pending ?? 0;
        if (pending === 0 && !active) continue;
        if (!count) {
          count = { total: 0, inflight: 0, pending: 0 };
          state.windows.set(window, count);
        }
        count.inflight += pending;
        count.pending = 0;
        batch.push({ user, window, count, pushed: pending });
      }
    }
    if (batch.length === 0) return;

    const pipe = this.#redis.pipeline();
    for (const b of batch) {
      const key = userKeys.rate(b.user, b.window);
      if (b.pushed > 0) pipe.incrby(key, b.pushed).pexpire(key, COUNTER_TTL_MS);
      else pipe.get(key);
    }
    let results: [Error | null, unknown][] = [];
    let failure: unknown;
    try {
      results = (await pipe.exec()) ?? [];
    } catch (err) {
      failure = err;
    }
    let at = 0;
    for (const b of batch) {
      const [err, value] = results[at] ?? [failure ?? new Error("no reply"), null];
      at += b.pushed > 0 ? 2 : 1;
      b.count.inflight -= b.pushed;
      if (err) {
        b.count.pending += b.pushed; // pushed again by the next sync
        failure ??= err;
      } else {
        b.count.total = Number(value ?? 0);
      }
    }
    if (failure && !this.#failing) {
      const message = failure instanceof Error ? failure.message : String(failure);
      console.warn(`rate limiter: cannot sync with the users Redis (${message}); counting locally`);
    } else if (!failure && this.#failing) {
      console.warn("rate limiter: syncing with the users Redis again");
    }
    this.#failing = failure !== undefined;
  }
}
