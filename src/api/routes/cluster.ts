import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { ApiDeps } from "../app.ts";
import type { AppEnv } from "../context.ts";
import { requireAdmin } from "../middleware/auth.ts";
import type { ClusterStatus } from "../routing.ts";
import { bearer, errorResponses } from "../schemas/common.ts";

const NodeSchema = z.object({
  id: z.string(),
  http: z.string().nullable(),
  grpc: z.string().nullable(),
  alive: z.boolean(),
  owned: z.number().int(),
  replicated: z.number().int(),
  startedAt: z.string().nullable(),
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
  mode: z.enum(["single", "cluster"]),
  controller: z.string().nullable(),
  nodes: z.array(NodeSchema),
  entities: z.array(EntitySchema),
}).openapi("ClusterStatus");

const status = createRoute({
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

async function singleNodeStatus(deps: ApiDeps): Promise<ClusterStatus> {
  const entities: ClusterStatus["entities"] = [];
  for (const q of (await deps.queues.list({ limit: 1000 })).queues) {
    entities.push({
      type: "queue",
      name: q.name,
      owner: deps.config.nodeId,
      replicas: [],
      epoch: 0,
      lag: {},
      inSync: [],
    });
  }
  for (const t of (await deps.topics.list({ limit: 1000 })).topics) {
    entities.push({
      type: "topic",
      name: t.name,
      owner: deps.config.nodeId,
      replicas: [],
      epoch: 0,
      lag: {},
      inSync: [],
    });
  }
  return {
    node: deps.config.nodeId,
    mode: "single",
    controller: deps.config.nodeId,
    nodes: [{
      id: deps.config.nodeId,
      http: null,
      grpc: null,
      alive: true,
      owned: entities.length,
      replicated: 0,
      startedAt: null,
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
    return c.json(body, 200);
  });
}
