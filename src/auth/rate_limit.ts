/**
 * A user's request rate: a token bucket that refills `requestsPerSecond` tokens a second up to
 * `burst`; every counted call takes one token. `null` is no limit at all.
 */
export type RateLimit = { requestsPerSecond: number; burst: number } | null;

/** Decision of a rate limiter for one call. */
export interface RateDecision {
  allowed: boolean;
  /** Seconds until a call would be allowed again (when refused; 0 when allowed). */
  retryAfterSeconds: number;
  /**
   * When allowed on credit: how long to hold the call before serving it (Kafka's quota delay), so
   * a client slightly over its rate slows down instead of seeing errors. 0 otherwise.
   */
  delayMs: number;
  /** The limit the call was measured against (null: the user is not limited). */
  limit: RateLimit;
  /** Whole tokens left in the bucket after this call (0 when refused or on credit). */
  remaining: number;
  /** Seconds until the bucket is full again, for the `RateLimit-Reset` header. */
  resetSeconds: number;
}

/**
 * A reserved login attempt. It counts as a failure for its username, client address and the
 * cluster unless `succeeded()` is called after the password proved right.
 */
export interface LoginAttempt {
  allowed: boolean;
  /** Seconds until an attempt would be allowed again (when refused). */
  retryAfterSeconds: number;
  /** What refused it: the (username, client) pair, the client address, or the cluster bound. */
  refusedBy?: "pair" | "address" | "cluster";
  /** Takes this attempt back out of the failure counts (a no-op when it was refused). */
  succeeded(): Promise<void>;
}

/** Counts calls per user, and failed logins per username, client and cluster. */
export interface RateLimiter {
  /**
   * Takes one call from the user's bucket, decided locally: no round trip per request (only the
   * first call of a user new to the node waits for its bucket).
   */
  take(user: string): Promise<RateDecision>;
  /**
   * Reserves one login attempt for this username from this client, or refuses it: once the pair,
   * the client address or (for addresses that failed recently) the whole cluster reached its
   * failed-login bound within the last minute. Refused attempts must not check the password.
   */
  loginAttempt(username: string, client: string): Promise<LoginAttempt>;
}

const FREE: RateDecision = {
  allowed: true,
  retryAfterSeconds: 0,
  delayMs: 0,
  limit: null,
  remaining: 0,
  resetSeconds: 0,
};

/** A limiter that allows everything (tools and tests that do not exercise limits). */
export const unlimited: RateLimiter = {
  take: () => Promise.resolve(FREE),
  loginAttempt: () =>
    Promise.resolve({ allowed: true, retryAfterSeconds: 0, succeeded: () => Promise.resolve() }),
};

/** The decision for a user without a limit. */
export function unlimitedDecision(): RateDecision {
  return FREE;
}

/** Short text of a limit for messages and the CLI: "200 requests/s (burst 400)" or "no limit". */
export function describeLimit(limit: RateLimit): string {
  if (limit === null) return "no limit";
  return `${limit.requestsPerSecond} requests/s (burst ${limit.burst})`;
}

/** A limit from settings: 0 requests/s is no limit; the burst defaults to two seconds' worth. */
export function rateLimitOf(requestsPerSecond: number, burst?: number): RateLimit {
  if (requestsPerSecond <= 0) return null;
  return { requestsPerSecond, burst: burst ?? Math.max(1, Math.ceil(2 * requestsPerSecond)) };
}
