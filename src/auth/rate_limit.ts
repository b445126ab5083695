/** Decision of a rate limiter for one call. */
export interface RateDecision {
  allowed: boolean;
  /** Seconds until a call would be allowed again (when refused). */
  retryAfterSeconds: number;
}

/** Counts calls per user, and failed logins per username and client, across the cluster. */
export interface RateLimiter {
  /** Takes one call from the user's budget (decided locally: no round trip per request). */
  take(user: string): RateDecision;
  /** Whether another login attempt for this username from this client is allowed. */
  loginAllowed?(username: string, client: string): Promise<RateDecision>;
  /** Counts a failed login. */
  loginFailed?(username: string, client: string): Promise<void>;
}

/** A limiter that allows everything (placeholder until the Redis-backed one lands). */
export const unlimited: RateLimiter = { take: () => ({ allowed: true, retryAfterSeconds: 0 }) };
