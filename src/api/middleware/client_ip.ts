import type { Context, MiddlewareHandler } from "hono";
import { normalizeAddress, trustedProxyMatcher } from "../../config/addresses.ts";
import type { AppEnv } from "../context.ts";

/** Options of clientIp. */
export interface ClientIpOptions {
  /** The direct peer's address; by default the Deno connection's (`getConnInfo`). */
  peerAddress?: (c: Context) => string | undefined;
}

/** At most this many X-Forwarded-For hops are looked at, from the right. */
const MAX_HOPS = 32;
/** Addresses remembered with their verdict (a node sees the same few peers and proxies). */
const MEMO_SIZE = 1024;
/** Longer entries are never remembered (no address is this long). */
const MEMO_KEY_MAX = 64;

/**
 * The TCP peer Deno.serve passed as the env. Read without getConnInfo, which throws when there
 * is no connection (forwarded requests, app.request() in tests): an exception per request.
 */
function connectionPeer(c: Context): string | undefined {
  const env = c.env as { remoteAddr?: { hostname?: string } } | undefined;
  return env?.remoteAddr?.hostname;
}

/** An address as written, normalised (null: not an address), and whether it is a trusted proxy. */
interface Verdict {
  address: string | null;
  trusted: boolean;
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
  const isTrusted = trustedProxies.length > 0 ? trustedProxyMatcher(trustedProxies) : null;
  const peerOf = opts.peerAddress ?? connectionPeer;
  // Normalising and matching cost a few regular expressions and a BlockList lookup: once per
  // address, not per request.
  const memo = new Map<string, Verdict>();
  const verdict = (raw: string): Verdict => {
    const known = memo.get(raw);
    if (known) return known;
    const address = normalizeAddress(raw);
    const v = { address, trusted: address !== null && isTrusted !== null && isTrusted(address) };
    if (raw.length <= MEMO_KEY_MAX) {
      if (memo.size >= MEMO_SIZE) memo.clear();
      memo.set(raw, v);
    }
    return v;
  };
  return async (c, next) => {
    const raw = peerOf(c);
    let ip = "unknown";
    if (raw) {
      const peer = verdict(raw);
      ip = peer.address ?? raw;
      if (peer.trusted) {
        const hops = (c.req.header("x-forwarded-for") ?? "").split(",").slice(-MAX_HOPS);
        for (let i = hops.length - 1; i >= 0; i--) {
          if (hops[i].trim() === "") continue;
          const hop = verdict(hops[i]);
          if (!hop.address) break;
          ip = hop.address;
          if (!hop.trusted) break;
        }
      }
    }
    c.set("clientIp", ip);
    await next();
  };
}
