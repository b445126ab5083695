/**
 * `drain-10` and `drain-100`: concurrent consumers receive from a preloaded queue, each a batch
 * (10 or 100) at a time, acknowledging it with one ack request, for the duration or until the
 * queue is empty. The HTTP ceiling stores nothing and never runs dry.
 */
import { runClosedLoop } from "../load.ts";
import { type Row, rowFromLoad } from "../row.ts";
import {
  createQueue,
  deleteQueue,
  type HttpTarget,
  meter,
  preload,
  type RunSettings,
} from "./common.ts";

interface Deliveries {
  messages: { receipt: string }[];
}

/** Runs a drain with receive batches of `batch` over `count` preloaded messages. */
export async function drainWorkload(
  t: HttpTarget,
  batch: number,
  count: number,
  settings: RunSettings,
): Promise<Row> {
  const workload = batch === 10 ? "drain-10" : "drain-100";
  const queue = `${settings.runId}-${workload}`;
  const momd = t.target === "momd";
  let preloadSeconds = 0;
  if (momd) {
    await createQueue(t.api, queue);
    settings.log(`  preloading ${count} messages into ${queue}`);
    preloadSeconds = (await preload(t.api, `/v1/queues/${queue}/messages`, count, settings))
      .seconds;
  }
  try {
    const receive = t.api.prepare("POST", `/v1/queues/${queue}/receive`, {
      max: batch,
      visibilitySeconds: 600,
    });
    const ackPath = `/v1/queues/${queue}/ack`;
    const m = meter(t.groups);
    // For the duration, or until the preloaded queue is empty; no warm-up on a preloaded queue
    // (a fast drain would empty it before the measurement starts).
    const result = await runClosedLoop({
      concurrency: settings.concurrency,
      durationMs: settings.durationMs,
      warmupMs: momd ? 0 : settings.warmupMs,
    }, async () => {
      const got = JSON.parse(await t.api.send(receive, [200])) as Deliveries;
      if (got.messages.length === 0) return "empty";
      const receipts = got.messages.map((msg) => msg.receipt);
      await t.api.send(t.api.prepare("POST", ackPath, { receipts }), [200]);
      return receipts.length;
    });
    // Each operation is two requests: a receive and an ack.
    const row = rowFromLoad(
      { workload, target: t.target, size: settings.size, variant: `receive ${batch} + ack` },
      result,
      m.stop(),
      momd
        ? {
          preloaded: count,
          preloadSeconds: Math.round(preloadSeconds * 100) / 100,
          emptied: result.drained,
        }
        : undefined,
    );
    row.requests = result.ops * 2;
    return row;
  } finally {
    if (momd) await deleteQueue(t.api, queue);
  }
}
