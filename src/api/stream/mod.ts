/**
 * The stream endpoints (docs/streaming.md): WebSocket producers and consumers of queues and
 * subscriptions. An upgrade request is checked first by a plain GET of its own URL made
 * in-process (token, names, query, existence, the caller's right, the rate limit, served on the
 * owner like any request about the entity); a refusal is that GET's answer and no upgrade. The
 * accepted socket then works through in-process REST calls (rest.ts), so a socket on any node
 * reaches the owner the way a REST request does.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Context, Next } from "hono";
import { TokenError, type TokenService } from "../../auth/tokens.ts";
import type { RateLimiter } from "../../auth/rate_limit.ts";
import type { Principal } from "../../auth/users.ts";
import type { EntityAccess } from "../../broker/entities.ts";
import { BrokerError } from "../../broker/errors.ts";
import type { QueueService } from "../../broker/queues.ts";
import type { TopicService } from "../../broker/topics.ts";
import type { Config } from "../../config/schema.ts";
import type { AppEnv } from "../context.ts";
import { OWNER_HEADER } from "../middleware/owner_routing.ts";
import { problem } from "../problem.ts";
import { EntityName } from "../schemas/common.ts";
import { invalidRequest } from "../validation.ts";
import { ConsumerSession } from "./consumer.ts";
import { StreamHub } from "./hub.ts";
import { ProducerSession } from "./producer.ts";
import {
  BEARER_SUBPROTOCOL_PREFIX,
  type ConsumerQuery,
  QueueConsumerQuery,
  STREAM_SUBPROTOCOL,
  TopicConsumerQuery,
} from "./protocol.ts";
import { type AppFetch, InProcessRest } from "./rest.ts";
import type { SessionDeps } from "./session.ts";
import { type Logger, silentLogger } from "../../log/logger.ts";

export { StreamHub } from "./hub.ts";

/** What the stream endpoints need (a part of ApiDeps). */
export interface StreamRouteDeps {
  config: Pick<Config, "maxBodyBytes">;
  /** The node's log (absent: nothing logged). */
  log?: Logger;
  tokens: TokenService;
  limiter: RateLimiter;
  queues: QueueService;
  topics: TopicService;
  /** The node's open streams (main.ts closes them when draining); absent: one of its own. */
  streams?: StreamHub;
}

/** One stream endpoint. */
interface Endpoint {
  path: string;
  kind: "queue" | "topic";
  role: "producer" | "consumer";
}

const ENDPOINTS: readonly Endpoint[] = [
  { path: "/v1/queues/:name/producer", kind: "queue", role: "producer" },
  { path: "/v1/queues/:name/consumer", kind: "queue", role: "consumer" },
  { path: "/v1/topics/:name/producer", kind: "topic", role: "producer" },
  { path: "/v1/topics/:name/subscriptions/:sub/consumer", kind: "topic", role: "consumer" },
];

/** Server pings after this long without a frame from the client (NGINX's timeout is longer). */
const IDLE_TIMEOUT_SECONDS = 30;

/**
 * Registers the WebSocket upgrades of the stream endpoints. Call it before the /v1
 * authentication, rate limit and owner routing: the upgrade is checked by an in-process GET
 * that passes through them (registerStreamChecks answers it), and then stays on this node.
 * Requests without `Upgrade: websocket` go on to those middlewares and the check.
 */
export function registerStreamUpgrades(
  app: OpenAPIHono<AppEnv>,
  deps: StreamRouteDeps,
): StreamHub {
  const hub = deps.streams ?? new StreamHub();
  for (const endpoint of ENDPOINTS) {
    app.get(endpoint.path, (c, next) => upgrade(c, next, app.fetch, deps, hub, endpoint));
  }
  return hub;
}

/**
 * Registers the checks of the stream endpoints (after authentication, rate limit and owner
 * routing): a plain GET answers why an upgrade would be refused (401, 403, 404, 400, 429), or
 * 426 when it would be accepted.
 */
export function registerStreamChecks(app: OpenAPIHono<AppEnv>, deps: StreamRouteDeps): void {
  for (const endpoint of ENDPOINTS) {
    app.get(endpoint.path, (c) => check(c, deps, endpoint));
  }
}

function isUpgrade(c: Context): boolean {
  return (c.req.header("upgrade") ?? "").toLowerCase().split(/\s*,\s*/).includes("websocket");
}

function consumerQuery(
  endpoint: Endpoint,
  query: Record<string, string>,
): ReturnType<typeof QueueConsumerQuery.safeParse> {
  return (endpoint.kind === "queue" ? QueueConsumerQuery : TopicConsumerQuery).safeParse(query);
}

/** Whether the caller holds `right` (as access.lua's require_right decides). */
function holds(
  caller: Principal,
  entity: { owner: string; config: { access: EntityAccess } },
  right: "send" | "receive",
): boolean {
  const access = entity.config.access;
  if (caller.role === "admin" || caller.username === entity.owner || !access.restricted) {
    return true;
  }
  return (right === "send" ? access.senders : access.receivers).includes(caller.username);
}

/** Answers a plain GET of a stream endpoint where the entity is served. */
async function check(
  c: Context<AppEnv>,
  deps: StreamRouteDeps,
  endpoint: Endpoint,
): Promise<Response> {
  const caller = c.get("principal");
  const name = c.req.param("name") ?? "";
  const sub = c.req.param("sub");
  for (const [field, value] of [["name", name], ["sub", sub]] as const) {
    if (value === undefined) continue;
    const checked = EntityName.safeParse(value);
    if (!checked.success) {
      return invalidRequest(c, [{ path: field, message: checked.error.issues[0].message }]);
    }
  }
  if (endpoint.role === "consumer") {
    const query = consumerQuery(endpoint, c.req.query());
    if (!query.success) {
      return invalidRequest(
        c,
        query.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })),
      );
    }
  }
  const right = endpoint.role === "producer" ? "send" : "receive";
  if (endpoint.kind === "queue") {
    const queue = await deps.queues.get(caller, name);
    if (!holds(caller, queue, right)) {
      throw new BrokerError("forbidden", `missing the '${right}' right on queue '${name}'`);
    }
  } else if (sub === undefined) {
    const topic = await deps.topics.get(caller, name);
    if (!holds(caller, topic, right)) {
      throw new BrokerError("forbidden", `missing the '${right}' right on topic '${name}'`);
    }
  } else {
    // The subscription's stats need the receive right, as its receives do.
    await deps.topics.getSubscription(caller, name, sub);
  }
  return problem(
    c,
    426,
    `${c.req.path} is a WebSocket endpoint (subprotocol ${STREAM_SUBPROTOCOL}): this request ` +
      `would be accepted as an upgrade`,
    { code: "upgrade_required" },
    { upgrade: "websocket" },
  );
}

/**
 * The env of the socket's in-process calls: the TCP peer the client-address middleware reads
 * (`env.remoteAddr`), copied now. Deno.serve's own env reads it from the request, which is
 * closed once the upgrade is answered ("Request closed").
 */
function connectionEnv(c: Context): { remoteAddr?: Deno.NetAddr } {
  try {
    const addr = (c.env as { remoteAddr?: Deno.NetAddr } | undefined)?.remoteAddr;
    return addr ? { remoteAddr: { ...addr } } : {};
  } catch {
    return {};
  }
}

/** Accepts an upgrade the check lets through, and starts its producer or consumer. */
async function upgrade(
  c: Context<AppEnv>,
  next: Next,
  fetch: AppFetch,
  deps: StreamRouteDeps,
  hub: StreamHub,
  endpoint: Endpoint,
): Promise<Response | void> {
  if (!isUpgrade(c)) return await next();
  if (hub.closing) {
    return problem(c, 503, "this node is shutting down: connect again", {
      code: "unavailable",
    }, { "retry-after": "1" });
  }
  const offered = (c.req.header("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim());
  const token = /^Bearer\s+(\S+)$/i.exec(c.req.header("authorization") ?? "")?.[1] ??
    offered.find((p) => p.startsWith(BEARER_SUBPROTOCOL_PREFIX))
      ?.slice(BEARER_SUBPROTOCOL_PREFIX.length);
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  for (const name of ["x-forwarded-for", "momd-route"]) {
    const value = c.req.header(name);
    if (value !== undefined) headers[name] = value;
  }
  const url = new URL(c.req.url);
  // The checks of a plain GET of this URL, through authentication, rate limit and routing.
  const checked = await fetch(new Request(url, { headers }), c.env);
  if (checked.status !== 426) return checked;
  await checked.body?.cancel();

  let principal: Principal;
  try {
    principal = await deps.tokens.verify(token ?? "");
  } catch (err) {
    if (!(err instanceof TokenError)) throw err;
    return problem(c, 401, err.message, { code: `token_${err.reason}` });
  }
  let query: ConsumerQuery | undefined;
  if (endpoint.role === "consumer") {
    const parsed = consumerQuery(endpoint, c.req.query());
    if (!parsed.success) return invalidRequest(c, [{ path: "", message: "bad query" }]);
    query = parsed.data;
  }

  let upgraded: Deno.WebSocketUpgrade;
  try {
    upgraded = Deno.upgradeWebSocket(
      c.req.raw,
      offered.includes(STREAM_SUBPROTOCOL)
        ? { protocol: STREAM_SUBPROTOCOL, idleTimeout: IDLE_TIMEOUT_SECONDS }
        : { idleTimeout: IDLE_TIMEOUT_SECONDS },
    );
  } catch (err) {
    // No Sec-WebSocket-Key, a wrong version, or no connection to upgrade (app.request()).
    return problem(c, 400, `not a WebSocket upgrade this node can take: ${err}`, {
      code: "invalid",
    });
  }
  const { socket, response } = upgraded;
  const owner = checked.headers.get(OWNER_HEADER);
  if (owner) response.headers.set(OWNER_HEADER, owner);
  const session: SessionDeps = {
    socket,
    rest: new InProcessRest(fetch, { origin: url.origin, headers, env: connectionEnv(c) }),
    principal,
    token: token ?? "",
    tokens: deps.tokens,
    limiter: deps.limiter,
    hub,
    // The REST path of what the socket serves: the endpoint's path without its last segment.
    base: url.pathname.slice(0, url.pathname.lastIndexOf("/")),
    kind: endpoint.kind,
    maxBodyBytes: deps.config.maxBodyBytes,
    log: (deps.log ?? silentLogger()).child({ reqId: c.get("reqId") }),
  };
  if (query) new ConsumerSession(session, query);
  else new ProducerSession(session);
  return response;
}
