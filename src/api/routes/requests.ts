import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { type AppEnv, longPollSignal } from "../context.ts";
import { BrokerError } from "../../broker/errors.ts";
import type { RequestService, TaskView } from "../../broker/requests.ts";
import { bearer, body, errorResponses, json } from "../schemas/common.ts";
import { QueueParams } from "../schemas/queues.ts";
import {
  ReplyInput,
  ReplyOutput,
  RequestInput,
  Task,
  TaskParams,
  TaskQuery,
} from "../schemas/requests.ts";

/** What the request/reply routes need (a part of ApiDeps). */
export interface RequestRouteDeps {
  requests: RequestService;
}

const tags = ["requests"];

const sendRequest = createRoute({
  operationId: "sendRequest",
  method: "post",
  path: "/v1/queues/{name}/requests",
  tags,
  summary: "Send a request to a service's queue and optionally wait for the reply",
  description: "The request is a message on the queue (needs the send right) whose TTL is the " +
    "deadline; it carries the attributes momd-task-id, momd-deadline and momd-reply-to. " +
    "Workers receive it like any message, POST the reply to momd-reply-to, then ack. The " +
    "answer is 200 when the task ended within waitSeconds (completed, failed or expired), " +
    "else 202 with the task id to read later: GET /v1/tasks/{taskId}.",
  security: bearer,
  request: { params: QueueParams, ...body(RequestInput) },
  responses: {
    200: json(Task, "the task ended within waitSeconds"),
    202: json(Task, "the task is pending or in progress: read it later"),
    ...errorResponses(403, 404, 409, 413),
  },
});

const getTask = createRoute({
  operationId: "getTask",
  method: "get",
  path: "/v1/tasks/{taskId}",
  tags,
  summary: "A task's state and result (the requester or an admin), optionally waiting",
  description: "Results are kept until the deadline and can be read any number of times. A " +
    "task stays known for an hour after its deadline (status expired). 404 (code not_found) " +
    "means unknown: no such task, ended longer ago, or another user's.",
  security: bearer,
  request: { params: TaskParams, query: TaskQuery },
  responses: { 200: json(Task, "the task"), ...errorResponses(404) },
});

const replyTask = createRoute({
  operationId: "replyToTask",
  method: "post",
  path: "/v1/tasks/{taskId}/reply",
  tags,
  summary: "Reply to a task (a worker: needs the receive right on its queue)",
  description: "Reply before acking the request message. 409 conflict when the deadline has " +
    "passed or the task already has a reply (e.g. a redelivered request answered twice): " +
    "the worker then just acks the message.",
  security: bearer,
  request: { params: TaskParams, ...body(ReplyInput) },
  responses: {
    200: json(ReplyOutput, "the reply is stored"),
    ...errorResponses(403, 404, 409, 413),
  },
});

function known(view: TaskView): z.infer<typeof Task> {
  if (view.status === "unknown") {
    throw new BrokerError(
      "not_found",
      `task '${view.taskId}' is unknown: no such task, it ended more than an hour ago, or it is ` +
        `not yours`,
    );
  }
  return { ...view, status: view.status, deadline: view.deadline! };
}

/** Request/reply routes: send a request, read (or wait for) a task, reply to a task. */
export function registerRequestRoutes(app: OpenAPIHono<AppEnv>, deps: RequestRouteDeps): void {
  const requests = deps.requests;

  app.openapi(sendRequest, async (c) => {
    const { name } = c.req.valid("param");
    const { waitSeconds, ...req } = c.req.valid("json");
    const view = known(
      await requests.request(c.get("principal"), name, req, {
        waitSeconds,
        signal: longPollSignal(c, waitSeconds),
      }),
    );
    const ended = view.status !== "pending" && view.status !== "in_progress";
    return c.json(view, ended ? 200 : 202);
  });

  app.openapi(getTask, async (c) => {
    const { taskId } = c.req.valid("param");
    const { waitSeconds } = c.req.valid("query");
    const view = await requests.task(c.get("principal"), taskId, {
      waitSeconds,
      signal: longPollSignal(c, waitSeconds),
    });
    return c.json(known(view), 200);
  });

  app.openapi(replyTask, async (c) => {
    const { taskId } = c.req.valid("param");
    const reply = c.req.valid("json");
    const res = await requests.reply(
      c.get("principal"),
      taskId,
      reply.result !== undefined ? { result: reply.result } : { error: reply.error! },
    );
    return c.json(res, 200);
  });
}
