/**
 * The load generator: N concurrent workers, each running one operation after another (closed
 * loop), bounded by time and by count, stopping by itself; and a fixed-rate producer (open loop)
 * for latency runs. Operations are plain async functions, so the same generator drives momd, the
 * HTTP ceiling, Redis and RabbitMQ.
 */

/** What one operation did: how many messages it moved, or `"empty"` (nothing left: stop). */
export type OpResult = number | "empty";

/** One operation of a closed-loop run; `worker` is 0..concurrency-1. */
export type Op = (worker: number) => Promise<OpResult>;

/** Options of a closed-loop run. */
export interface LoadOptions {
  concurrency: number;
  /** Measured time; workers start no operation after it (those in flight finish). */
  durationMs: number;
  /** Run this long first without counting (JIT, connection set-up). */
  warmupMs?: number;
  /** Stop once this many messages were counted. */
  maxMessages?: number;
  /** Stop once more operations than this failed (default: never). */
  maxErrors?: number;
}

/** Counts and per-operation latencies of a run. */
export interface LoadResult {
  /** Operations that completed in the measured window. */
  ops: number;
  /** Messages those operations moved. */
  messages: number;
  errors: number;
  /** The first few distinct error messages. */
  errorSamples: string[];
  /** From the end of the warm-up to the end of the last operation. */
  elapsedMs: number;
  /** Latency of each measured operation, ms, sorted ascending. */
  latenciesMs: Float64Array;
  /** True when every worker stopped because the source was empty. */
  drained: boolean;
}

/** Collects latencies in a growable typed array. */
export class Samples {
  #data = new Float64Array(1024);
  #n = 0;

  /** Adds one sample. */
  add(value: number): void {
    if (this.#n === this.#data.length) {
      const bigger = new Float64Array(this.#data.length * 2);
      bigger.set(this.#data);
      this.#data = bigger;
    }
    this.#data[this.#n++] = value;
  }

  /** The samples, sorted ascending. */
  sorted(): Float64Array {
    return this.#data.slice(0, this.#n).sort();
  }

  /** How many samples were added. */
  get size(): number {
    return this.#n;
  }
}

/** The q-quantile (0..1) of sorted samples; NaN when there are none. */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Runs `op` in `concurrency` closed loops until time, count or the source runs out. */
export async function runClosedLoop(opts: LoadOptions, op: Op): Promise<LoadResult> {
  const warmupMs = opts.warmupMs ?? 0;
  const start = performance.now();
  const measureFrom = start + warmupMs;
  const deadline = measureFrom + opts.durationMs;
  const maxMessages = opts.maxMessages ?? Infinity;
  const latencies = new Samples();
  const errorSamples: string[] = [];
  let ops = 0;
  let messages = 0;
  let errors = 0;
  let emptyWorkers = 0;
  let failures = 0;
  let stop = false;
  const maxErrors = opts.maxErrors ?? Infinity;

  async function worker(w: number): Promise<void> {
    while (!stop && performance.now() < deadline && messages < maxMessages) {
      const t0 = performance.now();
      let result: OpResult;
      try {
        result = await op(w);
      } catch (err) {
        if (performance.now() >= measureFrom) errors++;
        if (++failures > maxErrors) stop = true;
        const text = errorText(err);
        if (errorSamples.length < 5 && !errorSamples.includes(text)) errorSamples.push(text);
        // Do not spin on a failing target.
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      const t1 = performance.now();
      if (result === "empty") {
        emptyWorkers++;
        return;
      }
      if (t0 >= measureFrom) {
        ops++;
        messages += result;
        latencies.add(t1 - t0);
      }
    }
  }

  await Promise.all(Array.from({ length: opts.concurrency }, (_, w) => worker(w)));
  stop = true;
  const end = performance.now();
  return {
    ops,
    messages,
    errors,
    errorSamples,
    elapsedMs: Math.max(1, end - Math.max(measureFrom, start)),
    latenciesMs: latencies.sorted(),
    drained: emptyWorkers === opts.concurrency,
  };
}

/** Options of a fixed-rate run. */
export interface RateOptions {
  /** Operations started per second. */
  rate: number;
  durationMs: number;
  /** Operations in flight at most; a scheduled start beyond it is counted as `skipped`. */
  maxInFlight: number;
}

/** What a fixed-rate run did. */
export interface RateResult {
  started: number;
  completed: number;
  errors: number;
  skipped: number;
  errorSamples: string[];
  elapsedMs: number;
}

/**
 * Starts `op(scheduledAt)` at a fixed rate (open loop): the schedule does not wait for earlier
 * operations, so a slow target shows as latency, not as a lower rate. `scheduledAt` is the
 * `performance.now()` the operation was due, which latency should be measured from.
 */
export async function runAtRate(
  opts: RateOptions,
  op: (scheduledAt: number) => Promise<void>,
): Promise<RateResult> {
  const start = performance.now();
  const end = start + opts.durationMs;
  const interval = 1000 / opts.rate;
  const errorSamples: string[] = [];
  const inFlight = new Set<Promise<void>>();
  let started = 0;
  let completed = 0;
  let errors = 0;
  let skipped = 0;
  let due = 0; // index of the next scheduled operation

  while (true) {
    const now = performance.now();
    if (now >= end) break;
    while (start + due * interval <= now) {
      const at = start + due * interval;
      due++;
      if (inFlight.size >= opts.maxInFlight) {
        skipped++;
        continue;
      }
      started++;
      const p: Promise<void> = op(at).then(
        () => {
          completed++;
        },
        (err) => {
          errors++;
          const text = errorText(err);
          if (errorSamples.length < 5 && !errorSamples.includes(text)) errorSamples.push(text);
        },
      ).finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    const wait = Math.max(0, start + due * interval - performance.now());
    await new Promise((r) => setTimeout(r, Math.min(wait, 50)));
  }
  await Promise.all(inFlight);
  return {
    started,
    completed,
    errors,
    skipped,
    errorSamples,
    elapsedMs: performance.now() - start,
  };
}
