import type { MiddlewareHandler } from "hono";
import { getConnInfo } from "hono/deno";
import type { AppEnv } from "../context.ts";

/**
 * Sets the client's address. X-Forwarded-For is believed only when the direct peer is a trusted
 * proxy; then the rightmost address that is not itself a trusted proxy is the client.
 */
export function clientIp(trustedProxies: readonly string[]): MiddlewareHandler<AppEnv> {
  const trusted = new Set(trustedProxies);
  return async (c, next) => {
    let peer = "unknown";
    try {
      peer = getConnInfo(c).remote.address ?? "unknown";
    } catch {
      // app.request() in tests has no connection.
    }
    let ip = peer;
    if (trusted.has(peer)) {
      const hops = (c.req.header("x-forwarded-for") ?? "").split(",").map((h) => h.trim())
        .filter((h) => h !== "");
      while (hops.length > 0) {
        const hop = hops.pop()!;
        ip = hop;
        if (!trusted.has(hop)) break;
      }
    }
    c.set("clientIp", ip);
    await next();
  };
}
