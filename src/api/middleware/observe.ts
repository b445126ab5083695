import type { MiddlewareHandler } from "hono";
import { type AppEnv, forwardedOf } from "../context.ts";
import type { Logger } from "../../log/logger.ts";
import type { Metrics } from "../../metrics/metrics.ts";

/** Header carrying a request's id: taken from the caller (NGINX, a peer), else made here. */
export const REQUEST_ID_HEADER = "x-request-id";

// An id from outside is kept only when it is short and plain: it goes into every log line.
const SANE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The request's id: the caller's when it sent a sane one, else a new one. */
export function requestIdOf(header: string | undefined): string {
  return header !== undefined && SANE_ID.test(header) ? header : crypto.randomUUID();
}

/**
 * First middleware of every request: gives it an id (`reqId`, returned in `X-Request-Id` and
 * carried through forwards, since forwards copy the request's headers), counts and times it by
 * route pattern, and writes the access log line of answers with a 4xx or 5xx status (2xx and
 * 3xx are what the metrics count; a line each would cost more than the request).
 *
 * A request forwarded to its entity's owner is counted by the owner, which knows its route;
 * the node that forwarded it counts the forward (momd_forwards_total), so each client request
 * appears once in momd_http_requests_total across the cluster.
 */
export function observe(opts: { log: Logger; metrics?: Metrics }): MiddlewareHandler<AppEnv> {
  const { log, metrics } = opts;
  return async (c, next) => {
    const started = performance.now();
    const reqId = requestIdOf(c.req.header(REQUEST_ID_HEADER));
    c.set("reqId", reqId);
    await next();
    const status = c.res.status;
    try {
      c.res.headers.set(REQUEST_ID_HEADER, reqId);
    } catch {
      // An upgraded WebSocket's response has immutable headers; its id is in the log.
    }
    const seconds = (performance.now() - started) / 1000;
    const forwardedTo = c.get("forwardedTo");
    if (metrics && forwardedTo === undefined) {
      const route = c.req.routePath;
      const method = c.req.method;
      metrics.httpRequests.labels(method, route, String(status)).inc();
      metrics.httpDuration.labels(method, route).observe(seconds);
      if (status === 429) {
        metrics.rateLimited.labels(route === "/v1/auth/token" ? "login" : "request").inc();
      }
    }
    if (status < 400) return;
    const line = {
      reqId,
      method: c.req.method,
      path: c.req.path,
      status,
      ms: Math.round(seconds * 10_000) / 10,
      user: c.get("principal")?.username,
      client: forwardedOf(c) ? undefined : c.get("clientIp"),
      forwarded: forwardedOf(c) ? true : undefined,
      forwardedTo,
      err: c.get("failure"),
    };
    if (status >= 500) log.error(line, "request failed");
    else log.info(line, "request refused");
  };
}
