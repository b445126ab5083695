/**
 * Sending many messages from the command line: from arguments, a file (`--file`) or standard
 * input, one message a line, in batches, with a progress line on a terminal.
 */
import { str, UsageError } from "./args.ts";
import type { Ctx } from "./context.ts";
import { type LineBatch, lineBatches } from "./lines.ts";
import { Progress } from "./progress.ts";

/** What one sent message reports (queue: duplicate; topic: offset). */
export interface SentLine {
  id: string;
  duplicate?: boolean;
  offset?: number;
}

/** Where the messages come from, and how many a request carries. */
export interface SendPlan {
  /** "queue 'jobs'" or "topic 'events'", for messages. */
  label: string;
  batchSize: number;
  /** Sends one batch; `numbers` are the input line (or argument) numbers of its messages. */
  send(bodies: string[], numbers: number[]): Promise<SentLine[]>;
}

async function* fromArgs(bodies: string[], size: number): AsyncGenerator<LineBatch> {
  for (let i = 0; i < bodies.length; i += size) {
    const lines = bodies.slice(i, i + size);
    yield { lines, numbers: lines.map((_, j) => i + j + 1), bytesRead: 0 };
  }
}

/** Sends the command's input; prints one summary (or one JSON line per message). */
export async function sendInput(ctx: Ctx, bodies: string[], plan: SendPlan): Promise<void> {
  const file = str(ctx.values, "file");
  if (file !== undefined && bodies.length > 0) {
    throw new UsageError("give messages as arguments or with --file, not both");
  }
  let source: AsyncGenerator<LineBatch>;
  let totalBytes: number | undefined;
  let streamed = true;
  if (bodies.length > 0) {
    source = fromArgs(bodies, plan.batchSize);
    streamed = false;
  } else if (file !== undefined && file !== "-") {
    let handle: Deno.FsFile;
    try {
      handle = await Deno.open(file, { read: true });
    } catch (err) {
      throw new UsageError(`cannot read ${file}: ${err instanceof Error ? err.message : err}`);
    }
    totalBytes = (await handle.stat()).size;
    source = lineBatches(handle.readable, plan.batchSize);
  } else if (file === "-" || !ctx.io.stdinIsTerminal) {
    source = lineBatches(ctx.io.stdin(), plan.batchSize);
  } else {
    throw new UsageError(
      "nothing to send: give messages as arguments, --file PATH, or pipe them to standard input",
    );
  }

  const progress = new Progress((t) => ctx.err(t), {
    enabled: streamed && ctx.io.stderrIsTerminal && !ctx.json,
    totalBytes,
  });
  let sent = 0;
  let duplicates = 0;
  let last: SentLine | undefined;
  let lastLine = 0;
  try {
    for await (const batch of source) {
      const results = await plan.send(batch.lines, batch.numbers);
      for (const [i, r] of results.entries()) {
        if (r.duplicate) duplicates++;
        if (ctx.json) await ctx.printJsonLine({ line: batch.numbers[i], ...r });
      }
      sent += results.length;
      last = results.at(-1);
      lastLine = batch.numbers.at(-1) ?? lastLine;
      if (sent > plan.batchSize) await progress.update(sent, batch.bytesRead);
    }
  } catch (err) {
    await progress.finish();
    const where = streamed ? "input lines" : "arguments";
    await ctx.err(
      `momd: ${sent} message(s) sent to ${plan.label} before the failure` +
        (sent ? ` (${where} up to ${lastLine})` : "") + "; the rest was not sent\n",
    );
    throw err;
  }
  if (sent > plan.batchSize) await progress.update(sent, totalBytes ?? 0, true);
  await progress.finish();
  if (ctx.json) return;
  if (sent === 0) {
    await ctx.out(`nothing sent: the input has no messages\n`);
  } else if (sent === 1 && last) {
    const at = last.offset !== undefined ? ` at offset ${last.offset}` : "";
    const dup = last.duplicate ? " (a duplicate: the original's id)" : "";
    await ctx.out(`sent 1 message to ${plan.label}${at}: ${last.id}${dup}\n`);
  } else {
    const dup = duplicates ? ` (${duplicates} duplicates)` : "";
    await ctx.out(`sent ${sent} messages to ${plan.label}${dup}\n`);
  }
}
