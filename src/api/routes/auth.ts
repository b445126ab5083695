import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { checkPassword, LoginRefused } from "../../auth/login.ts";
import type { ApiDeps } from "../app.ts";
import type { AppEnv } from "../context.ts";
import { ApiError } from "../problem.ts";
import { bearer, errorResponses } from "../schemas/common.ts";

const Credentials = z.object({
  username: z.string().min(1).max(64),
  password: z.string().min(1).max(1024),
}).strict().openapi("Credentials");

const Token = z.object({
  token: z.string(),
  expiresAt: z.string().openapi({ format: "date-time" }),
}).openapi("Token");

const Me = z.object({
  username: z.string(),
  role: z.enum(["admin", "user"]),
}).openapi("Me");

const issueToken = createRoute({
  operationId: "issueToken",
  method: "post",
  path: "/v1/auth/token",
  tags: ["auth"],
  summary: "Log in: exchange a username and password for an access token",
  description: "Failed logins are limited per username and client address: after the configured " +
    "number of failures within a minute, every attempt of that pair (even with the right " +
    "password) is refused with 429 and Retry-After.",
  request: { body: { content: { "application/json": { schema: Credentials } }, required: true } },
  responses: {
    200: { description: "a token", content: { "application/json": { schema: Token } } },
    ...errorResponses(),
  },
});

const me = createRoute({
  operationId: "getCurrentUser",
  method: "get",
  path: "/v1/auth/me",
  tags: ["auth"],
  summary: "Who the token belongs to",
  security: bearer,
  responses: {
    200: { description: "the caller", content: { "application/json": { schema: Me } } },
    ...errorResponses(),
  },
});

/**
 * Turns a refused password check into its HTTP error: throttled is 429 with Retry-After, a wrong
 * password is `badStatus` (401 at login; 403 for a wrong current password of a logged-in user).
 * Any other error is returned unchanged.
 */
export function loginRefusal(err: unknown, badStatus: 401 | 403): unknown {
  if (!(err instanceof LoginRefused)) return err;
  if (err.reason === "throttled") {
    return new ApiError(429, err.message, "rate_limited", {
      "retry-after": String(Math.max(1, Math.ceil(err.retryAfterSeconds))),
    });
  }
  return new ApiError(
    badStatus,
    badStatus === 401 ? err.message : "the current password is wrong",
    "bad_credentials",
  );
}

/** Login and identity routes. */
export function registerAuthRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(issueToken, async (c) => {
    const { username, password } = c.req.valid("json");
    try {
      const found = await checkPassword(deps, { username, password, client: c.get("clientIp") });
      return c.json(await deps.tokens.issue(found.user, found.tokenVersion), 200);
    } catch (err) {
      throw loginRefusal(err, 401);
    }
  });

  app.openapi(me, (c) => {
    const { username, role } = c.get("principal"); // not the token version it carries
    return c.json({ username, role }, 200);
  });
}
