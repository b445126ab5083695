import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { BrokerError, type BrokerErrorCode, isConnectionError } from "../broker/errors.ts";

/** An RFC 9457 problem document, the one error shape of the `/v1` API. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  [extra: string]: unknown;
}

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  413: "Content Too Large",
  426: "Upgrade Required",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
  504: "Outcome Unknown",
  507: "Insufficient Storage",
};

/** The one place where a domain refusal becomes an HTTP status. */
const STATUS_OF: Record<BrokerErrorCode, ContentfulStatusCode> = {
  not_found: 404,
  already_exists: 409,
  conflict: 409,
  forbidden: 403,
  invalid: 400,
  too_large: 413,
  queue_full: 409,
  stale_receipt: 409,
  stale_epoch: 503,
  unavailable: 503,
  store_lost: 503,
  // A 503 always means "not applied"; this one means "applied here, not confirmed": it may be
  // delivered or not. Retrying a send with the same dedupId is safe either way.
  outcome_unknown: 504,
  // Not 503: a 503 means "not applied, send again soon", and clients retry it by themselves. A
  // full store stays full until consumers drain it, so the producer should hear it (RabbitMQ's
  // memory alarm). Nothing was applied; Retry-After is a hint.
  memory_full: 507,
};

/**
 * A refusal decided by the HTTP layer itself (bad credentials, rate limits). Handlers throw it;
 * toProblem renders it like every other error.
 */
export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly detail: string,
    readonly code: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.name = "ApiError";
  }
}

/** The problem document of a refusal (what `problem` sends; stream error frames carry it too). */
export function problemBody(
  status: number,
  detail: string,
  extra: Record<string, unknown> = {},
): Problem {
  return {
    type: `urn:momd:problem:${(extra.code as string | undefined) ?? status}`,
    title: TITLES[status] ?? "Error",
    status,
    detail,
    ...extra,
  };
}

/** Builds a problem+json response. */
export function problem(
  c: Context,
  status: ContentfulStatusCode,
  detail: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Response {
  const body = problemBody(status, detail, extra);
  return c.newResponse(JSON.stringify(body), status, {
    "content-type": "application/problem+json",
    ...headers,
  });
}

// host:port of a peer (IPv4, [IPv6] or a host name), and paths of two segments or more (znodes).
const ADDRESS = /\[[0-9a-fA-F:.]+\]:\d{1,5}\b|\b[a-zA-Z0-9][a-zA-Z0-9.-]*:\d{2,5}\b/g;
const PATH = /(?:\/[^\s/:]+){2,}\/?/g;

/**
 * What a client may read of a failure inside the cluster (a 5xx): the reason without the
 * internals it came with. A peer's gRPC address or a znode path says nothing a client can act
 * on and maps the cluster for anyone who asks; the node's log keeps the whole text.
 */
export function publicDetail(detail: string): string {
  return detail.split("\n")[0].replace(ADDRESS, "another node").replace(PATH, "(internal)");
}

/**
 * Whether `err` is the request body failing to arrive: a chunked body cut short or malformed,
 * the client gone while sending. That is the request's fault (400), not the node's.
 */
export function isBodyReadError(err: unknown): boolean {
  return err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Http ||
    err instanceof Deno.errors.UnexpectedEof || err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.Interrupted;
}

/** Maps any error thrown by a handler to a problem response; unknown errors are logged as 500. */
export function toProblem(err: unknown, c: Context): Response {
  if (err instanceof BrokerError) {
    const status = STATUS_OF[err.code];
    const headers: Record<string, string> = {};
    let detail = err.detail;
    if (status === 503 || status === 504 || status === 507) {
      headers["retry-after"] = String(err.retryAfterSeconds ?? 1);
      detail = publicDetail(detail);
      if (detail !== err.detail) c.set("failure", err.detail);
    }
    return problem(c, status, detail, { code: err.code }, headers);
  }
  if (err instanceof ApiError) {
    return problem(c, err.status, err.detail, { code: err.code }, err.headers);
  }
  if (err instanceof HTTPException) {
    const status = err.status as ContentfulStatusCode;
    const headers: Record<string, string> = {};
    err.res?.headers.forEach((v, k) => {
      if (k.toLowerCase() !== "content-type") headers[k] = v;
    });
    return problem(c, status, err.message || TITLES[status] || "error", {}, headers);
  }
  if (isConnectionError(err)) {
    return problem(c, 503, "a store this node depends on is unreachable; try again", {
      code: "unavailable",
    }, { "retry-after": "1" });
  }
  if (isBodyReadError(err)) {
    return problem(c, 400, "the request body could not be read (cut short or malformed)", {
      code: "invalid",
    });
  }
  c.set("failure", err); // logged with the request (middleware/observe.ts)
  return problem(c, 500, "internal error");
}
