import type { MiddlewareHandler } from "hono";
import { TokenError, type TokenService } from "../../auth/tokens.ts";
import { type AppEnv, forwardedOf } from "../context.ts";
import { problem } from "../problem.ts";

/** Requires a valid bearer token and puts its principal on the context. */
export function requireAuth(tokens: TokenService): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const forwarded = forwardedOf(c);
    const header = c.req.header("authorization") ?? "";
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!forwarded?.principal && !match) {
      return problem(c, 401, "missing bearer token", { code: "unauthenticated" }, {
        "www-authenticate": 'Bearer realm="momd"',
      });
    }
    try {
      if (forwarded?.principal) {
        // Another node verified the token and sent the caller over the authenticated channel;
        // the user may have been deleted since.
        await tokens.checkForwarded(forwarded.principal);
        c.set("principal", forwarded.principal);
      } else {
        c.set("principal", await tokens.verify(match![1]));
      }
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      return problem(c, 401, err.message, { code: `token_${err.reason}` }, {
        "www-authenticate": `Bearer realm="momd", error="invalid_token"`,
      });
    }
    await next();
  };
}

/** Requires the admin role (after requireAuth). */
export function requireAdmin(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (c.get("principal").role !== "admin") {
      return problem(c, 403, "this operation needs the admin role", { code: "forbidden" });
    }
    await next();
  };
}
