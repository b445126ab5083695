import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../context.ts";
import type { Metrics } from "../../metrics/metrics.ts";

/**
 * `GET /metrics`: the node's metrics in Prometheus' text format, for a scraper that reaches each
 * node at its own address (NGINX does not pass /metrics on: one node's numbers behind a load
 * balancer would be a different node's every scrape). No token, as with /healthz: it names
 * queues and counts, not contents; keep node ports off public networks (docs/operations.md).
 */
export function registerMetricsRoute(app: OpenAPIHono<AppEnv>, metrics: Metrics): void {
  app.get("/metrics", async (c) => {
    const body = await metrics.render();
    return c.body(body, 200, { "content-type": metrics.contentType });
  });
}
