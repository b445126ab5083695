/** Receiving from the command line: once, or `--follow` until Ctrl-C, with or without `--ack`. */
import { int, seconds } from "./args.ts";
import type { Ctx } from "./context.ts";
import { oneLine, table } from "./output.ts";

/** How to receive from one target and show what came. */
export interface ReceivePlan<M extends { receipt: string }> {
  label: string;
  receive(
    opts: { max: number; waitSeconds: number; visibilitySeconds?: number; signal?: AbortSignal },
  ): Promise<M[]>;
  ack(messages: M[]): Promise<{ ok: boolean }[]>;
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
  follow: { type: "boolean", short: "f" },
} as const;

/** The help text of those options. */
export const RECEIVE_HELP =
  `  --max N            most messages to receive (default 1; with --follow: no limit)
  --wait SECONDS     long-poll up to this long for the first message, 0-20 (default 0;
                     with --follow: 20)
  --visibility SECS  visibility timeout of these deliveries (default: the configured one)
  --ack              acknowledge each message once printed (else it is delivered again
                     when its visibility timeout ends; the RECEIPT column lets you ack later)
  -f, --follow       keep long-polling and print messages as they come, until Ctrl-C`;

/** Runs a receive command. */
export async function receiveCommand<M extends { receipt: string }>(
  ctx: Ctx,
  plan: ReceivePlan<M>,
): Promise<void> {
  const follow = ctx.values.follow === true;
  const ack = ctx.values.ack === true;
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
    if (ctx.json) {
      for (const m of batch) await ctx.printJsonLine(m);
    } else if (follow) {
      // Print as they come: one aligned block per batch, the header once.
      const lines = table(headers, batch.map(row)).split("\n");
      await ctx.out((headerShown ? lines.slice(1) : lines).join("\n"));
      headerShown = true;
    } else {
      shown.push(...batch);
    }
    if (ack) stale += (await plan.ack(batch)).filter((r) => !r.ok).length;
    if (!follow && batch.length < Math.min(100, max - received + batch.length)) break;
  }
  if (!ctx.json && !follow) {
    if (shown.length) await ctx.out(table(headers, shown.map(row)));
    else await ctx.err(`no message ready in ${plan.label}\n`);
  }
  if (stale) {
    await ctx.err(
      `momd: ${stale} ack(s) refused as stale (the visibility timeout ended first): ` +
        "those messages will be delivered again\n",
    );
  }
}

/** A message body for a table cell of a listing (cut at 60 characters). */
export function bodyCell(body: string): string {
  return oneLine(body, 60);
}
