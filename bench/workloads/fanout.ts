/**
 * `fan-out`: producers publish batches of 100 to a topic with three subscriptions for the
 * duration while consumers of every subscription receive (up to 100, long polling) and ack; once
 * publishing stops, each subscription is consumed to the end. The figure is deliveries per second
 * over all three subscriptions, from the first publish to the last ack; the publish rate and the
 * time the consumers needed after the last publish are in `extra`.
 */
import { runClosedLoop } from "../load.ts";
import { latencyOf, round, type Row } from "../row.ts";
import { Samples } from "../load.ts";
import { type HttpTarget, meter, type RunSettings, sendBody } from "./common.ts";

/** Subscriptions of the fan-out topic. */
export const FANOUT_SUBSCRIPTIONS = ["s1", "s2", "s3"];

/** Producers and consumers per subscription of a fan-out run with this concurrency. */
export function fanoutWorkers(concurrency: number): { producers: number; perSubscription: number } {
  return {
    producers: Math.max(1, Math.floor(concurrency / 2)),
    perSubscription: Math.max(1, Math.floor(concurrency / 6)),
  };
}

interface Deliveries {
  messages: { receipt: string }[];
}

/** Runs the fan-out workload on momd. */
export async function fanoutWorkload(t: HttpTarget, settings: RunSettings): Promise<Row> {
  const topic = `${settings.runId}-fan-out`;
  const { producers, perSubscription } = fanoutWorkers(settings.concurrency);
  // No size or count limit: retention must not drop what the consumers have not seen.
  await t.api.call("PUT", `/v1/topics/${topic}`, {
    retentionMaxBytes: 0,
    retentionMaxMessages: 0,
  }, [200, 201]);
  try {
    for (const sub of FANOUT_SUBSCRIPTIONS) {
      await t.api.call("PUT", `/v1/topics/${topic}/subscriptions/${sub}`, {
        start: "earliest",
        visibilityTimeoutSeconds: 600,
      }, [200, 201]);
    }
    const m = meter(t.groups);
    const start = performance.now();
    let publishing = true;
    let delivered = 0;
    let consumerErrors = 0;
    const errorSamples: string[] = [];
    const ackLatency = new Samples();

    const consume = async (sub: string) => {
      const receive = t.api.prepare("POST", `/v1/topics/${topic}/subscriptions/${sub}/receive`, {
        max: 100,
        waitSeconds: 1,
      });
      const ackPath = `/v1/topics/${topic}/subscriptions/${sub}/ack`;
      let stopAt = Infinity;
      while (performance.now() < stopAt) {
        try {
          const t0 = performance.now();
          const got = JSON.parse(await t.api.send(receive, [200])) as Deliveries;
          if (got.messages.length === 0) {
            if (!publishing) return;
            continue;
          }
          const receipts = got.messages.map((msg) => msg.receipt);
          await t.api.send(t.api.prepare("POST", ackPath, { receipts }), [200]);
          ackLatency.add(performance.now() - t0);
          delivered += receipts.length;
        } catch (err) {
          consumerErrors++;
          if (errorSamples.length < 5) errorSamples.push((err as Error).message);
          await new Promise((r) => setTimeout(r, 10));
        }
        if (!publishing && stopAt === Infinity) {
          stopAt = performance.now() + Math.max(60_000, settings.durationMs * 10);
        }
      }
    };
    const consumers = Promise.all(
      FANOUT_SUBSCRIPTIONS.flatMap((sub) =>
        Array.from({ length: perSubscription }, () => consume(sub))
      ),
    );

    const publish = t.api.prepare(
      "POST",
      `/v1/topics/${topic}/messages`,
      sendBody(100, settings.size),
    );
    const published = await runClosedLoop({
      concurrency: producers,
      durationMs: settings.durationMs,
    }, async () => {
      await t.api.send(publish, [201]);
      return 100;
    });
    const publishEnd = performance.now();
    publishing = false;
    await consumers;
    const end = performance.now();
    const cpu = m.stop();

    const seconds = (end - start) / 1000;
    const expected = published.messages * FANOUT_SUBSCRIPTIONS.length;
    const errors = [...published.errorSamples, ...errorSamples].slice(0, 5);
    return {
      workload: "fan-out",
      target: t.target,
      variant: `3 subscriptions, ${producers} publishers, ${perSubscription} consumers each`,
      messages: delivered,
      requests: published.ops,
      errors: published.errors + consumerErrors,
      seconds: round(seconds, 3),
      msgsPerSec: round(delivered / seconds, 1),
      mbPerSec: round(delivered / seconds * settings.size / 1e6, 2),
      latencyMs: latencyOf(ackLatency.sorted()),
      cpuSeconds: cpu,
      extra: {
        published: published.messages,
        publishPerSec: round(published.messages / (published.elapsedMs / 1000), 1),
        delivered,
        complete: delivered >= expected,
        tailSeconds: round((end - publishEnd) / 1000, 2),
      },
      errorSamples: errors.length > 0 ? errors : undefined,
    };
  } finally {
    await t.api.call("DELETE", `/v1/topics/${topic}`, undefined, [204, 404]);
  }
}
