/** Decision of a rate limiter for one call. */
export interface RateDecision {
  allowed: boolean;
  /** Seconds until a call would be allowed again (when refused; 0 when allowed). */
  retryAfterSeconds: number;
}

/**
 * A reserved login attempt. It counts as a failure for its (username, client) pair unless
 * `succeeded()` is called after the password proved right.
 */
export interface LoginAttempt extends RateDecision {
  /** Takes this attempt back out of the failure count (a no-op when it was refused). */
  succeeded(): Promise<void>;
}

/** Counts calls per user, and failed logins per username and client, across the cluster. */
export interface RateLimiter {
  /** Takes one call from the user's budget (decided locally: no round trip per request). */
  take(user: string): RateDecision;
  /**
   * Reserves one login attempt for this username from this client, or refuses it once
   * `loginFailuresPerMinute` attempts of the pair failed (or are still running) within the last
   * minute. Refused attempts must not check the password at all.
   */
  loginAttempt(username: string, client: string): Promise<LoginAttempt>;
}

/** A limiter that allows everything (tools and tests that do not exercise limits). */
export const unlimited: RateLimiter = {
  take: () => ({ allowed: true, retryAfterSeconds: 0 }),
  loginAttempt: () =>
    Promise.resolve({ allowed: true, retryAfterSeconds: 0, succeeded: () => Promise.resolve() }),
};
