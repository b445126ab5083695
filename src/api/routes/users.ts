import type { OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps } from "../app.ts";
import type { AppEnv } from "../context.ts";

/** users routes: placeholder until implemented. */
export function registerUserRoutes(_app: OpenAPIHono<AppEnv>, _deps: ApiDeps): void {}
