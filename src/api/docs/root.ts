/**
 * `GET /`: what this service is and where to go from here. JSON by default; a browser (which
 * prefers `text/html`) gets the same as a page of links.
 */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { AppEnv } from "../context.ts";
import { VERSION } from "../../version.ts";
import { escapeHtml } from "./page.ts";

const Links = z.object({
  docs: z.string().openapi({ description: "the API's documentation (Swagger UI)" }),
  openapi: z.string().openapi({ description: "the OpenAPI 3.1 document" }),
  console: z.string().openapi({ description: "the web console" }),
  healthz: z.string().openapi({ description: "liveness" }),
  readyz: z.string().openapi({ description: "readiness and its checks" }),
  metrics: z.string().openapi({ description: "Prometheus metrics" }),
  compatDocs: z.string().openapi({ description: "the earlier MOM server's API: documentation" }),
  compatOpenapi: z.string().openapi({ description: "the earlier MOM server's API: document" }),
}).openapi("ServiceLinks");

const ServiceIndex = z.object({
  service: z.literal("momd"),
  version: z.string(),
  description: z.string(),
  links: Links,
}).openapi("ServiceIndex");

const index = createRoute({
  operationId: "getServiceIndex",
  method: "get",
  path: "/",
  tags: ["meta"],
  summary: "The service, its version and links to its docs, console and health endpoints",
  description: "JSON unless the client prefers `text/html` (a browser), which gets a page of " +
    "the same links.",
  responses: {
    200: {
      description: "the service index",
      content: {
        "application/json": { schema: ServiceIndex },
        "text/html": { schema: z.string() },
      },
    },
  },
});

/** Options of the index. */
export interface RootOptions {
  /** Where the compatibility API lives (its docs and document are linked). */
  compatBasePath: string;
}

/** Registers `GET /`. */
export function registerRootRoute(app: OpenAPIHono<AppEnv>, opts: RootOptions): void {
  const compat = opts.compatBasePath.replace(/\/+$/, "");
  const body: z.infer<typeof ServiceIndex> = {
    service: "momd",
    version: VERSION,
    description: "Message-oriented middleware: queues and topics over REST. Log in with " +
      "POST /v1/auth/token, then send the token as `Authorization: Bearer <token>`.",
    links: {
      docs: "/docs",
      openapi: "/openapi.json",
      console: "/console",
      healthz: "/healthz",
      readyz: "/readyz",
      metrics: "/metrics",
      compatDocs: `${compat}/docs`,
      compatOpenapi: `${compat}/openapi.json`,
    },
  };
  const html = renderIndex(body);
  app.openapi(index, (c: Context<AppEnv>) => {
    // The answer depends on Accept: caches must keep the two apart.
    c.header("vary", "accept");
    if (prefersHtml(c.req.header("accept"))) {
      c.header("content-security-policy", "default-src 'none'; frame-ancestors 'none'");
      return c.html(html, 200);
    }
    return c.json(body, 200);
  });
}

/** The q-value an Accept header gives a media type (its most specific matching range). */
function quality(accept: string, type: string): number {
  const [major] = type.split("/");
  let best = -1;
  let q = 0;
  for (const part of accept.split(",")) {
    const [range, ...params] = part.trim().toLowerCase().split(";").map((s) => s.trim());
    const specificity = range === type ? 2 : range === `${major}/*` ? 1 : range === "*/*" ? 0 : -1;
    if (specificity <= best) continue;
    best = specificity;
    const qParam = params.find((p) => p.startsWith("q="));
    const value = qParam ? Number(qParam.slice(2)) : 1;
    q = Number.isFinite(value) ? value : 0;
  }
  return q;
}

/** True when the client ranks HTML above JSON (a browser's navigation); a tie is JSON. */
export function prefersHtml(accept: string | undefined): boolean {
  if (!accept) return false;
  return quality(accept, "text/html") > quality(accept, "application/json");
}

function renderIndex(body: z.infer<typeof ServiceIndex>): string {
  const labels: Record<keyof typeof body.links, string> = {
    docs: "API documentation",
    openapi: "OpenAPI document",
    console: "Console",
    healthz: "Liveness (/healthz)",
    readyz: "Readiness (/readyz)",
    metrics: "Metrics (Prometheus)",
    compatDocs: "Compatibility API of the earlier MOM server: documentation",
    compatOpenapi: "Compatibility API of the earlier MOM server: OpenAPI document",
  };
  const items = (Object.keys(labels) as (keyof typeof labels)[])
    .map((k) =>
      `<li><a href="${escapeHtml(body.links[k])}">${escapeHtml(labels[k])}</a> ` +
      `<code>${escapeHtml(body.links[k])}</code></li>`
    )
    .join("\n      ");
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>momd ${escapeHtml(body.version)}</title>
  </head>
  <body>
    <h1>momd ${escapeHtml(body.version)}</h1>
    <p>${escapeHtml(body.description)}</p>
    <ul>
      ${items}
    </ul>
  </body>
</html>
`;
}
