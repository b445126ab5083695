/**
 * The momd client: a typed client of the momd REST API and its streams for Deno, Node 22+ and
 * browsers (web-standard fetch, WebSocket, AbortController and URL only; no runtime
 * dependencies).
 *
 * ```ts
 * import { MomdClient } from "./src/client/mod.ts";
 *
 * const momd = new MomdClient({ url: "http://127.0.0.1:8080" });
 * await momd.login("alice", "a-long-password");
 * await momd.queues.create("jobs");
 * await momd.queues.send("jobs", "hello");
 * const consumer = momd.consume("jobs", async (m) => console.log(m.body), { concurrency: 4 });
 * // ...
 * await consumer.stop();
 * ```
 *
 * @module
 */
export { MomdClient } from "./client.ts";
export type { ClientOptions } from "./client.ts";
export { MomdConnectionError, MomdError, MomdPartialSendError } from "./errors.ts";
export type { RetryInfo, RetryOptions } from "./http.ts";
export type { SignalOption } from "./caller.ts";
export { QueuesApi } from "./queues.ts";
export type { MessageInput, QueueListItem, SentMessage } from "./queues.ts";
export { TopicsApi } from "./topics.ts";
export type { PublishedMessage, TopicListItem, TopicMessageInput } from "./topics.ts";
export { UsersApi } from "./users.ts";
export { RequestsApi, TASK_ID_ATTRIBUTE } from "./requests.ts";
export type { RequestOptions, TaskResult } from "./requests.ts";
export { Producer } from "./producer.ts";
export type { ProducerOptions, QueueProducer, TopicProducer, TopicSent } from "./producer.ts";
export { StreamConsumer } from "./stream_consumer.ts";
export type { ReceiptResult, StreamConsumerOptions } from "./stream_consumer.ts";
export { MomdStreamUnsupportedError } from "./stream.ts";
export type { WebSocketFactory } from "./stream.ts";
export type {
  ConsumeContext,
  ConsumeOptions,
  Consumer,
  ConsumerStats,
  ConsumeTarget,
  Handler,
} from "./consumer.ts";
export type * from "./types.ts";
