/**
 * `latency`: one producer sends single messages at a fixed rate (open loop: the schedule never
 * waits for the broker), a few consumers long-poll, receive up to 10 and ack them. A message's
 * latency runs from the moment its send was due to the moment its ack was answered, so a broker
 * that falls behind shows it (no coordinated omission). The body starts with that moment.
 */
import { runAtRate, Samples } from "../load.ts";
import { latencyOf, round, type Row } from "../row.ts";
import { createQueue, deleteQueue, type HttpTarget, meter, type RunSettings } from "./common.ts";

interface Deliveries {
  messages: { receipt: string; body: string }[];
}

/** Consumers of a latency run: a few, so that long polls do not outnumber messages. */
export function latencyConsumers(concurrency: number): number {
  return Math.max(2, Math.ceil(concurrency / 8));
}

/**
 * Sends in flight at most in a latency run (4 × the concurrency): a send due beyond it is not
 * made and counts as `skipped`, which fails the latency target.
 */
export function latencyMaxInFlight(concurrency: number): number {
  return 4 * concurrency;
}

/** A body of `size` bytes starting with the epoch time in ms (`<time>|xxx...`). */
export function stampedBody(epochMs: number, size: number): string {
  const stamp = `${epochMs.toFixed(3)}|`;
  return stamp + "x".repeat(Math.max(0, size - stamp.length));
}

/** Runs the latency workload on momd at `rate` messages per second. */
export async function latencyWorkload(
  t: HttpTarget,
  rate: number,
  settings: RunSettings,
): Promise<Row> {
  const queue = `${settings.runId}-latency`;
  await createQueue(t.api, queue);
  const origin = performance.timeOrigin;
  const consumers = latencyConsumers(settings.concurrency);
  const samples = new Samples();
  const measureFrom = origin + performance.now() + settings.warmupMs;
  let producing = true;
  let acked = 0;
  let consumerErrors = 0;
  const errorSamples: string[] = [];
  try {
    const receive = t.api.prepare("POST", `/v1/queues/${queue}/receive`, {
      max: 10,
      waitSeconds: 1,
    });
    const ackPath = `/v1/queues/${queue}/ack`;
    const sendPath = `/v1/queues/${queue}/messages`;
    const m = meter(t.groups);

    const consume = async () => {
      let stopAt = Infinity;
      while (performance.now() < stopAt) {
        let got: Deliveries;
        try {
          got = JSON.parse(await t.api.send(receive, [200])) as Deliveries;
          if (got.messages.length > 0) {
            const receipts = got.messages.map((msg) => msg.receipt);
            await t.api.send(t.api.prepare("POST", ackPath, { receipts }), [200]);
          }
        } catch (err) {
          consumerErrors++;
          if (errorSamples.length < 5) errorSamples.push((err as Error).message);
          await new Promise((r) => setTimeout(r, 10));
          continue;
        }
        const now = origin + performance.now();
        for (const msg of got.messages) {
          const sentAt = parseFloat(msg.body);
          acked++;
          if (sentAt >= measureFrom) samples.add(now - sentAt);
        }
        if (!producing) {
          if (got.messages.length === 0) return;
          // Bound the tail: a broker that lost messages must not keep us here.
          if (stopAt === Infinity) stopAt = performance.now() + 10_000;
        }
      }
    };
    const consumersDone = Promise.all(Array.from({ length: consumers }, consume));

    const produced = await runAtRate({
      rate,
      durationMs: settings.warmupMs + settings.durationMs,
      maxInFlight: latencyMaxInFlight(settings.concurrency),
    }, async (scheduledAt) => {
      const body = JSON.stringify({
        messages: [{ body: stampedBody(origin + scheduledAt, settings.size) }],
      });
      await t.api.send(t.api.prepare("POST", sendPath, body), [201]);
    });
    producing = false;
    await consumersDone;
    const cpu = m.stop();

    const sorted = samples.sorted();
    const errors = [...produced.errorSamples, ...errorSamples].slice(0, 5);
    const seconds = settings.durationMs / 1000;
    return {
      workload: "latency",
      target: t.target,
      variant: `${round(rate, 0)} msgs/s, ${consumers} consumers`,
      messages: sorted.length,
      requests: produced.started,
      errors: produced.errors + consumerErrors,
      seconds,
      msgsPerSec: round(sorted.length / seconds, 1),
      mbPerSec: round(sorted.length / seconds * settings.size / 1e6, 2),
      latencyMs: latencyOf(sorted),
      cpuSeconds: cpu,
      extra: {
        rate: round(rate, 1),
        consumers,
        sent: produced.completed,
        acked,
        skipped: produced.skipped,
        lost: produced.completed - acked,
      },
      errorSamples: errors.length > 0 ? errors : undefined,
    };
  } finally {
    await deleteQueue(t.api, queue);
  }
}
