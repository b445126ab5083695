/**
 * `client.consume(...)`: a consumer of a queue or a topic subscription that runs a handler per
 * message, acks on success, nacks with an exponential backoff delay on failure, extends
 * visibility while a handler runs, and stops cleanly. It takes its deliveries over a stream
 * (the server pushes them against credits) when the server has one, else by long polls.
 */
import { fullJitter, nackDelaySeconds, sleep } from "./backoff.ts";
import { BATCH_MAX, WAIT_SECONDS_MAX } from "./caller.ts";
import { MomdConnectionError, MomdError } from "./errors.ts";
import { MomdStreamUnsupportedError } from "./stream.ts";
import type { StreamConsumer } from "./stream_consumer.ts";
import { MAX_PERMITS } from "./stream_protocol.ts";
import type { QueuesApi } from "./queues.ts";
import type { TopicsApi } from "./topics.ts";
import type { Delivery, ReceiptResults, SubscriptionRef, TopicDelivery } from "./types.ts";

/** What to consume: a queue's name, or a topic subscription. */
export type ConsumeTarget = string | SubscriptionRef;

/** The delivery type of a target: queue deliveries, or topic deliveries (with offsets). */
export type DeliveryOf<T extends ConsumeTarget> = T extends string ? Delivery : TopicDelivery;

/** What a handler gets besides the message. */
export interface ConsumeContext {
  /**
   * Aborted when this delivery is lost to the consumer (its visibility could not be extended,
   * so another consumer may get the message): stop working on it.
   */
  signal: AbortSignal;
  /** Moves this delivery's deadline to `seconds` from now; false when the delivery is lost. */
  extendVisibility(seconds: number): Promise<boolean>;
}

/** Handles one message; resolving means done (ack), throwing or rejecting means failed (nack). */
export type Handler<M> = (message: M, context: ConsumeContext) => unknown;

/** Options of `consume`. */
export interface ConsumeOptions<M = Delivery | TopicDelivery> {
  /** Handlers running at once (default 1). */
  concurrency?: number;
  /** Stop after this many messages were handed to the handler (default: run until stopped). */
  max?: number;
  /**
   * Take deliveries over a stream when the server has one (default true): the server pushes
   * them as they come, acks go in batches. `false`, or a server without streams (its answer
   * 404, 405 or 426), means long polls.
   */
  stream?: boolean;
  /**
   * Over a stream: deliveries held at once, running or waiting for a handler (default: the
   * concurrency; at most 1000). More than the concurrency keeps handlers busy, but the waiting
   * ones' visibility timeouts run meanwhile.
   */
  prefetch?: number;
  /** Long-poll wait of each receive, 0-20 s (default 20; long polls only). */
  waitSeconds?: number;
  /** Visibility timeout of each delivery (default: the queue's or subscription's). */
  visibilitySeconds?: number;
  /**
   * Seconds between visibility extensions while a handler runs (default: half the visibility
   * timeout; 0 turns extensions off). Each extension sets the deadline a full visibility timeout
   * from now.
   */
  extendEvery?: number;
  /** Nack delays of failed messages: base * 2^(deliveryCount - 1) s, at most max (1, 300). */
  backoff?: { baseSeconds?: number; maxSeconds?: number };
  /** Stops the consumer like `stop()`. */
  signal?: AbortSignal;
  /**
   * Told about failures that do not stop the consumer: a handler error (the message is nacked),
   * a stale receipt on ack, a failed extension, a receive retried after an outage. Default:
   * `console.error`.
   */
  onError?: (error: unknown, message?: M) => void;
}

/** Counts of a consumer. */
export interface ConsumerStats {
  /** Messages handed to the handler. */
  received: number;
  /** Handled and acknowledged. */
  acked: number;
  /** Handler failed: nacked for redelivery. */
  nacked: number;
  /** Ack, nack or extension refused or failed (the message will be delivered again). */
  settleErrors: number;
}

/** A running consumer. */
export interface Consumer {
  /**
   * Stops receiving, lets the running handlers finish (and acks or nacks them), then resolves
   * with the counts. Never rejects.
   */
  stop(): Promise<ConsumerStats>;
  /**
   * Resolves with the counts once the consumer has stopped (stop, signal, or `max` reached and
   * handled); rejects when a receive was refused for good (e.g. 404: the queue is gone, 403).
   */
  readonly done: Promise<ConsumerStats>;
  /** Live counts. */
  readonly stats: Readonly<ConsumerStats>;
}

/** How the consumer talks to its target, whatever its kind. */
interface Ops<M> {
  visibilityTimeout(): Promise<number>;
  /** A streaming consumer of the target. */
  stream(
    prefetch: number,
    onError: (err: unknown) => void,
  ): StreamConsumer<M & { receipt: string }>;
  receive(
    max: number,
    wait: number,
    visibility: number | undefined,
    signal: AbortSignal,
  ): Promise<M[]>;
  ack(receipt: string): Promise<ReceiptResults["results"]>;
  nack(receipt: string, delaySeconds: number): Promise<ReceiptResults["results"]>;
  extend(receipt: string, seconds: number): Promise<ReceiptResults["results"]>;
}

function opsOf(
  target: ConsumeTarget,
  queues: QueuesApi,
  topics: TopicsApi,
  visibility: number | undefined,
  max: number | undefined,
): Ops<Delivery | TopicDelivery> {
  if (typeof target === "string") {
    return {
      visibilityTimeout: async () => (await queues.get(target)).config.visibilityTimeoutSeconds,
      stream: (prefetch, onError) =>
        queues.stream(target, { prefetch, visibilitySeconds: visibility, onError, max }),
      receive: (max, waitSeconds, visibilitySeconds, signal) =>
        queues.receive(target, { max, waitSeconds, visibilitySeconds, signal }),
      ack: (r) => queues.ack(target, [r]),
      nack: (r, delaySeconds) => queues.nack(target, [r], { delaySeconds }),
      extend: (r, visibilitySeconds) =>
        queues.changeVisibility(target, { receipts: [r], visibilitySeconds }),
    };
  }
  return {
    visibilityTimeout: async () =>
      (await topics.getSubscription(target)).config.visibilityTimeoutSeconds,
    stream: (prefetch, onError) =>
      topics.stream(target, { prefetch, visibilitySeconds: visibility, onError, max }),
    receive: (max, waitSeconds, visibilitySeconds, signal) =>
      topics.receive(target, { max, waitSeconds, visibilitySeconds, signal }),
    ack: (r) => topics.ack(target, [r]),
    nack: (r, delaySeconds) => topics.nack(target, [r], { delaySeconds }),
    extend: (r, visibilitySeconds) =>
      topics.changeVisibility(target, { receipts: [r], visibilitySeconds }),
  };
}

/** How a handled delivery is settled (over REST or over the stream). */
type Settlers = Pick<Ops<unknown>, "ack" | "nack" | "extend">;

/** True for failures worth waiting out: no answer, 429, 5xx. */
function transient(err: unknown): boolean {
  return err instanceof MomdConnectionError ||
    (err instanceof MomdError && (err.status === 429 || err.status >= 500));
}

class StaleDelivery extends Error {
  constructor(what: string, id: string) {
    super(`${what} of message ${id} refused: stale_receipt (it will be delivered again)`);
    this.name = "StaleDelivery";
  }
}

/** Starts a consumer (see `MomdClient.consume`). */
export function startConsumer<M extends Delivery | TopicDelivery>(
  apis: { queues: QueuesApi; topics: TopicsApi; target: ConsumeTarget },
  handler: Handler<M>,
  options: ConsumeOptions<M> = {},
): Consumer {
  const ops = opsOf(
    apis.target,
    apis.queues,
    apis.topics,
    options.visibilitySeconds,
    options.max,
  ) as unknown as Ops<M>;
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? 1));
  const wait = Math.min(WAIT_SECONDS_MAX, Math.max(0, options.waitSeconds ?? WAIT_SECONDS_MAX));
  const backoff = {
    baseSeconds: options.backoff?.baseSeconds ?? 1,
    maxSeconds: options.backoff?.maxSeconds ?? 300,
  };
  const onError = options.onError ??
    ((err: unknown) => console.error("momd consumer:", err instanceof Error ? err.message : err));
  const stats: ConsumerStats = { received: 0, acked: 0, nacked: 0, settleErrors: 0 };

  const stopping = new AbortController();
  const stop = () => {
    if (!stopping.signal.aborted) stopping.abort(new Error("consumer stopped"));
  };
  if (options.signal?.aborted) stop();
  options.signal?.addEventListener("abort", stop, { once: true });

  async function settle(what: string, m: M, call: () => Promise<ReceiptResults["results"]>) {
    try {
      const [result] = await call();
      if (result?.ok) return true;
      stats.settleErrors++;
      onError(new StaleDelivery(what, m.id), m);
    } catch (err) {
      stats.settleErrors++;
      onError(err, m);
    }
    return false;
  }

  async function handle(m: M, window: number, ops: Settlers): Promise<void> {
    const lost = new AbortController();
    const extend = async (seconds: number) => {
      if (lost.signal.aborted) return false;
      const ok = await settle("visibility change", m, () => ops.extend(m.receipt, seconds));
      if (!ok) lost.abort(new StaleDelivery("visibility change", m.id));
      return ok;
    };
    const every = options.extendEvery ?? window / 2;
    let timer: ReturnType<typeof setInterval> | undefined;
    if (every > 0 && window > 0) {
      timer = setInterval(() => void extend(window), every * 1000);
    }
    let failed: unknown;
    let ok = false;
    try {
      await handler(m, { signal: lost.signal, extendVisibility: extend });
      ok = true;
    } catch (err) {
      failed = err;
    } finally {
      clearInterval(timer);
    }
    if (ok) {
      if (await settle("ack", m, () => ops.ack(m.receipt))) stats.acked++;
      return;
    }
    onError(failed, m);
    stats.nacked++;
    const delay = nackDelaySeconds(m.deliveryCount, backoff);
    await settle("nack", m, () => ops.nack(m.receipt, delay));
  }

  /** Waits out an outage (no answer, 429, 5xx): as the server asks, else growing waits. */
  async function pause(err: unknown, outages: number): Promise<void> {
    onError(err);
    const asked = err instanceof MomdError ? (err.retryAfterSeconds ?? 0) * 1000 : 0;
    // A rate limit is not an outage: come back when the server says, without growing waits.
    const throttled = err instanceof MomdError && err.status === 429;
    const delay = throttled
      ? asked + fullJitter(0, { baseMs: 100, capMs: 100 })
      : Math.max(asked, fullJitter(outages, { baseMs: 500, capMs: 30_000 }));
    await sleep(delay, stopping.signal).catch(() => {});
  }

  /**
   * Consumes over a stream; false when the server has none (then long polls take over).
   * Credits: `prefetch` deliveries held at once, each counted until it is acked or nacked.
   */
  async function runStream(window: number): Promise<boolean> {
    const prefetch = Math.max(
      1,
      Math.min(MAX_PERMITS, Math.floor(options.prefetch ?? concurrency), options.max ?? Infinity),
    );
    const stream = ops.stream(prefetch, onError);
    for (let outages = 0;; outages++) {
      if (stopping.signal.aborted) {
        await stream.close();
        return true;
      }
      try {
        await stream.connect();
        break;
      } catch (err) {
        if (err instanceof MomdStreamUnsupportedError) {
          await stream.close();
          return false;
        }
        if (!transient(err)) throw err;
        await pause(err, outages);
      }
    }
    const settlers: Settlers = {
      ack: async (r) => [await stream.ack(r)],
      nack: async (r, delaySeconds) => [await stream.nack(r, delaySeconds)],
      extend: async (r, seconds) => [await stream.changeVisibility(r, seconds)],
    };
    const running = new Set<Promise<void>>();
    try {
      while (!stopping.signal.aborted) {
        const left = options.max === undefined ? Infinity : options.max - stats.received;
        if (left <= 0) break;
        if (running.size >= concurrency) {
          await Promise.race(running);
          continue;
        }
        let m: M | undefined;
        try {
          m = await stream.next(stopping.signal);
        } catch (err) {
          if (stopping.signal.aborted) break;
          throw err;
        }
        if (!m) break;
        stats.received++;
        const task: Promise<void> = handle(m, window, settlers).finally(() => running.delete(task));
        running.add(task);
      }
    } finally {
      await Promise.allSettled([...running]);
      // Whatever was pushed and not handled goes back to the queue at once.
      await stream.close();
    }
    return true;
  }

  async function runPolling(window: number): Promise<void> {
    const running = new Set<Promise<void>>();
    let outages = 0;
    try {
      while (!stopping.signal.aborted) {
        const left = options.max === undefined ? Infinity : options.max - stats.received;
        if (left <= 0) break;
        if (running.size >= concurrency) {
          await Promise.race(running);
          continue;
        }
        let batch: M[];
        try {
          const want = Math.min(concurrency - running.size, BATCH_MAX, left);
          batch = await ops.receive(want, wait, options.visibilitySeconds, stopping.signal);
          outages = 0;
        } catch (err) {
          if (stopping.signal.aborted) break;
          if (!transient(err)) throw err;
          await pause(err, outages++);
          continue;
        }
        for (const m of batch) {
          if (stopping.signal.aborted) {
            // Received while stopping: hand it back at once rather than hold it until timeout.
            await settle("release", m, () => ops.nack(m.receipt, 0));
            continue;
          }
          stats.received++;
          const task: Promise<void> = handle(m, window, ops).finally(() => running.delete(task));
          running.add(task);
        }
      }
    } finally {
      await Promise.allSettled([...running]);
    }
  }

  async function run(): Promise<ConsumerStats> {
    try {
      const window = options.visibilitySeconds ?? await ops.visibilityTimeout();
      const streamed = options.stream !== false && await runStream(window);
      if (!streamed) await runPolling(window);
    } finally {
      options.signal?.removeEventListener("abort", stop);
    }
    return { ...stats };
  }

  const done = run();
  done.catch(() => {}); // a caller that never awaits `done` must not see an unhandled rejection
  return {
    stats,
    done,
    stop() {
      stop();
      return done.catch(() => ({ ...stats }));
    },
  };
}
