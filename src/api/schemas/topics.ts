import { z } from "@hono/zod-openapi";
import { USERNAME_PATTERN } from "../../auth/users.ts";
import { DEFAULT_TOPIC_CONFIG, TOPIC_LIMITS } from "../../broker/topics.ts";
import { EntityName } from "./common.ts";

const D = DEFAULT_TOPIC_CONFIG;
const L = TOPIC_LIMITS;

/** Path of a topic. */
export const TopicParams = z.object({
  name: EntityName.openapi({ param: { name: "name", in: "path" }, example: "orders" }),
});

/** Path of a subscription. */
export const SubscriptionParams = z.object({
  name: EntityName.openapi({ param: { name: "name", in: "path" }, example: "orders" }),
  sub: EntityName.openapi({ param: { name: "sub", in: "path" }, example: "billing" }),
});

const Username = z.string().regex(USERNAME_PATTERN, "not a username");

const retentionSeconds = z.number().int().min(0).max(L.retentionSecondsMax).openapi({
  description: "messages older than this leave the log; 0: no age limit",
});
const retentionMaxMessages = z.number().int().min(0).max(L.retentionMaxMessagesMax).openapi({
  description: "the log keeps at most this many (newest) messages; 0: no count limit",
});
const retentionMaxBytes = z.number().int().min(0).max(L.retentionMaxBytesMax).openapi({
  description: "the log keeps at most this many message bytes (newest first); 0: no size limit; " +
    "otherwise at least maxMessageBytes",
});
const maxMessageBytes = z.number().int().min(1).max(L.messageBytesMax).openapi({
  description: "largest message: UTF-8 bytes of body, key, attribute names and values",
});
const visibilityTimeoutSeconds = z.number().int().min(0).max(L.visibilitySecondsMax);
const maxDeliveries = z.number().int().min(1).max(L.maxDeliveriesMax);

const AccessInput = z.object({
  restricted: z.boolean().default(false).openapi({
    description: "true: only the owner, admins and the listed users may publish or receive",
  }),
  senders: z.array(Username).max(L.accessListMax).default([]).openapi({
    description: "users with the 'send' right (publish)",
  }),
  receivers: z.array(Username).max(L.accessListMax).default([]).openapi({
    description: "users with the 'receive' right (subscribe, receive, ack, peek)",
  }),
}).strict();

/** Body of `PUT /v1/topics/{name}`: every field optional, defaults as documented. */
export const TopicConfigInput = z.object({
  retentionSeconds: retentionSeconds.default(D.retentionSeconds),
  retentionMaxMessages: retentionMaxMessages.default(D.retentionMaxMessages),
  retentionMaxBytes: retentionMaxBytes.default(D.retentionMaxBytes),
  maxMessageBytes: maxMessageBytes.default(D.maxMessageBytes),
  visibilityTimeoutSeconds: visibilityTimeoutSeconds.default(D.visibilityTimeoutSeconds).openapi({
    description: "default visibility timeout of subscriptions created later",
  }),
  maxDeliveries: maxDeliveries.default(D.maxDeliveries).openapi({
    description: "default deliveries before dead-lettering, for subscriptions created later",
  }),
  access: AccessInput.default({ restricted: false, senders: [], receivers: [] }),
}).strict().openapi("TopicConfigInput");

/** Body of `PATCH /v1/topics/{name}`: the fields to change. */
export const TopicConfigPatch = z.object({
  retentionSeconds: retentionSeconds.optional(),
  retentionMaxMessages: retentionMaxMessages.optional(),
  retentionMaxBytes: retentionMaxBytes.optional(),
  maxMessageBytes: maxMessageBytes.optional(),
  visibilityTimeoutSeconds: visibilityTimeoutSeconds.optional(),
  maxDeliveries: maxDeliveries.optional(),
  access: z.object({
    restricted: z.boolean().optional(),
    senders: z.array(Username).max(L.accessListMax).optional(),
    receivers: z.array(Username).max(L.accessListMax).optional(),
  }).strict().optional(),
}).strict().openapi("TopicConfigPatch");

const TopicConfigSchema = z.object({
  retentionSeconds: z.number().int(),
  retentionMaxMessages: z.number().int(),
  retentionMaxBytes: z.number().int(),
  maxMessageBytes: z.number().int(),
  visibilityTimeoutSeconds: z.number().int(),
  maxDeliveries: z.number().int(),
  access: z.object({
    restricted: z.boolean(),
    senders: z.array(z.string()).optional().openapi({
      description: "shown to the owner and admins only",
    }),
    receivers: z.array(z.string()).optional().openapi({
      description: "shown to the owner and admins only",
    }),
  }),
}).openapi("TopicConfig");

/** A topic with its configuration and counts. */
export const TopicSchema = z.object({
  name: z.string(),
  owner: z.string(),
  createdAt: z.string().openapi({ format: "date-time" }),
  config: TopicConfigSchema,
  stats: z.object({
    firstOffset: z.number().int().openapi({
      description: "oldest retained offset (= nextOffset when the log is empty)",
    }),
    nextOffset: z.number().int().openapi({
      description: "offset of the next message; offsets start at 0",
    }),
    messages: z.number().int().openapi({ description: "retained messages" }),
    bytes: z.number().int().openapi({ description: "retained message bytes" }),
    subscriptions: z.number().int(),
  }),
}).openapi("Topic");

/** Answer of `PUT /v1/topics/{name}`. */
export const TopicCreatedSchema = TopicSchema.extend({
  created: z.boolean().openapi({ description: "false: it existed with this configuration" }),
}).openapi("TopicCreated");

/** Answer of `GET /v1/topics`. */
export const TopicListSchema = z.object({
  topics: z.array(z.object({
    name: z.string(),
    owner: z.string(),
    createdAt: z.string().openapi({ format: "date-time" }),
  })),
  next: z.string().nullable().openapi({ description: "pass as `after` for the next page" }),
}).openapi("TopicList");

/** One message to publish. */
export const OutgoingTopicMessageSchema = z.object({
  body: z.string(),
  attributes: z.record(z.string().min(1).max(L.attributeNameMax), z.string()).optional()
    .refine((a) => a === undefined || Object.keys(a).length <= L.attributesMax, {
      message: `at most ${L.attributesMax} attributes`,
    }),
  key: z.string().min(1).max(L.keyMax).optional().openapi({
    description: "free-form key (e.g. an entity id), delivered with the message",
  }),
}).strict();

/** Body of `POST /v1/topics/{name}/messages`. */
export const PublishBody = z.object({
  messages: z.array(OutgoingTopicMessageSchema).min(1).max(L.publishBatchMax),
}).strict().openapi("PublishBody");

/** Answer of a publish: per message, in order. */
export const PublishedSchema = z.object({
  messages: z.array(z.object({
    offset: z.number().int(),
    id: z.string(),
    publishedAt: z.string().openapi({ format: "date-time" }),
  })),
}).openapi("Published");

const MessageFields = {
  offset: z.number().int(),
  id: z.string(),
  body: z.string(),
  attributes: z.record(z.string(), z.string()),
  key: z.string().nullable(),
  publisher: z.string().openapi({ description: "username of the publisher" }),
  publishedAt: z.string().openapi({ format: "date-time" }),
};

/** Query of `GET /v1/topics/{name}/messages`. */
export const PeekQuery = z.object({
  from: z.coerce.number().int().min(0).optional().openapi({
    description: "first offset to list (default: the oldest retained)",
  }),
  limit: z.coerce.number().int().min(1).max(L.peekMax).default(10),
}).strict();

/** Answer of `GET /v1/topics/{name}/messages` (nothing is consumed). */
export const PeekSchema = z.object({
  messages: z.array(z.object(MessageFields)),
  firstOffset: z.number().int(),
  nextOffset: z.number().int(),
}).openapi("TopicPeek");

/** Body of `PUT /v1/topics/{name}/subscriptions/{sub}`. */
export const SubscribeBody = z.object({
  start: z.union([z.enum(["earliest", "latest"]), z.iso.datetime({ offset: true })])
    .default("latest").openapi({
      description: "earliest retained message, the next one published (latest), or the first " +
        "published at or after an ISO 8601 time",
    }),
  visibilityTimeoutSeconds: visibilityTimeoutSeconds.optional().openapi({
    description: "default: the topic's visibilityTimeoutSeconds",
  }),
  maxDeliveries: maxDeliveries.optional().openapi({
    description: "default: the topic's maxDeliveries",
  }),
}).strict().openapi("SubscribeBody");

/** A subscription with its counts. */
export const SubscriptionSchema = z.object({
  topic: z.string(),
  name: z.string(),
  creator: z.string(),
  createdAt: z.string().openapi({ format: "date-time" }),
  config: z.object({
    start: z.string(),
    visibilityTimeoutSeconds: z.number().int(),
    maxDeliveries: z.number().int(),
  }),
  stats: z.object({
    position: z.number().int().openapi({ description: "next offset delivered for the first time" }),
    lag: z.number().int().openapi({ description: "nextOffset - position" }),
    inFlight: z.number().int(),
    pendingRedelivery: z.number().int(),
    deadLettered: z.number().int(),
    skipped: z.number().int().openapi({
      description: "messages retention removed before they were delivered or settled",
    }),
  }),
}).openapi("Subscription");

/** Answer of `PUT /v1/topics/{name}/subscriptions/{sub}`. */
export const SubscriptionCreatedSchema = SubscriptionSchema.extend({
  created: z.boolean(),
}).openapi("SubscriptionCreated");

/** Answer of `GET /v1/topics/{name}/subscriptions`. */
export const SubscriptionListSchema = z.object({
  subscriptions: z.array(SubscriptionSchema),
}).openapi("SubscriptionList");

/** Body of `POST .../receive`. */
export const TopicReceiveBody = z.object({
  max: z.number().int().min(1).max(L.receiveMax).default(1),
  waitSeconds: z.number().int().min(0).max(L.waitSecondsMax).default(0),
  visibilitySeconds: z.number().int().min(0).max(L.visibilitySecondsMax).optional().openapi({
    description: "default: the subscription's visibilityTimeoutSeconds",
  }),
}).strict().openapi("TopicReceiveBody");

/** Answer of a receive. */
export const TopicDeliveriesSchema = z.object({
  messages: z.array(z.object({
    ...MessageFields,
    receipt: z.string().openapi({ description: "bound to this delivery attempt" }),
    deliveryCount: z.number().int(),
    visibleAt: z.string().openapi({ format: "date-time" }),
  })),
}).openapi("TopicDeliveries");

const Receipts = z.array(z.string().min(1).max(200)).min(1).max(L.receiptsMax);

/** Body of `POST .../ack`. */
export const TopicAckBody = z.object({ receipts: Receipts }).strict().openapi("TopicAckBody");

/** Body of `POST .../nack`. */
export const TopicNackBody = z.object({
  receipts: Receipts,
  delaySeconds: z.number().int().min(0).max(L.visibilitySecondsMax).default(0),
}).strict().openapi("TopicNackBody");

/** Body of `POST .../visibility`. */
export const TopicVisibilityBody = z.object({
  receipts: Receipts,
  visibilitySeconds: z.number().int().min(0).max(L.visibilitySecondsMax),
}).strict().openapi("TopicVisibilityBody");

/** Per-receipt outcome of ack, nack and visibility. */
export const ReceiptResultsSchema = z.object({
  results: z.array(z.object({
    receipt: z.string(),
    ok: z.boolean(),
    error: z.literal("stale_receipt").optional(),
  })),
}).openapi("TopicReceiptResults");

/** Body of `POST .../seek`: exactly one of offset and time. */
export const SeekBody = z.union([
  z.object({ offset: z.number().int().min(0) }).strict(),
  z.object({ time: z.iso.datetime({ offset: true }) }).strict(),
]).openapi("SeekBody");

/** Answer of a seek. */
export const SeekResultSchema = z.object({
  position: z.number().int().openapi({ description: "the new position (next offset delivered)" }),
  dropped: z.number().int().openapi({
    description: "in-flight and pending deliveries dropped (their receipts turn stale)",
  }),
  requestedOffset: z.number().int().nullable().openapi({
    description: "the offset asked for; null for a seek by time",
  }),
  clamped: z.boolean().openapi({
    description: "true: the offset asked for lay outside the retained range [first, next], " +
      "and the position is the nearest end of it",
  }),
}).openapi("SeekResult");

/** Body of `POST .../redrive` (optional). */
export const RedriveBody = z.object({
  max: z.number().int().min(1).max(L.redriveMax).default(L.redriveMax),
}).strict().openapi("TopicRedriveBody");

/** Answer of a redrive. */
export const RedriveResultSchema = z.object({
  moved: z.number().int(),
  expired: z.number().int().openapi({ description: "dropped: retention took their message" }),
  remaining: z.number().int(),
}).openapi("TopicRedriveResult");

/** Query of `GET .../subscriptions/{sub}/messages`. */
export const DeadPeekQuery = z.object({
  state: z.literal("dead").default("dead"),
  skip: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(L.peekMax).default(10),
}).strict();

/** Answer of `GET .../subscriptions/{sub}/messages?state=dead`. */
export const DeadLettersSchema = z.object({
  messages: z.array(z.object({
    ...MessageFields,
    deliveryCount: z.number().int(),
    deadLetteredAt: z.string().openapi({ format: "date-time" }),
  })),
  total: z.number().int(),
}).openapi("TopicDeadLetters");
