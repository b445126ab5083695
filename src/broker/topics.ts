import type { Store } from "./store.ts";
import {
  countDeliveries,
  countSettled,
  type MessageCounters,
  type MessageEvent,
  NO_COUNTERS,
} from "./events.ts";
import type { Notifier } from "./notifier.ts";
import type { EntityRef } from "./keys.ts";
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
  decodeTopicReceipt,
  encodeTopicReceipt,
  newToken,
  type ReceiptResult,
  receiptResults,
} from "./receipts.ts";

/**
 * Who may publish to and receive from (and subscribe to) a topic besides its owner and admins;
 * not restricted: any authenticated user may publish, subscribe and receive.
 */
export type TopicAccess = EntityAccess;

/** The configuration of one topic. */
export interface TopicConfig {
  /** Messages older than this are dropped from the log; 0: no age limit. */
  retentionSeconds: number;
  /** The log keeps at most this many messages (the newest); 0: no count limit. */
  retentionMaxMessages: number;
  /** The log keeps at most this many message bytes (the newest); 0: no size limit. */
  retentionMaxBytes: number;
  /** Largest message: UTF-8 bytes of body, key, attribute names and values. */
  maxMessageBytes: number;
  /** Default visibility timeout of subscriptions created afterwards. */
  visibilityTimeoutSeconds: number;
  /** Default max deliveries (before dead-lettering) of subscriptions created afterwards. */
  maxDeliveries: number;
  access: TopicAccess;
}

/** Limits of the topic API; the schemas and the documentation use these numbers. */
export const TOPIC_LIMITS = {
  /** Most messages in one publish. */
  publishBatchMax: 100,
  /** Most messages in one receive. */
  receiveMax: 100,
  /** Most receipts in one ack, nack or visibility change. */
  receiptsMax: 100,
  /** Longest long poll. */
  waitSecondsMax: 20,
  /** Longest visibility timeout and nack delay (12 hours). */
  visibilitySecondsMax: 43_200,
  /** Most deliveries before dead-lettering that can be configured. */
  maxDeliveriesMax: 1000,
  /** Longest age retention (1 year). */
  retentionSecondsMax: 31_536_000,
  /** Largest count retention. */
  retentionMaxMessagesMax: 100_000_000,
  /** Largest size retention (16 GiB). */
  retentionMaxBytesMax: 17_179_869_184,
  /** Largest message that can be configured (1 MiB). */
  messageBytesMax: 1_048_576,
  /** Most attributes per message, the longest attribute name, the longest key. */
  attributesMax: 32,
  attributeNameMax: 128,
  keyMax: 256,
  /** Most users in a senders or receivers list. */
  accessListMax: 1000,
  /** Most dead letters one redrive moves. */
  redriveMax: 10_000,
  /** Most messages one peek lists. */
  peekMax: 100,
} as const;

/** Configuration of a topic created without one. */
export const DEFAULT_TOPIC_CONFIG: TopicConfig = {
  retentionSeconds: 604_800, // 7 days
  retentionMaxMessages: 0,
  retentionMaxBytes: 104_857_600, // 100 MiB
  maxMessageBytes: 262_144, // 256 KiB
  visibilityTimeoutSeconds: 30,
  maxDeliveries: 5,
  access: { restricted: false, senders: [], receivers: [] },
};

/** Counts of a topic's log as of now (retention applied). */
export interface TopicStats {
  /** Offset of the oldest retained message (equals nextOffset when none is retained). */
  firstOffset: number;
  /** Offset the next published message gets (offsets start at 0). */
  nextOffset: number;
  /** Retained messages. */
  messages: number;
  /** Retained message bytes. */
  bytes: number;
  subscriptions: number;
}

/** A topic as the API shows it. */
export interface TopicDetail {
  name: string;
  owner: string;
  createdAt: string;
  config: TopicConfig;
  stats: TopicStats;
}

/** One entry of a topic listing. */
export type TopicSummary = EntitySummary;

/** A message to publish. */
export interface OutgoingTopicMessage {
  body: string;
  attributes?: Record<string, string>;
  /** Free-form key (e.g. an entity id), delivered with the message. */
  key?: string;
}

/** What a publish returns per message, in order. */
export interface Published {
  offset: number;
  id: string;
  publishedAt: string;
}

/** Where a new subscription starts: the first retained message, the next one, or a time. */
export type SubscriptionStart = "earliest" | "latest" | { time: number };

/** Options of a new subscription (unset values come from the topic's defaults). */
export interface SubscriptionOptions {
  start: SubscriptionStart;
  visibilityTimeoutSeconds?: number;
  maxDeliveries?: number;
}

/** A subscription's counts as of now. */
export interface SubscriptionStats {
  /** Offset of the next message the subscription delivers for the first time. */
  position: number;
  /** nextOffset - position: messages published but not yet delivered. */
  lag: number;
  /** Deliveries waiting for an ack. */
  inFlight: number;
  /** Released or timed-out deliveries waiting to be delivered again (delayed nacks included). */
  pendingRedelivery: number;
  deadLettered: number;
  /** Messages retention removed before this subscription delivered (or dead-lettered) them. */
  skipped: number;
}

/** A subscription as the API shows it. */
export interface SubscriptionDetail {
  topic: string;
  name: string;
  creator: string;
  createdAt: string;
  config: {
    /** "earliest", "latest" or the ISO time it was created with. */
    start: string;
    visibilityTimeoutSeconds: number;
    maxDeliveries: number;
  };
  stats: SubscriptionStats;
}

/** A message of a topic's log. */
export interface TopicMessage {
  offset: number;
  id: string;
  body: string;
  attributes: Record<string, string>;
  key: string | null;
  /** Username of the publisher. */
  publisher: string;
  publishedAt: string;
}

/** A delivered message. */
export interface TopicDelivery extends TopicMessage {
  /** Bound to this delivery attempt: ack, nack and visibility changes need it. */
  receipt: string;
  /** 1 on the first delivery. */
  deliveryCount: number;
  /** Deadline of this attempt: unacked by then, the message is delivered again. */
  visibleAt: string;
}

/** A message the subscription gave up on after maxDeliveries. */
export interface TopicDeadLetter extends TopicMessage {
  deliveryCount: number;
  deadLetteredAt: string;
}

/** Options of receive. */
export interface TopicReceiveOptions {
  max?: number;
  waitSeconds?: number;
  visibilitySeconds?: number;
  /** Aborts a long poll (the client went away). */
  signal?: AbortSignal;
  /**
   * Passes over the caller's own messages as if they were delivered and acknowledged (the
   * compatibility API: a subscriber never receives what it published itself).
   */
  excludeOwn?: boolean;
}

/** Where a seek moved a subscription. */
export interface SeekResult {
  /** The new position (the next offset to deliver). */
  position: number;
  /** In-flight and pending deliveries dropped (their receipts turn stale). */
  dropped: number;
  /** The offset asked for; null for a seek by time. */
  requestedOffset: number | null;
  /** The offset asked for lay outside the retained range: position is the nearest end of it. */
  clamped: boolean;
}

/** A configuration change: any subset of the fields, access fields one by one. */
export type TopicConfigPatch = Partial<Omit<TopicConfig, "access">> & {
  access?: Partial<TopicAccess>;
};

/** Options of a TopicService (none yet; reserved for the cluster). */
export interface TopicServiceOptions {
  /** Where message events are counted (metrics). */
  counters?: MessageCounters;
}

// ---------------------------------------------------------------------------------------------
// Encodings shared with the Lua scripts (see includes/topic_common.lua)

const CONFIG_FIELDS = [
  "ret",
  "retn",
  "retb",
  "maxb",
  "vis",
  "maxd",
  "restricted",
  "senders",
  "receivers",
] as const;

type StoredField = typeof CONFIG_FIELDS[number];

const FIELD_OF: Record<Exclude<keyof TopicConfig, "access">, StoredField> = {
  retentionSeconds: "ret",
  retentionMaxMessages: "retn",
  retentionMaxBytes: "retb",
  maxMessageBytes: "maxb",
  visibilityTimeoutSeconds: "vis",
  maxDeliveries: "maxd",
};

function storeConfig(c: TopicConfig): Record<StoredField, string> {
  return {
    ret: String(c.retentionSeconds),
    retn: String(c.retentionMaxMessages),
    retb: String(c.retentionMaxBytes),
    maxb: String(c.maxMessageBytes),
    vis: String(c.visibilityTimeoutSeconds),
    maxd: String(c.maxDeliveries),
    ...storeAccess(c.access),
  };
}

/** topic_view() of the scripts: raw config fields and counts. */
interface StoredTopic extends Record<StoredField, string> {
  owner: string;
  createdAt: number;
  firstOffset: number;
  nextOffset: number;
  messages: number;
  bytes: number;
  subscriptions: number;
}

function toDetail(name: string, v: StoredTopic): TopicDetail {
  return {
    name,
    owner: v.owner,
    createdAt: iso(v.createdAt),
    config: {
      retentionSeconds: Number(v.ret),
      retentionMaxMessages: Number(v.retn),
      retentionMaxBytes: Number(v.retb),
      maxMessageBytes: Number(v.maxb),
      visibilityTimeoutSeconds: Number(v.vis),
      maxDeliveries: Number(v.maxd),
      access: readAccess(v),
    },
    stats: {
      firstOffset: v.firstOffset,
      nextOffset: v.nextOffset,
      messages: v.messages,
      bytes: v.bytes,
      subscriptions: v.subscriptions,
    },
  };
}

/** sub_view() of the scripts. */
interface StoredSubscription {
  name: string;
  creator: string;
  createdAt: number;
  start: "earliest" | "latest" | "time";
  startTime?: number | null;
  visibilityTimeoutSeconds: number;
  maxDeliveries: number;
  position: number;
  lag: number;
  inFlight: number;
  pendingRedelivery: number;
  deadLettered: number;
  skipped: number;
}

function toSubscription(topic: string, v: StoredSubscription): SubscriptionDetail {
  return {
    topic,
    name: v.name,
    creator: v.creator,
    createdAt: iso(v.createdAt),
    config: {
      start: v.start === "time" ? iso(Number(v.startTime)) : v.start,
      visibilityTimeoutSeconds: v.visibilityTimeoutSeconds,
      maxDeliveries: v.maxDeliveries,
    },
    stats: {
      position: v.position,
      lag: v.lag,
      inFlight: v.inFlight,
      pendingRedelivery: v.pendingRedelivery,
      deadLettered: v.deadLettered,
      skipped: v.skipped,
    },
  };
}

/** message_view() of the scripts. */
interface StoredMessage {
  offset: number;
  id: string;
  body: string;
  attributes?: string;
  key?: string;
  publisher: string;
  publishedAt: number;
}

function toMessage(m: StoredMessage): TopicMessage {
  return {
    offset: m.offset,
    id: m.id,
    body: m.body,
    attributes: m.attributes ? JSON.parse(m.attributes) : {},
    key: m.key ?? null,
    publisher: m.publisher,
    publishedAt: iso(m.publishedAt),
  };
}

const utf8 = new TextEncoder();

/** Size of a message for the limits: UTF-8 bytes of body, key, attribute names and values. */
export function topicMessageSize(m: OutgoingTopicMessage): number {
  return bodySize(m.body, m.attributes) + utf8.encode(m.key ?? "").length;
}

/** Attributes as JSON with sorted names ('' when none), so equal attributes store equally. */
function encodeAttributes(attrs: Record<string, string> | undefined): string {
  const names = Object.keys(attrs ?? {}).sort();
  if (names.length === 0) return "";
  return JSON.stringify(Object.fromEntries(names.map((n) => [n, attrs![n]])));
}

// ---------------------------------------------------------------------------------------------

/**
 * Publish/subscribe topics: an append-only log with integer offsets and named, durable
 * subscriptions, each with its own position, deliveries, receipts and dead letters. Thin: each
 * method builds the script's arguments (ids, receipt tokens) and runs one script; the rules live
 * in the Lua scripts.
 */
export class TopicService {
  readonly #counters: MessageCounters;

  constructor(
    readonly store: Store,
    readonly notifier: Notifier,
    opts: TopicServiceOptions = {},
  ) {
    this.#counters = opts.counters ?? NO_COUNTERS;
  }

  #ref(name: string): EntityRef {
    return { type: "topic", name };
  }

  /** The notifier key every receiver of the topic's subscriptions waits on. */
  wakeKey(name: string): string {
    return `topic:${name}`;
  }

  #args(caller: Caller, sub = ""): string[] {
    return [caller.username, caller.role, sub];
  }

  /** Creates a topic owned by the caller; the same configuration again is not an error. */
  async create(
    caller: Caller,
    name: string,
    config: TopicConfig,
  ): Promise<{ created: boolean; topic: TopicDetail }> {
    const stored = storeConfig(config);
    const res = await this.store.change<{ created: boolean; topic: StoredTopic }>(
      this.#ref(name),
      "topic_create",
      [...this.#args(caller), ...CONFIG_FIELDS.map((f) => stored[f])],
    );
    return { created: res.created, topic: toDetail(name, res.topic) };
  }

  /** Changes some configuration fields (owner or admin). */
  async configure(caller: Caller, name: string, patch: TopicConfigPatch): Promise<TopicDetail> {
    const args: string[] = [];
    const full = storeConfig({
      ...DEFAULT_TOPIC_CONFIG,
      ...patch,
      access: { ...DEFAULT_TOPIC_CONFIG.access, ...patch.access },
    } as TopicConfig);
    for (const [k, f] of Object.entries(FIELD_OF)) {
      if ((patch as Record<string, unknown>)[k] !== undefined) args.push(f, full[f]);
    }
    for (const f of ["restricted", "senders", "receivers"] as const) {
      if (patch.access?.[f] !== undefined) args.push(f, full[f]);
    }
    const res = await this.store.change<{ topic: StoredTopic }>(
      this.#ref(name),
      "topic_configure",
      [...this.#args(caller), ...args],
    );
    return toDetail(name, res.topic);
  }

  /** The topic's configuration and counts (any authenticated caller). */
  async get(caller: Caller, name: string): Promise<TopicDetail> {
    const res = await this.store.read<{ topic: StoredTopic }>(this.#ref(name), "topic_stats", [
      ...this.#args(caller),
      "topic",
    ]);
    return toDetail(name, res.topic);
  }

  /** Topics held by this node, by name, a page at a time (`next` continues the listing). */
  async list(
    opts: { prefix?: string; after?: string; limit: number },
  ): Promise<{ topics: TopicSummary[]; next: string | null }> {
    const { entities, next } = await listEntities(this.store.redis, "topic", opts);
    return { topics: entities, next };
  }

  /** Deletes the topic, its log and every subscription (owner or admin). */
  async delete(caller: Caller, name: string): Promise<void> {
    await this.store.change(this.#ref(name), "topic_delete", this.#args(caller));
    this.#counters.forget({ topic: name });
    this.notifier.notify(this.wakeKey(name)); // long polls end (with 404)
  }

  /** Publishes a batch, all or none, in one script call; returns offsets in order. */
  async publish(
    caller: Caller,
    name: string,
    messages: readonly OutgoingTopicMessage[],
  ): Promise<Published[]> {
    if (messages.length === 0) throw new BrokerError("invalid", "no messages to publish");
    if (messages.length > TOPIC_LIMITS.publishBatchMax) {
      throw new BrokerError(
        "invalid",
        `at most ${TOPIC_LIMITS.publishBatchMax} messages per publish`,
      );
    }
    const args: (string | number)[] = [...this.#args(caller), messages.length];
    messages.forEach((m, i) => {
      const size = topicMessageSize(m);
      if (size > TOPIC_LIMITS.messageBytesMax) {
        throw new BrokerError(
          "too_large",
          `message ${
            i + 1
          } has ${size} bytes; no topic accepts more than ${TOPIC_LIMITS.messageBytesMax}`,
        );
      }
      args.push(crypto.randomUUID(), m.body, encodeAttributes(m.attributes), m.key ?? "", size);
    });
    const res = await this.store.change<{
      messages: { offset: number; id: string }[];
      publishedAt: number;
    }>(this.#ref(name), "topic_publish", args);
    this.notifier.notify(this.wakeKey(name));
    const publishedAt = iso(res.publishedAt);
    this.#counters.published(name, messages.length);
    return list(res.messages).map((m) => ({ offset: m.offset, id: m.id, publishedAt }));
  }

  /** Lists retained messages from an offset without consuming them (receive right). */
  async peek(
    caller: Caller,
    name: string,
    opts: { from?: number; limit: number },
  ): Promise<{ messages: TopicMessage[]; firstOffset: number; nextOffset: number }> {
    const res = await this.store.read<{
      messages: StoredMessage[] | Record<string, never>;
      firstOffset: number;
      nextOffset: number;
    }>(this.#ref(name), "topic_peek", [
      ...this.#args(caller),
      "log",
      opts.from ?? "",
      opts.limit,
    ]);
    return {
      messages: list(res.messages).map(toMessage),
      firstOffset: res.firstOffset,
      nextOffset: res.nextOffset,
    };
  }

  /** Creates a named subscription (receive right); the same options again are not an error. */
  async subscribe(
    caller: Caller,
    name: string,
    sub: string,
    opts: SubscriptionOptions,
  ): Promise<{ created: boolean; subscription: SubscriptionDetail }> {
    const start = opts.start;
    const res = await this.store.change<{ created: boolean; subscription: StoredSubscription }>(
      this.#ref(name),
      "topic_subscribe",
      [
        ...this.#args(caller, sub),
        typeof start === "string" ? start : "time",
        typeof start === "string" ? "" : start.time,
        opts.visibilityTimeoutSeconds ?? "",
        opts.maxDeliveries ?? "",
      ],
    );
    return { created: res.created, subscription: toSubscription(name, res.subscription) };
  }

  /** One subscription with its counts (receive right). */
  async getSubscription(caller: Caller, name: string, sub: string): Promise<SubscriptionDetail> {
    const res = await this.store.read<{ subscription: StoredSubscription }>(
      this.#ref(name),
      "topic_stats",
      [...this.#args(caller, sub), "subscription"],
    );
    return toSubscription(name, res.subscription);
  }

  /** Every subscription of the topic, by name, with counts (receive right). */
  async listSubscriptions(caller: Caller, name: string): Promise<SubscriptionDetail[]> {
    const res = await this.store.read<{
      subscriptions: StoredSubscription[] | Record<string, never>;
    }>(this.#ref(name), "topic_stats", [...this.#args(caller), "subscriptions"]);
    return list(res.subscriptions).map((s) => toSubscription(name, s));
  }

  /** Deletes a subscription (its creator, the topic owner or an admin). */
  async unsubscribe(caller: Caller, name: string, sub: string): Promise<void> {
    await this.store.change(this.#ref(name), "topic_unsubscribe", this.#args(caller, sub));
    this.#counters.forget({ topic: name, subscription: sub });
    this.notifier.notify(this.wakeKey(name)); // its long polls end (with 404)
  }

  async #receiveOnce(
    caller: Caller,
    name: string,
    sub: string,
    max: number,
    visibilitySeconds: number | undefined,
    excludeOwn = false,
  ): Promise<{ messages: TopicDelivery[]; wakeAt: number | false; more: boolean }> {
    const tokens = Array.from({ length: max }, newToken);
    const res = await this.store.change<{
      messages: (StoredMessage & { token: string; deliveryCount: number; visibleAt: number })[];
      wakeAt: number | false;
      more?: boolean;
    }>(this.#ref(name), "topic_receive", [
      ...this.#args(caller, sub),
      max,
      visibilitySeconds ?? "",
      ...tokens,
      ...(excludeOwn ? ["own"] : []),
    ]);
    const messages = list(res.messages).map((m) => ({
      ...toMessage(m),
      receipt: encodeTopicReceipt(m.offset, m.token),
      deliveryCount: m.deliveryCount,
      visibleAt: iso(m.visibleAt),
    }));
    return { messages, wakeAt: res.wakeAt ?? false, more: res.more === true };
  }

  /**
   * Receives up to `max` messages of a subscription. With `waitSeconds`, waits until at least
   * one is deliverable: woken at once by a publish (or a nack, seek, redrive), and at the next
   * in-flight deadline; stops early when the signal aborts.
   */
  async receive(
    caller: Caller,
    name: string,
    sub: string,
    opts: TopicReceiveOptions = {},
  ): Promise<TopicDelivery[]> {
    const max = opts.max ?? 1;
    return await this.notifier.poll(
      this.wakeKey(name),
      async () => {
        const res = await this.#receiveOnce(
          caller,
          name,
          sub,
          max,
          opts.visibilitySeconds,
          opts.excludeOwn,
        );
        countDeliveries(res.messages, (e, n) => this.#counters.subscription(name, sub, e, n));
        return {
          value: res.messages,
          ready: res.messages.length > 0,
          dueAt: res.wakeAt,
          // Only the caller's own messages were passed over, and more may follow: look again.
          again: res.messages.length === 0 && res.more,
        };
      },
      {
        waitMs: (opts.waitSeconds ?? 0) * 1000,
        signal: opts.signal,
        now: () => this.store.now(),
        aborted: () => [],
        unavailable: () => [],
      },
    );
  }

  #receiptArgs(receipts: readonly string[]): (string | number)[] {
    return receipts.flatMap((r) => {
      const parsed = decodeTopicReceipt(r);
      if (!parsed) throw new BrokerError("invalid", `not a topic receipt: '${r.slice(0, 80)}'`);
      return [parsed.offset, parsed.token];
    });
  }

  #results(
    receipts: readonly string[],
    res: { results: string[] | Record<string, never> },
  ): ReceiptResult[] {
    return receiptResults(receipts, list(res.results));
  }

  /** Acknowledges deliveries: each receipt of a current attempt settles its message. */
  async ack(
    caller: Caller,
    name: string,
    sub: string,
    receipts: readonly string[],
  ): Promise<ReceiptResult[]> {
    const res = await this.store.change<{ results: string[] }>(this.#ref(name), "topic_ack", [
      ...this.#args(caller, sub),
      ...this.#receiptArgs(receipts),
    ]);
    return this.#counted(name, sub, "acked", this.#results(receipts, res));
  }

  #counted(name: string, sub: string, event: MessageEvent, results: ReceiptResult[]) {
    countSettled(results, event, (e, n) => this.#counters.subscription(name, sub, e, n));
    return results;
  }

  /** Releases deliveries now or after a delay; the attempt counts toward max deliveries. */
  async nack(
    caller: Caller,
    name: string,
    sub: string,
    receipts: readonly string[],
    delaySeconds = 0,
  ): Promise<ReceiptResult[]> {
    const res = await this.store.change<{ results: string[] }>(this.#ref(name), "topic_nack", [
      ...this.#args(caller, sub),
      delaySeconds,
      ...this.#receiptArgs(receipts),
    ]);
    this.notifier.notify(this.wakeKey(name));
    return this.#counted(name, sub, "nacked", this.#results(receipts, res));
  }

  /** Moves the deadline of current attempts to now + visibilitySeconds (0: release now). */
  async changeVisibility(
    caller: Caller,
    name: string,
    sub: string,
    receipts: readonly string[],
    visibilitySeconds: number,
  ): Promise<ReceiptResult[]> {
    const res = await this.store.change<{ results: string[] }>(
      this.#ref(name),
      "topic_visibility",
      [...this.#args(caller, sub), visibilitySeconds, ...this.#receiptArgs(receipts)],
    );
    if (visibilitySeconds === 0) this.notifier.notify(this.wakeKey(name));
    return this.#results(receipts, res);
  }

  /**
   * Moves a subscription's position to an offset (clamped to the retained range, which the
   * answer says) or to the first message published at or after a time; its in-flight and pending
   * deliveries are dropped. Its creator, the topic owner or an admin.
   */
  async seek(
    caller: Caller,
    name: string,
    sub: string,
    to: { offset: number } | { time: number },
  ): Promise<SeekResult> {
    const res = await this.store.change<{ position: number; dropped: number }>(
      this.#ref(name),
      "topic_seek",
      [
        ...this.#args(caller, sub),
        "offset" in to ? "offset" : "time",
        "offset" in to ? to.offset : to.time,
      ],
    );
    this.notifier.notify(this.wakeKey(name));
    const requestedOffset = "offset" in to ? to.offset : null;
    return {
      position: res.position,
      dropped: res.dropped,
      requestedOffset,
      clamped: requestedOffset !== null && requestedOffset !== res.position,
    };
  }

  /** Moves up to `max` dead letters back for redelivery (creator, topic owner or admin). */
  async redrive(
    caller: Caller,
    name: string,
    sub: string,
    max: number = TOPIC_LIMITS.redriveMax,
  ): Promise<{ moved: number; expired: number; remaining: number }> {
    const res = await this.store.change<{ moved: number; expired: number; remaining: number }>(
      this.#ref(name),
      "topic_redrive",
      [...this.#args(caller, sub), max],
    );
    if (res.moved > 0) this.notifier.notify(this.wakeKey(name));
    return res;
  }

  /** Lists a subscription's dead letters, oldest first, without removing them (receive right). */
  async peekDead(
    caller: Caller,
    name: string,
    sub: string,
    opts: { skip: number; limit: number },
  ): Promise<{ messages: TopicDeadLetter[]; total: number }> {
    const res = await this.store.read<{ dead: string[] | Record<string, never>; total: number }>(
      this.#ref(name),
      "topic_peek",
      [...this.#args(caller, sub), "dead", opts.skip, opts.limit],
    );
    const messages = list(res.dead).map((raw) => {
      const d = JSON.parse(raw);
      return {
        offset: d.offset,
        id: d.id,
        body: d.body,
        attributes: d.attributes ?? {},
        key: d.key ?? null,
        publisher: d.publisher,
        publishedAt: iso(d.publishedAt),
        deliveryCount: d.deliveryCount,
        deadLetteredAt: iso(d.deadLetteredAt),
      };
    });
    return { messages, total: res.total };
  }
}
