import { z } from "@hono/zod-openapi";
import { DEFAULT_QUEUE_CONFIG as D, QUEUE_LIMITS as L } from "../../broker/queues.ts";
import { decodeReceipt } from "../../broker/receipts.ts";
import { USERNAME_PATTERN } from "../../auth/users.ts";
import { EntityName } from "./common.ts";

/** The `{name}` path parameter of every queue route. */
export const QueueParams = z.object({
  name: EntityName.openapi({ param: { name: "name", in: "path" }, example: "orders" }),
});

const Username = z.string().regex(
  USERNAME_PATTERN,
  "must be a username (3-64 of a-z, A-Z, 0-9, _ -)",
);

const fields = {
  visibilityTimeoutSeconds: z.number().int().min(1).max(L.visibilitySecondsMax).openapi({
    description:
      `How long a delivered message stays invisible waiting for its ack before it is delivered ` +
      `again. 1-${L.visibilitySecondsMax}, default ${D.visibilityTimeoutSeconds}.`,
  }),
  maxDeliveries: z.number().int().min(1).max(L.maxDeliveriesMax).openapi({
    description:
      `Deliveries without an ack after which a message moves to the queue's dead letters. ` +
      `1-${L.maxDeliveriesMax}, default ${D.maxDeliveries}.`,
  }),
  retentionSeconds: z.number().int().min(L.retentionSecondsMin).max(L.retentionSecondsMax)
    .openapi({
      description: `Message time to live, counted from the send (dead letters included). ` +
        `${L.retentionSecondsMin}-${L.retentionSecondsMax}, default ${D.retentionSeconds} ` +
        `(4 days).`,
    }),
  maxLength: z.number().int().min(1).max(L.maxLengthMax).openapi({
    description: `Most messages held (ready, delayed and in flight; dead letters aside). ` +
      `1-${L.maxLengthMax}, default ${D.maxLength}.`,
  }),
  overflow: z.enum(["reject", "dropHead"]).openapi({
    description: `When a send would exceed maxLength: "reject" refuses the whole batch ` +
      `(409 queue_full, nothing stored; the default); "dropHead" drops the oldest ready ` +
      `messages to make room.`,
  }),
  delaySeconds: z.number().int().min(0).max(L.delaySecondsMax).openapi({
    description: `Default delivery delay of a new message. 0-${L.delaySecondsMax}, default 0.`,
  }),
  maxMessageBytes: z.number().int().min(1).max(L.messageBytesMax).openapi({
    description: `Largest message accepted (UTF-8 bytes of body, attribute names and values; ` +
      `larger is a 413). 1-${L.messageBytesMax}, default ${D.maxMessageBytes} (256 KiB).`,
  }),
  dedupWindowSeconds: z.number().int().min(0).max(L.dedupWindowSecondsMax).openapi({
    description: `How long a dedupId is remembered: a send with the same dedupId within the ` +
      `window is stored once and answered with the original id. 0 turns de-duplication off. ` +
      `0-${L.dedupWindowSecondsMax}, default ${D.dedupWindowSeconds}.`,
  }),
};

const accessFields = {
  restricted: z.boolean().openapi({
    description: "false (default): any authenticated user may send and receive. true: only " +
      "the listed users (plus the owner and admins).",
  }),
  senders: z.array(Username).max(L.accessListMax).openapi({
    description: `Users allowed to send when restricted (at most ${L.accessListMax}).`,
  }),
  receivers: z.array(Username).max(L.accessListMax).openapi({
    description: `Users allowed to receive, ack, nack and peek when restricted (at most ` +
      `${L.accessListMax}).`,
  }),
};

/** Who may use a queue besides its owner and the admins. */
export const QueueAccess = z.object({
  restricted: accessFields.restricted.default(false),
  senders: accessFields.senders.default([]),
  receivers: accessFields.receivers.default([]),
}).strict().openapi("QueueAccess");

/** Body of `PUT /v1/queues/{name}`: every field optional, defaults filled in. */
export const QueueConfigInput = z.object({
  visibilityTimeoutSeconds: fields.visibilityTimeoutSeconds.default(D.visibilityTimeoutSeconds),
  maxDeliveries: fields.maxDeliveries.default(D.maxDeliveries),
  retentionSeconds: fields.retentionSeconds.default(D.retentionSeconds),
  maxLength: fields.maxLength.default(D.maxLength),
  overflow: fields.overflow.default(D.overflow),
  delaySeconds: fields.delaySeconds.default(D.delaySeconds),
  maxMessageBytes: fields.maxMessageBytes.default(D.maxMessageBytes),
  dedupWindowSeconds: fields.dedupWindowSeconds.default(D.dedupWindowSeconds),
  access: QueueAccess.default({ restricted: false, senders: [], receivers: [] }),
}).strict().openapi("QueueConfigInput");

/** Body of `PATCH /v1/queues/{name}`: the fields to change. */
export const QueueConfigPatch = z.object({
  visibilityTimeoutSeconds: fields.visibilityTimeoutSeconds.optional(),
  maxDeliveries: fields.maxDeliveries.optional(),
  retentionSeconds: fields.retentionSeconds.optional(),
  maxLength: fields.maxLength.optional(),
  overflow: fields.overflow.optional(),
  delaySeconds: fields.delaySeconds.optional(),
  maxMessageBytes: fields.maxMessageBytes.optional(),
  dedupWindowSeconds: fields.dedupWindowSeconds.optional(),
  access: z.object({
    restricted: accessFields.restricted.optional(),
    senders: accessFields.senders.optional(),
    receivers: accessFields.receivers.optional(),
  }).strict().optional(),
}).strict().openapi("QueueConfigPatch");

/** A queue's configuration as stored. */
export const QueueConfig = z.object({
  visibilityTimeoutSeconds: z.number().int(),
  maxDeliveries: z.number().int(),
  retentionSeconds: z.number().int(),
  maxLength: z.number().int(),
  overflow: z.enum(["reject", "dropHead"]),
  delaySeconds: z.number().int(),
  maxMessageBytes: z.number().int(),
  dedupWindowSeconds: z.number().int(),
  access: z.object({
    restricted: z.boolean(),
    senders: z.array(z.string()).optional().openapi({
      description: "shown to the owner and admins only",
    }),
    receivers: z.array(z.string()).optional().openapi({
      description: "shown to the owner and admins only",
    }),
  }),
}).openapi("QueueConfig");

const queueInfoShape = {
  name: z.string(),
  owner: z.string(),
  createdAt: z.string().openapi({ format: "date-time" }),
  config: QueueConfig,
};

/** A queue without counts. */
export const QueueInfo = z.object(queueInfoShape).openapi("Queue");

/** Answer of `PUT /v1/queues/{name}`. */
export const QueueCreated = z.object({
  ...queueInfoShape,
  created: z.boolean().openapi({ description: "false: it existed with this configuration" }),
}).openapi("QueueCreated");

/** Counts of a queue. */
export const QueueStats = z.object({
  depth: z.number().int().openapi({
    description: "Messages ready for delivery (due delayed messages and timed-out deliveries " +
      "included)",
  }),
  inFlight: z.number().int().openapi({ description: "Delivered, waiting for an ack" }),
  delayed: z.number().int().openapi({ description: "Not deliverable before their delay ends" }),
  deadLettered: z.number().int().openapi({ description: "In the queue's dead letters" }),
  oldestMessageAgeSeconds: z.number().int().nullable().openapi({
    description: "Seconds since the oldest held message was sent (null: none held)",
  }),
  totals: z.object({
    sent: z.number().int(),
    delivered: z.number().int(),
    acked: z.number().int(),
    deadLettered: z.number().int(),
    expired: z.number().int(),
    dropped: z.number().int(),
    purged: z.number().int(),
  }).openapi({ description: "Counts since the queue was created" }),
}).openapi("QueueStats");

/** Answer of `GET /v1/queues/{name}`. */
export const QueueDetail = z.object({ ...queueInfoShape, stats: QueueStats }).openapi(
  "QueueDetail",
);

/** Answer of `GET /v1/queues`. */
export const QueueList = z.object({
  queues: z.array(z.object({
    name: z.string(),
    owner: z.string(),
    createdAt: z.string().openapi({ format: "date-time" }),
  })),
  next: z.string().nullable().openapi({
    description: "Pass as `after` for the next page; null on the last page",
  }),
}).openapi("QueueList");

const AttributeName = z.string().min(1).max(L.attributeNameMax).regex(
  /^[A-Za-z0-9_.:-]+$/,
  "must be letters, digits, '_', '.', ':' or '-'",
);

/** One message of a send. */
export const OutgoingMessage = z.object({
  body: z.string().openapi({
    description: "Any text. Its size with the attributes is limited by the queue's " +
      `maxMessageBytes (413 when larger; never more than ${L.messageBytesMax}).`,
  }),
  attributes: z.record(AttributeName, z.string()).optional().refine(
    (a) => !a || Object.keys(a).length <= L.attributesMax,
    `at most ${L.attributesMax} attributes`,
  ).openapi({ description: `Up to ${L.attributesMax} string attributes` }),
  delaySeconds: z.number().int().min(0).max(L.delaySecondsMax).optional().openapi({
    description: `Delivery delay (0-${L.delaySecondsMax}); the queue's delaySeconds when absent`,
  }),
  ttlSeconds: z.number().int().min(1).max(L.retentionSecondsMax).optional().openapi({
    description: "Time to live; the queue's retentionSeconds when absent, and never longer",
  }),
  dedupId: z.string().min(1).max(L.dedupIdMax).optional().openapi({
    description: "De-duplication id: the same id within the queue's dedupWindowSeconds is " +
      "stored once; the original message id is returned with duplicate: true",
  }),
}).strict().openapi("OutgoingMessage");

/** Body of a send. */
export const SendRequest = z.object({
  messages: z.array(OutgoingMessage).min(1).max(L.sendBatchMax).openapi({
    description: `1-${L.sendBatchMax} messages, stored all or none, in this order`,
  }),
}).strict().openapi("SendRequest");

/** Answer of a send. */
export const SendResponse = z.object({
  messages: z.array(z.object({
    id: z.string(),
    duplicate: z.boolean().openapi({ description: "true: an earlier send had this dedupId" }),
  })),
}).openapi("SendResponse");

/** Body of a receive (all optional). */
export const ReceiveRequest = z.object({
  max: z.number().int().min(1).max(L.receiveMax).optional().openapi({
    description: `Most messages to return, 1-${L.receiveMax}, default 1`,
  }),
  waitSeconds: z.number().min(0).max(L.waitSecondsMax).optional().openapi({
    description: `Long poll: wait up to this long (0-${L.waitSecondsMax}, default 0) for a ` +
      `message; returns as soon as one is deliverable`,
  }),
  visibilitySeconds: z.number().int().min(1).max(L.visibilitySecondsMax).optional().openapi({
    description: "Visibility timeout of these deliveries; the queue's when absent",
  }),
}).strict().openapi("ReceiveRequest");

/** A receipt of a delivery attempt, as returned by a receive. */
export const Receipt = z.string().max(200).refine(
  (r) => decodeReceipt(r) !== null,
  "not a receipt returned by a receive",
).openapi({ description: "The receipt of one delivery attempt" });

/** A delivered message. */
export const Delivery = z.object({
  id: z.string(),
  body: z.string(),
  attributes: z.record(z.string(), z.string()),
  receipt: z.string().openapi({
    description: "Bound to this delivery attempt; ack, nack and visibility need it",
  }),
  deliveryCount: z.number().int().openapi({ description: "1 on the first delivery" }),
  enqueuedAt: z.string().openapi({ format: "date-time" }),
  expiresAt: z.string().openapi({ format: "date-time" }),
  visibleAt: z.string().openapi({
    format: "date-time",
    description: "Deadline of this attempt: without an ack by then it is delivered again",
  }),
}).openapi("Delivery");

/** Answer of a receive. */
export const ReceiveResponse = z.object({ messages: z.array(Delivery) }).openapi(
  "ReceiveResponse",
);

const Receipts = z.array(Receipt).min(1).max(L.receiptsMax).openapi({
  description: `1-${L.receiptsMax} receipts`,
});

/** Body of an ack. */
export const AckRequest = z.object({ receipts: Receipts }).strict().openapi("AckRequest");

/** Body of a nack. */
export const NackRequest = z.object({
  receipts: Receipts,
  delaySeconds: z.number().int().min(0).max(L.delaySecondsMax).optional().openapi({
    description: `0 (default): deliverable again at once, first in line; else after this ` +
      `delay (at most ${L.delaySecondsMax})`,
  }),
}).strict().openapi("NackRequest");

/** Body of a visibility change. */
export const VisibilityRequest = z.object({
  receipts: Receipts,
  visibilitySeconds: z.number().int().min(0).max(L.visibilitySecondsMax).openapi({
    description: `New deadline, counted from now (0-${L.visibilitySecondsMax}; 0 releases the ` +
      `message at once)`,
  }),
}).strict().openapi("VisibilityRequest");

/** Per-receipt outcome of an ack, nack or visibility change. */
export const ReceiptResults = z.object({
  results: z.array(z.object({
    receipt: z.string(),
    ok: z.boolean(),
    error: z.enum(["stale_receipt"]).optional().openapi({
      description: "The receipt is not the current attempt of an in-flight message (an " +
        "earlier attempt's, acked already, or past its visibility deadline): nothing changed",
    }),
  })),
}).openapi("ReceiptResults");

/** Body of a purge (optional). */
export const PurgeRequest = z.object({
  deadLetters: z.boolean().optional().openapi({
    description: "Also drop the dead letters (default false: they are kept)",
  }),
}).strict().openapi("PurgeRequest");

/** Answer of a purge. */
export const PurgeResponse = z.object({
  purged: z.number().int().openapi({ description: "How many messages were dropped" }),
}).openapi("PurgeResponse");

/** Body of a redrive (optional). */
export const RedriveRequest = z.object({
  max: z.number().int().min(1).max(L.redriveMax).optional().openapi({
    description: `Most dead letters to move, oldest first (1-${L.redriveMax}, default ` +
      `${L.redriveMax})`,
  }),
}).strict().openapi("RedriveRequest");

/** Answer of a redrive. */
export const RedriveResponse = z.object({
  moved: z.number().int().openapi({ description: "Moved back to ready, delivery count reset" }),
  expired: z.number().int().openapi({ description: "Dropped on the way: past their TTL" }),
  remaining: z.number().int().openapi({ description: "Dead letters left" }),
}).openapi("RedriveResponse");

/** Query of a peek. */
export const PeekQuery = z.object({
  state: z.enum(["ready", "delayed", "inflight", "dead"]).default("ready").openapi({
    description: "Which messages to list (default ready, in delivery order)",
  }),
  offset: z.coerce.number().int().min(0).max(L.maxLengthMax).default(0).openapi({
    description: "How many to skip (default 0)",
  }),
  limit: z.coerce.number().int().min(1).max(L.peekMax).default(10).openapi({
    description: `1-${L.peekMax}, default 10`,
  }),
}).strict();

/** Answer of a peek. */
export const PeekResponse = z.object({
  messages: z.array(z.object({
    id: z.string(),
    body: z.string(),
    attributes: z.record(z.string(), z.string()),
    state: z.enum(["ready", "delayed", "inflight", "dead"]),
    deliveryCount: z.number().int(),
    enqueuedAt: z.string().openapi({ format: "date-time" }),
    expiresAt: z.string().openapi({ format: "date-time" }),
    visibleAt: z.string().optional().openapi({
      format: "date-time",
      description: "delayed: when it becomes ready; inflight: the attempt's deadline",
    }),
  })),
}).openapi("PeekResponse");
