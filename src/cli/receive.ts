/**
 * Receiving from the command line: once, or `--follow` until Ctrl-C (over a stream when the
 * server has one, else by long polls), acknowledging what was printed or not.
 */
import {
  MomdStreamUnsupportedError,
  type StreamConsumer,
  type StreamConsumerOptions,
} from "../client/mod.ts";
import { int, seconds, UsageError } from "./args.ts";
import type { Ctx } from "./context.ts";
import { oneLine, table } from "./output.ts";

/** How to receive from one target and show what came. */
export interface ReceivePlan<M extends { receipt: string }> {
  label: string;
  receive(
    opts: { max: number; waitSeconds: number; visibilitySeconds?: number; signal?: AbortSignal },
  ): Promise<M[]>;
  ack(messages: M[]): Promise<{ ok: boolean }[]>;
  /** A streaming consumer of the target, for `--follow`. */
  stream?(options: StreamConsumerOptions): StreamConsumer<M>;
  /** Columns before RECEIPT and BODY. */
  headers: string[];
  row(m: M): (string | number | null)[];
  body(m: M): string;
}

/** Options shared by `queue receive` and `topic receive`. */
export const RECEIVE_OPTIONS = {
  max: { type: "string" },
  wait: { type: "string" },
  visibility: { type: "string" },
  ack: { type: "boolean" },
  "no-ack": { type: "boolean" },
  follow: { type: "boolean", short: "f" },
} as const;

/** The help text of those options. */
export const RECEIVE_HELP =
  `  --max N            most messages to receive (default 1; with --follow: no limit)
  --wait SECONDS     long-poll up to this long for the first message, 0-20 (default 0;
                     with --follow: 20; a stream does not poll)
  --visibility SECS  visibility timeout of these deliveries (default: the configured one)
  --ack              acknowledge each message once printed (else it is delivered again
                     when its visibility timeout ends; the RECEIPT column lets you ack later);
                     the default with --follow
  --no-ack           do not acknowledge (the default without --follow): with --follow the
                     messages stay in flight until their visibility timeout ends, and those
                     held when Ctrl-C stops the command are handed back at once
  -f, --follow       print messages as they come until Ctrl-C: over a stream (the server
                     pushes them) when the server has one, else by long polls`;

/** Runs a receive command. */
export async function receiveCommand<M extends { receipt: string }>(
  ctx: Ctx,
  plan: ReceivePlan<M>,
): Promise<void> {
  const follow = ctx.values.follow === true;
  if (ctx.values.ack === true && ctx.values["no-ack"] === true) {
    throw new UsageError("give --ack or --no-ack, not both");
  }
  // A follower is a consumer: it acknowledges what it printed unless told not to.
  const ack = follow ? ctx.values["no-ack"] !== true : ctx.values.ack === true;
  const max = int(ctx.values, "max", { min: 1 }) ?? (follow ? Infinity : 1);
  const waitSeconds = seconds(ctx.values, "wait", 20) ?? (follow ? 20 : 0);
  const visibilitySeconds = int(ctx.values, "visibility", { min: 1, max: 43_200 });
  const signal = follow ? ctx.io.interrupted() : undefined;
  // The body comes last and whole (control characters escaped), so nothing is cut off.
  const headers = [...plan.headers, ...(ack ? [] : ["RECEIPT"]), "BODY"];
  const row = (
    m: M,
  ) => [...plan.row(m), ...(ack ? [] : [m.receipt]), oneLine(plan.body(m), Infinity)];

  let received = 0;
  let stale = 0;
  const shown: M[] = [];
  let headerShown = false;
  const print = async (batch: M[]) => {
    if (ctx.json) {
      for (const m of batch) await ctx.printJsonLine(m);
    } else {
      // Print as they come: one aligned block per batch, the header once.
      const lines = table(headers, batch.map(row)).split("\n");
      await ctx.out((headerShown ? lines.slice(1) : lines).join("\n"));
      headerShown = true;
    }
  };
  const warnStale = async () => {
    if (!stale) return;
    await ctx.err(
      `momd: ${stale} ack(s) refused as stale (the visibility timeout ended first): ` +
        "those messages will be delivered again\n",
    );
  };
  if (follow && plan.stream) {
    const streamed = await followStream(ctx, plan, {
      max,
      ack,
      visibilitySeconds,
      signal: signal!,
      print,
      onStale: () => stale++,
    });
    if (streamed) return await warnStale();
  }
  while (received < max && !signal?.aborted) {
    let batch: M[];
    try {
      batch = await plan.receive({
        max: Math.min(100, max - received),
        waitSeconds,
        visibilitySeconds,
        signal,
      });
    } catch (err) {
      if (signal?.aborted) break;
      throw err;
    }
    if (batch.length === 0) {
      if (follow) continue;
      break;
    }
    received += batch.length;
    if (ctx.json || follow) await print(batch);
    else shown.push(...batch);
    if (ack) stale += (await plan.ack(batch)).filter((r) => !r.ok).length;
    if (!follow && batch.length < Math.min(100, max - received + batch.length)) break;
  }
  if (!ctx.json && !follow) {
    if (shown.length) await ctx.out(table(headers, shown.map(row)));
    else await ctx.err(`no message ready in ${plan.label}\n`);
  }
  await warnStale();
}

/**
 * `--follow` over a stream: prints what the server pushes (what is there already in one block),
 * acks each message once printed (acks go in batches) or, with --no-ack, leaves it in flight;
 * Ctrl-C closes the stream, which hands back what it still holds. False when the server has no
 * streams (the caller long-polls instead).
 */
async function followStream<M extends { receipt: string }>(
  ctx: Ctx,
  plan: ReceivePlan<M>,
  opts: {
    max: number;
    ack: boolean;
    visibilitySeconds?: number;
    signal: AbortSignal;
    print(batch: M[]): Promise<void>;
    onStale(): void;
  },
): Promise<boolean> {
  const consumer = plan.stream!({
    prefetch: Math.min(100, opts.max),
    max: opts.max,
    visibilitySeconds: opts.visibilitySeconds,
    // Without acks a delivery must not hold its credit, or the stream would stall.
    credit: opts.ack ? "settle" : "receive",
    onError: (err) => {
      void ctx.err(`momd: ${err instanceof Error ? err.message : err} (carrying on)\n`);
    },
  });
  try {
    await consumer.connect();
  } catch (err) {
    await consumer.close();
    if (err instanceof MomdStreamUnsupportedError) return false;
    throw err;
  }
  const acks: Promise<void>[] = [];
  let received = 0;
  try {
    while (received < opts.max && !opts.signal.aborted) {
      let first: M | undefined;
      try {
        first = await consumer.next(opts.signal);
      } catch (err) {
        if (opts.signal.aborted) break;
        throw err;
      }
      if (!first) break;
      const batch = [first];
      while (batch.length < 100 && received + batch.length < opts.max) {
        const m = consumer.take();
        if (!m) break;
        batch.push(m);
      }
      received += batch.length;
      await opts.print(batch);
      if (opts.ack) {
        for (const m of batch) {
          acks.push(
            consumer.ack(m).then((r) => {
              if (!r.ok) opts.onStale();
            }),
          );
        }
      }
    }
  } finally {
    await consumer.close();
  }
  const unanswered = (await Promise.allSettled(acks)).filter((r) => r.status === "rejected");
  if (unanswered.length > 0) {
    await ctx.err(
      `momd: ${unanswered.length} ack(s) got no answer: those messages may be delivered again\n`,
    );
  }
  return true;
}

/** A message body for a table cell of a listing (cut at 60 characters). */
export function bodyCell(body: string): string {
  return oneLine(body, 60);
}
