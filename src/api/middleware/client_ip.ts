import type { Context, MiddlewareHandler } from "hono";
import { getConnInfo } from "hono/deno";
import { normalizeAddress, trustedProxyMatcher } from "../../config/addresses.ts";
import type { AppEnv } from "../context.ts";

/** Options of clientIp. */
export interface ClientIpOptions {
  /** The direct peer's address; by default the Deno connection's (`getConnInfo`). */
  peerAddress?: (c: Context) => string | undefined;
}

/** At most this many X-Forwarded-For hops are looked at, from the right. */
const MAX_HOPS = 32;

function connectionPeer(c: Context): string | undefined {
  try {
    return getConnInfo(c).remote.address;
  } catch {
    return undefined; // no connection (app.request() without an env in tests)
  }
}

/**
 * Sets `clientIp` on the context: the direct peer's address, unless that peer is a trusted proxy
 * (an address or CIDR range of `trustedProxies`). Then X-Forwarded-For is read from the right:
 * trusted hops are skipped and the first untrusted hop is the client (entries further left were
 * written by the client itself and prove nothing). If every hop is trusted, the leftmost is the
 * client; an entry that is not an address stops the walk at the last trusted hop. With no
 * connection information the address is `unknown`.
 */
export function clientIp(
  trustedProxies: readonly string[],
  opts: ClientIpOptions = {},
): MiddlewareHandler<AppEnv> {
  const isTrusted = trustedProxyMatcher(trustedProxies);
  const peerOf = opts.peerAddress ?? connectionPeer;
  return async (c, next) => {
    const raw = peerOf(c);
    const peer = raw ? normalizeAddress(raw) ?? raw : "unknown";
    let ip = peer;
    if (isTrusted(peer)) {
      const hops = (c.req.header("x-forwarded-for") ?? "").split(",").slice(-MAX_HOPS);
      for (let i = hops.length - 1; i >= 0; i--) {
        if (hops[i].trim() === "") continue;
        const hop = normalizeAddress(hops[i]);
        if (!hop) break;
        ip = hop;
        if (!isTrusted(hop)) break;
      }
    }
    c.set("clientIp", ip);
    await next();
  };
}
