import { BATCH_MAX, type Caller, receiptsOf, type SignalOption } from "./caller.ts";
import { MomdPartialSendError } from "./errors.ts";
import { path } from "./http.ts";
import { type ProducerOptions, type QueueProducer, queueProducer } from "./producer.ts";
import type { StreamDeps } from "./stream.ts";
import { StreamConsumer, type StreamConsumerOptions } from "./stream_consumer.ts";
import type {
  Delivery,
  ListOptions,
  NackOptions,
  OutgoingMessage,
  PeekOptions,
  PeekResult,
  PurgeOptions,
  PurgeResult,
  QueueConfigInput,
  QueueConfigPatch,
  QueueCreated,
  QueueDetail,
  QueueInfo,
  QueueList,
  ReceiptLike,
  ReceiptResults,
  ReceiveOptions,
  RedriveOptions,
  RedriveResult,
  SendResult,
} from "./types.ts";

/** One message as `send` takes it: a body, or a message with attributes, delay, dedupId... */
export type MessageInput = string | OutgoingMessage;

/** Outcome of one sent message. */
export type SentMessage = SendResult["messages"][number];

/** A queue in a listing. */
export type QueueListItem = QueueList["queues"][number];

/** The stream dependencies, which a QueuesApi or TopicsApi built by MomdClient has. */
export function streamsOf(streams: StreamDeps | undefined): StreamDeps {
  if (!streams) throw new Error("streams need a MomdClient: build the API group through one");
  return streams;
}

function toMessage(m: MessageInput): OutgoingMessage {
  return typeof m === "string" ? { body: m } : m;
}

/** Queue management, send, receive and settle (`client.queues`). */
export class QueuesApi {
  readonly #call: Caller;
  readonly #idempotent: boolean;
  readonly #streams?: StreamDeps;

  /** `idempotentSends`: see ClientOptions; `streams`: what producers and stream consumers need. */
  constructor(call: Caller, opts: { idempotentSends?: boolean; streams?: StreamDeps } = {}) {
    this.#call = call;
    this.#idempotent = opts.idempotentSends ?? true;
    this.#streams = opts.streams;
  }

  /**
   * A streaming producer of the queue (one WebSocket, sends pipelined): `send` resolves with
   * `{ id, duplicate }` per message, as `send` does, and `close()` waits for what is in flight.
   * Every message gets a dedupId unless `idempotentSends` is off, so sends in flight when the
   * connection is lost are sent again and stored once. Opens on `connect()` or the first send.
   */
  producer(name: string, options: ProducerOptions = {}): QueueProducer {
    return queueProducer(streamsOf(this.#streams), name, this.#idempotent, options);
  }

  /**
   * A streaming consumer of the queue: the server pushes deliveries up to `prefetch` held at
   * once; `ack` (batched), `nack`, `changeVisibility`; `close()` hands back what it holds.
   */
  stream(name: string, options: StreamConsumerOptions = {}): StreamConsumer<Delivery> {
    return new StreamConsumer<Delivery>(streamsOf(this.#streams), name, options);
  }

  /** Creates a queue (idempotent for the same configuration; 409 for another). */
  async create(name: string, config: QueueConfigInput = {}): Promise<QueueCreated> {
    const res = await this.#call<QueueCreated>({
      method: "PUT",
      path: path`/v1/queues/${name}`,
      body: config,
      retry: true,
    });
    return res.body;
  }

  /** A queue's configuration, owner and counts. */
  async get(name: string): Promise<QueueDetail> {
    return (await this.#call<QueueDetail>({
      method: "GET",
      path: path`/v1/queues/${name}`,
      retry: true,
    })).body;
  }

  /** One page of queues by name. */
  async list(options: ListOptions = {}): Promise<QueueList> {
    return (await this.#call<QueueList>({
      method: "GET",
      path: "/v1/queues",
      query: { ...options },
      retry: true,
    })).body;
  }

  /** Every queue (matching the prefix), fetching page after page. */
  async *listAll(options: Omit<ListOptions, "after"> = {}): AsyncGenerator<QueueListItem> {
    let after: string | undefined;
    do {
      const page = await this.list({ ...options, after });
      yield* page.queues;
      after = page.next ?? undefined;
    } while (after);
  }

  /** Changes some fields of a queue's configuration (owner or admin). */
  async configure(name: string, patch: QueueConfigPatch): Promise<QueueInfo> {
    return (await this.#call<QueueInfo>({
      method: "PATCH",
      path: path`/v1/queues/${name}`,
      body: patch,
      retry: true, // sets absolute values: repeating it changes nothing more
    })).body;
  }

  /** Deletes a queue and its messages (owner or admin). */
  async delete(name: string): Promise<void> {
    await this.#call({ method: "DELETE", path: path`/v1/queues/${name}`, retry: true });
  }

  /** Drops ready, delayed and in-flight messages (and dead letters when asked). */
  async purge(name: string, options: PurgeOptions = {}): Promise<PurgeResult> {
    return (await this.#call<PurgeResult>({
      method: "POST",
      path: path`/v1/queues/${name}/purge`,
      body: options,
      retry: true,
    })).body;
  }

  /** Moves dead letters back to ready, oldest first. */
  async redrive(name: string, options: RedriveOptions = {}): Promise<RedriveResult> {
    return (await this.#call<RedriveResult>({
      method: "POST",
      path: path`/v1/queues/${name}/redrive`,
      body: options,
      retry: true,
    })).body;
  }

  /** Lists messages without consuming them. */
  async peek(name: string, options: PeekOptions = {}): Promise<PeekResult["messages"]> {
    return (await this.#call<PeekResult>({
      method: "GET",
      path: path`/v1/queues/${name}/messages`,
      query: { ...options },
      retry: true,
    })).body.messages;
  }

  /**
   * Sends one message. Retried on 503, 504 and network errors only when it carries a `dedupId`
   * (the client gives it one unless `idempotentSends` is off: otherwise a retry could store it
   * twice).
   */
  async send(
    name: string,
    message: MessageInput,
    options: SignalOption = {},
  ): Promise<SentMessage> {
    const [sent] = await this.sendBatch(name, [message], options);
    return sent;
  }

  /**
   * Sends messages in order. Up to 100 (the server's most per request) are one request, stored
   * all or none; more are sent as consecutive requests of 100, one after the other, and the
   * outcomes come back as one list in input order. When a later request fails, the earlier ones
   * stay stored: MomdPartialSendError says which (`sent`). Each request is retried on 503, 504
   * and network errors only when every message carries a `dedupId` (see `send`).
   */
  async sendBatch(
    name: string,
    messages: readonly MessageInput[],
    options: SignalOption = {},
  ): Promise<SentMessage[]> {
    if (messages.length <= BATCH_MAX) return await this.#sendOne(name, messages, options);
    const sent: SentMessage[] = [];
    for (let i = 0; i < messages.length; i += BATCH_MAX) {
      try {
        sent.push(...await this.#sendOne(name, messages.slice(i, i + BATCH_MAX), options));
      } catch (err) {
        if (sent.length === 0) throw err;
        throw new MomdPartialSendError(sent, messages.length, err);
      }
    }
    return sent;
  }

  /** One send request (at most BATCH_MAX messages). */
  async #sendOne(
    name: string,
    messages: readonly MessageInput[],
    options: SignalOption,
  ): Promise<SentMessage[]> {
    const body = {
      messages: messages.map((m) => {
        const message = toMessage(m);
        return this.#idempotent && message.dedupId === undefined
          ? { ...message, dedupId: crypto.randomUUID() }
          : message;
      }),
    };
    const res = await this.#call<SendResult>({
      method: "POST",
      path: path`/v1/queues/${name}/messages`,
      body,
      retry: body.messages.length > 0 && body.messages.every((m) => m.dedupId !== undefined),
      signal: options.signal,
    });
    return res.body.messages;
  }

  /** Receives up to `max` messages, waiting up to `waitSeconds` for the first (long poll). */
  async receive(
    name: string,
    options: ReceiveOptions & SignalOption = {},
  ): Promise<Delivery[]> {
    const { signal, ...body } = options;
    const res = await this.#call<{ messages: Delivery[] }>({
      method: "POST",
      path: path`/v1/queues/${name}/receive`,
      body,
      // A lost answer's deliveries come back after their visibility timeout: safe to repeat.
      retry: true,
      signal,
      extraTimeMs: (body.waitSeconds ?? 0) * 1000,
    });
    return res.body.messages;
  }

  /** Acknowledges deliveries (their messages are deleted); per-receipt results. */
  async ack(name: string, receipts: readonly ReceiptLike[]): Promise<ReceiptResults["results"]> {
    return (await this.#call<ReceiptResults>({
      method: "POST",
      path: path`/v1/queues/${name}/ack`,
      body: { receipts: receiptsOf(receipts) },
      retry: true,
    })).body.results;
  }

  /** Releases deliveries for redelivery, now or after `delaySeconds`. */
  async nack(
    name: string,
    receipts: readonly ReceiptLike[],
    options: NackOptions = {},
  ): Promise<ReceiptResults["results"]> {
    return (await this.#call<ReceiptResults>({
      method: "POST",
      path: path`/v1/queues/${name}/nack`,
      body: { receipts: receiptsOf(receipts), ...options },
      retry: true,
    })).body.results;
  }

  /** Moves the visibility deadline of deliveries to `visibilitySeconds` from now. */
  async changeVisibility(
    name: string,
    change: { receipts: readonly ReceiptLike[]; visibilitySeconds: number },
  ): Promise<ReceiptResults["results"]> {
    return (await this.#call<ReceiptResults>({
      method: "POST",
      path: path`/v1/queues/${name}/visibility`,
      body: { receipts: receiptsOf(change.receipts), visibilitySeconds: change.visibilitySeconds },
      retry: true,
    })).body.results;
  }
}
