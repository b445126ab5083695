import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { Config } from "../config/schema.ts";
import type { TokenService } from "../auth/tokens.ts";
import type { UserStore } from "../auth/users.ts";
import type { RateLimiter } from "../auth/rate_limit.ts";
import type { QueueService } from "../broker/queues.ts";
import type { TopicService } from "../broker/topics.ts";
import type { RequestService } from "../broker/requests.ts";
import type { MemoryStatus } from "../broker/memory.ts";
import type { AppEnv } from "./context.ts";
import { problem, toProblem } from "./problem.ts";
import { validationHook } from "./validation.ts";
import { clientIp } from "./middleware/client_ip.ts";
import { requireAuth } from "./middleware/auth.ts";
import { rateLimit } from "./middleware/rate_limit.ts";
import { registerAuthRoutes } from "./routes/auth.ts";
import { registerUserRoutes } from "./routes/users.ts";
import { registerQueueRoutes } from "./routes/queues.ts";
import { registerTopicRoutes } from "./routes/topics.ts";
import { registerRequestRoutes } from "./routes/requests.ts";
import { COMPAT_BASE_PATH, registerCompatRoutes } from "./compat/routes.ts";
import { allowedMethods } from "./middleware/methods.ts";
import { registerClusterRoutes } from "./routes/cluster.ts";
import { routeToOwner } from "./middleware/owner_routing.ts";
import type { EntityRouter } from "./routing.ts";
import type { ConsistencyChecker } from "./schemas/check.ts";
import { registerHealthRoutes } from "./routes/health.ts";
import { registerMetricsRoute } from "./routes/metrics.ts";
import { observe } from "./middleware/observe.ts";
import { type Logger, silentLogger } from "../log/logger.ts";
import type { Metrics } from "../metrics/metrics.ts";
import { loadDocsAssets, registerDocsRoutes } from "./docs/mod.ts";
import { registerRootRoute } from "./docs/root.ts";
import { registerConsoleRoutes } from "./console/mod.ts";
import { registerStreamChecks, registerStreamUpgrades, type StreamHub } from "./stream/mod.ts";

/** Everything the HTTP API needs, passed in explicitly. */
export interface ApiDeps {
  config: Pick<
    Config,
    | "maxBodyBytes"
    | "trustedProxies"
    | "loginFailuresPerMinute"
    | "nodeId"
    | "rateLimitPerSecond"
    | "rateLimitBurst"
  >;
  users: UserStore;
  tokens: TokenService;
  limiter: RateLimiter;
  queues: QueueService;
  topics: TopicService;
  /** Request/reply with deadlines over queues. */
  requests: RequestService;
  /** In a cluster: where each entity lives (absent on a single node, which serves everything). */
  router?: EntityRouter;
  /** Each dependency's reachability, for /readyz. */
  readiness: () => Promise<Record<string, boolean>>;
  /** The local store's memory as the memory alarm sees it, for /readyz (absent: not watched). */
  memory?: () => MemoryStatus | undefined;
  /** The node's open WebSocket streams (closed when it drains); absent: the app's own. */
  streams?: StreamHub;
  /** The consistency check of GET /v1/cluster/check (absent: that route answers 503). */
  checker?: ConsistencyChecker;
  /** The node's log (absent: nothing is logged). */
  log?: Logger;
  /** The node's metrics, served at /metrics (absent: no /metrics). */
  metrics?: Metrics;
  /** The node's backup recovery point (ms since the epoch; null: none yet). */
  recoveryPoint?: () => number | null;
}

/** The momd REST API as a Hono app (call `app.fetch` or `app.request` in tests). */
export function createApp(deps: ApiDeps): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });

  app.onError(toProblem);
  app.notFound((c) => problem(c, 404, `no route for ${c.req.method} ${c.req.path}`));

  app.use("*", observe({ log: deps.log ?? silentLogger(), metrics: deps.metrics }));
  app.use("*", allowedMethods((path) => path.startsWith(COMPAT_BASE_PATH)));
  app.use("*", clientIp(deps.config.trustedProxies));
  const tooLarge = (c: Context) =>
    problem(c, 413, `request body larger than ${deps.config.maxBodyBytes} bytes`, {
      code: "too_large",
    });
  const limitStream = bodyLimit({ maxSize: deps.config.maxBodyBytes, onError: tooLarge });
  app.use("*", (c, next) => {
    // A declared length is checked from the header alone: hono's bodyLimit reads
    // `request.body` first, which turns every body into a stream. Chunked bodies are counted.
    const length = c.req.header("content-length");
    if (length === undefined || c.req.header("transfer-encoding") !== undefined) {
      return limitStream(c, next);
    }
    return Number(length) > deps.config.maxBodyBytes ? Promise.resolve(tooLarge(c)) : next();
  });

  registerHealthRoutes(app, deps);
  if (deps.metrics) registerMetricsRoute(app, deps.metrics);
  // Swagger UI's files, read once and shared by momd's docs page and the compatibility API's.
  const docsAssets = loadDocsAssets();
  registerRootRoute(app, { compatBasePath: COMPAT_BASE_PATH });
  registerDocsRoutes(app, { assets: docsAssets });
  registerConsoleRoutes(app);
  // The earlier MOM server's API: its own small app (FastAPI-shaped errors, own auth and docs).
  registerCompatRoutes(app, deps, { docsAssets });

  // Stream upgrades check themselves through the middlewares below, then stay on this node.
  registerStreamUpgrades(app, deps);
  // Everything under /v1 needs a token, except asking for one.
  const auth = requireAuth(deps.tokens);
  const limited = rateLimit(deps.limiter);
  const open = (c: { req: { path: string } }) => c.req.path === "/v1/auth/token";
  app.use("/v1/*", (c, next) => open(c) ? next() : auth(c, next));
  app.use("/v1/*", (c, next) => open(c) ? next() : limited(c, next));
  if (deps.router) {
    const routing = routeToOwner(deps.router, deps.metrics);
    app.use("/v1/*", (c, next) => open(c) ? next() : routing(c, next));
  }

  registerAuthRoutes(app, deps);
  registerUserRoutes(app, deps);
  registerQueueRoutes(app, deps);
  registerTopicRoutes(app, deps);
  registerRequestRoutes(app, deps);
  registerClusterRoutes(app, deps);
  registerStreamChecks(app, deps);

  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "momd",
      version: "1.0.0",
      description: "Message-oriented middleware: queues and topics over REST.\n\n" +
        "**Streaming (WebSocket).** Producers and consumers can also stream over WebSocket " +
        "(subprotocol `momd.v1`, JSON text frames): `GET /v1/queues/{name}/producer`, " +
        "`/v1/queues/{name}/consumer?prefetch=N`, `/v1/topics/{name}/producer` and " +
        "`/v1/topics/{name}/subscriptions/{sub}/consumer?prefetch=N` with `Upgrade: " +
        "websocket`. A producer gets one `sent` (or `error`) frame per `send`, in order; a " +
        "consumer grants credits (`permit`) and gets one pushed `message` per credit, which it " +
        "settles with `ack`, `nack` and `visibility` frames, under the same tokens, rights, " +
        "rate limits, visibility and dead-letter rules as the REST calls. The token goes in " +
        "`Authorization` or as the subprotocol `bearer.<token>`. A refused upgrade is a " +
        "problem document (401, 403, 404, 400, 429); a plain GET of an endpoint answers the " +
        "same, or 426 when the upgrade would be accepted. Frames, close codes and examples: " +
        "docs/streaming.md.",
    },
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
    description: "A token from POST /v1/auth/token (username and password); it expires at its " +
      "`expiresAt`. On /docs, a successful try-it-out of that call fills this in.",
  });
  return app;
}
