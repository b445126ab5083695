/**
 * A calculator worker: an ordinary consumer of its service's queue. It receives a request
 * (long polling), computes, posts the reply to the task, then acks. A crash before the ack
 * means the request is delivered again; a failure to reply releases it (nack) for a later try.
 * Bad input is a failed task, not a retry: the work never runs twice for a bug.
 *
 *   deno run --allow-net --allow-env examples/calculator/worker.ts [sum subtraction ...]
 */
import { MomdClient, MomdError } from "./momd.ts";
import { findService, parsePayload, type Service, SERVICES } from "./services.ts";

/** The queue configuration the demo uses (whoever starts first creates it). */
export const QUEUE_CONFIG = { visibilityTimeoutSeconds: 30, maxDeliveries: 5 };

/** Options of a worker. */
export interface WorkerOptions {
  momd: MomdClient;
  service: Service;
  /** Long poll of each receive (default 20 s, momd's longest). */
  waitSeconds?: number;
  /** Delay before a released request is delivered again (default 2 s). */
  retryDelaySeconds?: number;
  log?: (line: string) => void;
}

/** A running worker. */
export interface Worker {
  /** Stops receiving; resolves once the loop has ended (what it holds is delivered again). */
  stop(): Promise<void>;
}

/** The reply to one request body: the result as JSON, or why it cannot be computed. */
export function work(service: Service, body: string): { result: string } | { error: string } {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return { error: "the request body is not JSON" };
  }
  const payload = parsePayload(value);
  if (typeof payload === "string") return { error: payload };
  const result = service.compute(payload.parameter_a, payload.parameter_b);
  // JSON has no Infinity or NaN (JSON.stringify writes null): an overflow is a failed task.
  if (!Number.isFinite(result)) {
    return { error: `the result is not a finite number (${result}): the operands are too large` };
  }
  return { result: JSON.stringify({ result }) };
}

/** Starts consuming the service's queue until stopped. */
export function startWorker(opts: WorkerOptions): Worker {
  const { momd, service } = opts;
  const queue = service.name;
  const log = opts.log ?? ((line: string) => console.log(`[${queue}] ${line}`));
  const stopping = new AbortController();
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      stopping.signal.addEventListener("abort", done, { once: true });
      function done() {
        clearTimeout(timer);
        stopping.signal.removeEventListener("abort", done);
        resolve();
      }
    });

  async function handle(m: { body: string; receipt: string; attributes: Record<string, string> }) {
    const taskId = m.attributes["momd-task-id"];
    if (!taskId) {
      // Not a request: leave it to the queue (it dead-letters after its max deliveries).
      log("a message without a task id: released");
      await momd.nack(queue, m.receipt, opts.retryDelaySeconds ?? 2);
      return;
    }
    const reply = work(service, m.body);
    try {
      await momd.reply(taskId, reply);
      log(`${taskId}: ${"result" in reply ? reply.result : `failed: ${reply.error}`}`);
    } catch (err) {
      if (!(err instanceof MomdError && (err.status === 409 || err.status === 404))) {
        // momd unreachable or refusing for now: try again later.
        log(`${taskId}: reply failed (${(err as Error).message}); released for a retry`);
        await momd.nack(queue, m.receipt, opts.retryDelaySeconds ?? 2);
        return;
      }
      // Deadline passed, answered already (a redelivery), or ended: nothing more to do.
      log(`${taskId}: ${err.detail}`);
    }
    await momd.ack(queue, m.receipt);
  }

  const loop = (async () => {
    await momd.ensureQueue(queue, QUEUE_CONFIG).catch((err) => log(`queue: ${err.message}`));
    while (!stopping.signal.aborted) {
      try {
        const messages = await momd.receive(queue, {
          max: 10,
          waitSeconds: opts.waitSeconds ?? 20,
          signal: stopping.signal,
        });
        for (const m of messages) {
          if (stopping.signal.aborted) break; // the rest is delivered again after its timeout
          await handle(m);
        }
      } catch (err) {
        if (stopping.signal.aborted) break;
        log(`receive failed: ${(err as Error).message}; retrying in 1 s`);
        await pause(1000);
      }
    }
  })();

  return {
    async stop() {
      stopping.abort();
      await loop;
    },
  };
}

if (import.meta.main) {
  const names = Deno.args.length > 0 ? Deno.args : SERVICES.map((s) => s.name);
  const momd = new MomdClient({
    url: Deno.env.get("MOMD_URL") ?? "http://127.0.0.1:8080",
    username: Deno.env.get("CALC_WORKER_USER") ?? Deno.env.get("MOMD_ADMIN_USERNAME") ?? "admin",
    password: Deno.env.get("CALC_WORKER_PASSWORD") ?? Deno.env.get("MOMD_ADMIN_PASSWORD") ?? "",
  });
  const workers = names.map((name) => {
    const service = findService(name);
    if (!service) {
      console.error(`unknown service '${name}' (known: ${SERVICES.map((s) => s.name).join(", ")})`);
      Deno.exit(2);
    }
    return startWorker({ momd, service });
  });
  console.log(`workers for ${names.join(", ")} started; Ctrl-C stops them`);
  Deno.addSignalListener("SIGINT", async () => {
    await Promise.all(workers.map((w) => w.stop()));
    Deno.exit(0);
  });
}
