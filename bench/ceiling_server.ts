/**
 * The HTTP ceiling: a minimal Deno + Hono server that answers momd's message requests with the
 * same shapes momd answers them, without storing anything, checking a token or validating more
 * than the JSON. Whatever the benchmark measures against it is the best any broker behind this
 * HTTP stack (and this load generator, and this NGINX) could do on this machine.
 *
 *   deno run --allow-net bench/ceiling_server.ts --listen 127.0.0.1:8090 --size 256
 *
 * It prints `listening on http://host:port` once it serves, and stops on SIGTERM or SIGINT.
 * `--size` is the body size of the messages a receive answers with.
 */
import { Hono } from "hono";

/** Options of the ceiling app. */
export interface CeilingOptions {
  /** Body size, in bytes, of each message a receive returns. */
  size: number;
}

/** The ceiling as a Hono app (what `main` serves). */
export function ceilingApp(opts: CeilingOptions): Hono {
  const app = new Hono();
  const body = "x".repeat(opts.size);
  let next = 0;
  const id = () => `c${(next++).toString(36)}`;

  app.get("/healthz", (c) => c.text("ok"));
  app.get("/readyz", (c) => c.json({ ready: true }));
  app.post("/v1/auth/token", (c) => c.json({ token: "ceiling", expiresAt: "" }));

  const send = async (c: { req: { json(): Promise<unknown> } }) => {
    const req = await c.req.json() as { messages?: unknown[] };
    const n = Array.isArray(req.messages) ? req.messages.length : 0;
    const messages = new Array(n);
    for (let i = 0; i < n; i++) messages[i] = { id: id(), duplicate: false };
    return { messages };
  };
  app.post("/v1/queues/:name/messages", async (c) => c.json(await send(c), 201));
  app.post("/v1/topics/:name/messages", async (c) => c.json(await send(c), 201));

  const receive = async (c: { req: { json(): Promise<unknown> } }) => {
    const req = await c.req.json().catch(() => ({})) as { max?: number };
    const n = Math.max(1, Math.min(100, req.max ?? 1));
    const now = new Date().toISOString();
    const messages = new Array(n);
    for (let i = 0; i < n; i++) {
      const mid = id();
      messages[i] = {
        id: mid,
        body,
        attributes: {},
        receipt: `${mid}.r`,
        deliveryCount: 1,
        enqueuedAt: now,
        expiresAt: now,
        visibleAt: now,
      };
    }
    return { messages };
  };
  app.post("/v1/queues/:name/receive", async (c) => c.json(await receive(c), 200));
  app.post("/v1/topics/:name/subscriptions/:sub/receive", async (c) => c.json(await receive(c)));

  const ack = async (c: { req: { json(): Promise<unknown> } }) => {
    const req = await c.req.json() as { receipts?: string[] };
    const receipts = Array.isArray(req.receipts) ? req.receipts : [];
    return { results: receipts.map((receipt) => ({ receipt, ok: true })) };
  };
  app.post("/v1/queues/:name/ack", async (c) => c.json(await ack(c), 200));
  app.post("/v1/topics/:name/subscriptions/:sub/ack", async (c) => c.json(await ack(c), 200));
  return app;
}

function flag(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}

if (import.meta.main) {
  const listen = flag(Deno.args, "--listen", "127.0.0.1:8090");
  const size = Number(flag(Deno.args, "--size", "256"));
  const i = listen.lastIndexOf(":");
  const server = Deno.serve({
    hostname: listen.slice(0, i),
    port: Number(listen.slice(i + 1)),
    onListen: ({ hostname, port }) => console.log(`listening on http://${hostname}:${port}`),
  }, ceilingApp({ size }).fetch);
  const stop = () => server.shutdown().then(() => Deno.exit(0));
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
}
