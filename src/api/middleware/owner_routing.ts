import type { Context, MiddlewareHandler, Next } from "hono";
import { type EntityRef, NAME_PATTERN } from "../../broker/keys.ts";
import { decodeTaskId } from "../../broker/requests.ts";
import { type AppEnv, forwardedOf } from "../context.ts";
import {
  DEADLINE_HEADER,
  type EntityRouter,
  FORWARDS_HEADER,
  mayWait,
  NotOwnerError,
  REQUEST_START_HEADER,
  type Route,
} from "../routing.ts";
import { BrokerError } from "../../broker/errors.ts";
import { decodeSegment, EntityName, ListQuery, NAME_RULE } from "../schemas/common.ts";
import { ApiError } from "../problem.ts";
import { invalidRequest } from "../validation.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import { REQUEST_ID_HEADER } from "./observe.ts";

/** The request with its id in X-Request-Id (a copy only when it came without one). */
function withRequestId(request: Request, reqId: string | undefined): Request {
  if (!reqId || request.headers.get(REQUEST_ID_HEADER) === reqId) return request;
  const headers = new Headers(request.headers);
  headers.set(REQUEST_ID_HEADER, reqId);
  return new Request(request, { headers });
}

const ENTITY_PATH = /^\/v1\/(queues|topics)\/([^/]+)(\/.*)?$/;
const TASK_PATH = /^\/v1\/tasks\/([^/]+)(\/reply)?$/;
const LIST_PATH = /^\/v1\/(queues|topics)\/?$/;

/**
 * The entity a /v1 request is about: null when the path names none, `invalid` (what is wrong)
 * when it names one whose name breaks the rule (EntityName), which must then go no further:
 * not to ZooKeeper (`a/b` would be a znode under `a`), a store or another node.
 */
export function entityOfPath(
  path: string,
): EntityRef | { invalid: string } | null {
  const m = ENTITY_PATH.exec(path);
  if (m) {
    const name = decodeSegment(m[2]);
    if (name === null) return { invalid: "not a valid percent-encoded UTF-8 name" };
    const checked = EntityName.safeParse(name);
    if (!checked.success) return { invalid: checked.error.issues[0]?.message ?? NAME_RULE };
    return { type: m[1] === "queues" ? "queue" : "topic", name };
  }
  const t = TASK_PATH.exec(path);
  if (t) {
    const task = decodeTaskId(t[1]);
    return task ? { type: "queue", name: task.queue } : null;
  }
  return null;
}

/**
 * A page of a cluster-wide listing, without names that break the rule (stored before names
 * were checked on every path): they could be neither read nor deleted through the API.
 */
function listPage(
  router: EntityRouter,
  type: "queue" | "topic",
  query: { prefix?: string; after?: string; limit: number },
): { name: string; owner: string; createdAt: string }[] {
  const out: { name: string; owner: string; createdAt: string }[] = [];
  let after = query.after;
  for (;;) {
    const batch = router.list(type, { prefix: query.prefix, after, limit: query.limit + 1 });
    for (const item of batch) {
      if (NAME_PATTERN.test(item.name)) out.push(item);
    }
    if (out.length > query.limit || batch.length <= query.limit) return out;
    after = batch[batch.length - 1].name;
  }
}

/**
 * In a cluster, serves a request about an entity on the node that owns it: here, or forwarded
 * over gRPC with the caller this node authenticated. Creates take the name cluster-wide first;
 * the owner makes the entity live, or gives the name back when the create failed, and removes
 * its record after a delete (EntityRouter.lifecycle). Listings come from the cluster-wide
 * ownership records. A request another node forwarded is served here, or goes on once more
 * when this node knows it does not own the entity (serveOnOwner).
 */
export function routeToOwner(router: EntityRouter, metrics?: Metrics): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const path = c.req.path;
    const method = c.req.method;
    const found = entityOfPath(path);
    if (found && "invalid" in found) {
      return invalidRequest(c, [{ path: "name", message: found.invalid }]);
    }
    const entity = found;
    const root = entity !== null && ENTITY_PATH.exec(path)?.[3] === undefined &&
      !TASK_PATH.test(path);
    const opts: OwnerCallOptions = {
      create: root && method === "PUT",
      deleted: root && method === "DELETE"
        ? (res) => Promise.resolve(res.status === 204)
        : undefined,
    };
    if (forwardedOf(c) && !entity) return next();
    const list = LIST_PATH.exec(path);
    if (list && method === "GET") {
      const query = ListQuery.safeParse(c.req.query());
      if (!query.success) throw new ApiError(400, query.error.issues[0].message, "invalid");
      const type = list[1] === "queues" ? "queue" : "topic";
      const items = listPage(router, type, query.data);
      const more = items.length > query.data.limit;
      const page = items.slice(0, query.data.limit);
      return c.json({ [list[1]]: page, next: more ? page[page.length - 1].name : null }, 200);
    }
    if (!entity) return next();
    return await serveOnOwner(c, next, router, entity, { ...opts, metrics });
  };
}

/** How serveOnOwner recognises the outcome of a create or a delete. */
export interface OwnerCallOptions {
  /** The request creates the entity (its name is taken cluster-wide first). */
  create: boolean;
  /**
   * For a request that may delete the entity: whether the answer says it is gone (the owner
   * then removes its ownership record). Absent for every other request.
   */
  deleted?: (res: Response) => Promise<boolean>;
  /** Whether the answer says the create succeeded (default: a 2xx status). */
  created?: (res: Response) => Promise<boolean>;
  /** The request to forward, when the original body was already read. */
  request?: Request;
  /** Where forwards are counted and timed. */
  metrics?: Metrics;
}

/**
 * The answer header naming the node that owns the entity a request was about. A client that
 * sends it back as `Momd-Route` with its next requests about that entity reaches the owner
 * directly through NGINX (nginx/nginx.conf), which saves the forward from whichever node NGINX
 * would pick. A stale hint costs nothing but that forward, and the answer names the new owner.
 */
export const OWNER_HEADER = "momd-owner";

/**
 * How many times a request may be forwarded: by the node that received it, and once more by a
 * node it reached on a stale view of ownership (a delete, a move or a failover the first node
 * had not heard of yet), which re-read ZooKeeper and knows better. The last node serves it
 * whatever it knows, so two views that disagree cannot bounce it: a node that does not own
 * the entity refuses it there (503, nothing changed).
 */
const MAX_FORWARDS = 2;

/** How many times a create or delete that lost its turn to another is routed again. */
const MAX_REQUEUES = 3;

/**
 * How many times a forwarded request was forwarded (0: it came from a client). Nodes of
 * earlier versions send no count: once.
 */
function forwardsOf(c: Context<AppEnv>): number {
  if (!forwardedOf(c)) return 0;
  const n = Number(c.req.header(FORWARDS_HEADER));
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

/**
 * When the caller of this request stops waiting (ms since the epoch; undefined: unknown, a
 * client that came straight to this node): the forwarding node's deadline, or NGINX's start
 * plus this node's forward timeout.
 */
function deadlineOf(c: Context<AppEnv>, router: EntityRouter): number | undefined {
  if (forwardedOf(c)) {
    const at = Number(c.req.header(DEADLINE_HEADER));
    return at > 0 ? at : undefined;
  }
  const start = Number(c.req.header(REQUEST_START_HEADER));
  return start > 0 ? router.deadlineFrom(start * 1000, c.req.path) : undefined;
}

/**
 * A request held past its caller's deadline (its node was frozen while it waited, and NGINX or
 * the forwarding node gave up, perhaps repeating it elsewhere) is not served: served late, it
 * could undo what the caller did next (a delete held across a pause deleting the entity the
 * caller created again). Nothing is applied; nobody is listening.
 */
function checkDeadline(deadline: number | undefined): void {
  if (deadline !== undefined && Date.now() > deadline) {
    throw new BrokerError(
      "unavailable",
      "the request was held past the time its caller waits (not applied); send it again",
      1,
    );
  }
}

/**
 * Serves a request about `entity` on its owner: here (after catching up with ZooKeeper) or
 * forwarded with the authenticated caller. The answer names the owner (OWNER_HEADER).
 */
export async function serveOnOwner(
  c: Context<AppEnv>,
  next: Next,
  router: EntityRouter,
  entity: EntityRef,
  opts: OwnerCallOptions,
): Promise<Response | void> {
  const forwards = forwardsOf(c);
  const deadline = deadlineOf(c, router);
  checkDeadline(deadline);
  const principal = c.get("principal");
  const routeOpts = opts.create ? { create: { creator: principal.username } } : {};
  // A request that came from a client goes where this node's cache says. One that would be
  // served here (or was forwarded here) is first checked against ZooKeeper: free while this
  // node may write the entity, a read when its view may be stale (another node's forward, or
  // its own after a pause); a node that is not the owner after all routes it again. The last
  // hop serves what it gets.
  let route: Route | undefined = forwards > 0 ? undefined : await router.route(entity, routeOpts);
  const last = forwards >= MAX_FORWARDS;
  if (!last && (!route || route.here) && !(await router.isOwner(entity))) {
    route = await router.route(entity, routeOpts);
  }
  // A create or delete that waited its turn behind one that moved the name is routed again:
  // each time another create or delete of the name came first, so a few rounds settle any race
  // (the last hop may only stay here).
  let requeues = 0;
  while (!route || route.here) {
    try {
      checkDeadline(deadline);
      const res = await serveHere(c, next, router, entity, opts);
      res.headers.set(OWNER_HEADER, router.nodeId);
      c.res = res;
      return;
    } catch (err) {
      if (!(err instanceof NotOwnerError) || requeues++ >= MAX_REQUEUES) throw err;
      route = await router.route(entity, routeOpts);
      if (last && !route.here) throw err;
    }
  }
  const request = withRequestId(opts.request ?? c.req.raw, c.get("reqId"));
  // A long poll ends on the owner too when its client goes away (no messages taken for
  // nobody); other requests never touch the signal (it costs a watch on the connection).
  const signal = mayWait(c.req.path) ? c.req.raw.signal : undefined;
  const started = performance.now();
  let res: Response;
  checkDeadline(deadline);
  try {
    res = await router.forward(route.address, request, principal, {
      signal,
      forwards: forwards + 1,
      deadline,
    });
  } catch (err) {
    // The owner never answered: this node answers (5xx) and counts the request itself.
    opts.metrics?.forwards.labels("error").inc();
    throw err;
  }
  c.set("forwardedTo", route.owner);
  opts.metrics?.forwards.labels(res.status >= 500 ? "5xx" : "ok").inc();
  opts.metrics?.forwardDuration.observe((performance.now() - started) / 1000);
  // This node acted as a gateway to the owner (RFC 9110 Via): shows a forward happened.
  res.headers.append("via", `1.1 ${router.nodeId}`);
  // The node that served it names itself; nodes of earlier versions did not.
  if (!res.headers.has(OWNER_HEADER)) res.headers.set(OWNER_HEADER, route.owner);
  return res;
}

/**
 * Serves a request about an entity this node owns (or was forwarded): once it caught up with
 * ZooKeeper; a create or a delete through the owner's lifecycle (EntityRouter.lifecycle).
 */
async function serveHere(
  c: Context<AppEnv>,
  next: Next,
  router: EntityRouter,
  entity: EntityRef,
  opts: OwnerCallOptions,
): Promise<Response> {
  await router.ready(entity);
  const handle = async () => {
    await next();
    return c.res;
  };
  if (opts.create) {
    const created = opts.created ?? ((r: Response) => Promise.resolve(r.status < 300));
    return await router.lifecycle(entity, "create", handle, created);
  }
  if (opts.deleted) return await router.lifecycle(entity, "delete", handle, opts.deleted);
  return await handle();
}
