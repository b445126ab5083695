import type { Redis } from "ioredis";
import type { RateDecision, RateLimiter } from "./rate_limit.ts";

/** Placeholder: allows everything until the cluster-wide limiter is implemented. */
export class RedisRateLimiter implements RateLimiter {
  constructor(_redis: Redis, _opts: { perMinute: number; loginFailuresPerMinute: number }) {}
  take(_user: string): RateDecision {
    return { allowed: true, retryAfterSeconds: 0 };
  }
  close(): void {}
}
