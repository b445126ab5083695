/**
 * Sending many messages from the command line: from arguments (in batches), or one message a
 * line from a file (`--file`) or standard input (over a producer stream when the server has
 * one, else in batches), with a progress line on a terminal.
 */
import { MomdStreamUnsupportedError } from "../client/mod.ts";
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
  /** A streaming producer, for input read line by line (a file, standard input). */
  producer?(): LineProducer;
}

/** A producer stream as `sendInput` uses it. */
export interface LineProducer {
  connect(): Promise<void>;
  /** Sends the message of input line `line`. */
  send(body: string, line: number): Promise<SentLine>;
  close(): Promise<void>;
}

/** Sends written to a producer and not answered yet, at most (it answers in order). */
const STREAM_WINDOW = 1000;

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
  if (streamed && plan.producer) {
    const producer = plan.producer();
    let streaming = true;
    try {
      await producer.connect();
    } catch (err) {
      await producer.close();
      if (!(err instanceof MomdStreamUnsupportedError)) throw err;
      streaming = false; // a server without streams: batches of REST sends
    }
    if (streaming) return await streamInput(ctx, source, plan, producer, progress, totalBytes);
  }
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
  await summary(ctx, plan, sent, duplicates, last);
}

/** The closing line of a send that went through: how many, or the one id. */
async function summary(
  ctx: Ctx,
  plan: SendPlan,
  sent: number,
  duplicates: number,
  last: SentLine | undefined,
): Promise<void> {
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

/** One line written to the producer, waiting for its answer. */
interface Written {
  line: number;
  bytesRead: number;
  answer: Promise<SentLine>;
}

/**
 * Sends input lines over a producer stream, up to STREAM_WINDOW in flight, printing each answer
 * (with --json) as it comes, in input order. After a failure nothing more is read; the sends in
 * flight are answered, then the command says how far it got.
 */
async function streamInput(
  ctx: Ctx,
  source: AsyncGenerator<LineBatch>,
  plan: SendPlan,
  producer: LineProducer,
  progress: Progress,
  totalBytes: number | undefined,
): Promise<void> {
  const written: Written[] = [];
  let sent = 0;
  let duplicates = 0;
  let failed = 0;
  let last: SentLine | undefined;
  let failure: { line: number; error: unknown } | undefined;
  let lastWritten = 0;
  let reading = true;
  let wakeDrainer: (() => void) | undefined;
  let wakeReader: (() => void) | undefined;

  // Answers come in order: take them from the front as they arrive.
  const drainer = (async () => {
    while (reading || written.length > 0) {
      if (written.length === 0) {
        await new Promise<void>((r) => wakeDrainer = r);
        continue;
      }
      const w = written[0];
      try {
        const r = await w.answer;
        sent++;
        if (r.duplicate) duplicates++;
        last = r;
        if (ctx.json) await ctx.printJsonLine({ line: w.line, ...r });
        if (sent > plan.batchSize) await progress.update(sent, w.bytesRead);
      } catch (error) {
        failed++;
        failure ??= { line: w.line, error };
      }
      written.shift();
      wakeReader?.();
    }
  })();

  try {
    reading: for await (const batch of source) {
      for (const [i, body] of batch.lines.entries()) {
        if (failure) break reading;
        while (written.length >= STREAM_WINDOW) await new Promise<void>((r) => wakeReader = r);
        const line = batch.numbers[i];
        const answer = producer.send(body, line);
        answer.catch(() => {}); // handled in order by the drainer
        written.push({ line, bytesRead: batch.bytesRead, answer });
        lastWritten = line;
        wakeDrainer?.();
      }
    }
  } finally {
    reading = false;
    wakeDrainer?.();
    await drainer;
    await producer.close();
  }
  if (failure) {
    await progress.finish();
    const more = failed > 1 ? ` (and ${failed - 1} more after it)` : "";
    await ctx.err(
      `momd: ${sent} message(s) sent to ${plan.label}; input line ${failure.line} failed` +
        `${more}; nothing after input line ${lastWritten} was sent\n`,
    );
    throw failure.error;
  }
  if (sent > plan.batchSize) await progress.update(sent, totalBytes ?? 0, true);
  await progress.finish();
  await summary(ctx, plan, sent, duplicates, last);
}
