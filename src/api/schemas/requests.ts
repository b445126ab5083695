import { z } from "@hono/zod-openapi";
import { QUEUE_LIMITS as L } from "../../broker/queues.ts";
import {
  decodeTaskId,
  REQUEST_ATTRIBUTES as A,
  REQUEST_LIMITS as R,
  RESERVED_ATTRIBUTE_PREFIX,
} from "../../broker/requests.ts";
import { OutgoingMessage } from "./queues.ts";

/** The `{taskId}` path parameter. */
export const TaskParams = z.object({
  taskId: z.string().max(300).refine(
    (id) => decodeTaskId(id) !== null,
    "not a task id of this broker",
  ).openapi({
    param: { name: "taskId", in: "path" },
    description: "The task id returned by a request (it names the queue)",
    example: "c3VtLjAxSkdaNkQ4WjNQOVJGV0ZTWlc0Q0JUN1pO",
  }),
});

const waitSeconds = z.number().min(0).max(R.waitSecondsMax);

/** Body of `POST /v1/queues/{name}/requests`. */
export const RequestInput = z.object({
  body: OutgoingMessage.shape.body,
  attributes: OutgoingMessage.shape.attributes.refine(
    (a) => !a || Object.keys(a).every((k) => !k.startsWith(RESERVED_ATTRIBUTE_PREFIX)),
    `attribute names starting with '${RESERVED_ATTRIBUTE_PREFIX}' are reserved`,
  ).openapi({
    description: `Up to ${L.attributesMax} string attributes of the requester's own; the ` +
      `message also carries ${A.taskId}, ${A.deadline} and ${A.replyTo}`,
  }),
  timeoutSeconds: z.number().int().min(1).max(R.timeoutSecondsMax).default(
    R.timeoutSecondsDefault,
  ).openapi({
    description: `Seconds from now to the deadline (1-${R.timeoutSecondsMax}, default ` +
      `${R.timeoutSecondsDefault}; at most the queue's retentionSeconds). The message expires ` +
      `at the deadline; a reply after it is refused; the result is kept until it.`,
  }),
  waitSeconds: waitSeconds.default(0).openapi({
    description: `Wait up to this long (0-${R.waitSecondsMax}, default 0) for the reply; the ` +
      `answer is 200 if the task ended by then, else 202`,
  }),
  dedupId: OutgoingMessage.shape.dedupId.openapi({
    description: "De-duplication id: the same id within the queue's dedupWindowSeconds sends " +
      "nothing and answers the original request's task (safe retries)",
  }),
}).strict().openapi("RequestInput");

const statusDescription = "pending: the message waits in the queue; in_progress: a worker " +
  "holds it; completed: a worker replied with a result; failed: a worker replied with an " +
  "error, or the message was dead-lettered or removed without a reply (a reply is still " +
  "accepted until the deadline); expired: the deadline passed (a result is kept only until it)";

/** A task as the API shows it. */
export const Task = z.object({
  taskId: z.string(),
  status: z.enum(["pending", "in_progress", "completed", "failed", "expired"]).openapi({
    description: statusDescription,
  }),
  deadline: z.string().openapi({ format: "date-time" }),
  result: z.string().optional().openapi({ description: "completed: the worker's result" }),
  error: z.string().optional().openapi({
    description: "failed: the worker's error, or why the request failed without a reply",
  }),
  completedAt: z.string().optional().openapi({
    format: "date-time",
    description: "When the worker's reply came",
  }),
}).openapi("Task");

/** Query of `GET /v1/tasks/{taskId}`. */
export const TaskQuery = z.object({
  waitSeconds: z.coerce.number().pipe(waitSeconds).optional().openapi({
    description: `Long poll: wait up to this long (0-${R.waitSecondsMax}, default 0) while the ` +
      `task is pending or in progress; answers as soon as it ends`,
  }),
}).strict();

/** Body of `POST /v1/tasks/{taskId}/reply`: exactly one of result and error. */
export const ReplyInput = z.object({
  result: z.string().optional().openapi({ description: "The task completed with this result" }),
  error: z.string().optional().openapi({ description: "The task failed with this error" }),
}).strict().refine(
  (r) => (r.result === undefined) !== (r.error === undefined),
  "give exactly one of result and error",
).openapi("ReplyInput", {
  description: `Exactly one of result and error, at most the queue's maxMessageBytes (never ` +
    `more than ${L.messageBytesMax} bytes)`,
});

/** Answer of a reply. */
export const ReplyOutput = z.object({
  taskId: z.string(),
  status: z.enum(["completed", "failed"]),
  completedAt: z.string().openapi({ format: "date-time" }),
}).openapi("ReplyOutput");
