import type { OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps } from "../app.ts";
import type { AppEnv } from "../context.ts";

/** queues routes: placeholder until implemented. */
export function registerQueueRoutes(_app: OpenAPIHono<AppEnv>, _deps: ApiDeps): void {}
