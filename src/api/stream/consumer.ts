/**
 * A consumer socket: the client grants credits (prefetch, permit frames) and the server pushes
 * one delivery per credit, taken with REST receives (long polls) on the client's behalf; the
 * client settles them with ack, nack and visibility frames, each answered with the REST results.
 * When the socket closes, the deliveries it still holds are released (nacked, delay 0).
 */
import { QUEUE_LIMITS } from "../../broker/queues.ts";
import { TOPIC_LIMITS } from "../../broker/topics.ts";
import { problemBody } from "../problem.ts";
import { type ConsumerQuery, PermitFrame, QueueSettleFrame, TopicSettleFrame } from "./protocol.ts";
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
import type { RestAnswer } from "./rest.ts";

/** Longest wait of one receive (the REST maximum). */
const WAIT_SECONDS = 20;
/** Receives in flight at once, at most, while the queue has a backlog (else one long poll). */
export const MAX_RECEIVES = 4;
/** Settle frames waiting for their turn, at most; beyond, one is refused (429). */
export const MAX_WAITING_SETTLES = 10_000;
/** Pause after a receive failed without saying how long to wait. */
const RETRY_MS = 1_000;

type SettleFrame = QueueSettleFrame | TopicSettleFrame;

/** One receipt's outcome, as the REST ack, nack and visibility answer it. */
interface ReceiptResult {
  receipt: string;
  ok: boolean;
  error?: string;
}

const ANSWER_TYPE = { ack: "acked", nack: "nacked", visibility: "visibility" } as const;

/** A queue's or subscription's consumer socket. */
export class ConsumerSession extends StreamSession {
  readonly #settleSchema: typeof QueueSettleFrame | typeof TopicSettleFrame;
  readonly #receiveMax: number;
  readonly #receiptsMax: number;
  readonly #visibilitySeconds?: number;
  /** Granted and not yet used by a delivery. */
  #credits: number;
  /** Of the credits, those the receives in flight may use. */
  #reserved = 0;
  #receives = 0;
  /** A long poll is in flight (it runs alone). */
  #longPolling = false;
  /** Whether the last receive filled its `max`: more are likely waiting. */
  #backlog = false;
  #pausedUntil = 0;
  #resume?: ReturnType<typeof setTimeout>;
  /** Deliveries are written in the order their receives began. */
  #lastDelivery: Promise<void> = Promise.resolve();
  readonly #inFlight = new Set<Promise<void>>();
  /** Receipts delivered and not settled: released when the socket closes. */
  readonly #held = new Set<string>();
  readonly #abort = new AbortController();
  #settles: SettleFrame[] = [];
  #settling?: Promise<void>;

  constructor(deps: SessionDeps, query: ConsumerQuery) {
    super(deps);
    const queue = deps.kind === "queue";
    this.#settleSchema = queue ? QueueSettleFrame : TopicSettleFrame;
    this.#receiveMax = queue ? QUEUE_LIMITS.receiveMax : TOPIC_LIMITS.receiveMax;
    this.#receiptsMax = queue ? QUEUE_LIMITS.receiptsMax : TOPIC_LIMITS.receiptsMax;
    this.#credits = query.prefetch;
    this.#visibilitySeconds = query.visibilitySeconds;
  }

  protected start(): void {
    this.#pumpReceives();
  }

  protected handle(frame: Record<string, unknown>): void {
    if (frame.type === "permit") {
      const permit = PermitFrame.safeParse(frame);
      if (!permit.success) return this.write(invalidFrame(permit.error.issues, contextOf(frame)));
      this.#credits += permit.data.n;
      this.#pumpReceives();
      return;
    }
    const context = contextOf(frame);
    if (frame.type !== "ack" && frame.type !== "nack" && frame.type !== "visibility") {
      return this.write(badFrame(
        `unknown frame type '${String(frame.type).slice(0, 40)}': a consumer takes permit, ` +
          `ack, nack and visibility frames`,
        context,
      ));
    }
    const settle = this.#settleSchema.safeParse(frame);
    if (!settle.success) return this.write(invalidFrame(settle.error.issues, context));
    if (this.#settles.length >= MAX_WAITING_SETTLES) {
      return this.write(errorFrame(
        problemBody(429, `more than ${MAX_WAITING_SETTLES} settle frames wait on this socket`, {
          code: "too_many_pending",
        }),
        context,
        1,
      ));
    }
    this.#settles.push(settle.data);
    this.#settling ??= this.#pumpSettles().finally(() => this.#settling = undefined);
  }

  protected async cleanup(): Promise<void> {
    this.#abort.abort();
    clearTimeout(this.#resume);
    // Receives end (aborted) with what they took; settles already received are done first,
    // so that nothing the client acked is released.
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    await this.#lastDelivery;
    while (this.#settling) await this.#settling;
    const held = [...this.#held];
    this.#held.clear();
    for (let i = 0; i < held.length; i += this.#receiptsMax) {
      const receipts = held.slice(i, i + this.#receiptsMax);
      await this.deps.rest.call(
        "POST",
        `${this.deps.base}/nack`,
        JSON.stringify({ receipts, delaySeconds: 0 }),
      );
    }
  }

  /**
   * Starts receives while credits are free. While the queue has a backlog, up to MAX_RECEIVES
   * receives that do not wait run at once; otherwise one long poll runs alone. (A long poll
   * beside others would hold back their deliveries, which are written in the order the receives
   * began.)
   */
  #pumpReceives(): void {
    while (!this.ended && !this.#longPolling) {
      const free = this.#credits - this.#reserved;
      if (free <= 0) return;
      if (this.#backlog ? this.#receives >= MAX_RECEIVES : this.#receives > 0) return;
      const wait = this.#pausedUntil - Date.now();
      if (wait > 0) {
        this.#resume ??= setTimeout(() => {
          this.#resume = undefined;
          this.#pumpReceives();
        }, wait);
        return;
      }
      const max = Math.min(free, this.#receiveMax);
      const longPoll = !this.#backlog;
      this.#reserved += max;
      this.#receives++;
      this.#longPolling = longPoll;
      const answer = this.deps.rest.call(
        "POST",
        `${this.deps.base}/receive`,
        JSON.stringify({
          max,
          waitSeconds: longPoll ? WAIT_SECONDS : 0,
          ...(this.#visibilitySeconds !== undefined
            ? { visibilitySeconds: this.#visibilitySeconds }
            : {}),
        }),
        longPoll ? this.#abort.signal : undefined,
      );
      const before = this.#lastDelivery;
      const delivered = (async () => {
        const a = await answer;
        await before;
        if (longPoll) this.#longPolling = false;
        this.#deliver(a, max);
      })();
      this.#lastDelivery = delivered.catch(() => {});
      const tracked: Promise<void> = delivered.catch((err) => {
        this.deps.log.warn({ err }, `stream ${this.deps.base}: a receive failed`);
      }).finally(() => this.#inFlight.delete(tracked));
      this.#inFlight.add(tracked);
    }
  }

  /** Writes what a receive took (or says why it failed) and starts the next receives. */
  #deliver(answer: RestAnswer, max: number): void {
    this.#reserved -= max;
    this.#receives--;
    if (answer.status === 200) {
      const messages = (answer.body?.messages ?? []) as { receipt: string }[];
      for (const m of messages) {
        this.#held.add(m.receipt);
        this.#credits--;
        // The delivery's own JSON after the frame's type (no copy of the object per message).
        this.writeText(`{"type":"message",${JSON.stringify(m).slice(1)}`);
      }
      this.#backlog = messages.length === max;
    } else if (!this.ended) {
      const error = answerError(answer);
      if (closeCodeOf(answer.status) !== undefined) return this.fail(error);
      // Throttled (429) or unavailable for now (503, 504, a node draining): say so, wait.
      this.write(error);
      this.#backlog = false;
      this.#pausedUntil = Date.now() +
        (answer.retryAfterSeconds !== undefined ? answer.retryAfterSeconds * 1000 : RETRY_MS);
    }
    this.#pumpReceives();
  }

  /**
   * Settles in the order the frames came: consecutive ack frames go as one REST ack (or a few,
   * of at most `receiptsMax` receipts each), a nack or visibility frame alone. Each frame gets
   * its own answer.
   */
  async #pumpSettles(): Promise<void> {
    while (this.#settles.length > 0) {
      const head = this.#settles[0];
      let n = 1;
      if (head.type === "ack") {
        while (n < this.#settles.length && this.#settles[n].type === "ack") n++;
      }
      const frames = this.#settles.splice(0, n);
      const receipts = frames.flatMap((f) => f.receipts);
      const { type: _type, context: _context, ...body } = head;
      const chunks: string[][] = [];
      for (let i = 0; i < receipts.length; i += this.#receiptsMax) {
        chunks.push(receipts.slice(i, i + this.#receiptsMax));
      }
      const answers = await Promise.all(chunks.map((chunk) =>
        this.deps.rest.call(
          "POST",
          `${this.deps.base}/${head.type}`,
          JSON.stringify({ ...body, receipts: chunk }),
        )
      ));
      const failed = answers.find((a) => a.status !== 200);
      if (failed && frames.length > 1 && failed.status === 400) {
        // One frame spoiled the whole: each on its own.
        for (const f of frames) await this.#settleAlone(f);
      } else if (failed) {
        this.#refuseSettles(frames, failed);
      } else {
        this.#answerSettles(frames, answers.flatMap((a) => a.body?.results ?? []));
      }
    }
  }

  /** Settles one frame with its own REST call. */
  async #settleAlone(frame: SettleFrame): Promise<void> {
    const { type: _type, context: _context, ...body } = frame;
    const answer = await this.deps.rest.call(
      "POST",
      `${this.deps.base}/${frame.type}`,
      JSON.stringify(body),
    );
    if (answer.status !== 200) this.#refuseSettles([frame], answer);
    else this.#answerSettles([frame], answer.body?.results ?? []);
  }

  #refuseSettles(frames: SettleFrame[], answer: RestAnswer): void {
    for (const f of frames) this.write(answerError(answer, f.context));
    if (closeCodeOf(answer.status) !== undefined) this.fail(answerError(answer));
  }

  /** Answers each frame with its receipts' results and forgets the deliveries settled. */
  #answerSettles(frames: SettleFrame[], results: ReceiptResult[]): void {
    let i = 0;
    for (const f of frames) {
      const mine = results.slice(i, i + f.receipts.length);
      i += f.receipts.length;
      for (const r of mine) {
        // Acked or nacked (or stale: not ours any more); visibility 0 releases it too.
        const released = f.type !== "visibility" || (f.visibilitySeconds === 0 && r.ok);
        if (released) this.#held.delete(r.receipt);
      }
      this.write({
        type: ANSWER_TYPE[f.type],
        ...(f.context !== undefined ? { context: f.context } : {}),
        results: mine,
      });
    }
  }
}
