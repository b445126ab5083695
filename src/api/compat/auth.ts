/**
 * Authentication, the admin check and the per-user rate limit of the compatibility API, with the
 * earlier FastAPI server's answers (its HTTPBearer dependency and its own token checks). The
 * token service and the limiter are momd's own: tokens work on both APIs, and a user's calls on
 * both count against one cluster-wide budget.
 */
import type { MiddlewareHandler } from "hono";
import { TokenError, type TokenService } from "../../auth/tokens.ts";
import type { RateLimiter } from "../../auth/rate_limit.ts";
import { type AppEnv, forwardedOf } from "../context.ts";
import { admit, withRateLimitHeaders } from "../middleware/rate_limit.ts";
import { CompatHttpError } from "./errors.ts";

/**
 * Requires `Authorization: Bearer <token>`: none (or no credentials) is 403 "Not authenticated",
 * another scheme 403 "Invalid authentication credentials" (FastAPI's HTTPBearer); an expired
 * token is 401 "Token has expired", any other bad token (forged, malformed, revoked by a deleted
 * user or a password change) 401 "Invalid token". Sets the principal on the context.
 */
export function compatAuth(tokens: TokenService): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const forwarded = forwardedOf(c);
    if (forwarded?.principal) {
      // Another node verified the token and sent the caller over the authenticated channel;
      // the user may have been deleted since.
      try {
        await tokens.checkForwarded(forwarded.principal);
      } catch (err) {
        if (!(err instanceof TokenError)) throw err;
        throw new CompatHttpError(401, "Invalid token");
      }
      c.set("principal", forwarded.principal);
      return next();
    }
    const header = (c.req.header("authorization") ?? "").trim();
    const space = header.indexOf(" ");
    const scheme = space < 0 ? header : header.slice(0, space);
    const credentials = space < 0 ? "" : header.slice(space + 1).trim();
    if (!scheme || !credentials) throw new CompatHttpError(403, "Not authenticated");
    if (scheme.toLowerCase() !== "bearer") {
      throw new CompatHttpError(403, "Invalid authentication credentials");
    }
    try {
      c.set("principal", await tokens.verify(credentials));
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      throw new CompatHttpError(
        401,
        err.reason === "expired" ? "Token has expired" : "Invalid token",
      );
    }
    await next();
  };
}

/** Requires the admin role (after compatAuth): otherwise 403 "Forbidden: access denied". */
export function compatAdmin(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (c.get("principal").role !== "admin") {
      throw new CompatHttpError(403, "Forbidden: access denied");
    }
    await next();
  };
}

/** Takes one call from the user's cluster-wide bucket (after compatAuth); over it: 429. */
export function compatRateLimit(limiter: RateLimiter): MiddlewareHandler<AppEnv> {
  const refuse = (_detail: string, headers: Record<string, string>) =>
    new CompatHttpError(429, "Too many requests.", headers);
  return async (c, next) => {
    if (forwardedOf(c)) return next(); // counted by the node that received it
    const decision = await admit(limiter, c, refuse);
    await next();
    withRateLimitHeaders(c, decision);
  };
}
