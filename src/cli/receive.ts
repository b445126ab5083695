/**
 * Receiving from the command line: once, or `--follow` until Ctrl-C (over a stream when the
 * server has one, else by long polls), acknowledging what was printed or not, with a progress
 * line on a terminal for long receives. Also settling deliveries later by their receipts (ack,
 * nack, visibility), given as arguments or read from standard input.
 */
import {
  MomdStreamUnsupportedError,
  type StreamConsumer,
  type StreamConsumerOptions,
} from "../client/mod.ts";
import { int, seconds, UsageError } from "./args.ts";
import { type Ctx, EXIT } from "./context.ts";
import { lineBatches } from "./lines.ts";
import { duration, oneLine, table } from "./output.ts";
import { Progress } from "./progress.ts";

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

/** Longest visibility timeout (the server's limit, queues and topics alike). */
export const VISIBILITY_MAX = 43_200;

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

/** More messages than one request brings make a receive long enough for a progress line. */
const PROGRESS_AFTER = 100;

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
  const visibilitySeconds = int(ctx.values, "visibility", { min: 1, max: VISIBILITY_MAX });
  const signal = follow ? ctx.io.interrupted() : undefined;
  // The body comes last and whole (control characters escaped), so nothing is cut off.
  const headers = [...plan.headers, ...(ack ? [] : ["RECEIPT"]), "BODY"];
  const row = (
    m: M,
  ) => [...plan.row(m), ...(ack ? [] : [m.receipt]), oneLine(plan.body(m), Infinity)];
  // Only a person watching a terminal wants it: never in JSON or into a pipe or a file.
  const progress = new Progress((t) => ctx.err(t), {
    enabled: ctx.io.stderrIsTerminal && !ctx.json && (follow || max > PROGRESS_AFTER),
    verb: "received",
    total: Number.isFinite(max) ? max : undefined,
  });

  let received = 0;
  let stale = 0;
  const shown: M[] = [];
  let headerShown = false;
  const print = async (batch: M[]) => {
    // The progress line steps aside for the messages and comes back under them.
    await progress.clear();
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
  try {
    if (follow && plan.stream) {
      const streamed = await followStream(ctx, plan, {
        max,
        ack,
        visibilitySeconds,
        signal: signal!,
        async print(batch) {
          await print(batch);
          received += batch.length;
          await progress.update(received, received, true);
        },
        onStale: () => stale++,
      });
      if (streamed) {
        await progress.finish();
        return await warnStale();
      }
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
      await progress.update(received, received, ctx.json || follow);
      if (ack) stale += (await plan.ack(batch)).filter((r) => !r.ok).length;
      if (!follow && batch.length < Math.min(100, max - received + batch.length)) break;
    }
    if (received > 0) await progress.update(received, received, true);
  } finally {
    await progress.finish();
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

/** What a receipt looks like (base64url): anything else is refused before a request. */
const RECEIPT_PATTERN = /^[A-Za-z0-9_-]{1,200}$/;

/** Most receipts in one ack, nack or visibility request (the server's limit). */
const RECEIPTS_PER_REQUEST = 100;

/** The help text of where receipts come from and what the commands settling them print. */
export const RECEIPTS_HELP =
  `Receipts come from the arguments or, without any, from standard input, one a line: a
receipt, or a JSON line with a "receipt" field as 'receive --json' prints them. More than
100 go as several requests of 100.

With --json, the API's answer: {"results": [{"receipt", "ok", "error"}]}. A receipt that is not
the current delivery of a message (settled already, past its visibility deadline, an earlier
attempt's) is refused as stale: it is listed on standard error, and the exit code is 3.`;

/**
 * The receipts of an ack, nack or visibility change: the arguments, or else those piped to
 * standard input, one a line (a receipt, or a JSON object with a `receipt`, as `receive --json`
 * prints deliveries; blank lines skipped). Anything else is a usage error naming it, before
 * anything is sent.
 */
export async function receiptsFrom(
  ctx: Ctx,
  args: string[],
  helpFor: string,
): Promise<string[]> {
  const missing = "missing RECEIPT: give receipts as arguments or one a line on standard input";
  if (args.length > 0) {
    for (const r of args) {
      if (!RECEIPT_PATTERN.test(r)) {
        throw new UsageError(`not a receipt: '${oneLine(r, 60)}'`, helpFor);
      }
    }
    return args;
  }
  if (ctx.io.stdinIsTerminal) throw new UsageError(missing, helpFor);
  const receipts: string[] = [];
  for await (const batch of lineBatches(ctx.io.stdin(), RECEIPTS_PER_REQUEST)) {
    for (const [i, line] of batch.lines.entries()) {
      receipts.push(receiptOfLine(line.trim(), batch.numbers[i], helpFor));
    }
  }
  if (receipts.length === 0) throw new UsageError(missing, helpFor);
  return receipts;
}

/** The receipt of one input line: the line itself, or the `receipt` of a JSON line. */
function receiptOfLine(line: string, number: number, helpFor: string): string {
  let receipt: unknown = line;
  if (line.startsWith("{") || line.startsWith('"')) {
    try {
      const value = JSON.parse(line);
      receipt = typeof value === "string" ? value : value?.receipt;
    } catch {
      receipt = undefined;
    }
  }
  if (typeof receipt !== "string" || !RECEIPT_PATTERN.test(receipt)) {
    throw new UsageError(
      `standard input line ${number} is neither a receipt nor a JSON object with a "receipt": ` +
        `'${oneLine(line, 60)}'`,
      helpFor,
    );
  }
  return receipt;
}

/** The outcome of one receipt (`error: "stale_receipt"` when refused). */
export interface ReceiptOutcome {
  receipt: string;
  ok: boolean;
  error?: string;
}

/** How to settle one request's receipts, and what to say about those that went through. */
export interface SettlePlan {
  settle(receipts: string[]): Promise<readonly ReceiptOutcome[]>;
  /** The summary line, e.g. `acknowledged 3 message(s)\n`. */
  done(ok: number): string;
}

/**
 * Settles deliveries by receipt (ack, nack, visibility) in requests of 100, then reports: the
 * summary line (with --json the per-receipt results, `{"results": [...]}`), the refused receipts
 * on standard error, and exit code 3 when any was refused (with --json too).
 */
export async function settleReceipts(
  ctx: Ctx,
  receipts: string[],
  plan: SettlePlan,
): Promise<number | void> {
  const results: ReceiptOutcome[] = [];
  for (let i = 0; i < receipts.length; i += RECEIPTS_PER_REQUEST) {
    try {
      results.push(...await plan.settle(receipts.slice(i, i + RECEIPTS_PER_REQUEST)));
    } catch (err) {
      // Earlier requests were applied: say how far it got before the error is reported.
      if (results.length > 0) {
        if (ctx.json) await ctx.printJson({ results });
        await ctx.err(
          `momd: ${results.length} of ${receipts.length} receipt(s) answered before the ` +
            `failure (${results.filter((r) => r.ok).length} ok); the rest were not sent\n`,
        );
      }
      throw err;
    }
  }
  const refused = results.filter((r) => !r.ok);
  if (ctx.json) await ctx.printJson({ results });
  else await ctx.out(plan.done(results.length - refused.length));
  if (refused.length === 0) return;
  let text = `momd: ${refused.length} receipt(s) stale: not the current delivery of a message ` +
    `(settled already, past its visibility deadline, an earlier attempt's, or unknown)\n`;
  if (!ctx.json) {
    const listed = refused.slice(0, 10).map((r) => `  ${r.receipt}\n`).join("");
    const more = refused.length > 10 ? `  ... and ${refused.length - 10} more\n` : "";
    text += listed + more;
  }
  await ctx.err(text);
  return EXIT.refused;
}

/** The summary of a nack. */
export function releasedLine(ok: number, delaySeconds: number | undefined): string {
  const when = delaySeconds ? ` after ${duration(delaySeconds)}` : "";
  return `released ${ok} message(s) for redelivery${when}\n`;
}

/** The summary of a visibility change. */
export function visibilityLine(ok: number, timeout: number): string {
  return timeout === 0
    ? `ended ${ok} delivery(ies): their messages may be delivered again at once\n`
    : `${ok} delivery(ies) stay in flight for ${duration(timeout)} from now\n`;
}

/** The help text of `visibility`'s --timeout. */
export const VISIBILITY_OPTION_HELP =
  `  --timeout SECS   the new visibility timeout, counted from now, 0-${VISIBILITY_MAX} (required)`;

/** The --timeout of a visibility change: required, whole seconds. */
export function visibilityTimeout(ctx: Ctx, helpFor: string): number {
  const timeout = int(ctx.values, "timeout", { max: VISIBILITY_MAX });
  if (timeout === undefined) throw new UsageError("missing --timeout SECS", helpFor);
  return timeout;
}
