import { z } from "@hono/zod-openapi";
import { NAME_PATTERN } from "../../broker/keys.ts";

/** The problem+json body every error carries. */
export const ProblemSchema = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  code: z.string().optional(),
}).openapi("Problem");

/** The rule every queue, topic and subscription name follows, as the API states it. */
export const NAME_RULE = "must be 1-128 characters of a-z, A-Z, 0-9, '_' and '-'";

/**
 * Name of a queue, topic or subscription. The owner-routing middleware checks a path's name
 * with this same schema before the name reaches ZooKeeper, a store or another node.
 */
export const EntityName = z.string().regex(NAME_PATTERN, NAME_RULE);

/**
 * A path segment decoded (percent-escapes), or null when it is not valid UTF-8 escaping
 * (`%FF`, `%C0%AF`, a lone surrogate `%ED%A0%80`): such a segment names nothing.
 */
export function decodeSegment(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

/** Pagination and prefix filter of listings. */
export const ListQuery = z.object({
  prefix: z.string().max(128).optional().openapi({ description: "only names starting with this" }),
  after: z.string().max(128).optional().openapi({
    description: "the last name of the page before",
  }),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
}).strict();

/** What an error status tells a client, where it says more than "problem". */
const ERROR_MEANINGS: Record<number, string> = {
  503:
    "not applied (no owner reachable now, too few in-sync copies, a store that lost its data): " +
    "send the request again after Retry-After",
  504:
    "outcome unknown: a change was made but not confirmed by enough copies in time, or the node " +
    "serving it stopped answering; it may or may not last (retry a send with the same dedupId)",
};

/** Responses every authenticated route may give, for the OpenAPI document. */
export function errorResponses(...statuses: number[]) {
  const out: Record<
    number,
    { description: string; content: Record<string, { schema: typeof ProblemSchema }> }
  > = {};
  for (const s of [400, 401, 429, ...statuses, 503, 504]) {
    out[s] = {
      description: ERROR_MEANINGS[s] ?? "problem",
      content: { "application/problem+json": { schema: ProblemSchema } },
    };
  }
  return out;
}

/** A JSON response of a route (createRoute's `responses`). */
export function json<T extends z.ZodType>(
  schema: T,
  description: string,
): { description: string; content: { "application/json": { schema: T } } } {
  return { description, content: { "application/json": { schema } } };
}

/** A JSON request body of a route (spread into createRoute's `request`); required by default. */
export function body<T extends z.ZodType>(
  schema: T,
  required = true,
): { body: { content: { "application/json": { schema: T } }; required: boolean } } {
  return { body: { content: { "application/json": { schema } }, required } };
}

/** Marks a route as needing a bearer token in the OpenAPI document. */
export const bearer = [{ bearer: [] }];
