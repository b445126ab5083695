import type { MiddlewareHandler } from "hono";
import type { RateLimiter } from "../../auth/rate_limit.ts";
import { type AppEnv, forwardedOf } from "../context.ts";
import { problem } from "../problem.ts";

/** Refuses a user's call with 429 and Retry-After once its cluster-wide budget is spent. */
export function rateLimit(limiter: RateLimiter): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (forwardedOf(c)) return next(); // counted by the node that received it
    const decision = limiter.take(c.get("principal").username);
    if (!decision.allowed) {
      return problem(c, 429, "rate limit exceeded", { code: "rate_limited" }, {
        "retry-after": String(Math.max(1, Math.ceil(decision.retryAfterSeconds))),
      });
    }
    await next();
  };
}
