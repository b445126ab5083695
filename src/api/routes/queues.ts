import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ApiDeps } from "../app.ts";
import { type AppEnv, longPollSignal } from "../context.ts";
import { seenBy } from "../../broker/entities.ts";
import { bearer, body, errorResponses, json, ListQuery } from "../schemas/common.ts";
import {
  AckRequest,
  NackRequest,
  PeekQuery,
  PeekResponse,
  PurgeRequest,
  PurgeResponse,
  QueueConfigInput,
  QueueConfigPatch,
  QueueCreated,
  QueueDetail,
  QueueInfo,
  QueueList,
  QueueParams,
  ReceiptResults,
  ReceiveRequest,
  ReceiveResponse,
  RedriveRequest,
  RedriveResponse,
  SendRequest,
  SendResponse,
  VisibilityRequest,
} from "../schemas/queues.ts";

const tags = ["queues"];

const createQueue = createRoute({
  operationId: "createQueue",
  method: "put",
  path: "/v1/queues/{name}",
  tags,
  summary: "Create a queue (idempotent for the same configuration)",
  description: "The caller becomes the owner. Creating an existing queue with the same " +
    "configuration answers 200 with created: false; with a different one, 409 already_exists " +
    "(change a configuration with PATCH).",
  security: bearer,
  request: { params: QueueParams, ...body(QueueConfigInput, false) },
  responses: {
    201: json(QueueCreated, "created"),
    200: json(QueueCreated, "it already existed with this configuration"),
    ...errorResponses(409),
  },
});

const configureQueue = createRoute({
  operationId: "configureQueue",
  method: "patch",
  path: "/v1/queues/{name}",
  tags,
  summary: "Change a queue's configuration (owner or admin)",
  security: bearer,
  request: { params: QueueParams, ...body(QueueConfigPatch) },
  responses: { 200: json(QueueInfo, "the new configuration"), ...errorResponses(403, 404) },
});

const getQueue = createRoute({
  operationId: "getQueue",
  method: "get",
  path: "/v1/queues/{name}",
  tags,
  summary: "A queue's configuration, owner and counts",
  security: bearer,
  request: { params: QueueParams },
  responses: { 200: json(QueueDetail, "the queue"), ...errorResponses(404) },
});

const listQueues = createRoute({
  operationId: "listQueues",
  method: "get",
  path: "/v1/queues",
  tags,
  summary: "List queues by name, a page at a time",
  security: bearer,
  request: { query: ListQuery },
  responses: { 200: json(QueueList, "a page of queues"), ...errorResponses() },
});

const deleteQueue = createRoute({
  operationId: "deleteQueue",
  method: "delete",
  path: "/v1/queues/{name}",
  tags,
  summary: "Delete a queue and every message it holds (owner or admin)",
  security: bearer,
  request: { params: QueueParams },
  responses: { 204: { description: "deleted" }, ...errorResponses(403, 404) },
});

const purgeQueue = createRoute({
  operationId: "purgeQueue",
  method: "post",
  path: "/v1/queues/{name}/purge",
  tags,
  summary: "Drop the ready, delayed and in-flight messages (owner or admin)",
  description: "The configuration stays; dead letters stay unless deadLetters is true.",
  security: bearer,
  request: { params: QueueParams, ...body(PurgeRequest, false) },
  responses: { 200: json(PurgeResponse, "how many were dropped"), ...errorResponses(403, 404) },
});

const sendMessages = createRoute({
  operationId: "sendMessages",
  method: "post",
  path: "/v1/queues/{name}/messages",
  tags,
  summary: "Send one message or a batch (stored all or none)",
  security: bearer,
  request: { params: QueueParams, ...body(SendRequest) },
  responses: {
    201: json(SendResponse, "the ids, in order"),
    ...errorResponses(403, 404, 409, 413),
  },
});

const peekMessages = createRoute({
  operationId: "peekMessages",
  method: "get",
  path: "/v1/queues/{name}/messages",
  tags,
  summary: "List messages without consuming them (needs the receive right)",
  security: bearer,
  request: { params: QueueParams, query: PeekQuery },
  responses: { 200: json(PeekResponse, "the messages"), ...errorResponses(403, 404) },
});

const receiveMessages = createRoute({
  operationId: "receiveMessages",
  method: "post",
  path: "/v1/queues/{name}/receive",
  tags,
  summary: "Receive messages, optionally waiting for one (long poll)",
  security: bearer,
  request: { params: QueueParams, ...body(ReceiveRequest, false) },
  responses: {
    200: json(ReceiveResponse, "the deliveries (possibly none)"),
    ...errorResponses(403, 404),
  },
});

const receiptOutcome = "per receipt: ok, or stale_receipt (nothing changed for it)";

const ackMessages = createRoute({
  operationId: "ackMessages",
  method: "post",
  path: "/v1/queues/{name}/ack",
  tags,
  summary: "Acknowledge deliveries: their messages are deleted",
  description: "Only the receipt of the current attempt acknowledges; an earlier attempt's " +
    "receipt (or one past its visibility deadline) is answered stale_receipt and the message " +
    "stays.",
  security: bearer,
  request: { params: QueueParams, ...body(AckRequest) },
  responses: { 200: json(ReceiptResults, receiptOutcome), ...errorResponses(403, 404) },
});

const nackMessages = createRoute({
  operationId: "nackMessages",
  method: "post",
  path: "/v1/queues/{name}/nack",
  tags,
  summary: "Release deliveries now or after a delay (counts toward max deliveries)",
  security: bearer,
  request: { params: QueueParams, ...body(NackRequest) },
  responses: { 200: json(ReceiptResults, receiptOutcome), ...errorResponses(403, 404) },
});

const changeVisibility = createRoute({
  operationId: "changeVisibility",
  method: "post",
  path: "/v1/queues/{name}/visibility",
  tags,
  summary: "Move the visibility deadline of deliveries",
  security: bearer,
  request: { params: QueueParams, ...body(VisibilityRequest) },
  responses: { 200: json(ReceiptResults, receiptOutcome), ...errorResponses(403, 404) },
});

const redriveMessages = createRoute({
  operationId: "redriveMessages",
  method: "post",
  path: "/v1/queues/{name}/redrive",
  tags,
  summary: "Move dead letters back to ready (owner or admin)",
  security: bearer,
  request: { params: QueueParams, ...body(RedriveRequest, false) },
  responses: { 200: json(RedriveResponse, "how many moved"), ...errorResponses(403, 404) },
});

/** Queue routes: management, send, peek, receive, ack, nack, visibility, redrive. */
export function registerQueueRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  const queues = deps.queues;

  app.openapi(createQueue, async (c) => {
    const { name } = c.req.valid("param");
    // An absent body is not validated by the route: fill in the defaults here.
    const config = QueueConfigInput.parse(c.req.valid("json") ?? {});
    const res = await queues.create(c.get("principal"), name, config);
    const queue = seenBy(c.get("principal"), res.queue);
    return c.json({ ...queue, created: res.created }, res.created ? 201 : 200);
  });

  app.openapi(configureQueue, async (c) => {
    const { name } = c.req.valid("param");
    return c.json(await queues.configure(c.get("principal"), name, c.req.valid("json")), 200);
  });

  app.openapi(getQueue, async (c) => {
    const { name } = c.req.valid("param");
    return c.json(seenBy(c.get("principal"), await queues.get(c.get("principal"), name)), 200);
  });

  app.openapi(listQueues, async (c) => {
    return c.json(await queues.list(c.req.valid("query")), 200);
  });

  app.openapi(deleteQueue, async (c) => {
    const { name } = c.req.valid("param");
    await queues.delete(c.get("principal"), name);
    return c.body(null, 204);
  });

  app.openapi(purgeQueue, async (c) => {
    const { name } = c.req.valid("param");
    const opts = c.req.valid("json") ?? {};
    return c.json(await queues.purge(c.get("principal"), name, opts), 200);
  });

  app.openapi(sendMessages, async (c) => {
    const { name } = c.req.valid("param");
    const { messages } = c.req.valid("json");
    return c.json({ messages: await queues.send(c.get("principal"), name, messages) }, 201);
  });

  app.openapi(peekMessages, async (c) => {
    const { name } = c.req.valid("param");
    const query = c.req.valid("query");
    return c.json({ messages: await queues.peek(c.get("principal"), name, query) }, 200);
  });

  app.openapi(receiveMessages, async (c) => {
    const { name } = c.req.valid("param");
    const opts = c.req.valid("json") ?? {};
    const messages = await queues.receive(c.get("principal"), name, {
      ...opts,
      signal: longPollSignal(c, opts.waitSeconds),
    });
    return c.json({ messages }, 200);
  });

  app.openapi(ackMessages, async (c) => {
    const { name } = c.req.valid("param");
    const { receipts } = c.req.valid("json");
    return c.json({ results: await queues.ack(c.get("principal"), name, receipts) }, 200);
  });

  app.openapi(nackMessages, async (c) => {
    const { name } = c.req.valid("param");
    const { receipts, delaySeconds } = c.req.valid("json");
    const results = await queues.nack(c.get("principal"), name, receipts, delaySeconds);
    return c.json({ results }, 200);
  });

  app.openapi(changeVisibility, async (c) => {
    const { name } = c.req.valid("param");
    const { receipts, visibilitySeconds } = c.req.valid("json");
    const results = await queues.changeVisibility(
      c.get("principal"),
      name,
      receipts,
      visibilitySeconds,
    );
    return c.json({ results }, 200);
  });

  app.openapi(redriveMessages, async (c) => {
    const { name } = c.req.valid("param");
    const { max } = c.req.valid("json") ?? {};
    return c.json(await queues.redrive(c.get("principal"), name, max), 200);
  });
}
