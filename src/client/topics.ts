import { type Caller, receiptsOf, type SignalOption } from "./caller.ts";
import { path } from "./http.ts";
import { type ProducerOptions, type TopicProducer, topicProducer } from "./producer.ts";
import { streamsOf } from "./queues.ts";
import type { StreamDeps } from "./stream.ts";
import { StreamConsumer, type StreamConsumerOptions } from "./stream_consumer.ts";
import type {
  DeadLetterOptions,
  DeadLetters,
  ListOptions,
  OutgoingTopicMessage,
  PublishResult,
  ReceiptLike,
  ReceiptResults,
  SeekResult,
  SeekTarget,
  SubscribeOptions,
  Subscription,
  SubscriptionCreated,
  SubscriptionRef,
  Topic,
  TopicConfigInput,
  TopicConfigPatch,
  TopicCreated,
  TopicDelivery,
  TopicList,
  TopicNackOptions,
  TopicPeekOptions,
  TopicPeekResult,
  TopicReceiveOptions,
  TopicRedriveOptions,
  TopicRedriveResult,
} from "./types.ts";

/** One message as `publish` takes it: a body, or a message with attributes and a key. */
export type TopicMessageInput = string | OutgoingTopicMessage;

/** Outcome of one published message. */
export type PublishedMessage = PublishResult["messages"][number];

/** A topic in a listing. */
export type TopicListItem = TopicList["topics"][number];

function sub(ref: SubscriptionRef): string {
  return path`/v1/topics/${ref.topic}/subscriptions/${ref.subscription}`;
}

/** Topic management, publish, subscriptions and their consumption (`client.topics`). */
export class TopicsApi {
  readonly #call: Caller;
  readonly #streams?: StreamDeps;

  /** `streams`: what producers and stream consumers need (MomdClient passes them). */
  constructor(call: Caller, opts: { streams?: StreamDeps } = {}) {
    this.#call = call;
    this.#streams = opts.streams;
  }

  /**
   * A streaming producer of the topic (one WebSocket, publishes pipelined): `send` resolves
   * with `{ id, offset }` per message. A publish in flight when the connection is lost is not
   * sent again (topics have no de-duplication ids): it rejects with a 504 `outcome_unknown`, as
   * it may or may not have been stored. Opens on `connect()` or the first send.
   */
  producer(name: string, options: ProducerOptions = {}): TopicProducer {
    return topicProducer(streamsOf(this.#streams), name, options);
  }

  /**
   * A streaming consumer of a subscription: the server pushes deliveries up to `prefetch` held
   * at once; `ack` (batched), `nack`, `changeVisibility`; `close()` hands back what it holds.
   */
  stream(ref: SubscriptionRef, options: StreamConsumerOptions = {}): StreamConsumer<TopicDelivery> {
    return new StreamConsumer<TopicDelivery>(streamsOf(this.#streams), ref, options);
  }

  /** Creates a topic (idempotent for the same configuration; 409 for another). */
  async create(name: string, config: TopicConfigInput = {}): Promise<TopicCreated> {
    return (await this.#call<TopicCreated>({
      method: "PUT",
      path: path`/v1/topics/${name}`,
      body: config,
      retry: true,
    })).body;
  }

  /** A topic's configuration and counts. */
  async get(name: string): Promise<Topic> {
    return (await this.#call<Topic>({ method: "GET", path: path`/v1/topics/${name}`, retry: true }))
      .body;
  }

  /** One page of topics by name. */
  async list(options: ListOptions = {}): Promise<TopicList> {
    return (await this.#call<TopicList>({
      method: "GET",
      path: "/v1/topics",
      query: { ...options },
      retry: true,
    })).body;
  }

  /** Every topic (matching the prefix), fetching page after page. */
  async *listAll(options: Omit<ListOptions, "after"> = {}): AsyncGenerator<TopicListItem> {
    let after: string | undefined;
    do {
      const page = await this.list({ ...options, after });
      yield* page.topics;
      after = page.next ?? undefined;
    } while (after);
  }

  /** Changes some fields of a topic's configuration (owner or admin). */
  async configure(name: string, patch: TopicConfigPatch): Promise<Topic> {
    return (await this.#call<Topic>({
      method: "PATCH",
      path: path`/v1/topics/${name}`,
      body: patch,
      retry: true,
    })).body;
  }

  /** Deletes a topic with its messages and subscriptions (owner or admin). */
  async delete(name: string): Promise<void> {
    await this.#call({ method: "DELETE", path: path`/v1/topics/${name}`, retry: true });
  }

  /** Publishes one message. Never retried: topics have no de-duplication id. */
  async publish(
    name: string,
    message: TopicMessageInput,
    options: SignalOption = {},
  ): Promise<PublishedMessage> {
    const [published] = await this.publishBatch(name, [message], options);
    return published;
  }

  /** Publishes up to 100 messages, all or none, at consecutive offsets. Never retried. */
  async publishBatch(
    name: string,
    messages: readonly TopicMessageInput[],
    options: SignalOption = {},
  ): Promise<PublishedMessage[]> {
    return (await this.#call<PublishResult>({
      method: "POST",
      path: path`/v1/topics/${name}/messages`,
      body: { messages: messages.map((m) => typeof m === "string" ? { body: m } : m) },
      retry: false,
      signal: options.signal,
    })).body.messages;
  }

  /** Lists retained messages from an offset without consuming them. */
  async peek(name: string, options: TopicPeekOptions = {}): Promise<TopicPeekResult> {
    return (await this.#call<TopicPeekResult>({
      method: "GET",
      path: path`/v1/topics/${name}/messages`,
      query: { ...options },
      retry: true,
    })).body;
  }

  /** Creates a named, durable subscription (idempotent for the same options). */
  async subscribe(
    ref: SubscriptionRef,
    options: SubscribeOptions = {},
  ): Promise<SubscriptionCreated> {
    return (await this.#call<SubscriptionCreated>({
      method: "PUT",
      path: sub(ref),
      body: options,
      retry: true,
    })).body;
  }

  /** A subscription's options and counts. */
  async getSubscription(ref: SubscriptionRef): Promise<Subscription> {
    return (await this.#call<Subscription>({ method: "GET", path: sub(ref), retry: true })).body;
  }

  /** Every subscription of a topic. */
  async listSubscriptions(name: string): Promise<Subscription[]> {
    return (await this.#call<{ subscriptions: Subscription[] }>({
      method: "GET",
      path: path`/v1/topics/${name}/subscriptions`,
      retry: true,
    })).body.subscriptions;
  }

  /** Deletes a subscription. */
  async unsubscribe(ref: SubscriptionRef): Promise<void> {
    await this.#call({ method: "DELETE", path: sub(ref), retry: true });
  }

  /** Receives up to `max` messages of a subscription, waiting up to `waitSeconds` (long poll). */
  async receive(
    ref: SubscriptionRef,
    options: TopicReceiveOptions & SignalOption = {},
  ): Promise<TopicDelivery[]> {
    const { signal, ...body } = options;
    return (await this.#call<{ messages: TopicDelivery[] }>({
      method: "POST",
      path: `${sub(ref)}/receive`,
      body,
      retry: true,
      signal,
      extraTimeMs: (body.waitSeconds ?? 0) * 1000,
    })).body.messages;
  }

  /** Acknowledges deliveries; per-receipt results. */
  async ack(
    ref: SubscriptionRef,
    receipts: readonly ReceiptLike[],
  ): Promise<ReceiptResults["results"]> {
    return (await this.#call<ReceiptResults>({
      method: "POST",
      path: `${sub(ref)}/ack`,
      body: { receipts: receiptsOf(receipts) },
      retry: true,
    })).body.results;
  }

  /** Releases deliveries for redelivery, now or after `delaySeconds`. */
  async nack(
    ref: SubscriptionRef,
    receipts: readonly ReceiptLike[],
    options: TopicNackOptions = {},
  ): Promise<ReceiptResults["results"]> {
    return (await this.#call<ReceiptResults>({
      method: "POST",
      path: `${sub(ref)}/nack`,
      body: { receipts: receiptsOf(receipts), ...options },
      retry: true,
    })).body.results;
  }

  /** Moves the visibility deadline of deliveries to `visibilitySeconds` from now. */
  async changeVisibility(
    ref: SubscriptionRef,
    change: { receipts: readonly ReceiptLike[]; visibilitySeconds: number },
  ): Promise<ReceiptResults["results"]> {
    return (await this.#call<ReceiptResults>({
      method: "POST",
      path: `${sub(ref)}/visibility`,
      body: { receipts: receiptsOf(change.receipts), visibilitySeconds: change.visibilitySeconds },
      retry: true,
    })).body.results;
  }

  /**
   * Moves a subscription to an offset or a time (its creator, the topic owner or an admin); its
   * in-flight deliveries are dropped. `clamped` says when the offset lay outside the retained
   * messages (the position is then the nearest end of them).
   */
  async seek(ref: SubscriptionRef, target: SeekTarget): Promise<SeekResult> {
    return (await this.#call<SeekResult>({
      method: "POST",
      path: `${sub(ref)}/seek`,
      body: target,
      retry: true,
    })).body;
  }

  /** Moves a subscription's dead letters back for redelivery. */
  async redrive(
    ref: SubscriptionRef,
    options: TopicRedriveOptions = {},
  ): Promise<TopicRedriveResult> {
    return (await this.#call<TopicRedriveResult>({
      method: "POST",
      path: `${sub(ref)}/redrive`,
      body: options,
      retry: true,
    })).body;
  }

  /** Lists a subscription's dead letters without removing them. */
  async deadLetters(ref: SubscriptionRef, options: DeadLetterOptions = {}): Promise<DeadLetters> {
    return (await this.#call<DeadLetters>({
      method: "GET",
      path: `${sub(ref)}/messages`,
      query: { state: "dead", ...options },
      retry: true,
    })).body;
  }
}
