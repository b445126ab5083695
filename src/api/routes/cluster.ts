import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { ApiDeps } from "../app.ts";
import type { AppEnv } from "../context.ts";
import { requireAdmin } from "../middleware/auth.ts";
import type { ClusterStatus } from "../routing.ts";
import { bearer, errorResponses } from "../schemas/common.ts";
import { CheckQuery, CheckReportSchema } from "../schemas/check.ts";
import { BrokerError } from "../../broker/errors.ts";
import { VERSION } from "../../version.ts";
import { readiness } from "./health.ts";

const NodeSchema = z.object({
  id: z.string(),
  http: z.string().nullable(),
  grpc: z.string().nullable(),
  alive: z.boolean(),
  owned: z.number().int(),
  replicated: z.number().int(),
  startedAt: z.string().nullable(),
  version: z.string().nullable().openapi({ description: "the momd version it runs" }),
  ready: z.boolean().nullable().openapi({
    description: "what its /readyz says (null: not asked, or no answer)",
  }),
  recoveryPoint: z.string().nullable().openapi({
    description: "start of its last backup pass that saved every entity it owns (null: none yet)",
  }),
}).openapi("ClusterNode");

const EntitySchema = z.object({
  type: z.enum(["queue", "topic"]),
  name: z.string(),
  owner: z.string(),
  replicas: z.array(z.string()),
  epoch: z.number().int(),
  lag: z.record(z.string(), z.number().int().nullable()),
  inSync: z.array(z.string()),
}).openapi("ClusterEntity");

const StatusSchema = z.object({
  node: z.string(),
  version: z.string().openapi({ description: "the version of the node that answers" }),
  mode: z.enum(["single", "cluster"]),
  controller: z.string().nullable(),
  nodes: z.array(NodeSchema),
  backup: z.object({
    recoveryPoint: z.string().nullable().openapi({
      description: "the oldest recovery point of the live nodes: every change acknowledged " +
        "before it is in the backup (null: unknown)",
    }),
  }),
  entities: z.array(EntitySchema),
}).openapi("ClusterStatus");

const status = createRoute({
  operationId: "getClusterStatus",
  method: "get",
  path: "/v1/cluster",
  tags: ["cluster"],
  summary: "The nodes, the controller, and who owns and replicates each queue and topic (admin)",
  description: "Admins only: it names every node's addresses and every queue and topic. A " +
    "user reads an entity's owner with GET /v1/queues/{name} or /v1/topics/{name}.",
  security: bearer,
  middleware: [requireAdmin()],
  request: {
    query: z.object({
      scope: z.enum(["cluster", "local"]).default("cluster").openapi({
        description: "local: only this node's view, without asking its peers for lag",
      }),
    }).strict(),
  },
  responses: {
    200: {
      description: "cluster status",
      content: { "application/json": { schema: StatusSchema } },
    },
    ...errorResponses(403),
  },
});

const check = createRoute({
  operationId: "checkCluster",
  method: "get",
  path: "/v1/cluster/check",
  tags: ["cluster"],
  summary: "Checks that every copy, view, backup and key agrees with ZooKeeper (admin)",
  description: "Admins only. The node asked reads ZooKeeper's records, the backup heads and " +
    "every live node's store (over gRPC) and compares: each node's view of every entity with " +
    "ZooKeeper's owner and epoch; each replica's sequence number, epoch, incarnation and " +
    "content digest with its owner's (at equal sequence numbers); the stores ZooKeeper names " +
    "with the nodes' stores; each backup with its owner (never ahead); keys that belong to no " +
    "entity a node holds, and listed entities without a ZooKeeper record. It runs on a live " +
    "cluster: what may resolve by itself is looked at again for `wait` seconds, and a replica " +
    "still behind is only a warning (`lagging`). Answers 200 either way: `consistent` is false " +
    "when any error was found, and a node that does not answer is an error (`unreachable`): " +
    "the cluster cannot be verified. A single node checks its store and backups. Each problem " +
    "kind and what to do about it: docs/check.md.",
  security: bearer,
  middleware: [requireAdmin()],
  request: { query: CheckQuery },
  responses: {
    200: {
      description: "what the check found",
      content: { "application/json": { schema: CheckReportSchema } },
    },
    ...errorResponses(403),
  },
});

const forget = createRoute({
  operationId: "forgetClusterNode",
  method: "delete",
  path: "/v1/cluster/nodes/{id}",
  tags: ["cluster"],
  summary: "Forgets a node removed from the cluster for good (admin)",
  description: "A node that joined once stays part of the cluster, shown as down while it does " +
    "not run (and `momd cluster status` exits 5), until it comes back or is forgotten here. " +
    "Refuses a live node (409).",
  security: bearer,
  middleware: [requireAdmin()],
  request: {
    params: z.object({
      id: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/).openapi({ description: "the node's id" }),
    }),
  },
  responses: {
    204: { description: "forgotten" },
    ...errorResponses(403, 404, 409),
  },
});

/** Every name a listing gives, page after page. */
async function allNames(
  list: (after?: string) => Promise<{ names: string[]; next: string | null }>,
): Promise<string[]> {
  const names: string[] = [];
  let after: string | undefined;
  do {
    const page = await list(after);
    names.push(...page.names);
    after = page.next ?? undefined;
  } while (after !== undefined);
  return names;
}

async function singleNodeStatus(deps: ApiDeps): Promise<ClusterStatus> {
  const entity = (type: "queue" | "topic", name: string) => ({
    type,
    name,
    owner: deps.config.nodeId,
    replicas: [],
    epoch: 0,
    lag: {},
    inSync: [],
  });
  const queues = await allNames(async (after) => {
    const page = await deps.queues.list({ after, limit: 1000 });
    return { names: page.queues.map((q) => q.name), next: page.next };
  });
  const topics = await allNames(async (after) => {
    const page = await deps.topics.list({ after, limit: 1000 });
    return { names: page.topics.map((t) => t.name), next: page.next };
  });
  const entities: ClusterStatus["entities"] = [
    ...queues.map((name) => entity("queue", name)),
    ...topics.map((name) => entity("topic", name)),
  ];
  return {
    node: deps.config.nodeId,
    version: VERSION,
    mode: "single",
    controller: deps.config.nodeId,
    backup: { recoveryPoint: null },
    nodes: [{
      id: deps.config.nodeId,
      http: null,
      grpc: null,
      alive: true,
      owned: entities.length,
      replicated: 0,
      startedAt: null,
      version: VERSION,
      ready: null,
      recoveryPoint: null,
    }],
    entities,
  };
}

/** Cluster status (admins): nodes, controller, entities with owner, replicas, epoch and lag. */
export function registerClusterRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.openapi(status, async (c) => {
    const { scope } = c.req.valid("query");
    const body = deps.router
      ? await deps.router.status({ localOnly: scope === "local", caller: c.get("principal") })
      : await singleNodeStatus(deps);
    const self = body.nodes.find((n) => n.id === deps.config.nodeId);
    if (self) {
      self.ready = (await readiness(deps)).ready;
      const point = deps.recoveryPoint?.() ?? null;
      self.recoveryPoint = point === null ? null : new Date(point).toISOString();
    }
    const points = body.nodes.filter((n) => n.alive).map((n) => n.recoveryPoint);
    body.backup = {
      recoveryPoint: points.length && points.every((p) => p !== null) ? points.sort()[0] : null,
    };
    return c.json(body, 200);
  });
  app.openapi(forget, async (c) => {
    const { id } = c.req.valid("param");
    if (!deps.router) throw new BrokerError("not_found", "a single node has no other nodes");
    if (!await deps.router.forgetNode(id)) {
      throw new BrokerError("not_found", `no node '${id}' is known to the cluster`);
    }
    return c.body(null, 204);
  });
  app.openapi(check, async (c) => {
    if (!deps.checker) {
      throw new BrokerError("unavailable", "this node has no consistency checker set up");
    }
    const { wait, timeout } = c.req.valid("query");
    const report = await deps.checker.check({ settleMs: wait * 1000, timeoutMs: timeout * 1000 });
    return c.json(report, 200);
  });
}
