import type { Context, MiddlewareHandler } from "hono";
import { describeLimit, type RateDecision, type RateLimiter } from "../../auth/rate_limit.ts";
import { type AppEnv, forwardedOf } from "../context.ts";
import { ApiError } from "../problem.ts";

/**
 * Calls that settle work already delivered: acks, nacks, visibility changes and task replies. They
 * are never counted or refused (RabbitMQ never blocks acks): refusing one would expire its receipt
 * and turn a throttle into redeliveries, duplicates and, in the end, dead letters.
 */
const SETTLING = [
  /^\/v1\/queues\/[^/]+\/(ack|nack|visibility)$/,
  /^\/v1\/topics\/[^/]+\/subscriptions\/[^/]+\/(ack|nack|visibility)$/,
  /^\/v1\/tasks\/[^/]+\/reply$/,
];

/** Whether a call settles delivered work, and so is exempt from rate limits. */
export function settlesDeliveredWork(method: string, path: string): boolean {
  return method === "POST" && SETTLING.some((p) => p.test(path));
}

/** The IETF RateLimit header fields of a decision (none for a user without a limit). */
export function rateLimitHeaders(decision: RateDecision): Record<string, string> {
  if (decision.limit === null) return {};
  return {
    "ratelimit-limit": String(decision.limit.burst),
    "ratelimit-remaining": String(decision.remaining),
    "ratelimit-reset": String(decision.resetSeconds),
  };
}

/** Builds the error a refused call throws, from the decision, its text and its headers. */
export type Refusal = (detail: string, headers: Record<string, string>) => Error;

const apiRefusal: Refusal = (detail, headers) => new ApiError(429, detail, "rate_limited", headers);

/**
 * Takes one call of the principal's bucket: resolves with the decision once the call may run (a
 * call slightly over the rate is held briefly first), or throws `refuse`'s error (429) stating the
 * limit, with Retry-After and the RateLimit fields.
 */
export async function admit(
  limiter: RateLimiter,
  c: Context<AppEnv>,
  refuse: Refusal = apiRefusal,
): Promise<RateDecision> {
  const user = c.get("principal").username;
  const decision = await limiter.take(user);
  if (!decision.allowed) {
    throw refuse(
      `rate limit of ${describeLimit(decision.limit)} for user '${user}' reached; ` +
        `retry after ${decision.retryAfterSeconds} s`,
      { ...rateLimitHeaders(decision), "retry-after": String(decision.retryAfterSeconds) },
    );
  }
  if (decision.delayMs > 0) await new Promise((r) => setTimeout(r, decision.delayMs));
  return decision;
}

/** Adds the RateLimit fields of an admitted call to its response. */
export function withRateLimitHeaders(c: Context<AppEnv>, decision: RateDecision): void {
  const headers = Object.entries(rateLimitHeaders(decision));
  if (headers.length === 0) return;
  try {
    for (const [k, v] of headers) c.res.headers.set(k, v);
  } catch {
    // Some responses carry immutable headers: copy the response once.
    const res = new Response(c.res.body, c.res);
    for (const [k, v] of headers) res.headers.set(k, v);
    c.res = res;
  }
}

/**
 * Counts a user's calls against its token bucket (cluster-wide): a call over the rate is held up
 * to the limiter's delay, then refused with 429, Retry-After and the RateLimit fields. Calls that
 * settle delivered work are never counted; a long-poll receive counts once however long it waits.
 */
export function rateLimit(limiter: RateLimiter): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (forwardedOf(c)) return next(); // counted by the node that received it
    if (settlesDeliveredWork(c.req.method, c.req.path)) return next();
    const decision = await admit(limiter, c);
    await next();
    withRateLimitHeaders(c, decision);
  };
}
