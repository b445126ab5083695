/**
 * momd's streaming protocol v1 (WebSocket, one JSON object per text frame): the frames both sides
 * write, as zod schemas (the server validates what it reads with them) and as types (clients
 * import them with `import type`). docs/streaming.md describes the protocol.
 */
import { z } from "@hono/zod-openapi";
import { QUEUE_LIMITS } from "../../broker/queues.ts";
import { TOPIC_LIMITS } from "../../broker/topics.ts";
import {
  AckRequest,
  Delivery,
  NackRequest,
  OutgoingMessage,
  ReceiptResults,
  VisibilityRequest,
} from "../schemas/queues.ts";
import {
  OutgoingTopicMessageSchema,
  TopicAckBody,
  TopicDeliveriesSchema,
  TopicNackBody,
  TopicVisibilityBody,
} from "../schemas/topics.ts";

// The constants both sides share live in the client's module (it has no server imports).
import {
  CLOSE,
  MAX_CONTEXT_CHARS,
  MAX_FRAME_BYTES,
  MAX_PERMITS,
  STREAM_SUBPROTOCOL,
} from "../../client/stream_protocol.ts";
export { CLOSE, MAX_CONTEXT_CHARS, MAX_FRAME_BYTES, MAX_PERMITS, STREAM_SUBPROTOCOL };

/** Prefix of the subprotocol that carries the token (browsers cannot set headers). */
export const BEARER_SUBPROTOCOL_PREFIX = "bearer.";

const Context = z.string().max(MAX_CONTEXT_CHARS);

// ---- client -> server ----

/** A queue producer's send: one message (the fields of a REST send's message). */
export const QueueSendFrame = OutgoingMessage.extend({
  type: z.literal("send"),
  context: Context,
}).strict();
/** A queue producer's send. */
export type QueueSendFrame = z.infer<typeof QueueSendFrame>;

/** A topic producer's send: one message (the fields of a REST publish's message). */
export const TopicSendFrame = OutgoingTopicMessageSchema.extend({
  type: z.literal("send"),
  context: Context,
}).strict();
/** A topic producer's send. */
export type TopicSendFrame = z.infer<typeof TopicSendFrame>;

/** Adds credits: the server pushes one delivery per credit. */
export const PermitFrame = z.object({
  type: z.literal("permit"),
  n: z.number().int().min(1).max(MAX_PERMITS),
}).strict();
/** Adds credits. */
export type PermitFrame = z.infer<typeof PermitFrame>;

/**
 * The receipts of a settle frame: their form only. Whether each is a receipt at all is checked
 * by the REST call the frame becomes (an ack of many frames that fails so goes again frame by
 * frame), not twice per receipt.
 */
const receipts = z.array(z.string().min(1).max(200)).min(1).max(QUEUE_LIMITS.receiptsMax);
const settle = { context: Context.optional(), receipts };

/** The settle frames of a queue consumer (the REST ack, nack and visibility bodies). */
export const QueueSettleFrame = z.discriminatedUnion("type", [
  AckRequest.extend({ type: z.literal("ack"), ...settle }).strict(),
  NackRequest.extend({ type: z.literal("nack"), ...settle }).strict(),
  VisibilityRequest.extend({ type: z.literal("visibility"), ...settle }).strict(),
]);
/** A queue consumer's ack, nack or visibility frame. */
export type QueueSettleFrame = z.infer<typeof QueueSettleFrame>;

/** The settle frames of a subscription's consumer. */
export const TopicSettleFrame = z.discriminatedUnion("type", [
  TopicAckBody.extend({ type: z.literal("ack"), ...settle }).strict(),
  TopicNackBody.extend({ type: z.literal("nack"), ...settle }).strict(),
  TopicVisibilityBody.extend({ type: z.literal("visibility"), ...settle }).strict(),
]);
/** A subscription consumer's ack, nack or visibility frame. */
export type TopicSettleFrame = z.infer<typeof TopicSettleFrame>;

/** What a consumer may send. */
export type ConsumerFrame = PermitFrame | QueueSettleFrame | TopicSettleFrame;

/** Query of a queue consumer's upgrade request. */
export const QueueConsumerQuery = z.object({
  prefetch: z.coerce.number().int().min(0).max(MAX_PERMITS).default(0),
  visibilitySeconds: z.coerce.number().int().min(1).max(QUEUE_LIMITS.visibilitySecondsMax)
    .optional(),
}).strict();

/** Query of a subscription consumer's upgrade request. */
export const TopicConsumerQuery = z.object({
  prefetch: z.coerce.number().int().min(0).max(MAX_PERMITS).default(0),
  visibilitySeconds: z.coerce.number().int().min(0).max(TOPIC_LIMITS.visibilitySecondsMax)
    .optional(),
}).strict();

/** Query of a consumer's upgrade request (initial credits and the deliveries' visibility). */
export type ConsumerQuery = z.infer<typeof QueueConsumerQuery>;

// ---- server -> client ----

/** A send stored (what a REST 201 means): the REST answer's fields for this message. */
export const SentFrame = z.object({
  type: z.literal("sent"),
  context: z.string(),
  id: z.string(),
  duplicate: z.boolean().optional().openapi({ description: "queues" }),
  offset: z.number().int().optional().openapi({ description: "topics" }),
  publishedAt: z.string().optional().openapi({ description: "topics" }),
});
/** A send stored. */
export type SentFrame = z.infer<typeof SentFrame>;

/** A refusal: the REST problem's fields (its `type` URN left out), and the frame it answers. */
export const ErrorFrame = z.object({
  type: z.literal("error"),
  context: z.string().optional(),
  status: z.number().int(),
  code: z.string().optional(),
  title: z.string(),
  detail: z.string(),
  retryAfterSeconds: z.number().optional(),
}).loose();
/** A refusal. */
export type ErrorFrame = z.infer<typeof ErrorFrame>;

/** A pushed delivery of a queue: the REST delivery's fields. */
export const QueueMessageFrame = Delivery.extend({ type: z.literal("message") });
/** A pushed delivery of a queue. */
export type QueueMessageFrame = z.infer<typeof QueueMessageFrame>;

/** A pushed delivery of a subscription: the REST delivery's fields. */
export const TopicMessageFrame = TopicDeliveriesSchema.shape.messages.element.extend({
  type: z.literal("message"),
});
/** A pushed delivery of a subscription. */
export type TopicMessageFrame = z.infer<typeof TopicMessageFrame>;

/** The per-receipt results of one ack, nack or visibility frame (the REST results). */
export const ResultsFrame = z.object({
  type: z.enum(["acked", "nacked", "visibility"]),
  context: z.string().optional(),
  results: ReceiptResults.shape.results,
});
/** The answer to one settle frame. */
export type ResultsFrame = z.infer<typeof ResultsFrame>;

/** Anything the server sends. */
export type ServerFrame =
  | SentFrame
  | ErrorFrame
  | QueueMessageFrame
  | TopicMessageFrame
  | ResultsFrame;
