import type { MiddlewareHandler } from "hono";
import type { EntityRef } from "../../broker/keys.ts";
import type { AppEnv } from "../context.ts";
import { type OwnerCallOptions, serveOnOwner } from "../middleware/owner_routing.ts";
import type { EntityRouter } from "../routing.ts";
import { decodeSegment } from "../schemas/common.ts";
import { MomName } from "./schemas.ts";

const DELETE_PATH = /\/admin\/queue_topic\/delete\/([^/]+)$/;

function entityType(value: unknown): "queue" | "topic" | null {
  return value === "queue" || value === "topic" ? value : null;
}

async function successFlag(res: Response): Promise<boolean> {
  if (res.status !== 200) return false;
  const body = await res.json().catch(() => null) as { success?: unknown } | null;
  return body?.success === true;
}

/**
 * In a cluster, serves the earlier API's entity operations on the entity's owner, like /v1
 * (see owner_routing.ts). The entity is named in the body (`name`, `type`) or, for a delete, in
 * the path and `mom_type`. A request whose entity cannot be read, or whose name breaks the rule,
 * is left to validation (422).
 */
export function compatRouteToOwner(router: EntityRouter | undefined): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (!router) return next();
    const path = c.req.path;
    const del = DELETE_PATH.exec(path);
    let entity: EntityRef | null = null;
    let request: Request | undefined;
    if (del) {
      const type = entityType(c.req.query("mom_type"));
      const name = decodeSegment(del[1]);
      if (type && name !== null) entity = { type, name };
    } else if (c.req.method === "GET" || c.req.method === "HEAD") {
      // No entity in a body a GET cannot carry (and a forward of one must not have a body).
    } else {
      const text = await c.req.text();
      request = new Request(c.req.raw.url, {
        method: c.req.method,
        headers: c.req.raw.headers,
        body: text,
      });
      let body: { name?: unknown; type?: unknown } | null = null;
      try {
        body = JSON.parse(text);
      } catch {
        // validation answers 422
      }
      const type = entityType(body?.type);
      if (type && typeof body?.name === "string") entity = { type, name: body.name };
    }
    // A name that breaks the rule goes no further than validation (422): never to ZooKeeper.
    if (!entity || !MomName.safeParse(entity.name).success) return next();
    const opts: OwnerCallOptions = {
      create: path.endsWith("/admin/queue_topic/create/"),
      created: successFlag,
      deleted: del ? successFlag : undefined,
      request,
    };
    return await serveOnOwner(c, next, router, entity, opts);
  };
}
