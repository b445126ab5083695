/**
 * The calculator's API gateway, rebuilt on momd's request/reply. A request becomes a momd
 * request on the service's queue with the client's time to live as its deadline; the gateway
 * waits a moment for the reply and otherwise hands out the task id to poll.
 *
 *   POST /request          {"client_id", "service_name", "payload": {"parameter_a",
 *                          "parameter_b"}, "time_to_live_seconds"}
 *   GET  /task/{task_id}?client_id=...[&wait_seconds=N]
 *   GET  /services
 *   GET  /health
 *
 * Its task ids are momd's task id plus a signature binding it to the client id: a task is
 * readable only with the client id that made it (momd itself sees one user: the gateway's).
 *
 *   deno run --allow-net --allow-env examples/calculator/gateway.ts
 */
import { Hono } from "hono";
import { MomdClient, MomdError, type Task } from "./momd.ts";
import { findService, parsePayload, SERVICES } from "./services.ts";
import { QUEUE_CONFIG } from "./worker.ts";

/** Options of the gateway. */
export interface GatewayOptions {
  momd: MomdClient;
  /** Signs task ids; the same secret must be used across restarts and replicas. */
  secret: string;
  /** How long a request waits for the service before answering "queued" (default 2 s). */
  immediateWaitSeconds?: number;
}

/** Task states in which a reply may still come. */
const OPEN = new Set<Task["status"]>(["pending", "in_progress"]);
const TTL_MAX = 3600;
const TTL_DEFAULT = 60;
const CLIENT_ID = /^[A-Za-z0-9_.:@-]{1,128}$/;

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_")
    .replace(/=+$/, "");
}

/** The gateway as a Hono app (serve it with Deno.serve, or call `app.request` in a test). */
export function createGateway(opts: GatewayOptions): Hono {
  const { momd } = opts;
  const app = new Hono();
  const key = crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(opts.secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );

  async function sign(clientId: string, momdTaskId: string): Promise<string> {
    const data = new TextEncoder().encode(`${clientId}\n${momdTaskId}`);
    const mac = await crypto.subtle.sign("HMAC", await key, data);
    return base64url(new Uint8Array(mac).slice(0, 16));
  }

  /** The momd task id of a gateway task id made for this client, or null. */
  async function verify(clientId: string, taskId: string): Promise<string | null> {
    const dot = taskId.lastIndexOf(".");
    if (dot < 0) return null;
    const momdTaskId = taskId.slice(0, dot);
    return taskId.slice(dot + 1) === await sign(clientId, momdTaskId) ? momdTaskId : null;
  }

  const error = (message: string) => ({ status: "error", message });

  app.onError((err, c) => {
    if (err instanceof MomdError) {
      console.error(`momd refused: ${err.message}`);
      return c.json(error(`the broker refused: ${err.detail}`), err.status === 503 ? 503 : 502);
    }
    console.error("gateway error", err);
    return c.json(error("the broker is unreachable"), 503);
  });

  app.get("/health", (c) => c.json({ status: "healthy" }));

  app.get("/services", (c) =>
    c.json({
      services: SERVICES.map(({ name, description, methods }) => ({ name, description, methods })),
    }));

  app.post("/request", async (c) => {
    let input: Record<string, unknown>;
    try {
      input = await c.req.json();
    } catch {
      return c.json(error("the body must be JSON"), 400);
    }
    if (typeof input !== "object" || input === null) return c.json(error("bad body"), 400);
    const clientId = input.client_id;
    if (typeof clientId !== "string" || !CLIENT_ID.test(clientId)) {
      return c.json(error("client_id must be 1-128 of A-Z a-z 0-9 _ . : @ -"), 400);
    }
    const service = findService(input.service_name);
    if (!service) {
      return c.json(error(`unknown service '${input.service_name}': see GET /services`), 404);
    }
    const payload = parsePayload(input.payload);
    if (typeof payload === "string") return c.json(error(payload), 400);
    const ttl = input.time_to_live_seconds ?? TTL_DEFAULT;
    if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < 1 || ttl > TTL_MAX) {
      return c.json(error(`time_to_live_seconds must be an integer of 1-${TTL_MAX}`), 400);
    }

    const wait = Math.min(opts.immediateWaitSeconds ?? 2, ttl);
    let { ended, task } = await momd.request(service.name, {
      body: JSON.stringify(payload),
      timeoutSeconds: ttl,
      waitSeconds: wait,
    });
    if (!ended && wait >= ttl) {
      // The wait reached the deadline: ask once more, waiting for it on momd's clock (the
      // gateway's may differ), so an expired request is not answered "queued".
      const now = await momd.task(task.taskId, 1);
      if (now) ({ ended, task } = { ended: !OPEN.has(now.status), task: now });
    }
    const taskId = `${task.taskId}.${await sign(clientId, task.taskId)}`;
    if (ended && task.status === "completed") {
      return c.json({
        status: "success",
        task_id: taskId,
        response: JSON.parse(task.result!),
        processed_immediately: true,
      });
    }
    if (ended && task.status === "failed") {
      // A service answered, with an error (bad input, a result JSON cannot hold).
      return c.json({
        status: "failed",
        task_id: taskId,
        response: null,
        error: task.error ?? "the service failed",
        processed_immediately: true,
      });
    }
    if (ended) {
      // No service took it before its deadline (the workers are down or busy): not processed.
      return c.json({
        status: "expired",
        task_id: taskId,
        response: null,
        error: `no service answered within time_to_live_seconds (${ttl} s): not processed`,
        processed_immediately: false,
      });
    }
    return c.json({
      status: "queued",
      task_id: taskId,
      message: `service '${service.name}' has not answered yet: poll GET /task/${taskId}` +
        `?client_id=${encodeURIComponent(clientId)} until the deadline`,
      deadline: task.deadline,
      processed_immediately: false,
    }, 202);
  });

  app.get("/task/:task_id", async (c) => {
    const clientId = c.req.query("client_id");
    if (!clientId) return c.json(error("client_id is required"), 400);
    const wait = Number(c.req.query("wait_seconds") ?? "0");
    if (!Number.isFinite(wait) || wait < 0 || wait > 20) {
      return c.json(error("wait_seconds must be 0-20"), 400);
    }
    const taskId = c.req.param("task_id");
    const momdTaskId = await verify(clientId, taskId);
    const task: Task | null = momdTaskId ? await momd.task(momdTaskId, wait) : null;
    const now = new Date().toISOString();
    if (!task) {
      return c.json({ status: "unknown", task_id: taskId, response: null, timestamp: now }, 404);
    }
    return c.json({
      status: task.status,
      task_id: taskId,
      response: task.status === "completed" ? JSON.parse(task.result!) : null,
      ...(task.status === "failed" ? { error: task.error } : {}),
      timestamp: task.completedAt ?? now,
      deadline: task.deadline,
    });
  });

  return app;
}

/** Creates the service queues (the workers do too; whoever starts first). */
export async function ensureQueues(momd: MomdClient): Promise<void> {
  for (const s of SERVICES) await momd.ensureQueue(s.name, QUEUE_CONFIG);
}

if (import.meta.main) {
  const momd = new MomdClient({
    url: Deno.env.get("MOMD_URL") ?? "http://127.0.0.1:8080",
    username: Deno.env.get("CALC_GATEWAY_USER") ?? Deno.env.get("MOMD_ADMIN_USERNAME") ??
      "admin",
    password: Deno.env.get("CALC_GATEWAY_PASSWORD") ?? Deno.env.get("MOMD_ADMIN_PASSWORD") ?? "",
  });
  let secret = Deno.env.get("CALC_GATEWAY_SECRET");
  if (!secret) {
    secret = base64url(crypto.getRandomValues(new Uint8Array(32)));
    console.warn("CALC_GATEWAY_SECRET is not set: task ids are valid until this gateway stops");
  }
  try {
    await ensureQueues(momd);
  } catch (err) {
    console.error(`cannot prepare the service queues on momd: ${(err as Error).message}`);
    Deno.exit(1);
  }
  const port = Number(Deno.env.get("CALC_GATEWAY_PORT") ?? "8000");
  Deno.serve({ hostname: "127.0.0.1", port }, createGateway({ momd, secret }).fetch);
}
