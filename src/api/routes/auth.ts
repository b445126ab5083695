import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
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
  method: "post",
  path: "/v1/auth/token",
  tags: ["auth"],
  summary: "Log in: exchange a username and password for an access token",
  request: { body: { content: { "application/json": { schema: Credentials } }, required: true } },
  responses: {
    200: { description: "a token", content: { "application/json": { schema: Token } } },
    ...errorResponses(),
  },
});

const me = createRoute({
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

/** Login and identity routes. */
export function registerAuthRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(issueToken, async (c) => {
    const { username, password } = c.req.valid("json");
    const client = c.get("clientIp");
    const gate = await deps.limiter.loginAllowed?.(username, client);
    if (gate && !gate.allowed) {
      throw new ApiError(429, "too many failed logins; try again later", "rate_limited", {
        "retry-after": String(Math.max(1, Math.ceil(gate.retryAfterSeconds))),
      });
    }
    const found = await deps.users.authenticate(username, password);
    if (!found) {
      await deps.limiter.loginFailed?.(username, client);
      throw new ApiError(401, "invalid username or password", "bad_credentials");
    }
    return c.json(await deps.tokens.issue(found.user, found.tokenVersion), 200);
  });

  app.openapi(me, (c) => c.json(c.get("principal"), 200));
}
