import type { OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps } from "../app.ts";
import type { AppEnv } from "../context.ts";
import { problem } from "../problem.ts";

/** Liveness and readiness probes (no token needed, not rate-limited). */
export function registerHealthRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  app.get("/healthz", (c) => c.json({ status: "ok", node: deps.config.nodeId }));
  app.get("/readyz", async (c) => {
    const checks = await deps.readiness();
    const ready = Object.values(checks).every(Boolean);
    if (!ready) {
      const down = Object.entries(checks).filter(([, ok]) => !ok).map(([name]) => name);
      return problem(c, 503, `not ready: ${down.join(", ")} unreachable`, {
        code: "unavailable",
        checks,
      }, {
        "retry-after": "1",
      });
    }
    return c.json({ status: "ready", node: deps.config.nodeId, checks });
  });
}
