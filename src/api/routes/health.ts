import type { OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps } from "../app.ts";
import type { AppEnv } from "../context.ts";
import { problem } from "../problem.ts";

/**
 * Liveness and readiness probes (no token needed, not rate-limited).
 *
 * `/readyz` shows the local store's memory (`memory`), and a node above its high watermark stays
 * ready, as a RabbitMQ node under a memory alarm stays up: taking it out of the load balancer
 * would also cut off the consumers whose receives and acks are the only way to drain it. Its
 * sends answer 507 meanwhile (`memory.refusingNewMessages`).
 */
export function registerHealthRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.get("/healthz", (c) => c.json({ status: "ok", node: deps.config.nodeId }));
  app.get("/readyz", async (c) => {
    const checks = await deps.readiness();
    const memory = deps.memory?.();
    const ready = Object.values(checks).every(Boolean);
    if (!ready) {
      const down = Object.entries(checks).filter(([, ok]) => !ok).map(([name]) => name);
      return problem(c, 503, `not ready: ${down.join(", ")} unreachable`, {
        code: "unavailable",
        checks,
        ...(memory ? { memory } : {}),
      }, {
        "retry-after": "1",
      });
    }
    return c.json({
      status: "ready",
      node: deps.config.nodeId,
      checks,
      ...(memory ? { memory } : {}),
    });
  });
}
