/**
 * The earlier MOM server's REST API, served unchanged under `/api/v1.0.0/MomServer` next to
 * momd's own `/v1` (the contract: seed-mom-api.md in the project's shared reference).
 *
 * It is its own small Hono app (its own error shapes, 404/405 answers, trailing-slash redirects
 * and OpenAPI document), mounted into the node's app by `registerCompatRoutes`, and a thin
 * mapping onto momd's users, tokens, limiter, queues and topics: an entity or user created
 * through one API is visible and usable through the other. Mapping decisions:
 *
 * - `/login/` checks the password through `checkPassword` (the same failed-login throttle as
 *   `/v1/auth/token`) and issues momd's own token: tokens work on both APIs.
 * - Authenticated routes take one call from the user's cluster-wide rate limit (429 when spent);
 *   `/` and `/login/` are not limited per user (login has the failed-login throttle).
 * - Users created here are plain users with 5-20 character names; momd's password policy
 *   applies (a shorter password is a 422). Removing oneself is refused (403), so the cluster
 *   always keeps an admin.
 * - Queues and topics: see mapping.ts.
 * - Every route ends with `/` (the removal routes end with their parameter); the same path with
 *   (or without) the trailing slash answers 307 with a relative Location to the right path, the
 *   query string kept, whatever the method (as FastAPI did). Unknown paths are 404 and known paths
 *   with another method 405, both `{"detail": ...}`.
 */
import { createRoute, OpenAPIHono } from "@hono/zod-openapi";
import type { Context, Hono } from "hono";
import { checkPassword, LoginRefused } from "../../auth/login.ts";
import { BrokerError } from "../../broker/errors.ts";
import type { ApiDeps } from "../app.ts";
import type { AppEnv } from "../context.ts";
import { clientIp } from "../middleware/client_ip.ts";
import { type DocsAssets, registerDocsRoutes } from "../docs/mod.ts";
import { compatAdmin, compatAuth, compatRateLimit } from "./auth.ts";
import { compatRouteToOwner } from "./routing.ts";
import {
  CompatHttpError,
  compatValidationHook,
  detailResponse,
  toCompatResponse,
} from "./errors.ts";
import { CompatBroker } from "./mapping.ts";
import {
  CreateUserBody,
  DeleteQuery,
  DetailSchema,
  LoginBody,
  MomBody,
  NameParams,
  OutcomeSchema,
  SendBody,
  TextAnswer,
  TokenAnswer,
  UsernameParams,
  ValidationErrorSchema,
} from "./schemas.ts";

/** Where the earlier server's API lives (its configurable version and name, at their defaults). */
export const COMPAT_BASE_PATH = "/api/v1.0.0/MomServer";

/** What the compatibility API needs: the node's own services. */
export type CompatDeps = Pick<
  ApiDeps,
  "config" | "users" | "tokens" | "limiter" | "queues" | "topics" | "router"
>;

/** Options of the compatibility API. */
export interface CompatOptions {
  /** Default COMPAT_BASE_PATH. */
  basePath?: string;
  /** Swagger UI's files for the docs page, shared with momd's page (default: loaded here). */
  docsAssets?: DocsAssets;
}

/** A route of the table the 404/405/307 answers consult. */
interface KnownRoute {
  method: string;
  pattern: RegExp;
}

function pathPattern(path: string): RegExp {
  const parts = path.split(/\{[^}]+\}/).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${parts.join("[^/]+")}$`);
}

const json = <T>(schema: T) => ({ "application/json": { schema } });
const detail = (description: string) => ({ description, content: json(DetailSchema) });

/** The error answers a route may give, for the OpenAPI document. */
function errorResponses(opts: { auth?: boolean; admin?: boolean; body?: boolean }) {
  return {
    ...(opts.auth ? { 401: detail("Invalid token, or token has expired") } : {}),
    ...(opts.auth
      ? { 403: detail(opts.admin ? "Not authenticated, or not an admin" : "Not authenticated") }
      : {}),
    ...(opts.body
      ? { 422: { description: "Validation Error", content: json(ValidationErrorSchema) } }
      : {}),
    ...(opts.auth ? { 429: detail("Too many requests") } : {}),
  };
}

const bearer = [{ HTTPBearer: [] }];
const USERNAME_LIKE = /^[a-zA-Z0-9_-]{1,64}$/;

/** Builds the compatibility API as an app of its own (tests may call it directly). */
export function createCompatApp(deps: CompatDeps, opts: CompatOptions = {}): OpenAPIHono<AppEnv> {
  const base = (opts.basePath ?? COMPAT_BASE_PATH).replace(/\/+$/, "");
  const app = new OpenAPIHono<AppEnv>({ defaultHook: compatValidationHook });
  const broker = new CompatBroker(deps.queues, deps.topics);
  const known: KnownRoute[] = [];
  function track<R extends { method: string; path: string }>(route: R): R {
    known.push({ method: route.method.toUpperCase(), pattern: pathPattern(route.path) });
    return route;
  }

  app.onError(toCompatResponse);
  app.notFound((c) => unmatched(c, known));
  app.use("*", clientIp(deps.config.trustedProxies));

  const owner = compatRouteToOwner(deps.router);
  const user = [compatAuth(deps.tokens), compatRateLimit(deps.limiter), owner];
  const admin = [compatAuth(deps.tokens), compatAdmin(), compatRateLimit(deps.limiter), owner];

  // --- root, login, protected greetings ---------------------------------------------------

  app.openapi(
    track(createRoute({
      operationId: "compatGetRoot",
      method: "get",
      path: `${base}/`,
      tags: ["root"],
      summary: "Root",
      responses: { 200: { description: "a welcome message", content: json(TextAnswer) } },
    })),
    (c) => c.json("Welcome to MOM TET API!", 200),
  );

  app.openapi(
    track(createRoute({
      operationId: "compatLogin",
      method: "post",
      path: `${base}/login/`,
      tags: ["root"],
      summary: "Login: a bearer token for a username and password",
      request: { body: { content: json(LoginBody), required: true } },
      responses: {
        200: { description: "a token", content: json(TokenAnswer) },
        401: detail("Invalid username or password"),
        ...errorResponses({ body: true }),
        429: detail("Too many failed logins for this username from this client"),
      },
    })),
    async (c) => {
      const { username, password } = c.req.valid("json");
      try {
        const found = await checkPassword(deps, { username, password, client: c.get("clientIp") });
        const issued = await deps.tokens.issue(found.user, found.tokenVersion);
        return c.json({ access_token: issued.token, token_type: "Bearer" as const }, 200);
      } catch (err) {
        if (!(err instanceof LoginRefused)) throw err;
        if (err.reason === "throttled") {
          throw new CompatHttpError(429, "Too many requests.", {
            "retry-after": String(Math.max(1, Math.ceil(err.retryAfterSeconds))),
          });
        }
        throw new CompatHttpError(401, "Invalid username or password", {
          "www-authenticate": "Bearer",
        });
      }
    },
  );

  app.openapi(
    track(createRoute({
      operationId: "compatGetProtected",
      method: "get",
      path: `${base}/protected/`,
      tags: ["root"],
      summary: "A greeting for any authenticated user",
      security: bearer,
      middleware: user,
      responses: {
        200: { description: "a greeting", content: json(TextAnswer) },
        ...errorResponses({ auth: true }),
      },
    })),
    (c) => c.json(`This is a protected endpoint. Welcome, ${c.get("principal").username}!`, 200),
  );

  app.openapi(
    track(createRoute({
      operationId: "compatGetAdminProtected",
      method: "get",
      path: `${base}/admin/protected/`,
      tags: ["root"],
      summary: "A greeting for an admin",
      security: bearer,
      middleware: admin,
      responses: {
        200: { description: "a greeting", content: json(TextAnswer) },
        ...errorResponses({ auth: true, admin: true }),
      },
    })),
    (c) =>
      c.json(
        `This is the protected admin endpoint. Welcome, ${c.get("principal").username}!`,
        200,
      ),
  );

  // --- user management (admin) --------------------------------------------------------------

  app.openapi(
    track(createRoute({
      operationId: "compatCreateUser",
      method: "put",
      path: `${base}/admin/users/create/`,
      tags: ["admin users"],
      summary: "Create a user (always the plain user role)",
      security: bearer,
      middleware: admin,
      request: { body: { content: json(CreateUserBody), required: true } },
      responses: {
        200: { description: "created", content: json(TextAnswer) },
        ...errorResponses({ auth: true, admin: true, body: true }),
      },
    })),
    async (c) => {
      const { username, password } = c.req.valid("json");
      try {
        await deps.users.create(username, password, "user");
      } catch (err) {
        if (err instanceof BrokerError && err.code === "already_exists") {
          throw new CompatHttpError(403, "Username already exists");
        }
        if (err instanceof BrokerError && err.code === "invalid") {
          return detailResponse(c, 422, [{ loc: ["body"], msg: err.detail, type: "value_error" }]);
        }
        throw err;
      }
      return c.json(`User ${username} created successfully.`, 200);
    },
  );

  app.openapi(
    track(createRoute({
      operationId: "compatRemoveUser",
      method: "delete",
      path: `${base}/admin/users/remove/{username}`,
      tags: ["admin users"],
      summary: "Remove a user; its tokens stop working at once",
      security: bearer,
      middleware: admin,
      request: { params: UsernameParams },
      responses: {
        200: { description: "removed, or not found", content: json(TextAnswer) },
        ...errorResponses({ auth: true, admin: true }),
      },
    })),
    async (c) => {
      const { username } = c.req.valid("param");
      let removed = false;
      if (USERNAME_LIKE.test(username)) {
        try {
          removed = await deps.users.delete(username, { by: c.get("principal").username });
        } catch (err) {
          if (err instanceof BrokerError && err.code === "conflict") {
            throw new CompatHttpError(403, "An admin cannot remove itself");
          }
          if (err instanceof BrokerError && err.code === "forbidden") {
            throw new CompatHttpError(403, "Forbidden: access denied");
          }
          throw err;
        }
        // This node drops the user's tokens now; other nodes on the change message.
        deps.tokens.invalidate(username);
      }
      return c.json(
        removed ? `User ${username} removed successfully.` : `User ${username} not found.`,
        200,
      );
    },
  );

  // --- queues and topics --------------------------------------------------------------------

  app.openapi(
    track(createRoute({
      operationId: "compatCreateQueueTopic",
      method: "put",
      path: `${base}/admin/queue_topic/create/`,
      tags: ["admin queues and topics"],
      summary: "Create a queue or topic; the caller owns it and is subscribed",
      security: bearer,
      middleware: admin,
      request: { body: { content: json(MomBody), required: true } },
      responses: {
        200: { description: "success, or success false", content: json(OutcomeSchema) },
        ...errorResponses({ auth: true, admin: true, body: true }),
      },
    })),
    async (c) => {
      const { name, type } = c.req.valid("json");
      return c.json(await broker.create(c.get("principal"), type, name), 200);
    },
  );

  app.openapi(
    track(createRoute({
      operationId: "compatDeleteQueueTopic",
      method: "delete",
      path: `${base}/admin/queue_topic/delete/{name}`,
      tags: ["admin queues and topics"],
      summary: "Delete a queue or topic (its owner only)",
      security: bearer,
      middleware: admin,
      request: { params: NameParams, query: DeleteQuery },
      responses: {
        200: { description: "success, or success false", content: json(OutcomeSchema) },
        ...errorResponses({ auth: true, admin: true, body: true }),
      },
    })),
    async (c) => {
      const { name } = c.req.valid("param");
      const { mom_type } = c.req.valid("query");
      return c.json(await broker.delete(c.get("principal"), mom_type, name), 200);
    },
  );

  const operations = [
    ["subscribe", "compatSubscribe", "Subscribe to a queue or topic", MomBody],
    [
      "unsubscribe",
      "compatUnsubscribe",
      "Unsubscribe from a queue or topic (not its owner)",
      MomBody,
    ],
    ["receive", "compatReceive", "Take one message (message null when there is none)", MomBody],
  ] as const;
  for (const [op, operationId, summary, schema] of operations) {
    app.openapi(
      track(createRoute({
        operationId,
        method: "post",
        path: `${base}/queue_topic/${op}/`,
        tags: ["queues and topics"],
        summary,
        security: bearer,
        middleware: user,
        request: { body: { content: json(schema), required: true } },
        responses: {
          200: { description: "success, or success false", content: json(OutcomeSchema) },
          ...errorResponses({ auth: true, body: true }),
        },
      })),
      async (c) => {
        const { name, type } = c.req.valid("json");
        return c.json(await broker[op](c.get("principal"), type, name), 200);
      },
    );
  }

  app.openapi(
    track(createRoute({
      operationId: "compatSend",
      method: "post",
      path: `${base}/queue_topic/send/`,
      tags: ["queues and topics"],
      summary: "Send a message to a queue or publish it on a topic",
      security: bearer,
      middleware: user,
      request: { body: { content: json(SendBody), required: true } },
      responses: {
        200: { description: "success, or success false", content: json(OutcomeSchema) },
        ...errorResponses({ auth: true, body: true }),
      },
    })),
    async (c) => {
      const { name, type, message } = c.req.valid("json");
      return c.json(await broker.send(c.get("principal"), type, name, message), 200);
    },
  );

  // --- description and docs -----------------------------------------------------------------

  track({ method: "get", path: `${base}/openapi.json` });
  app.doc31(`${base}/openapi.json`, {
    openapi: "3.1.0",
    info: {
      title: "MOM TET API (momd compatibility)",
      version: "1.0.0",
      description: "The earlier MOM server's REST API, served unchanged by momd over its own " +
        "users, queues and topics. momd's own API is /v1 (see /docs).",
    },
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "HTTPBearer", {
    type: "http",
    scheme: "bearer",
    description: `A token from POST ${base}/login/ (or momd's POST /v1/auth/token).`,
  });
  const docsPaths = registerDocsRoutes(app, {
    path: `${base}/docs`,
    specUrl: `${base}/openapi.json`,
    title: "MOM TET API: compatibility API of the earlier MOM server (momd)",
    introHtml: "The earlier MOM server's REST API, served unchanged by momd over the same users, " +
      "queues and topics as momd's own API. To try the calls: open <code>POST " +
      `${base}/login/</code>, <em>Try it out</em> with a username and password, and ` +
      "<em>Execute</em>: its token goes into <em>Authorize</em>. Tokens of either API work " +
      "on both.",
    links: [
      { href: `${base}/openapi.json`, label: "OpenAPI document" },
      { href: "/docs", label: "momd's own API (/v1)" },
      { href: "/", label: "Service index" },
    ],
    login: { path: `${base}/login/`, tokenField: "access_token", scheme: "HTTPBearer" },
    assets: opts.docsAssets,
  });
  for (const path of docsPaths) track({ method: "get", path });

  return app;
}

/** 405 for a known path with another method, 307 to the path with(out) its slash, else 404. */
function unmatched(c: Context, known: readonly KnownRoute[]): Response {
  const path = c.req.path;
  const allowed = known.filter((r) => r.pattern.test(path)).map((r) => r.method);
  if (allowed.length > 0) {
    return detailResponse(c, 405, "Method Not Allowed", { allow: allowed.join(", ") });
  }
  const other = path.endsWith("/") ? path.slice(0, -1) : `${path}/`;
  if (other !== "" && known.some((r) => r.pattern.test(other))) {
    // The Location is built from the path as sent (still percent-encoded): the decoded one may
    // hold a space, CR or LF, which no header may carry.
    const url = new URL(c.req.url);
    const raw = url.pathname;
    const location = raw.endsWith("/") ? raw.slice(0, -1) : `${raw}/`;
    return c.redirect(`${location}${url.search}`, 307);
  }
  return detailResponse(c, 404, "Not Found");
}

/**
 * Mounts the compatibility API into the node's app: every request under the base path is
 * answered by the compatibility app (after the node's own global middleware, e.g. the body
 * limit). Call it in createApp, before the `/openapi.json` document is generated.
 */
export function registerCompatRoutes(
  app: Hono<AppEnv>,
  deps: CompatDeps,
  opts: CompatOptions = {},
): void {
  const compat = createCompatApp(deps, opts);
  const base = (opts.basePath ?? COMPAT_BASE_PATH).replace(/\/+$/, "");
  const serve = (c: Context<AppEnv>) => compat.fetch(c.req.raw, c.env);
  app.all(base, serve);
  app.all(`${base}/*`, serve);
}
