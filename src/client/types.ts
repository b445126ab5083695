/**
 * Request and response shapes of the momd REST API, derived from the zod schemas the server
 * validates with, so the client cannot drift from the server. Type-only imports: nothing of the
 * server (hono, zod, ioredis) ends up in the client's JavaScript.
 *
 * Request bodies use `z.input` (fields with a server-side default are optional); responses use
 * `z.output` (what the server sends).
 */
import type { z } from "zod";
import type * as Common from "../api/schemas/common.ts";
import type * as Q from "../api/schemas/queues.ts";
import type * as T from "../api/schemas/topics.ts";
import type * as U from "../api/schemas/users.ts";
import type * as R from "../api/schemas/requests.ts";
import type * as Routing from "../api/routing.ts";
import type * as Check from "../api/schemas/check.ts";

/** The problem+json body of every error answer. */
export type Problem = z.output<typeof Common.ProblemSchema>;

// Query strings are coerced by the server (their z.input is `unknown`): the client takes the
// parsed shape with every field optional.

/** Paging and prefix filter of a listing. */
export type ListOptions = Partial<z.output<typeof Common.ListQuery>>;

// ---- auth -------------------------------------------------------------------------------------

/** Answer of `POST /v1/auth/token`. (The route keeps its schema private; same fields.) */
export interface TokenInfo {
  token: string;
  /** ISO 8601, by the server's clock. */
  expiresAt: string;
}

/** Answer of `GET /v1/auth/me`. */
export interface Me {
  username: string;
  role: User["role"];
}

// ---- users ------------------------------------------------------------------------------------

/** A user as the API shows it. */
export type User = z.output<typeof U.UserSchema>;
/** A page of users. */
export type UserPage = z.output<typeof U.UserPageSchema>;
/** Body of a user creation. */
export type CreateUserInput = z.input<typeof U.CreateUserBody>;
/** Body of a password change. */
export type PasswordChangeInput = z.input<typeof U.PasswordChangeBody>;
/** Query of a user listing. */
export type UserListOptions = Partial<z.output<typeof U.UserListQuery>>;
/** A user's rate limit in force, and whether it is the user's own or the cluster default. */
export type RateLimitSetting = z.output<typeof U.RateLimitSettingSchema>;
/** A user's own limit (`burst` defaults to two seconds' worth), or `{ unlimited: true }`. */
export type RateLimitInput = z.input<typeof U.RateLimitBody>;

// ---- queues -----------------------------------------------------------------------------------

/** Configuration of a new queue; every field optional (server defaults). */
export type QueueConfigInput = z.input<typeof Q.QueueConfigInput>;
/** The fields of a queue configuration to change. */
export type QueueConfigPatch = z.input<typeof Q.QueueConfigPatch>;
/** A queue's stored configuration. */
export type QueueConfig = z.output<typeof Q.QueueConfig>;
/** A queue without counts. */
export type QueueInfo = z.output<typeof Q.QueueInfo>;
/** Answer of a queue creation (`created: false` when it existed with this configuration). */
export type QueueCreated = z.output<typeof Q.QueueCreated>;
/** A queue with its counts. */
export type QueueDetail = z.output<typeof Q.QueueDetail>;
/** A page of queues. */
export type QueueList = z.output<typeof Q.QueueList>;
/** One message to send to a queue. */
export type OutgoingMessage = z.input<typeof Q.OutgoingMessage>;
/** Answer of a send: one id per message, in order. */
export type SendResult = z.output<typeof Q.SendResponse>;
/** Options of a queue receive. */
export type ReceiveOptions = z.input<typeof Q.ReceiveRequest>;
/** A message delivered from a queue. */
export type Delivery = z.output<typeof Q.Delivery>;
/** Per-receipt outcomes of an ack, nack or visibility change. */
export type ReceiptResults = z.output<typeof Q.ReceiptResults>;
/** Options of a queue nack (the receipts are a separate argument). */
export type NackOptions = Omit<z.input<typeof Q.NackRequest>, "receipts">;
/** Options of a queue purge. */
export type PurgeOptions = z.input<typeof Q.PurgeRequest>;
/** Answer of a purge. */
export type PurgeResult = z.output<typeof Q.PurgeResponse>;
/** Options of a redrive. */
export type RedriveOptions = z.input<typeof Q.RedriveRequest>;
/** Answer of a redrive. */
export type RedriveResult = z.output<typeof Q.RedriveResponse>;
/** Query of a queue peek. */
export type PeekOptions = Partial<z.output<typeof Q.PeekQuery>>;
/** Answer of a queue peek. */
export type PeekResult = z.output<typeof Q.PeekResponse>;

// ---- topics -----------------------------------------------------------------------------------

/** Configuration of a new topic; every field optional (server defaults). */
export type TopicConfigInput = z.input<typeof T.TopicConfigInput>;
/** The fields of a topic configuration to change. */
export type TopicConfigPatch = z.input<typeof T.TopicConfigPatch>;
/** A topic with its configuration and counts. */
export type Topic = z.output<typeof T.TopicSchema>;
/** Answer of a topic creation. */
export type TopicCreated = z.output<typeof T.TopicCreatedSchema>;
/** A page of topics. */
export type TopicList = z.output<typeof T.TopicListSchema>;
/** One message to publish. */
export type OutgoingTopicMessage = z.input<typeof T.OutgoingTopicMessageSchema>;
/** Answer of a publish: offset and id per message, in order. */
export type PublishResult = z.output<typeof T.PublishedSchema>;
/** Query of a topic peek. */
export type TopicPeekOptions = Partial<z.output<typeof T.PeekQuery>>;
/** Answer of a topic peek. */
export type TopicPeekResult = z.output<typeof T.PeekSchema>;
/** Options of a subscription creation. */
export type SubscribeOptions = z.input<typeof T.SubscribeBody>;
/** A subscription with its counts. */
export type Subscription = z.output<typeof T.SubscriptionSchema>;
/** Answer of a subscription creation. */
export type SubscriptionCreated = z.output<typeof T.SubscriptionCreatedSchema>;
/** Options of a subscription receive. */
export type TopicReceiveOptions = z.input<typeof T.TopicReceiveBody>;
/** A message delivered from a subscription. */
export type TopicDelivery = z.output<typeof T.TopicDeliveriesSchema>["messages"][number];
/** Options of a subscription nack (the receipts are a separate argument). */
export type TopicNackOptions = Omit<z.input<typeof T.TopicNackBody>, "receipts">;
/** Where to move a subscription: `{offset}` or `{time}` (ISO 8601). */
export type SeekTarget = z.input<typeof T.SeekBody>;
/** Answer of a seek. */
export type SeekResult = z.output<typeof T.SeekResultSchema>;
/** Options of a subscription redrive. */
export type TopicRedriveOptions = z.input<typeof T.RedriveBody>;
/** Answer of a subscription redrive. */
export type TopicRedriveResult = z.output<typeof T.RedriveResultSchema>;
/** Query of a subscription's dead-letter listing. */
export type DeadLetterOptions = Partial<Omit<z.output<typeof T.DeadPeekQuery>, "state">>;
/** A subscription's dead letters. */
export type DeadLetters = z.output<typeof T.DeadLettersSchema>;

// ---- request/reply ----------------------------------------------------------------------------

/** Body of a request to a service's queue (`POST /v1/queues/{name}/requests`). */
export type RequestInput = z.input<typeof R.RequestInput>;
/** A task: its status and, once ended, its result or error. */
export type Task = z.output<typeof R.Task>;
/** A task's status. */
export type TaskStatus = Task["status"];
type ReplyFields = z.input<typeof R.ReplyInput>;
/** A worker's reply: exactly one of `result` and `error`. */
export type ReplyInput =
  | (Required<Pick<ReplyFields, "result">> & { error?: undefined })
  | (Required<Pick<ReplyFields, "error">> & { result?: undefined });
/** Answer of a reply. */
export type ReplyOutput = z.output<typeof R.ReplyOutput>;

// ---- cluster ----------------------------------------------------------------------------------

/** Answer of `GET /v1/cluster`: the nodes, the controller, who owns and replicates what. */
export type ClusterStatus = Routing.ClusterStatus;
/** One node in the cluster status. */
export type ClusterNode = ClusterStatus["nodes"][number];
/** One queue or topic in the cluster status. */
export type ClusterEntity = ClusterStatus["entities"][number];
/** Answer of `GET /v1/cluster/check`: whether the cluster is consistent, and what was found. */
export type CheckReport = z.output<typeof Check.CheckReportSchema>;
/** One problem the consistency check found. */
export type CheckProblem = CheckReport["problems"][number];

/** A subscription of a topic: the target of subscription-level calls and of `consume`. */
export interface SubscriptionRef {
  topic: string;
  subscription: string;
}

/** Anything that names a delivery attempt: its receipt, or the delivery itself. */
export type ReceiptLike = string | { receipt: string };
