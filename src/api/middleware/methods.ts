import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../context.ts";
import { problem } from "../problem.ts";

/** The methods the APIs serve on some route; any other is refused before anything else runs. */
export const SERVED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

const SERVED = new Set(SERVED_METHODS);

/**
 * Refuses TRACE, CONNECT and unknown methods (`FOO`) with 405, before authentication, routing
 * or a forward: such a request has no route anywhere, and a forward of it to the owner failed
 * there (the answer named the peer). `compatPath`: paths answered in the compatibility API's
 * own shape (`{"detail": ...}`).
 */
export function allowedMethods(compatPath: (path: string) => boolean): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (SERVED.has(c.req.method)) return await next();
    const allow = { allow: SERVED_METHODS.join(", ") };
    if (compatPath(c.req.path)) {
      return c.json({ detail: "Method Not Allowed" }, 405, allow);
    }
    return problem(c, 405, `method ${c.req.method} is not allowed`, {}, allow);
  };
}
