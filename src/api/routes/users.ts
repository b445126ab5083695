import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { checkPassword } from "../../auth/login.ts";
import { BrokerError } from "../../broker/errors.ts";
import type { ApiDeps } from "../app.ts";
import type { AppEnv } from "../context.ts";
import { requireAdmin } from "../middleware/auth.ts";
import { bearer, errorResponses } from "../schemas/common.ts";
import {
  CreateUserBody,
  PasswordChangeBody,
  UserListQuery,
  UserPageSchema,
  UserParams,
  UserSchema,
} from "../schemas/users.ts";
import { loginRefusal } from "./auth.ts";

const json = <T>(schema: T) => ({ "application/json": { schema } });

const createUser = createRoute({
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

function notFound(name: string): BrokerError {
  return new BrokerError("not_found", `user '${name}' does not exist`);
}

/** User management: create, list, get, delete, change a password. */
export function registerUserRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
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
}
