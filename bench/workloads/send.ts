/**
 * `send` and `send-batch`: concurrent producers, each sending one request after another (one
 * message, or a batch of 100), each answered once the broker holds the messages.
 */
import { runClosedLoop } from "../load.ts";
import { type Row, rowFromLoad } from "../row.ts";
import {
  createQueue,
  deleteQueue,
  type HttpTarget,
  meter,
  type RunSettings,
  sendBody,
} from "./common.ts";

/**
 * Runs `send` (batch 1) or `send-batch` (batch 100) against momd or the HTTP ceiling; `variant`
 * names a second run of the same workload (its own queue).
 */
export async function sendWorkload(
  t: HttpTarget,
  batch: number,
  settings: RunSettings,
  variant?: string,
): Promise<Row> {
  const workload = batch === 1 ? "send" : "send-batch";
  const queue = `${settings.runId}-${workload}${variant ? "-2" : ""}`;
  if (t.target === "momd") await createQueue(t.api, queue);
  try {
    const req = t.api.prepare(
      "POST",
      `/v1/queues/${queue}/messages`,
      sendBody(batch, settings.size),
    );
    const m = meter(t.groups);
    const result = await runClosedLoop({
      concurrency: settings.concurrency,
      durationMs: settings.durationMs,
      warmupMs: settings.warmupMs,
    }, async () => {
      await t.api.send(req, [201]);
      return batch;
    });
    return rowFromLoad(
      {
        workload,
        target: t.target,
        size: settings.size,
        variant: `${batch}/request${variant ? `, ${variant}` : ""}`,
      },
      result,
      m.stop(),
    );
  } finally {
    if (t.target === "momd") await deleteQueue(t.api, queue);
  }
}
