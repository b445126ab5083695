import type { OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps } from "../app.ts";
import type { AppEnv } from "../context.ts";
import { problem } from "../problem.ts";
import type { ReplicationHealth } from "../routing.ts";
import type { MemoryStatus } from "../../broker/memory.ts";
import { BUILD, DATA_FORMAT, VERSION } from "../../version.ts";

/** What /readyz finds. */
export interface Readiness {
  ready: boolean;
  /** Why not, one reason a line. */
  reasons: string[];
  checks: Record<string, boolean>;
  memory?: MemoryStatus;
  replication?: ReplicationHealth;
}

/**
 * Whether this node should take traffic: every dependency reachable, and (in a cluster) none of
 * its owned entities missing a live replica from its in-sync set and none of the entities it
 * replicates still catching up. Replicas on dead nodes do not count: no node can help that, and
 * taking every node out of the load balancer when one dies would turn a degraded cluster into a
 * dead one (they show in `replication.replicasDown` and the metrics instead).
 */
export async function readiness(deps: ApiDeps): Promise<Readiness> {
  const checks = await deps.readiness();
  const memory = deps.memory?.();
  const replication = deps.router?.replicationHealth();
  const reasons: string[] = [];
  const down = Object.entries(checks).filter(([, ok]) => !ok).map(([name]) => name);
  if (down.length) reasons.push(`${down.join(", ")} unreachable`);
  if (replication?.underReplicated.length) {
    reasons.push(`${replication.underReplicated.length} owned entities under-replicated`);
  }
  if (replication?.catchingUp.length) {
    reasons.push(`catching up on ${replication.catchingUp.length} replicated entities`);
  }
  return {
    ready: reasons.length === 0,
    reasons,
    checks,
    ...(memory ? { memory } : {}),
    ...(replication ? { replication } : {}),
  };
}

/**
 * Liveness and readiness probes (no token needed, not rate-limited).
 *
 * `/readyz` shows the local store's memory (`memory`), and a node above its high watermark stays
 * ready, as a RabbitMQ node under a memory alarm stays up: taking it out of the load balancer
 * would also cut off the consumers whose receives and acks are the only way to drain it. Its
 * sends answer 507 meanwhile (`memory.refusingNewMessages`).
 */
export function registerHealthRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.get("/healthz", (c) =>
    c.json({
      status: "ok",
      node: deps.config.nodeId,
      version: VERSION,
      build: BUILD,
      dataFormat: DATA_FORMAT,
    }));
  app.get("/readyz", async (c) => {
    const { ready, reasons, ...report } = await readiness(deps);
    if (!ready) {
      return problem(c, 503, `not ready: ${reasons.join("; ")}`, {
        code: "unavailable",
        ...report,
      }, {
        "retry-after": "1",
      });
    }
    return c.json({ status: "ready", node: deps.config.nodeId, ...report });
  });
}
