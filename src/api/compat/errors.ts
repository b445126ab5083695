/**
 * The one place where errors of the compatibility API become HTTP, in the shapes the earlier
 * FastAPI server used: `{"detail": "<text>"}` for HTTP-level refusals, `{"detail": [{loc, msg,
 * type, input}]}` with 422 for a request that fails validation (pydantic v2 wording), and HTTP 200
 * `{"success": false, "message": "..."}` for a refused domain operation (not found, already
 * exists, not allowed, ...), since that API reported those in the body.
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { ZodError } from "zod";
import { BROKER_ERROR_CODES, BrokerError, isConnectionError } from "../../broker/errors.ts";
import { isBodyReadError, publicDetail } from "../problem.ts";

/** An HTTP-level refusal of the compatibility API, rendered as `{"detail": ...}`. */
export class CompatHttpError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly detail: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.name = "CompatHttpError";
  }
}

/** One entry of a FastAPI validation error. */
export interface ValidationDetail {
  loc: (string | number)[];
  msg: string;
  type: string;
  input?: unknown;
  ctx?: Record<string, unknown>;
}

/** The body of a domain outcome: `success` and a message (or the received message). */
export interface Outcome {
  success: boolean;
  message: string | null;
}

/** A FastAPI `{"detail": ...}` response. */
export function detailResponse(
  c: Context,
  status: ContentfulStatusCode,
  detail: string | ValidationDetail[],
  headers: Record<string, string> = {},
): Response {
  return c.json({ detail }, status, headers);
}

/** Where a validation target sits in FastAPI's `loc`. */
const LOC_OF: Record<string, string> = {
  json: "body",
  query: "query",
  param: "path",
  header: "header",
  cookie: "cookie",
  form: "body",
};

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let v = data;
  for (const p of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

/** How deep an echoed input goes: a 20,000-deep body must not blow the stack on the way out. */
const ECHO_DEPTH = 8;
/** How many entries of an array or object, and characters of a string, an echo keeps. */
const ECHO_ENTRIES = 64;
const ECHO_CHARS = 1024;

/** The input as a validation error echoes it: deep, wide or long values cut short. */
function echo(value: unknown, depth = 0): unknown {
  if (typeof value === "string") {
    return value.length > ECHO_CHARS ? `${value.slice(0, ECHO_CHARS)}...` : value;
  }
  if (value === null || typeof value !== "object") return value;
  if (depth >= ECHO_DEPTH) return Array.isArray(value) ? ["..."] : { "...": "..." };
  if (Array.isArray(value)) {
    const kept = value.slice(0, ECHO_ENTRIES).map((v) => echo(v, depth + 1));
    return value.length > ECHO_ENTRIES ? [...kept, "..."] : kept;
  }
  const entries = Object.entries(value as Record<string, unknown>);
  const out: Record<string, unknown> = {};
  for (const [k, v] of entries.slice(0, ECHO_ENTRIES)) out[k] = echo(v, depth + 1);
  if (entries.length > ECHO_ENTRIES) out["..."] = "...";
  return out;
}

/** Turns zod issues into pydantic-v2-style entries (the wording the earlier clients saw). */
export function validationDetails(
  error: ZodError,
  target: string,
  data: unknown,
): ValidationDetail[] {
  const where = LOC_OF[target] ?? target;
  return error.issues.map((issue): ValidationDetail => {
    const path = issue.path.map((p) => typeof p === "number" ? p : String(p));
    const loc = [where, ...path];
    const input = echo(valueAt(data, issue.path));
    const i = issue as unknown as Record<string, unknown>;
    switch (issue.code) {
      case "invalid_type": {
        if (input === undefined) {
          return { loc, msg: "Field required", type: "missing", input: echo(data) };
        }
        if (i.expected === "object") {
          return {
            loc,
            msg: "Input should be a valid dictionary or object to extract fields from",
            type: "model_attributes_type",
            input,
          };
        }
        const expected = String(i.expected);
        return { loc, msg: `Input should be a valid ${expected}`, type: `${expected}_type`, input };
      }
      case "too_small":
        return {
          loc,
          msg: `String should have at least ${i.minimum} character${i.minimum === 1 ? "" : "s"}`,
          type: "string_too_short",
          input,
          ctx: { min_length: i.minimum },
        };
      case "too_big":
        return {
          loc,
          msg: `String should have at most ${i.maximum} character${i.maximum === 1 ? "" : "s"}`,
          type: "string_too_long",
          input,
          ctx: { max_length: i.maximum },
        };
      case "invalid_format": {
        const pattern = String(i.pattern ?? "").replace(/^\/(.*)\/[a-z]*$/, "$1");
        return {
          loc,
          msg: `String should match pattern '${pattern}'`,
          type: "string_pattern_mismatch",
          input,
          ctx: { pattern },
        };
      }
      case "invalid_value": {
        const values = (i.values as unknown[] | undefined) ?? [];
        const quoted = values.map((v) => `'${String(v)}'`);
        const expected = quoted.length > 1
          ? `${quoted.slice(0, -1).join(", ")} or ${quoted[quoted.length - 1]}`
          : quoted.join("");
        return {
          loc,
          msg: `Input should be ${expected}`,
          type: "literal_error",
          input,
          ctx: { expected },
        };
      }
      default:
        return { loc, msg: issue.message, type: "value_error", input };
    }
  });
}

/** zod-openapi hook: an invalid request is a FastAPI 422 listing every issue. */
export function compatValidationHook(
  result: { success: true } | { success: false; error: ZodError; target?: string; data?: unknown },
  c: Context,
): Response | undefined {
  if (result.success) return undefined;
  return detailResponse(
    c,
    422,
    validationDetails(result.error, result.target ?? "json", result.data),
  );
}

/**
 * Domain refusals: reported as HTTP 200 `success: false`, like the earlier server did. The
 * others (stale_epoch, unavailable) mean this node cannot serve the entity now: 503.
 */
const DOMAIN_CODES = new Set<string>(
  BROKER_ERROR_CODES.filter((code) => code !== "stale_epoch" && code !== "unavailable"),
);

/** Codes of failures inside the cluster, whose details may name internals. */
const INTERNAL_CODES = new Set<string>([
  "stale_epoch",
  "unavailable",
  "store_lost",
  "outcome_unknown",
]);

/** A refused outcome (HTTP 200) with a message. */
export function refused(message: string): Outcome {
  return { success: false, message };
}

/**
 * Renders any error a compatibility route throws (its app's onError): domain refusals as 200
 * `success: false`, HTTP-level refusals as `{"detail"}`, a body that is not JSON as 422, a node
 * that cannot serve the entity right now as 503 with Retry-After, anything else as 500.
 */
export function toCompatResponse(err: unknown, c: Context): Response {
  if (err instanceof CompatHttpError) return detailResponse(c, err.status, err.detail, err.headers);
  if (err instanceof BrokerError) {
    // A failure inside the cluster keeps its reason but not its internals (publicDetail).
    const detail = INTERNAL_CODES.has(err.code) ? publicDetail(err.detail) : err.detail;
    if (detail !== err.detail) c.set("failure", err.detail);
    if (DOMAIN_CODES.has(err.code)) return c.json(refused(detail), 200);
    return detailResponse(c, 503, detail, {
      "retry-after": String(err.retryAfterSeconds ?? 1),
    });
  }
  if (isConnectionError(err)) {
    return detailResponse(c, 503, "a store this node depends on is unreachable; try again", {
      "retry-after": "1",
    });
  }
  if (err instanceof HTTPException) {
    // The body validator's refusals (malformed JSON, not JSON at all) are FastAPI's 422.
    if (err.status === 400 || err.status === 415) {
      return detailResponse(c, 422, [{
        loc: ["body", 0],
        msg: "JSON decode error",
        type: "json_invalid",
        ctx: { error: err.message || "invalid JSON" },
      }]);
    }
    const status = err.status as ContentfulStatusCode;
    return detailResponse(c, status, err.message || "Error");
  }
  if (isBodyReadError(err)) return detailResponse(c, 400, "There was an error parsing the body");
  c.set("failure", err); // logged with the request (middleware/observe.ts)
  return detailResponse(c, 500, "Internal Server Error");
}
