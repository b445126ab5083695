/**
 * The node's memory alarm, after RabbitMQ's memory high watermark: the local store (Redis, started
 * with `maxmemory` and `maxmemory-policy noeviction`) refuses every write once it is full, acks
 * and deletes included. So the node refuses **new messages** (sends, publishes, requests) earlier,
 * once the store holds `highWatermark` of its `maxmemory`: consumers can still receive, ack,
 * purge and delete, which is the only way the store empties. Replica applies never pass here
 * (Store.apply): refusing one would break replication, and only the owner decides a send.
 *
 * No Redis round trip per send: `INFO memory` is sampled every `intervalMs`, and a send is judged
 * on the last sample plus the bytes admitted since. The sample goes over the store's own
 * connection, so Redis answers it after every script admitted before it was sent: those bytes
 * are in the sample and leave the estimate then. A burst of large sends between two samples thus
 * cannot overshoot the mark.
 */
import type { Redis } from "ioredis";
import { BrokerError } from "./errors.ts";
import type { ScriptName } from "./store.ts";

/** The changes that bring new messages into the store: the only ones refused when it is full. */
const NEW_MESSAGES: ReadonlySet<ScriptName> = new Set<ScriptName>([
  "queue_send",
  "topic_publish",
  "queue_request",
]);

/**
 * How many times a change's bytes count until a sample has seen them: besides the data itself,
 * Redis holds them for a while in the client's query buffer, in the Lua heap (collected later)
 * and in the append-only file's buffer. Measured: 4 MB sends grew used_memory by up to 12 MB
 * each before the next sample, so counting them once let a burst run Redis out of memory.
 */
const TRANSIENT_FACTOR = 3;

/** Seconds a refused producer is told to wait (a hint: a drain takes what it takes). */
const RETRY_AFTER_SECONDS = 5;

/** What /readyz shows of the store's memory. */
export interface MemoryStatus {
  /** Redis's used_memory at the last sample, plus what was admitted since. */
  usedBytes: number;
  /** Redis's maxmemory; null when it has none (then nothing is refused). */
  maxBytes: number | null;
  /** The point from which new messages are refused; null without maxmemory. */
  highWatermarkBytes: number | null;
  /** Whether new messages are refused now. */
  refusingNewMessages: boolean;
  /** When the last sample was taken (ISO 8601). */
  sampledAt: string;
}

/** Options of a MemoryWatch. */
export interface MemoryWatchOptions {
  /** Fraction of maxmemory from which new messages are refused (0 < x <= 1). */
  highWatermark: number;
  /** How often INFO memory is sampled (default 250 ms). */
  intervalMs?: number;
  /** Where state changes are reported (default console.error). */
  log?: (line: string) => void;
}

interface Sample {
  used: number;
  max: number;
  at: number;
  /** `#admitted` when the sample was sent: what it already holds. */
  admitted: number;
}

/** See the module comment. */
export class MemoryWatch {
  readonly #redis: Redis;
  readonly #highWatermark: number;
  readonly #intervalMs: number;
  readonly #log: (line: string) => void;
  #sample: Sample | undefined;
  /** Bytes of every new-message change admitted so far (only grows). */
  #admitted = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #sampling: Promise<void> | undefined;
  #full = false;
  /** A refusal by estimate was logged; cleared by a sample below the mark. */
  #refusedOnEstimate = false;
  #warnedUnlimited = false;

  constructor(redis: Redis, opts: MemoryWatchOptions) {
    if (!(opts.highWatermark > 0 && opts.highWatermark <= 1)) {
      throw new RangeError(`highWatermark must be in (0, 1], got ${opts.highWatermark}`);
    }
    this.#redis = redis;
    this.#highWatermark = opts.highWatermark;
    this.#intervalMs = opts.intervalMs ?? 250;
    this.#log = opts.log ?? ((line) => console.error(line));
  }

  /** Takes a first sample, then samples every `intervalMs`. */
  async start(): Promise<void> {
    await this.sample();
    this.#timer ??= setInterval(() => void this.sample(), this.#intervalMs);
  }

  /** Stops sampling. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#sampling;
  }

  /** Samples INFO memory now (one at a time; a failed sample keeps the last one). */
  sample(): Promise<void> {
    this.#sampling ??= this.#takeSample().finally(() => this.#sampling = undefined);
    return this.#sampling;
  }

  async #takeSample(): Promise<void> {
    // Read before the command is queued: every script admitted so far runs before INFO.
    const admitted = this.#admitted;
    let info: string;
    try {
      info = await this.#redis.info("memory");
    } catch {
      return; // the store guard deals with a store that does not answer
    }
    const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, "m").exec(info)?.[1]);
    const used = field("used_memory");
    const max = field("maxmemory") || 0;
    if (!Number.isFinite(used)) return;
    this.#sample = { used, max, at: Date.now(), admitted };
    if (max === 0 && !this.#warnedUnlimited) {
      this.#warnedUnlimited = true;
      this.#log(
        "memory: the local store has no maxmemory, so sends are never refused for memory; " +
          "start it with maxmemory and maxmemory-policy noeviction",
      );
    }
    const full = max > 0 && used >= this.#mark(max);
    if (!full) this.#refusedOnEstimate = false;
    if (full !== this.#full) {
      this.#full = full;
      this.#log(
        full
          ? `memory: the local store uses ${used} of ${max} bytes, above the high watermark ` +
            `(${this.#mark(max)}): refusing new messages until consumers drain it`
          : `memory: the local store uses ${used} of ${max} bytes, below the high watermark ` +
            "again: taking new messages",
      );
    }
  }

  #mark(max: number): number {
    return Math.floor(max * this.#highWatermark);
  }

  /** Estimated bytes in the store now: the last sample and what was admitted after it. */
  #estimate(sample: Sample): number {
    return sample.used + this.#admitted - sample.admitted;
  }

  /**
   * Called by the store before each change it makes as the owner: a change that brings new
   * messages is refused (`memory_full`, 507) when it would take the store past the mark.
   * Anything else passes.
   */
  admit(op: ScriptName, args: readonly string[]): void {
    if (!NEW_MESSAGES.has(op)) return;
    const sample = this.#sample;
    if (!sample || sample.max === 0) return;
    // UTF-16 units: exact for ASCII, an underestimate otherwise, which the next sample corrects.
    let size = 0;
    for (const a of args) size += a.length;
    const cost = size * TRANSIENT_FACTOR;
    const estimate = this.#estimate(sample);
    const mark = this.#mark(sample.max);
    if (estimate + cost > mark) {
      // Refused on the estimate before a sample saw the store full: say so once per episode.
      if (!this.#full && !this.#refusedOnEstimate) {
        this.#refusedOnEstimate = true;
        this.#log(
          `memory: the local store is estimated at ${estimate} of ${sample.max} bytes, above the ` +
            `high watermark (${mark}) with what is being sent: refusing new messages`,
        );
      }
      throw new BrokerError(
        "memory_full",
        `this node's message store is full (about ${estimate} of ${sample.max} bytes used; new ` +
          `messages are refused from ${Math.round(this.#highWatermark * 100)} %, ${mark} ` +
          `bytes, and this one brings ${size}): send again once consumers have drained ` +
          "queues and topics (receive, ack, purge and delete still work)",
        RETRY_AFTER_SECONDS,
      );
    }
    this.#admitted += cost;
  }

  /** The last sample, for /readyz; undefined before the first. */
  status(): MemoryStatus | undefined {
    const sample = this.#sample;
    if (!sample) return undefined;
    const usedBytes = this.#estimate(sample);
    const mark = sample.max > 0 ? this.#mark(sample.max) : null;
    return {
      usedBytes,
      maxBytes: sample.max > 0 ? sample.max : null,
      highWatermarkBytes: mark,
      refusingNewMessages: mark !== null && usedBytes >= mark,
      sampledAt: new Date(sample.at).toISOString(),
    };
  }
}
