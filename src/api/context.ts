import type { Context } from "hono";
import type { Principal } from "../auth/users.ts";

/** Variables the middleware puts on a request's context. */
export interface AppEnv {
  Variables: {
    principal: Principal;
    clientIp: string;
    /** The request's id (X-Request-Id). */
    reqId: string;
    /** The owner this node forwarded the request to, when it did. */
    forwardedTo?: string;
    /** What went wrong inside, for the access log (never in the answer). */
    failure?: unknown;
  };
}

/** What the gRPC server passes as the app's env for a request another node forwarded. */
export interface ForwardedEnv {
  forwarded: { principal: Principal | null };
}

/**
 * The principal another node authenticated, when this request was forwarded to this node over
 * the authenticated gRPC channel (never settable by an HTTP client: it is not a header).
 */
export function forwardedOf(c: Context): ForwardedEnv["forwarded"] | undefined {
  const env = c.env as Partial<ForwardedEnv> | undefined;
  return env && typeof env === "object" && "forwarded" in env ? env.forwarded : undefined;
}

/**
 * The request's abort signal when the request may wait (a long poll), otherwise undefined. The
 * signal aborts when the client goes away (deno.json opts out of Deno's legacy mode, in which it
 * also aborted after every successful response). Deno.serve builds it, and starts watching the
 * connection for a cancel, on first access: a request that answers at once has no wait to cut
 * short, so it never touches the signal.
 */
export function longPollSignal(
  c: Context,
  waitSeconds: number | undefined,
): AbortSignal | undefined {
  return waitSeconds ? c.req.raw.signal : undefined;
}
