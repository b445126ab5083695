/**
 * A producer socket: every send frame is answered, in the order received, by one `sent` or one
 * `error` frame. The sends that arrive while one REST send is in flight go as the next batch, so
 * a socket stores its messages in the order it received them.
 */
import { describeLimit } from "../../auth/rate_limit.ts";
import { QUEUE_LIMITS } from "../../broker/queues.ts";
import { TOPIC_LIMITS } from "../../broker/topics.ts";
import { problemBody } from "../problem.ts";
import { type ErrorFrame, QueueSendFrame, TopicSendFrame } from "./protocol.ts";
import {
  answerError,
  badFrame,
  closeCodeOf,
  contextOf,
  errorFrame,
  invalidFrame,
  type SessionDeps,
  StreamSession,
} from "./session.ts";

/** Sends received and not yet answered, at most; beyond, a send is refused (429). */
export const MAX_WAITING_SENDS = 10_000;
/** Bytes of received sends not yet answered, at most. */
export const MAX_WAITING_CHARS = 32 * 1024 * 1024;

/** One frame waiting for its answer, in the order received. */
interface Entry {
  context?: string;
  /** The message's JSON (the REST send's fields) of a valid send. */
  message?: string;
  /** The answer decided already (a bad frame, a refusal before storing). */
  answer?: object;
}

/** What storing one batch gave: an answer per send, and whether the stream must end. */
interface Stored {
  answers: object[];
  fatal?: ErrorFrame;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A queue's or topic's producer socket. */
export class ProducerSession extends StreamSession {
  readonly #schema: typeof QueueSendFrame | typeof TopicSendFrame;
  readonly #batchMax: number;
  /** Characters of JSON one REST send may carry: its body stays within MOMD_MAX_BODY_BYTES. */
  readonly #batchChars: number;
  #waiting: Entry[] = [];
  #waitingChars = 0;
  #waitingSends = 0;
  #busy = false;

  constructor(deps: SessionDeps) {
    super(deps);
    this.#schema = deps.kind === "queue" ? QueueSendFrame : TopicSendFrame;
    this.#batchMax = deps.kind === "queue"
      ? QUEUE_LIMITS.sendBatchMax
      : TOPIC_LIMITS.publishBatchMax;
    // A UTF-8 byte per character at least, three at most.
    this.#batchChars = Math.max(1, Math.floor(deps.maxBodyBytes / 3) - 64);
  }

  protected start(): void {}

  protected handle(frame: Record<string, unknown>): void {
    const context = contextOf(frame);
    if (frame.type !== "send") {
      return this.#push({
        context,
        answer: badFrame(
          `unknown frame type '${String(frame.type).slice(0, 40)}': a producer ` +
            `takes send frames`,
          context,
        ),
      });
    }
    const parsed = this.#schema.safeParse(frame);
    if (!parsed.success) {
      return this.#push({ context, answer: invalidFrame(parsed.error.issues, context) });
    }
    const { type: _type, context: ctx, ...fields } = parsed.data;
    const message = JSON.stringify(fields);
    if (
      this.#waitingSends >= MAX_WAITING_SENDS ||
      this.#waitingChars + message.length > MAX_WAITING_CHARS
    ) {
      // A client that does not wait for answers: refuse rather than hold unbounded memory.
      return this.#push({
        context: ctx,
        answer: errorFrame(
          problemBody(
            429,
            `more than ${MAX_WAITING_SENDS} sends (or 32 MiB) wait for their ` +
              `answers on this socket; wait for answers before sending more`,
            {
              code: "too_many_pending",
            },
          ),
          ctx,
          1,
        ),
      });
    }
    this.#waitingSends++;
    this.#waitingChars += message.length;
    this.#push({ context: ctx, message });
  }

  protected override handleBad(frame: ErrorFrame): void {
    // Answered in turn, like every frame of a producer.
    this.#push({ context: frame.context, answer: frame });
  }

  protected cleanup(): Promise<void> {
    // Sends not begun are dropped (never stored); one in flight finishes unanswered.
    this.#waiting = [];
    return Promise.resolve();
  }

  #push(entry: Entry): void {
    this.#waiting.push(entry);
    if (!this.#busy) void this.#pump();
  }

  /** Stores what waits, one batch at a time, and answers in order. */
  async #pump(): Promise<void> {
    this.#busy = true;
    try {
      while (this.#waiting.length > 0 && !this.ended) {
        const batch = this.#takeBatch();
        const sends = batch.filter((e) => e.message !== undefined);
        for (const e of sends) {
          this.#waitingSends--;
          this.#waitingChars -= e.message!.length;
        }
        const stored = sends.length > 0 ? await this.#store(sends) : { answers: [] };
        if (this.ended) return;
        let next = 0;
        for (const e of batch) {
          this.write(e.message !== undefined ? stored.answers[next++] : e.answer!);
        }
        if (stored.fatal) {
          // Every send still waiting would be refused the same way: say so, then close.
          for (const e of this.#waiting) {
            this.write(
              e.message !== undefined ? { ...stored.fatal, context: e.context } : e.answer!,
            );
          }
          this.#waiting = [];
          this.fail({ ...stored.fatal, context: undefined });
          return;
        }
      }
    } catch (err) {
      this.deps.log.error({ err }, `stream ${this.deps.base}: producer failed`);
      this.end(1011, "internal error");
    } finally {
      this.#busy = false;
    }
  }

  /** The next frames to answer: at most one REST batch of sends, and bad frames among them. */
  #takeBatch(): Entry[] {
    let sends = 0;
    let chars = 0;
    let n = 0;
    for (; n < this.#waiting.length; n++) {
      const e = this.#waiting[n];
      if (e.message === undefined) continue;
      if (sends === this.#batchMax) break;
      if (sends > 0 && chars + e.message.length > this.#batchChars) break;
      sends++;
      chars += e.message.length;
    }
    return this.#waiting.splice(0, n);
  }

  /**
   * Stores a batch with one REST send; each send beyond the first also counts one call against
   * the user's rate limit (the REST call counts the first). A batch refused whole with a 4xx
   * (one message too large, the queue full) goes again one message at a time, so that only the
   * refused ones are answered with an error.
   */
  async #store(sends: Entry[]): Promise<Stored> {
    const extra = await this.#takeExtraCalls(sends.length - 1);
    const admitted = sends.slice(0, 1 + extra.admitted);
    const refused = sends.slice(admitted.length).map((e) =>
      errorFrame(extra.refusal!.problem, e.context, extra.refusal!.retryAfterSeconds)
    );
    if (extra.delayMs > 0) await sleep(extra.delayMs);
    const whole = await this.#send(admitted);
    if (whole.fatal || !whole.retryEach || admitted.length === 1) {
      return { answers: [...whole.answers, ...refused], fatal: whole.fatal };
    }
    const answers: object[] = [];
    for (let i = 0; i < admitted.length; i++) {
      const one = await this.#send([admitted[i]]);
      answers.push(...one.answers);
      if (one.fatal) {
        for (const e of admitted.slice(i + 1)) answers.push({ ...one.fatal, context: e.context });
        return { answers: [...answers, ...refused], fatal: one.fatal };
      }
    }
    return { answers: [...answers, ...refused] };
  }

  /** One REST send of `sends`: the answer of each, and whether one by one may do better. */
  async #send(sends: Entry[]): Promise<Stored & { retryEach?: boolean }> {
    const body = `{"messages":[${sends.map((e) => e.message).join(",")}]}`;
    const answer = await this.deps.rest.call("POST", `${this.deps.base}/messages`, body);
    if (answer.status === 201) {
      const results = answer.body?.messages as Record<string, unknown>[] | undefined;
      if (Array.isArray(results) && results.length === sends.length) {
        return {
          answers: sends.map((e, i) => ({ type: "sent", context: e.context, ...results[i] })),
        };
      }
      // Stored, but the answer cannot be matched: as good as a lost answer.
      const unknown = problemBody(504, "the send's answer could not be read", {
        code: "outcome_unknown",
      });
      return { answers: sends.map((e) => errorFrame(unknown, e.context)) };
    }
    const fatal = closeCodeOf(answer.status) !== undefined ? answerError(answer) : undefined;
    return {
      answers: sends.map((e) => answerError(answer, e.context)),
      fatal,
      retryEach: !fatal && answer.status >= 400 && answer.status < 500 && answer.status !== 429,
    };
  }

  /**
   * Takes `n` more calls from the user's rate limit: how many were admitted, the refusal of
   * the first one that was not, and how long the admitted ones are held.
   */
  async #takeExtraCalls(n: number): Promise<{
    admitted: number;
    delayMs: number;
    refusal?: { problem: Record<string, unknown>; retryAfterSeconds: number };
  }> {
    let delayMs = 0;
    const user = this.deps.principal.username;
    for (let i = 0; i < n; i++) {
      const d = await this.deps.limiter.take(user);
      if (d.limit === null) return { admitted: n, delayMs: 0 };
      if (!d.allowed) {
        const detail = `rate limit of ${describeLimit(d.limit)} for user '${user}' reached; ` +
          `retry after ${d.retryAfterSeconds} s`;
        return {
          admitted: i,
          delayMs,
          refusal: {
            problem: problemBody(429, detail, { code: "rate_limited" }),
            retryAfterSeconds: d.retryAfterSeconds,
          },
        };
      }
      delayMs = Math.max(delayMs, d.delayMs);
    }
    return { admitted: n, delayMs };
  }
}
