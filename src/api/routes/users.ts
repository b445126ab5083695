import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { checkPassword } from "../../auth/login.ts";
import { BrokerError } from "../../broker/errors.ts";
import { type RateLimit, rateLimitOf } from "../../auth/rate_limit.ts";
import type { ApiDeps } from "../app.ts";
import type { AppEnv } from "../context.ts";
import { requireAdmin } from "../middleware/auth.ts";
import { bearer, errorResponses } from "../schemas/common.ts";
import {
  CreateUserBody,
  PasswordChangeBody,
  RateLimitBody,
  RateLimitSettingSchema,
  UserListQuery,
  UserPageSchema,
  UserParams,
  UserSchema,
} from "../schemas/users.ts";
import { loginRefusal } from "./auth.ts";

const json = <T>(schema: T) => ({ "application/json": { schema } });

const createUser = createRoute({
  operationId: "createUser",
  method: "post",
  path: "/v1/users",
  tags: ["users"],
  summary: "Create a user (admin)",
  security: bearer,
  middleware: [requireAdmin()],
  request: { body: { content: json(CreateUserBody), required: true } },
  responses: {
    201: { description: "the new user", content: json(UserSchema) },
    ...errorResponses(403, 409),
  },
});

const listUsers = createRoute({
  operationId: "listUsers",
  method: "get",
  path: "/v1/users",
  tags: ["users"],
  summary: "List users in name order, a page at a time (admin)",
  security: bearer,
  middleware: [requireAdmin()],
  request: { query: UserListQuery },
  responses: {
    200: { description: "a page of users", content: json(UserPageSchema) },
    ...errorResponses(403),
  },
});

const getUser = createRoute({
  operationId: "getUser",
  method: "get",
  path: "/v1/users/{name}",
  tags: ["users"],
  summary: "One user (admin, or the user itself)",
  security: bearer,
  request: { params: UserParams },
  responses: {
    200: { description: "the user", content: json(UserSchema) },
    ...errorResponses(403, 404),
  },
});

const deleteUser = createRoute({
  operationId: "deleteUser",
  method: "delete",
  path: "/v1/users/{name}",
  tags: ["users"],
  summary: "Delete a user; its tokens stop working at once (admin; not itself)",
  security: bearer,
  middleware: [requireAdmin()],
  request: { params: UserParams },
  responses: {
    204: { description: "deleted" },
    ...errorResponses(403, 404, 409),
  },
});

const changePassword = createRoute({
  operationId: "changePassword",
  method: "put",
  path: "/v1/users/{name}/password",
  tags: ["users"],
  summary: "Change a password; every token of the user stops working",
  description: "Users change their own password by giving `currentPassword` (a wrong one is " +
    "403 `bad_credentials`, and counts as a failed login for the throttle). Admins set any " +
    "other user's password without it. Afterwards the user logs in again, the caller included.",
  security: bearer,
  request: {
    params: UserParams,
    body: { content: json(PasswordChangeBody), required: true },
  },
  responses: {
    204: { description: "changed" },
    ...errorResponses(403, 404, 409),
  },
});

const RATE_LIMIT_PATH = "/v1/users/{name}/rate-limit";
const RATE_LIMIT_TEXT = "Each user's calls are counted in a token bucket across the cluster: it " +
  "refills `requestsPerSecond` tokens a second up to `burst`, and each call takes one. A call " +
  "over the rate is held briefly, then refused with 429, `Retry-After` and the `RateLimit-Limit`, " +
  "`RateLimit-Remaining` and `RateLimit-Reset` fields. Acks, nacks, visibility changes and task " +
  "replies are never counted; a long-poll receive counts once. Users without their own limit " +
  "have the cluster default (`MOMD_RATE_LIMIT_PER_SECOND`, `MOMD_RATE_LIMIT_BURST`). A change " +
  "takes effect on every node within a fraction of a second.";

const getRateLimit = createRoute({
  operationId: "getUserRateLimit",
  method: "get",
  path: RATE_LIMIT_PATH,
  tags: ["users"],
  summary: "A user's rate limit (admin, or the user itself)",
  description: RATE_LIMIT_TEXT,
  security: bearer,
  request: { params: UserParams },
  responses: {
    200: { description: "the limit in force", content: json(RateLimitSettingSchema) },
    ...errorResponses(403, 404),
  },
});

const setRateLimit = createRoute({
  operationId: "setUserRateLimit",
  method: "put",
  path: RATE_LIMIT_PATH,
  tags: ["users"],
  summary: "Give a user its own rate limit, or none (admin)",
  description: RATE_LIMIT_TEXT,
  security: bearer,
  middleware: [requireAdmin()],
  request: {
    params: UserParams,
    body: { content: json(RateLimitBody), required: true },
  },
  responses: {
    200: { description: "the limit now in force", content: json(RateLimitSettingSchema) },
    ...errorResponses(403, 404),
  },
});

const clearRateLimit = createRoute({
  operationId: "clearUserRateLimit",
  method: "delete",
  path: RATE_LIMIT_PATH,
  tags: ["users"],
  summary: "Put a user back on the cluster's default rate limit (admin)",
  security: bearer,
  middleware: [requireAdmin()],
  request: { params: UserParams },
  responses: {
    200: { description: "the limit now in force", content: json(RateLimitSettingSchema) },
    ...errorResponses(403, 404),
  },
});

function notFound(name: string): BrokerError {
  return new BrokerError("not_found", `user '${name}' does not exist`);
}

/** User management: create, list, get, delete, change a password, set a rate limit. */
export function registerUserRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  const defaultLimit = rateLimitOf(deps.config.rateLimitPerSecond, deps.config.rateLimitBurst);
  // The limit in force, in the shape of RateLimitSettingSchema.
  const setting = (own: RateLimit | undefined) =>
    own === undefined
      ? { limit: defaultLimit, source: "default" as const }
      : { limit: own, source: "user" as const };

  app.openapi(createUser, async (c) => {
    const { username, password, role } = c.req.valid("json");
    const user = await deps.users.create(username, password, role);
    return c.json(user, 201, { location: `/v1/users/${username}` });
  });

  app.openapi(listUsers, async (c) => {
    const { prefix, after, limit } = c.req.valid("query");
    return c.json(await deps.users.list({ prefix, after, limit }), 200);
  });

  app.openapi(getUser, async (c) => {
    const { name } = c.req.valid("param");
    const caller = c.get("principal");
    if (caller.username !== name && caller.role !== "admin") {
      throw new BrokerError("forbidden", "reading another user needs the admin role");
    }
    const user = await deps.users.get(name);
    if (!user) throw notFound(name);
    return c.json(user, 200);
  });

  app.openapi(deleteUser, async (c) => {
    const { name } = c.req.valid("param");
    const deleted = await deps.users.delete(name, { by: c.get("principal").username });
    // This node drops the user's tokens now; other nodes on the change message.
    deps.tokens.invalidate(name);
    if (!deleted) throw notFound(name);
    return c.body(null, 204);
  });

  app.openapi(changePassword, async (c) => {
    const { name } = c.req.valid("param");
    const { password, currentPassword } = c.req.valid("json");
    const caller = c.get("principal");
    const self = caller.username === name;
    if (!self && caller.role !== "admin") {
      throw new BrokerError("forbidden", "changing another user's password needs the admin role");
    }
    let expectTokenVersion: number | undefined;
    if (self) {
      if (currentPassword === undefined) {
        throw new BrokerError("invalid", "currentPassword is required to change your own password");
      }
      try {
        const found = await checkPassword(deps, {
          username: name,
          password: currentPassword,
          client: c.get("clientIp"),
        });
        expectTokenVersion = found.tokenVersion;
      } catch (err) {
        throw loginRefusal(err, 403);
      }
    }
    await deps.users.setPassword(name, password, { expectTokenVersion });
    // This node drops the user's tokens now; other nodes on the change message.
    deps.tokens.invalidate(name);
    return c.body(null, 204);
  });

  app.openapi(getRateLimit, async (c) => {
    const { name } = c.req.valid("param");
    const caller = c.get("principal");
    if (caller.username !== name && caller.role !== "admin") {
      throw new BrokerError("forbidden", "reading another user's rate limit needs the admin role");
    }
    return c.json(setting(await deps.users.rateLimit(name)), 200);
  });

  app.openapi(setRateLimit, async (c) => {
    const { name } = c.req.valid("param");
    const body = c.req.valid("json");
    const limit = "unlimited" in body ? null : rateLimitOf(body.requestsPerSecond, body.burst);
    await deps.users.setRateLimit(name, limit);
    return c.json(setting(limit), 200);
  });

  app.openapi(clearRateLimit, async (c) => {
    const { name } = c.req.valid("param");
    await deps.users.setRateLimit(name, undefined);
    return c.json(setting(undefined), 200);
  });
}
