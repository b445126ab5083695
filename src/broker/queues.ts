import type { Store } from "./store.ts";
import { fallbackLogger, type Logger } from "../log/logger.ts";
import {
  countDeliveries,
  countSettled,
  type MessageCounters,
  type MessageEvent,
  NO_COUNTERS,
} from "./events.ts";
import type { Notifier } from "./notifier.ts";
import { type EntityRef, registryKey } from "./keys.ts";
import { BrokerError } from "./errors.ts";
import {
  bodySize,
  type Caller,
  type EntityAccess,
  type EntitySummary,
  iso,
  list,
  listEntities,
  readAccess,
  storeAccess,
} from "./entities.ts";
import {
  decodeReceipt,
  encodeReceipt,
  IdMaker,
  newToken,
  type ReceiptResult,
  receiptResults,
} from "./receipts.ts";

/** Overflow policy of a full queue: refuse the send, or drop the oldest ready messages. */

/** Refusals that pass by themselves: a sweep meeting one waits for the next round. */
const PASSING: ReadonlySet<string> = new Set(["unavailable", "store_lost", "outcome_unknown"]);
export type OverflowPolicy = "reject" | "dropHead";

/** Who may send to and receive from a queue besides its owner and the admins. */
export type QueueAccess = EntityAccess;

/** The configuration of one queue. */
export interface QueueConfig {
  visibilityTimeoutSeconds: number;
  maxDeliveries: number;
  retentionSeconds: number;
  maxLength: number;
  overflow: OverflowPolicy;
  delaySeconds: number;
  maxMessageBytes: number;
  dedupWindowSeconds: number;
  access: QueueAccess;
}

/** Limits of the queue API; the schemas and the documentation use these numbers. */
export const QUEUE_LIMITS = {
  /** Most messages in one send. */
  sendBatchMax: 100,
  /** Most messages in one receive. */
  receiveMax: 100,
  /** Most receipts in one ack, nack or visibility change. */
  receiptsMax: 100,
  /** Longest long poll. */
  waitSecondsMax: 20,
  /** Longest visibility timeout (12 hours). */
  visibilitySecondsMax: 43_200,
  /** Most deliveries before dead-lettering that can be configured. */
  maxDeliveriesMax: 1000,
  /** Shortest and longest retention (1 minute, 14 days). */
  retentionSecondsMin: 60,
  retentionSecondsMax: 1_209_600,
  /** Largest max length. */
  maxLengthMax: 10_000_000,
  /** Longest delivery delay (15 minutes), default or per message, and longest nack delay. */
  delaySecondsMax: 900,
  /** Largest message (body plus attribute names and values, UTF-8 bytes). */
  messageBytesMax: 1_048_576,
  /** Longest de-duplication window (1 day). */
  dedupWindowSecondsMax: 86_400,
  /** Most attributes per message, and the longest attribute name. */
  attributesMax: 32,
  attributeNameMax: 128,
  /** Longest de-duplication id. */
  dedupIdMax: 128,
  /** Most users in a senders or receivers list. */
  accessListMax: 1000,
  /** Most dead letters one redrive moves. */
  redriveMax: 10_000,
  /** Most messages one peek lists. */
  peekMax: 100,
} as const;

/** Configuration of a queue created without one. */
export const DEFAULT_QUEUE_CONFIG: QueueConfig = {
  visibilityTimeoutSeconds: 30,
  maxDeliveries: 5,
  retentionSeconds: 345_600, // 4 days
  maxLength: 1_000_000,
  overflow: "reject",
  delaySeconds: 0,
  maxMessageBytes: 262_144, // 256 KiB
  dedupWindowSeconds: 300,
  access: { restricted: false, senders: [], receivers: [] },
};

/** Counts of a queue as of now. */
export interface QueueStats {
  /** Messages ready for delivery (due delayed messages and timed-out deliveries included). */
  depth: number;
  inFlight: number;
  delayed: number;
  deadLettered: number;
  /** Seconds since the oldest held message was sent; null when the queue holds none. */
  oldestMessageAgeSeconds: number | null;
  /** Totals since the queue was created. */
  totals: {
    sent: number;
    delivered: number;
    acked: number;
    deadLettered: number;
    expired: number;
    dropped: number;
    purged: number;
  };
}

/** A queue as the API shows it. */
export interface QueueInfo {
  name: string;
  owner: string;
  createdAt: string;
  config: QueueConfig;
}

/** A queue with its counts. */
export interface QueueDetail extends QueueInfo {
  stats: QueueStats;
}

/** One entry of a queue listing. */
export type QueueSummary = EntitySummary;

/** A message to send. */
export interface OutgoingMessage {
  body: string;
  attributes?: Record<string, string>;
  /** Delivery delay; the queue's default when absent. */
  delaySeconds?: number;
  /** Time to live; capped by (and defaulting to) the queue's retention. */
  ttlSeconds?: number;
  /** Same id within the queue's window: stored once, the original id returned. */
  dedupId?: string;
}

/** What a send returns per message, in order. */
export interface SendResult {
  id: string;
  duplicate: boolean;
}

/** A delivered message. */
export interface Delivery {
  id: string;
  body: string;
  attributes: Record<string, string>;
  /** Bound to this delivery attempt: ack, nack and visibility changes need it. */
  receipt: string;
  /** 1 on the first delivery. */
  deliveryCount: number;
  enqueuedAt: string;
  expiresAt: string;
  /** Deadline of this attempt: unacked by then, the message is delivered again. */
  visibleAt: string;
}

/** The states a peek can list. */
export type PeekState = "ready" | "delayed" | "inflight" | "dead";

/** A message seen by a peek (not consumed). */
export interface PeekedMessage {
  id: string;
  body: string;
  attributes: Record<string, string>;
  state: PeekState;
  deliveryCount: number;
  enqueuedAt: string;
  expiresAt: string;
  /** When a delayed message becomes ready, or when an in-flight attempt times out. */
  visibleAt?: string;
}

/** Options of receive. */
export interface ReceiveOptions {
  max?: number;
  waitSeconds?: number;
  visibilitySeconds?: number;
  /** Aborts a long poll (the client went away). */
  signal?: AbortSignal;
}

/** Options of a QueueService. */
export interface QueueServiceOptions {
  /** Whether this node serves the queue now (the background sweeper skips others). */
  serves?: (name: string) => boolean;
  /** Where message events are counted (metrics). */
  counters?: MessageCounters;
  /** Where the sweeper's failures go (default: standard error). */
  log?: Logger;
}

// ---------------------------------------------------------------------------------------------
// Encodings shared with the Lua scripts

const CONFIG_FIELDS = [
  "vis",
  "maxd",
  "ret",
  "maxlen",
  "ovf",
  "delay",
  "maxb",
  "ddw",
  "restricted",
  "senders",
  "receivers",
] as const;

type StoredConfig = Record<typeof CONFIG_FIELDS[number], string>;

function storeConfig(c: QueueConfig): StoredConfig {
  return {
    vis: String(c.visibilityTimeoutSeconds),
    maxd: String(c.maxDeliveries),
    ret: String(c.retentionSeconds),
    maxlen: String(c.maxLength),
    ovf: c.overflow,
    delay: String(c.delaySeconds),
    maxb: String(c.maxMessageBytes),
    ddw: String(c.dedupWindowSeconds),
    ...storeAccess(c.access),
  };
}

/** The meta hash as queue_view() returns it. */
type StoredView = Record<string, string>;

function toConfig(v: StoredView): QueueConfig {
  return {
    visibilityTimeoutSeconds: Number(v.vis),
    maxDeliveries: Number(v.maxd),
    retentionSeconds: Number(v.ret),
    maxLength: Number(v.maxlen),
    overflow: v.ovf as OverflowPolicy,
    delaySeconds: Number(v.delay),
    maxMessageBytes: Number(v.maxb),
    dedupWindowSeconds: Number(v.ddw),
    access: readAccess(v),
  };
}

function toInfo(name: string, v: StoredView): QueueInfo {
  return { name, owner: v.owner, createdAt: iso(Number(v.createdAt)), config: toConfig(v) };
}

/** Attributes as JSON with every non-ASCII character escaped, so its length is its byte size. */
export function encodeAttributes(attrs: Record<string, string> | undefined): string {
  if (!attrs || Object.keys(attrs).length === 0) return "";
  return JSON.stringify(attrs).replace(
    /[\u0080-\uffff]/g,
    (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** Size of a message for the size limits: UTF-8 bytes of body, attribute names and values. */
export function messageSize(m: OutgoingMessage): number {
  return bodySize(m.body, m.attributes);
}

interface StoredMessage {
  expiresAt: number;
  enqueuedAt: number;
  attributes: Record<string, string>;
  body: string;
}

/** Decodes "<expiresAt>,<enqueuedAt>,<attributes length>|<attributes JSON><body>". */
function decodeMessage(raw: string): StoredMessage {
  const m = /^(\d+),(\d+),(\d+)\|/.exec(raw);
  if (!m) throw new Error("corrupt stored message");
  const start = m[0].length;
  const attrsLength = Number(m[3]);
  const attrs = raw.slice(start, start + attrsLength);
  return {
    expiresAt: Number(m[1]),
    enqueuedAt: Number(m[2]),
    attributes: attrs ? JSON.parse(attrs) : {},
    body: raw.slice(start + attrsLength),
  };
}

// ---------------------------------------------------------------------------------------------

/**
 * Point-to-point queues. Thin: each method checks what the schemas cannot, builds the script's
 * arguments (ids, receipt tokens) and runs one script; the rules live in the Lua scripts.
 */
export class QueueService {
  readonly #ids = new IdMaker();
  readonly #serves: (name: string) => boolean;
  readonly #counters: MessageCounters;
  readonly #log: Logger;
  #sweeper: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly store: Store,
    readonly notifier: Notifier,
    opts: QueueServiceOptions = {},
  ) {
    this.#serves = opts.serves ?? (() => true);
    this.#counters = opts.counters ?? NO_COUNTERS;
    this.#log = opts.log ?? fallbackLogger();
  }

  #ref(name: string): EntityRef {
    return { type: "queue", name };
  }

  #wakeKey(name: string): string {
    return `queue:${name}`;
  }

  /** Creates a queue owned by the caller; the same configuration again is not an error. */
  async create(
    caller: Caller,
    name: string,
    config: QueueConfig,
  ): Promise<{ created: boolean; queue: QueueInfo }> {
    const stored = storeConfig(config);
    const res = await this.store.change<{ created: boolean; queue: StoredView }>(
      this.#ref(name),
      "queue_create",
      [caller.username, caller.role, "", ...CONFIG_FIELDS.map((f) => stored[f])],
    );
    return { created: res.created, queue: toInfo(name, res.queue) };
  }

  /** Changes some configuration fields (owner or admin). */
  async configure(
    caller: Caller,
    name: string,
    patch: Partial<Omit<QueueConfig, "access">> & { access?: Partial<QueueAccess> },
  ): Promise<QueueInfo> {
    const full = storeConfig({
      ...DEFAULT_QUEUE_CONFIG,
      ...patch,
      access: { ...DEFAULT_QUEUE_CONFIG.access, ...patch.access },
    } as QueueConfig);
    const given = new Set<string>();
    const map: Record<string, keyof StoredConfig> = {
      visibilityTimeoutSeconds: "vis",
      maxDeliveries: "maxd",
      retentionSeconds: "ret",
      maxLength: "maxlen",
      overflow: "ovf",
      delaySeconds: "delay",
      maxMessageBytes: "maxb",
      dedupWindowSeconds: "ddw",
    };
    for (const [k, f] of Object.entries(map)) {
      if ((patch as Record<string, unknown>)[k] !== undefined) given.add(f);
    }
    if (patch.access?.restricted !== undefined) given.add("restricted");
    if (patch.access?.senders !== undefined) given.add("senders");
    if (patch.access?.receivers !== undefined) given.add("receivers");
    const args = [...given].flatMap((f) => [f, full[f as keyof StoredConfig]]);
    const res = await this.store.change<{ queue: StoredView }>(
      this.#ref(name),
      "queue_configure",
      [caller.username, caller.role, "", ...args],
    );
    this.notifier.notify(this.#wakeKey(name)); // a shorter delay or longer timeout may matter
    return toInfo(name, res.queue);
  }

  /** The queue's configuration and counts (any authenticated caller). */
  async get(caller: Caller, name: string): Promise<QueueDetail> {
    const res = await this.store.read<{
      queue: StoredView;
      counts: { ready: number; delayed: number; inflight: number; dead: number };
      oldest: number | false;
    }>(this.#ref(name), "queue_stats", [caller.username, caller.role, ""]);
    const v = res.queue;
    const n = (f: string) => Number(v[f] || 0);
    return {
      ...toInfo(name, v),
      stats: {
        depth: res.counts.ready,
        inFlight: res.counts.inflight,
        delayed: res.counts.delayed,
        deadLettered: res.counts.dead,
        oldestMessageAgeSeconds: res.oldest === false
          ? null
          : Math.max(0, Math.floor((this.store.now() - res.oldest) / 1000)),
        totals: {
          sent: n("n_sent"),
          delivered: n("n_recv"),
          acked: n("n_ack"),
          deadLettered: n("n_dead"),
          expired: n("n_exp"),
          dropped: n("n_drop"),
          purged: n("n_purge"),
        },
      },
    };
  }

  /** Queues held by this node, by name, a page at a time (`next` continues the listing). */
  async list(
    opts: { prefix?: string; after?: string; limit: number },
  ): Promise<{ queues: QueueSummary[]; next: string | null }> {
    const { entities, next } = await listEntities(this.store.redis, "queue", opts);
    return { queues: entities, next };
  }

  /** Deletes the queue and all it holds (owner or admin). */
  async delete(caller: Caller, name: string): Promise<void> {
    await this.store.change(this.#ref(name), "queue_delete", [caller.username, caller.role, ""]);
    this.#counters.forget({ queue: name });
    this.notifier.notify(this.#wakeKey(name)); // long polls end (with 404)
  }

  /** Drops ready, delayed and in-flight messages (and dead letters if asked); owner or admin. */
  async purge(
    caller: Caller,
    name: string,
    opts: { deadLetters?: boolean } = {},
  ): Promise<{ purged: number }> {
    return await this.store.change<{ purged: number }>(this.#ref(name), "queue_purge", [
      caller.username,
      caller.role,
      "",
      opts.deadLetters ? "1" : "0",
    ]);
  }

  /** Sends a batch, all or none, in one script call; returns ids in order. */
  async send(caller: Caller, name: string, messages: OutgoingMessage[]): Promise<SendResult[]> {
    if (messages.length === 0) throw new BrokerError("invalid", "no messages to send");
    if (messages.length > QUEUE_LIMITS.sendBatchMax) {
      throw new BrokerError("invalid", `at most ${QUEUE_LIMITS.sendBatchMax} messages per send`);
    }
    const args: (string | number)[] = [caller.username, caller.role, "", messages.length];
    const now = this.store.now();
    messages.forEach((m, i) => {
      const size = messageSize(m);
      if (size > QUEUE_LIMITS.messageBytesMax) {
        throw new BrokerError(
          "too_large",
          `message ${
            i + 1
          } has ${size} bytes; no queue accepts more than ${QUEUE_LIMITS.messageBytesMax}`,
        );
      }
      args.push(
        m.body,
        encodeAttributes(m.attributes),
        m.delaySeconds ?? "",
        m.ttlSeconds ?? "",
        m.dedupId ?? "",
        this.#ids.next(now),
        size,
      );
    });
    const res = await this.store.change<[string, boolean][] | Record<string, never>>(
      this.#ref(name),
      "queue_send",
      args,
    );
    this.notifier.notify(this.#wakeKey(name));
    const results = list(res).map(([id, duplicate]) => ({ id, duplicate }));
    const sent = results.filter((r) => !r.duplicate).length;
    if (sent > 0) this.#counters.queue(name, "sent", sent);
    return results;
  }

  async #receiveOnce(
    caller: Caller,
    name: string,
    max: number,
    visibilitySeconds: number | undefined,
  ): Promise<{ messages: Delivery[]; next: number | false }> {
    const tokens = Array.from({ length: max }, newToken);
    const res = await this.store.change<{
      m: [string, string, number, number, string][] | Record<string, never>;
      next: number | false;
    }>(this.#ref(name), "queue_receive", [
      caller.username,
      caller.role,
      "",
      max,
      visibilitySeconds ?? "",
      ...tokens,
    ]);
    const messages = list(res.m).map(([id, raw, dc, deadline, token]) => {
      const m = decodeMessage(raw);
      return {
        id,
        body: m.body,
        attributes: m.attributes,
        receipt: encodeReceipt(id, token),
        deliveryCount: dc,
        enqueuedAt: iso(m.enqueuedAt),
        expiresAt: iso(m.expiresAt),
        visibleAt: iso(deadline),
      };
    });
    return { messages, next: res.next ?? false };
  }

  /**
   * Receives up to `max` messages. With `waitSeconds`, waits until at least one is deliverable:
   * woken by a send (or nack) at once, and at the time the next delayed message comes due or
   * the next delivery times out; stops early when the signal aborts.
   */
  async receive(caller: Caller, name: string, opts: ReceiveOptions = {}): Promise<Delivery[]> {
    if (opts.signal?.aborted) return []; // the client went away already: take nothing
    const max = opts.max ?? 1;
    return await this.notifier.poll(
      this.#wakeKey(name),
      async () => {
        const res = await this.#receiveOnce(caller, name, max, opts.visibilitySeconds);
        countDeliveries(res.messages, (event, n) => this.#counters.queue(name, event, n));
        return { value: res.messages, ready: res.messages.length > 0, dueAt: res.next };
      },
      {
        waitMs: (opts.waitSeconds ?? 0) * 1000,
        signal: opts.signal,
        now: () => this.store.now(),
        // Nobody to deliver to any more: take nothing (it would stay invisible for nothing).
        // (An abort during a look returns its deliveries anyway; they time out unacked.)
        aborted: () => [],
        unavailable: () => [],
      },
    );
  }

  #receiptArgs(receipts: readonly string[]): string[] {
    return receipts.flatMap((r) => {
      const parsed = decodeReceipt(r);
      if (!parsed) throw new BrokerError("invalid", "not a receipt of this broker");
      return [parsed.id, parsed.token];
    });
  }

  #results(receipts: readonly string[], res: string[] | Record<string, never>): ReceiptResult[] {
    return receiptResults(receipts, list(res));
  }

  /** Acknowledges deliveries: each receipt of a current attempt deletes its message. */
  async ack(caller: Caller, name: string, receipts: readonly string[]): Promise<ReceiptResult[]> {
    const res = await this.store.change<string[]>(this.#ref(name), "queue_ack", [
      caller.username,
      caller.role,
      "",
      ...this.#receiptArgs(receipts),
    ]);
    return this.#counted(name, "acked", this.#results(receipts, res));
  }

  #counted(name: string, event: MessageEvent, results: ReceiptResult[]): ReceiptResult[] {
    countSettled(results, event, (e, n) => this.#counters.queue(name, e, n));
    return results;
  }

  /** Releases deliveries now (front of ready) or after a delay; counts toward max deliveries. */
  async nack(
    caller: Caller,
    name: string,
    receipts: readonly string[],
    delaySeconds = 0,
  ): Promise<ReceiptResult[]> {
    const res = await this.store.change<string[]>(this.#ref(name), "queue_nack", [
      caller.username,
      caller.role,
      "",
      delaySeconds,
      ...this.#receiptArgs(receipts),
    ]);
    this.notifier.notify(this.#wakeKey(name));
    return this.#counted(name, "nacked", this.#results(receipts, res));
  }

  /** Moves the deadline of current attempts to now + visibilitySeconds (0: release now). */
  async changeVisibility(
    caller: Caller,
    name: string,
    receipts: readonly string[],
    visibilitySeconds: number,
  ): Promise<ReceiptResult[]> {
    const res = await this.store.change<string[]>(this.#ref(name), "queue_visibility", [
      caller.username,
      caller.role,
      "",
      visibilitySeconds,
      ...this.#receiptArgs(receipts),
    ]);
    this.notifier.notify(this.#wakeKey(name));
    return this.#results(receipts, res);
  }

  /** Moves up to `max` dead letters back to ready, delivery count reset (owner or admin). */
  async redrive(
    caller: Caller,
    name: string,
    max: number = QUEUE_LIMITS.redriveMax,
  ): Promise<{ moved: number; expired: number; remaining: number }> {
    const res = await this.store.change<{ moved: number; expired: number; remaining: number }>(
      this.#ref(name),
      "queue_redrive",
      [caller.username, caller.role, "", max],
    );
    if (res.moved > 0) this.notifier.notify(this.#wakeKey(name));
    return res;
  }

  /** Lists messages of one state without consuming them (needs the receive right). */
  async peek(
    caller: Caller,
    name: string,
    opts: { state: PeekState; offset: number; limit: number },
  ): Promise<PeekedMessage[]> {
    const res = await this.store.read<{
      m: [string, string, number, number | false][] | Record<string, never>;
    }>(this.#ref(name), "queue_peek", [
      caller.username,
      caller.role,
      "",
      opts.state,
      opts.offset,
      opts.limit,
    ]);
    const now = this.store.now();
    const out: PeekedMessage[] = [];
    for (const [id, raw, dc, score] of list(res.m)) {
      const m = decodeMessage(raw);
      if (m.expiresAt <= now) continue; // past its TTL: dropped at the next maintenance
      const entry: PeekedMessage = {
        id,
        body: m.body,
        attributes: m.attributes,
        state: opts.state,
        deliveryCount: dc,
        enqueuedAt: iso(m.enqueuedAt),
        expiresAt: iso(m.expiresAt),
      };
      if (score !== false) entry.visibleAt = iso(score);
      out.push(entry);
    }
    return out;
  }

  /**
   * Background maintenance of one queue: drops what expired, returns timed-out deliveries and
   * promotes due delayed messages even when nobody receives. Returns how many became ready.
   */
  async sweep(name: string): Promise<number> {
    const res = await this.store.change<{ readied: number }>(this.#ref(name), "queue_sweep", [
      "",
      "admin",
      "",
    ]);
    if (res.readied > 0) this.notifier.notify(this.#wakeKey(name));
    return res.readied;
  }

  /** Sweeps every queue this node serves, a page of the registry at a time. */
  async sweepAll(): Promise<void> {
    let after: string | undefined;
    while (true) {
      const min: string = after === undefined ? "-" : `(${after}`;
      const names = await this.store.redis.zrangebylex(
        registryKey("queue"),
        min,
        "+",
        "LIMIT",
        0,
        500,
      );
      for (const name of names) {
        if (!this.#serves(name)) continue;
        try {
          await this.sweep(name);
        } catch (err) {
          // A queue that cannot take changes now (moving, too few in-sync copies) is swept next
          // time; one queue's trouble does not stop the others'.
          if (!(err instanceof BrokerError && PASSING.has(err.code))) {
            this.#log.warn({ err }, `queue sweep of '${name}' failed`);
          }
        }
      }
      if (names.length < 500) return;
      after = names[names.length - 1];
    }
  }

  /** Starts sweeping every `intervalMs` (one sweep at a time); stop with `close()`. */
  startSweeper(intervalMs = 5000): void {
    if (this.#sweeper !== undefined) return;
    let running = false;
    this.#sweeper = setInterval(() => {
      if (running) return;
      running = true;
      this.sweepAll().catch((err) => this.#log.warn({ err }, "queue sweep failed")).finally(() => {
        running = false;
      });
    }, intervalMs);
  }

  /** Stops the sweeper. */
  close(): void {
    if (this.#sweeper !== undefined) clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }
}
