/**
 * Streaming producers (`client.queues.producer(name)`, `client.topics.producer(name)`): one
 * WebSocket, many sends in flight, one answer per send, in order. Reconnects after the socket
 * is lost; what was written and not answered is written again when it carries a dedupId (queue
 * messages do, `idempotentSends`), and rejected as outcome unknown otherwise (topic publishes).
 */
import { fullJitter, sleep } from "./backoff.ts";
import { MomdError } from "./errors.ts";
import { path } from "./http.ts";
import type { MessageInput, SentMessage } from "./queues.ts";
import {
  closeVerdict,
  errorFromFrame,
  FrameSocket,
  frameTooLarge,
  localError,
  type StreamDeps,
  tokenExpired,
  transientConnectError,
} from "./stream.ts";
import {
  CLOSE,
  type ErrorFrame,
  MAX_CONTEXT_CHARS,
  MAX_FRAME_BYTES,
  type ServerFrame,
} from "./stream_protocol.ts";
import type { TopicMessageInput } from "./topics.ts";

/** Options of a producer. */
export interface ProducerOptions {
  /**
   * Sends written to the socket and not yet answered, at most (default 1000, at most 10,000).
   * Later sends wait their turn in the client, in order; `send` still returns at once with
   * their promise.
   */
  maxInFlight?: number;
}

/** What a topic producer's send resolves with: the message's id and offset. */
export interface TopicSent {
  id: string;
  offset: number;
  [extra: string]: unknown;
}

/** One send waiting for its answer. */
interface Pending<O> {
  /** Order of the `send` calls: resends keep it. */
  seq: number;
  /** The send frame without `type` and `context`. */
  fields: Record<string, unknown>;
  /** Safe to write again when its outcome is unknown (it carries a dedupId). */
  resend: boolean;
  /** Retries made after a 503 or an unknown outcome. */
  retries: number;
  resolve(value: O): void;
  reject(error: unknown): void;
}

/** How a producer turns its input into a frame. */
interface Shape<I> {
  kind: "queue" | "topic";
  fields(message: I): { fields: Record<string, unknown>; resend: boolean };
}

/** Outcome unknown after a lost connection: the server may or may not have stored it. */
function lostInFlight(request: string, kind: "queue" | "topic"): MomdError {
  const why = kind === "topic"
    ? "topics have no de-duplication ids, so it was not sent again"
    : "it has no dedupId, so it was not sent again";
  return localError(
    504,
    "outcome_unknown",
    `the connection closed before the server answered: the message may or may not have been ` +
      `stored (${why})`,
    request,
  );
}

/**
 * A streaming producer of a queue (`send` resolves with `{ id, duplicate }`) or a topic
 * (`{ id, offset }`). Sends are pipelined: each `send` resolves with its own answer, and the
 * server stores one producer's sends in the order they were made.
 */
export class Producer<I, O> {
  readonly #deps: StreamDeps;
  readonly #shape: Shape<I>;
  readonly #path: string;
  readonly #request: string;
  readonly #maxInFlight: number;
  /** Not written yet, in `seq` order. */
  #waiting: Pending<O>[] = [];
  /** Written to the current socket, by context, in write order. */
  readonly #written = new Map<string, Pending<O>>();
  /** Waiting out a retry delay. */
  readonly #delayed = new Set<Pending<O>>();
  #socket?: FrameSocket;
  /** A socket that takes no more sends: closed once its sends are answered (token renewal). */
  #retiring = false;
  #retireTimer?: ReturnType<typeof setTimeout>;
  #opening?: Promise<void>;
  #seq = 0;
  #context = 0;
  #closing = false;
  #everOpen = false;
  /** Unexpected closes since the last answer, for the reconnect backoff. */
  #closesInRow = 0;
  /** The last error frame without a context (it explains the close that follows). */
  #lastError?: ErrorFrame;
  #idleWaiters: (() => void)[] = [];

  /** Use `client.queues.producer(name)` or `client.topics.producer(name)`. */
  constructor(deps: StreamDeps, shape: Shape<I>, name: string, options: ProducerOptions = {}) {
    this.#deps = deps;
    this.#shape = shape;
    this.#path = shape.kind === "queue"
      ? path`/v1/queues/${name}/producer`
      : path`/v1/topics/${name}/producer`;
    this.#request = `GET ${this.#path} (stream)`;
    // The server holds at most 10,000 unanswered sends per socket and refuses more (429).
    this.#maxInFlight = Math.min(10_000, Math.max(1, Math.floor(options.maxInFlight ?? 1000)));
  }

  /** Sends waiting for their answer (written, waiting to be written, or waiting to retry). */
  get pending(): number {
    return this.#waiting.length + this.#written.size + this.#delayed.size;
  }

  /**
   * Opens the stream now (otherwise the first `send` does), so that a refusal shows before any
   * message: a MomdError (401, 403, 404 not_found, ...), a MomdStreamUnsupportedError (no
   * stream endpoint: use REST sends), or a MomdConnectionError.
   */
  connect(): Promise<void> {
    if (this.#closing) return Promise.reject(new Error("the producer is closed"));
    return this.#open();
  }

  /**
   * Sends one message; resolves with the server's answer once it is stored (on min-in-sync
   * copies, as a REST 201). Rejects with a MomdError when the server refuses it (or, for a topic
   * publish in flight when the connection was lost, with a 504 `outcome_unknown`).
   */
  send(message: I): Promise<O> {
    if (this.#closing) return Promise.reject(new Error("the producer is closed"));
    let shaped: ReturnType<Shape<I>["fields"]>;
    try {
      shaped = this.#shape.fields(message);
    } catch (err) {
      return Promise.reject(err);
    }
    const text = JSON.stringify({
      type: "send",
      context: "x".repeat(MAX_CONTEXT_CHARS),
      ...shaped.fields,
    });
    if (frameTooLarge(text)) {
      // The server would close the socket (1009) and take every other send in flight with it.
      return Promise.reject(localError(
        413,
        "too_large",
        `the message does not fit in one frame (${MAX_FRAME_BYTES} bytes of JSON at most)`,
        this.#request,
      ));
    }
    return new Promise<O>((resolve, reject) => {
      this.#waiting.push({
        seq: this.#seq++,
        fields: shaped.fields,
        resend: shaped.resend,
        retries: 0,
        resolve,
        reject,
      });
      this.#pump();
    });
  }

  /**
   * Stops taking sends, waits until every send made is answered (or failed), then closes the
   * socket. Never rejects.
   */
  async close(): Promise<void> {
    this.#closing = true;
    if (this.pending > 0) await new Promise<void>((r) => this.#idleWaiters.push(r));
    clearTimeout(this.#retireTimer);
    this.#socket?.close(CLOSE.normal);
    this.#socket = undefined;
  }

  /**
   * Before the token expires (when the server would end the socket, 4401, and a publish in
   * flight would have an unknown outcome), stop writing to the socket, let its sends be
   * answered, close it and open a new one with the renewed token. Sends wait meanwhile, so
   * their order holds.
   */
  #scheduleRetire(socket: FrameSocket): void {
    clearTimeout(this.#retireTimer);
    const at = this.#deps.renewAt?.();
    // Not when renewal is due already (a renewal margin longer than the token's life).
    if (at === undefined || at - Date.now() < 250) return;
    this.#retireTimer = setTimeout(() => {
      if (this.#socket !== socket) return;
      this.#retiring = true;
      this.#retireIfDrained();
    }, Math.max(0, at - Date.now()));
  }

  #retireIfDrained(): void {
    if (!this.#retiring || this.#written.size > 0) return;
    this.#retiring = false;
    const socket = this.#socket;
    this.#socket = undefined; // its close event is ours: nothing to settle
    socket?.close(CLOSE.normal);
    this.#pump();
  }

  #settled(): void {
    if (this.pending > 0) return;
    for (const w of this.#idleWaiters.splice(0)) w();
  }

  /** Writes what waits, within the window; opens the socket first when there is none. */
  #pump(): void {
    const socket = this.#socket;
    if (!socket) {
      if (this.#waiting.length > 0) {
        this.#open().catch((err) => this.#failUnwritten(err));
      }
      return;
    }
    // Closing: its close event settles what it carried, then reopens for what waits.
    if (socket.closed || this.#retiring) return;
    while (this.#waiting.length > 0 && this.#written.size < this.#maxInFlight) {
      const p = this.#waiting.shift()!;
      const context = String(++this.#context);
      this.#written.set(context, p);
      if (!socket.send(JSON.stringify({ type: "send", context, ...p.fields }))) {
        // Closing under us: onClose takes it from here (resend or outcome unknown).
        break;
      }
    }
  }

  /** Opens the socket once for all callers, retrying what is worth retrying. */
  #open(): Promise<void> {
    if (this.#socket) return Promise.resolve(); // open, or its close event is on the way
    this.#opening ??= this.#openLoop().finally(() => this.#opening = undefined);
    return this.#opening;
  }

  async #openLoop(): Promise<void> {
    const retry = this.#deps.retry;
    let renewed = false;
    for (let attempt = 0;; attempt++) {
      try {
        await FrameSocket.open(this.#deps, this.#path, {}, {
          onOpen: (socket) => {
            if (this.#closing && this.pending === 0) {
              socket.close(CLOSE.normal); // closed while it was opening
              return;
            }
            this.#socket = socket;
            this.#everOpen = true;
            this.#retiring = false;
            this.#scheduleRetire(socket);
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
        // A refusal for good, or no stream endpoint on a server never streamed to: give up.
        const transient = transientConnectError(err, this.#everOpen);
        if (!transient || attempt >= retry.retries) throw err;
        const asked = err instanceof MomdError && err.retryAfterSeconds !== undefined
          ? err.retryAfterSeconds * 1000
          : undefined;
        if (asked !== undefined && asked > retry.maxRetryAfterMs) throw err;
        const random = this.#deps.random;
        await sleep(
          asked ??
            fullJitter(attempt, { baseMs: retry.baseDelayMs, capMs: retry.maxDelayMs, random }),
        );
        continue;
      }
      this.#pump();
      return;
    }
  }

  #onFrame(frame: ServerFrame): void {
    if (frame.type === "sent") {
      const p = this.#written.get(frame.context);
      if (!p) return;
      this.#written.delete(frame.context);
      this.#closesInRow = 0;
      const { type: _type, context: _context, ...result } = frame;
      p.resolve(result as O);
      this.#retireIfDrained();
      this.#pump();
      this.#settled();
    } else if (frame.type === "error") {
      const p = frame.context === undefined ? undefined : this.#written.get(frame.context);
      if (!p) {
        this.#lastError = frame;
        return;
      }
      this.#written.delete(frame.context!);
      this.#refused(p, errorFromFrame(frame, this.#request));
      this.#retireIfDrained();
      this.#pump();
    }
  }

  /** A send answered with an error: retried when that is safe (as the REST client does). */
  #refused(p: Pending<O>, err: MomdError): void {
    const retry = this.#deps.retry;
    // 503: not applied, any send may go again; 502/504: maybe applied, only a de-duplicated one.
    const again = err.status === 503 || ((err.status === 502 || err.status === 504) && p.resend);
    const asked = err.retryAfterSeconds === undefined ? undefined : err.retryAfterSeconds * 1000;
    if (!again || p.retries >= retry.retries || (asked ?? 0) > retry.maxRetryAfterMs) {
      p.reject(err);
      this.#settled();
      return;
    }
    const delay = asked ?? fullJitter(p.retries, {
      baseMs: retry.baseDelayMs,
      capMs: retry.maxDelayMs,
      random: this.#deps.random,
    });
    p.retries++;
    this.#delayed.add(p);
    setTimeout(() => {
      if (!this.#delayed.delete(p)) return;
      this.#requeue([p]);
      this.#pump();
    }, delay);
  }

  /** Puts sends back among those waiting, keeping the order they were made in. */
  #requeue(sends: Pending<O>[]): void {
    if (sends.length === 0) return;
    this.#waiting = [...sends, ...this.#waiting].sort((a, b) => a.seq - b.seq);
  }

  #onClose(code: number, reason: string): void {
    this.#socket = undefined;
    this.#retiring = false;
    clearTimeout(this.#retireTimer);
    const verdict = closeVerdict(code, reason, this.#lastError, this.#request);
    this.#lastError = undefined;
    const written = [...this.#written.values()];
    this.#written.clear();
    if (verdict.fatal && !verdict.renew) {
      for (const p of written) p.reject(verdict.error);
      this.#failUnwritten(verdict.error);
      return;
    }
    // Lost (or the token expired): what was written may or may not be stored.
    const again: Pending<O>[] = [];
    for (const p of written) {
      if (p.resend) again.push(p);
      else p.reject(lostInFlight(this.#request, this.#shape.kind));
    }
    this.#requeue(again);
    this.#settled();
    if (this.#waiting.length === 0) return; // reopened by the next send
    void this.#reopen(verdict.renew, verdict.error);
  }

  async #reopen(renew: boolean, error: Error): Promise<void> {
    if (renew && !(await this.#deps.renewToken())) {
      this.#failUnwritten(error);
      return;
    }
    // A node that closes every new socket at once must not be hammered.
    await sleep(fullJitter(this.#closesInRow++, {
      baseMs: this.#deps.retry.baseDelayMs,
      capMs: this.#deps.retry.maxDelayMs,
      random: this.#deps.random,
    }));
    this.#pump();
  }

  /** Fails every send not written to a socket (the written ones are settled by onClose). */
  #failUnwritten(err: unknown): void {
    const failed = [...this.#waiting, ...this.#delayed];
    this.#waiting = [];
    this.#delayed.clear();
    for (const p of failed) p.reject(err);
    this.#settled();
  }
}

/** A queue's streaming producer: `send` resolves with `{ id, duplicate }`. */
export type QueueProducer = Producer<MessageInput, SentMessage>;

/** A topic's streaming producer: `send` resolves with `{ id, offset }`. */
export type TopicProducer = Producer<TopicMessageInput, TopicSent>;

/** Opens (lazily) a queue producer; `idempotent` gives every message a dedupId. */
export function queueProducer(
  deps: StreamDeps,
  name: string,
  idempotent: boolean,
  options?: ProducerOptions,
): QueueProducer {
  return new Producer(
    deps,
    {
      kind: "queue",
      fields(m: MessageInput) {
        const message = typeof m === "string" ? { body: m } : { ...m };
        if (idempotent && message.dedupId === undefined) message.dedupId = crypto.randomUUID();
        return { fields: message, resend: message.dedupId !== undefined };
      },
    },
    name,
    options,
  );
}

/** Opens (lazily) a topic producer. */
export function topicProducer(
  deps: StreamDeps,
  name: string,
  options?: ProducerOptions,
): TopicProducer {
  return new Producer(
    deps,
    {
      kind: "topic",
      fields(m: TopicMessageInput) {
        return { fields: typeof m === "string" ? { body: m } : { ...m }, resend: false };
      },
    },
    name,
    options,
  );
}
