/**
 * A streaming consumer of a queue or a topic subscription (`client.queues.stream(name)`,
 * `client.topics.stream(ref)`): the server pushes deliveries against credits the client grants
 * (prefetch), acks go in batches, nacks and visibility changes at once. It reconnects after the
 * socket is lost; what it held is released by the server, and settles that were not answered
 * are written again on the new socket (repeating them does no harm, as over REST).
 */
import { fullJitter, sleep } from "./backoff.ts";
import { receiptsOf } from "./caller.ts";
import { MomdConnectionError, MomdError } from "./errors.ts";
import { path } from "./http.ts";
import {
  closeVerdict,
  errorFromFrame,
  FrameSocket,
  type StreamDeps,
  tokenExpired,
  transientConnectError,
} from "./stream.ts";
import {
  CLOSE,
  type ConsumerFrame,
  type ErrorFrame,
  MAX_PERMITS,
  type ServerFrame,
} from "./stream_protocol.ts";
import type { ReceiptLike, ReceiptResults, SubscriptionRef } from "./types.ts";

/** The outcome of settling one delivery. */
export type ReceiptResult = ReceiptResults["results"][number];

/** Options of a streaming consumer. */
export interface StreamConsumerOptions {
  /**
   * Deliveries held at most: received and not yet settled (acked or nacked), or with
   * `credit: "receive"` not yet taken (default 10, 1-1000). The server pushes no more.
   */
  prefetch?: number;
  /** Visibility timeout of the deliveries (default: the queue's or subscription's). */
  visibilitySeconds?: number;
  /**
   * When a delivery stops counting against `prefetch`: once it is settled (`"settle"`, the
   * default, like RabbitMQ's prefetch), or once it is taken from the consumer (`"receive"`:
   * deliveries left unsettled come back after their visibility timeout).
   */
  credit?: "settle" | "receive";
  /** Deliveries to ask for in all (credits are never granted beyond it; default: no limit). */
  max?: number;
  /** Acks go in one frame once this many wait (default half the prefetch, 1-100)... */
  ackBatch?: number;
  /** ...or this many ms after the first of them (default 5). */
  ackDelayMs?: number;
  /** Told about lost connections, reconnects and errors that name no frame. */
  onError?: (error: unknown) => void;
}

/** One receipt waiting for its result. */
interface Settle {
  receipt: string;
  resolve(result: ReceiptResult): void;
  reject(error: unknown): void;
}

/** One ack, nack or visibility frame waiting for its answer. */
interface SettleFrame {
  frame: ConsumerFrame & { context: string };
  entries: Settle[];
  timer: ReturnType<typeof setTimeout>;
}

/** Waiting for a delivery. */
interface Taker<M> {
  resolve(m: M | undefined): void;
  reject(error: unknown): void;
}

/**
 * A streaming consumer. Take deliveries with `next()` (or `for await`), settle them with `ack`,
 * `nack` and `changeVisibility`; `close()` ends it (the server hands back what it still holds).
 */
export class StreamConsumer<M extends { receipt: string }> implements AsyncIterable<M> {
  readonly #deps: StreamDeps;
  readonly #path: string;
  readonly #request: string;
  readonly #prefetch: number;
  readonly #visibility?: number;
  readonly #creditOnReceive: boolean;
  readonly #max: number;
  /** Deliveries handed out by take(). */
  #takenTotal = 0;
  readonly #ackBatch: number;
  readonly #ackDelayMs: number;
  readonly #onError: (error: unknown) => void;
  #socket?: FrameSocket;
  #opening?: Promise<void>;
  #everOpen = false;
  #closing = false;
  #failure?: unknown;
  /** Credits the current socket has left: granted minus delivered. */
  #credit = 0;
  /** Deliveries counted against the prefetch (buffered, and taken until settled). */
  #outstanding = 0;
  readonly #buffer: M[] = [];
  /** Receipts taken and not settled yet (with credit on settle). */
  readonly #taken = new Set<string>();
  readonly #takers: Taker<M>[] = [];
  #acks: Settle[] = [];
  #ackTimer?: ReturnType<typeof setTimeout>;
  readonly #answers = new Map<string, SettleFrame>();
  #context = 0;
  #lastError?: ErrorFrame;
  #reconnecting = false;
  #idleWaiters: (() => void)[] = [];

  /** Use `client.queues.stream(name)` or `client.topics.stream(ref)`. */
  constructor(deps: StreamDeps, target: string | SubscriptionRef, options: StreamConsumerOptions) {
    this.#deps = deps;
    this.#path = typeof target === "string"
      ? path`/v1/queues/${target}/consumer`
      : path`/v1/topics/${target.topic}/subscriptions/${target.subscription}/consumer`;
    this.#request = `GET ${this.#path} (stream)`;
    this.#prefetch = Math.min(MAX_PERMITS, Math.max(1, Math.floor(options.prefetch ?? 10)));
    this.#visibility = options.visibilitySeconds;
    this.#creditOnReceive = options.credit === "receive";
    this.#max = options.max ?? Infinity;
    this.#ackBatch = Math.min(
      100,
      Math.max(1, Math.floor(options.ackBatch ?? Math.ceil(this.#prefetch / 2))),
    );
    this.#ackDelayMs = Math.max(0, options.ackDelayMs ?? 5);
    this.#onError = options.onError ?? (() => {});
  }

  /** Deliveries received and not taken yet. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /**
   * Opens the stream (`next()` does it too), retrying outages a few times (the client's retry
   * options). Rejects with a MomdError when refused (401, 403, 404 not_found), or with a
   * MomdStreamUnsupportedError when the server has no stream endpoint (use REST receives).
   */
  connect(): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closing) return Promise.reject(new Error("the consumer is closed"));
    if (this.#socket) return Promise.resolve(); // open, or its close event is on the way
    this.#opening ??= this.#openLoop(this.#everOpen ? Infinity : this.#deps.retry.retries)
      .finally(() => this.#opening = undefined);
    return this.#opening;
  }

  /**
   * The next delivery, waiting for one; undefined once the consumer is closed. Rejects when the
   * stream ended for good (the queue was deleted: 404; rights withdrawn: 403; ...).
   */
  async next(signal?: AbortSignal): Promise<M | undefined> {
    const m = this.take();
    if (m) return m;
    if (this.#failure) throw this.#failure;
    if (this.#closing) return undefined;
    if (!this.#everOpen) {
      await this.connect();
      const first = this.take(); // it may have come while connecting
      if (first) return first;
    }
    signal?.throwIfAborted();
    return await new Promise<M | undefined>((resolve, reject) => {
      const taker: Taker<M> = {
        resolve: (v) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(v);
        },
        reject: (e) => {
          signal?.removeEventListener("abort", onAbort);
          reject(e);
        },
      };
      const onAbort = () => {
        const i = this.#takers.indexOf(taker);
        if (i >= 0) this.#takers.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#takers.push(taker);
    });
  }

  /** A delivery already received, without waiting; undefined when none is. */
  take(): M | undefined {
    const m = this.#buffer.shift();
    if (!m) return undefined;
    this.#takenTotal++;
    if (this.#creditOnReceive) {
      this.#outstanding--;
      this.#topUp();
    } else {
      this.#taken.add(m.receipt);
    }
    return m;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<M> {
    while (true) {
      const m = await this.next();
      if (!m) return;
      yield m;
    }
  }

  /** Acknowledges a delivery (sent in a batch with others); resolves with its result. */
  ack(receipt: ReceiptLike): Promise<ReceiptResult> {
    const [r] = receiptsOf([receipt]);
    return new Promise<ReceiptResult>((resolve, reject) => {
      if (this.#failure) return reject(this.#failure);
      this.#release(r);
      this.#acks.push({ receipt: r, resolve, reject });
      if (this.#acks.length >= this.#ackBatch) this.#flushAcks();
      else this.#ackTimer ??= setTimeout(() => this.#flushAcks(), this.#ackDelayMs);
    });
  }

  /** Hands a delivery back for redelivery, now or after `delaySeconds`. */
  nack(receipt: ReceiptLike, delaySeconds?: number): Promise<ReceiptResult> {
    const [r] = receiptsOf([receipt]);
    this.#release(r);
    const p = this.#settle({ type: "nack", receipts: [r], delaySeconds });
    this.#topUp();
    return p.then(([result]) => result);
  }

  /** Moves a delivery's deadline to `visibilitySeconds` from now. */
  async changeVisibility(receipt: ReceiptLike, visibilitySeconds: number): Promise<ReceiptResult> {
    const [result] = await this.#settle({
      type: "visibility",
      receipts: receiptsOf([receipt]),
      visibilitySeconds,
    });
    return result;
  }

  /**
   * Sends the acks that wait, waits for the answers of what was settled, and closes the socket:
   * the server hands back the deliveries this consumer still holds. Never rejects.
   */
  async close(): Promise<void> {
    if (this.#closing) {
      if (this.#answers.size > 0) await new Promise<void>((r) => this.#idleWaiters.push(r));
      return;
    }
    this.#closing = true;
    this.#flushAcks();
    if (this.#answers.size > 0 && this.#socket) {
      await new Promise<void>((r) => this.#idleWaiters.push(r));
    }
    for (const f of [...this.#answers.values()]) {
      this.#failFrame(f, new Error("the consumer is closed"));
    }
    this.#socket?.close(CLOSE.normal);
    this.#socket = undefined;
    this.#buffer.length = 0;
    for (const t of this.#takers.splice(0)) t.resolve(undefined);
  }

  /** Credits the socket may hold now: the prefetch less what is held, within `max`. */
  #allowed(): number {
    const room = this.#prefetch - this.#outstanding;
    const left = this.#max - this.#takenTotal - this.#buffer.length;
    return Math.max(0, Math.min(room, left));
  }

  /** A delivery no longer counts against the prefetch. */
  #release(receipt: string): void {
    if (this.#taken.delete(receipt)) this.#outstanding--;
  }

  /** Grants the credits the prefetch allows, in batches rather than one by one. */
  #topUp(): void {
    const socket = this.#socket;
    if (!socket || socket.closed || this.#closing) return;
    const want = Math.min(MAX_PERMITS, this.#allowed() - this.#credit);
    if (want <= 0) return;
    if (this.#credit > this.#prefetch / 2 && want < this.#ackBatch) return;
    this.#credit += want;
    socket.send(JSON.stringify({ type: "permit", n: want }));
  }

  #flushAcks(): void {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    while (this.#acks.length > 0) {
      const batch = this.#acks.splice(0, 100);
      this.#write({ type: "ack", receipts: batch.map((s) => s.receipt) }, batch);
    }
    this.#topUp();
  }

  /** Sends a settle frame now; resolves with its per-receipt results. */
  #settle(frame: ConsumerFrame & { receipts: string[] }): Promise<ReceiptResult[]> {
    if (this.#failure) return Promise.reject(this.#failure);
    const entries: Settle[] = [];
    const results = Promise.all(
      frame.receipts.map((receipt) =>
        new Promise<ReceiptResult>((resolve, reject) => entries.push({ receipt, resolve, reject }))
      ),
    );
    this.#write(frame, entries);
    return results;
  }

  /** Writes a settle frame with a context of its own and waits for its answer (bounded). */
  #write(frame: ConsumerFrame, entries: Settle[]): void {
    const context = String(++this.#context);
    const f: SettleFrame = {
      frame: { ...frame, context },
      entries,
      timer: setTimeout(() => {
        this.#failFrame(
          f,
          new MomdConnectionError(
            `${this.#request}: no answer to a ${frame.type} within ${this.#deps.timeoutMs} ms`,
            { request: this.#request },
          ),
        );
      }, this.#deps.timeoutMs),
    };
    this.#answers.set(context, f);
    const socket = this.#socket;
    if (socket && !socket.closed) socket.send(JSON.stringify(f.frame));
    else if (this.#closing) this.#failFrame(f, new Error("the consumer is closed"));
    // Otherwise it is written once the stream is back (see #openLoop).
  }

  #failFrame(f: SettleFrame, error: unknown): void {
    clearTimeout(f.timer);
    if (this.#answers.get(f.frame.context) !== f) return;
    this.#answers.delete(f.frame.context);
    for (const e of f.entries) e.reject(error);
    this.#answersSettled();
  }

  #answersSettled(): void {
    if (this.#answers.size === 0) { for (const w of this.#idleWaiters.splice(0)) w(); }
  }

  async #openLoop(maxRetries: number): Promise<void> {
    const retry = this.#deps.retry;
    const lost = this.#everOpen;
    let renewed = false;
    for (let attempt = 0;; attempt++) {
      if (this.#closing) return;
      if (this.#failure) throw this.#failure;
      const prefetch = Math.min(MAX_PERMITS, this.#allowed());
      try {
        await FrameSocket.open(this.#deps, this.#path, {
          prefetch,
          visibilitySeconds: this.#visibility,
        }, {
          onOpen: (socket) => {
            if (this.#closing || this.#failure) {
              socket.close(CLOSE.normal);
              return;
            }
            this.#socket = socket;
            this.#everOpen = true;
            this.#credit = prefetch;
            // Settles that were never answered go again: repeating them does no harm.
            for (const f of this.#answers.values()) socket.send(JSON.stringify(f.frame));
            this.#topUp();
          },
          onFrame: (frame, socket) => {
            if (socket === this.#socket) this.#onFrame(frame);
          },
          onClose: (code, reason, socket) => {
            if (socket === this.#socket) this.#onClose(code, reason);
          },
        });
      } catch (err) {
        if (tokenExpired(err) && !renewed && await this.#deps.renewToken()) {
          renewed = true;
          continue;
        }
        const transient = transientConnectError(err, this.#everOpen);
        if (!transient) {
          this.#fail(err);
          throw err;
        }
        if (attempt >= maxRetries) throw err;
        if (lost) this.#onError(err);
        const asked = err instanceof MomdError && err.retryAfterSeconds !== undefined
          ? err.retryAfterSeconds * 1000
          : undefined;
        // Back from a lost stream: wait out an outage as long as it lasts, like a long poll.
        const backoff = lost
          ? { baseMs: 500, capMs: 30_000 }
          : { baseMs: retry.baseDelayMs, capMs: retry.maxDelayMs };
        await sleep(asked ?? fullJitter(attempt, { ...backoff, random: this.#deps.random }));
        continue;
      }
      return;
    }
  }

  #onFrame(frame: ServerFrame): void {
    switch (frame.type) {
      case "message": {
        const { type: _type, ...delivery } = frame;
        if (this.#credit > 0) this.#credit--;
        this.#outstanding++;
        this.#buffer.push(delivery as unknown as M);
        const taker = this.#takers.shift();
        if (taker) taker.resolve(this.take());
        return;
      }
      case "acked":
      case "nacked":
      case "visibility": {
        const f = frame.context === undefined ? undefined : this.#answers.get(frame.context);
        if (!f) return;
        clearTimeout(f.timer);
        this.#answers.delete(f.frame.context);
        const byReceipt = new Map((frame.results ?? []).map((r) => [r.receipt, r]));
        for (const e of f.entries) {
          e.resolve(byReceipt.get(e.receipt) ?? { receipt: e.receipt, ok: false });
        }
        this.#answersSettled();
        return;
      }
      case "error": {
        const f = frame.context === undefined ? undefined : this.#answers.get(frame.context);
        const error = errorFromFrame(frame, this.#request);
        if (f) {
          this.#failFrame(f, error);
          return;
        }
        // No frame of ours: a delivery the server could not make, or the reason of a close.
        this.#lastError = frame;
        this.#onError(error);
        return;
      }
    }
  }

  #onClose(code: number, reason: string): void {
    this.#socket = undefined;
    this.#credit = 0;
    if (this.#closing) return;
    const verdict = closeVerdict(code, reason, this.#lastError, this.#request);
    this.#lastError = undefined;
    // The server hands back what the socket held: taking it now would only give stale receipts.
    this.#outstanding -= this.#buffer.length;
    this.#buffer.length = 0;
    if (verdict.fatal && !verdict.renew) {
      this.#fail(verdict.error);
      return;
    }
    this.#onError(verdict.error);
    void this.#reconnect(verdict.renew, verdict.error);
  }

  async #reconnect(renew: boolean, error: unknown): Promise<void> {
    if (this.#reconnecting) return;
    this.#reconnecting = true;
    try {
      if (renew && !(await this.#deps.renewToken())) {
        this.#fail(error);
        return;
      }
      await this.connect();
    } catch (err) {
      if (!this.#failure && !this.#closing) this.#fail(err);
    } finally {
      this.#reconnecting = false;
    }
  }

  /** Ends the consumer for good: whoever waits gets the error. */
  #fail(error: unknown): void {
    if (this.#failure) return;
    this.#failure = error;
    clearTimeout(this.#ackTimer);
    for (const a of this.#acks.splice(0)) a.reject(error);
    for (const f of [...this.#answers.values()]) this.#failFrame(f, error);
    for (const t of this.#takers.splice(0)) t.reject(error);
    this.#outstanding -= this.#buffer.length;
    this.#buffer.length = 0;
    this.#socket?.close(CLOSE.normal);
    this.#socket = undefined;
  }
}
