import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { ApiDeps } from "../app.ts";
import { type AppEnv, longPollSignal } from "../context.ts";
import { seenBy } from "../../broker/entities.ts";
import { bearer, body, errorResponses, json, ListQuery } from "../schemas/common.ts";
import {
  DeadLettersSchema,
  DeadPeekQuery,
  PeekQuery,
  PeekSchema,
  PublishBody,
  PublishedSchema,
  ReceiptResultsSchema,
  RedriveBody,
  RedriveResultSchema,
  SeekBody,
  SeekResultSchema,
  SubscribeBody,
  SubscriptionCreatedSchema,
  SubscriptionListSchema,
  SubscriptionParams,
  SubscriptionSchema,
  TopicAckBody,
  TopicConfigInput,
  TopicConfigPatch,
  TopicCreatedSchema,
  TopicDeliveriesSchema,
  TopicListSchema,
  TopicNackBody,
  TopicParams,
  TopicReceiveBody,
  TopicSchema,
  TopicVisibilityBody,
} from "../schemas/topics.ts";

const TAG = ["topics"];

const createTopic = createRoute({
  operationId: "createTopic",
  method: "put",
  path: "/v1/topics/{name}",
  tags: TAG,
  summary: "Create a topic (idempotent for the same configuration); the caller owns it",
  security: bearer,
  request: { params: TopicParams, ...body(TopicConfigInput, false) },
  responses: {
    201: json(TopicCreatedSchema, "created"),
    200: json(TopicCreatedSchema, "it existed with this configuration"),
    ...errorResponses(403, 409),
  },
});

const configureTopic = createRoute({
  operationId: "configureTopic",
  method: "patch",
  path: "/v1/topics/{name}",
  tags: TAG,
  summary: "Change a topic's configuration (owner or admin)",
  security: bearer,
  request: { params: TopicParams, ...body(TopicConfigPatch) },
  responses: { 200: json(TopicSchema, "the topic"), ...errorResponses(403, 404) },
});

const getTopic = createRoute({
  operationId: "getTopic",
  method: "get",
  path: "/v1/topics/{name}",
  tags: TAG,
  summary: "A topic's configuration and counts",
  security: bearer,
  request: { params: TopicParams },
  responses: { 200: json(TopicSchema, "the topic"), ...errorResponses(404) },
});

const listTopics = createRoute({
  operationId: "listTopics",
  method: "get",
  path: "/v1/topics",
  tags: TAG,
  summary: "Topics by name, a page at a time",
  security: bearer,
  request: { query: ListQuery },
  responses: { 200: json(TopicListSchema, "a page of topics"), ...errorResponses() },
});

const deleteTopic = createRoute({
  operationId: "deleteTopic",
  method: "delete",
  path: "/v1/topics/{name}",
  tags: TAG,
  summary: "Delete a topic with its messages and subscriptions (owner or admin)",
  security: bearer,
  request: { params: TopicParams },
  responses: { 204: { description: "deleted" }, ...errorResponses(403, 404) },
});

const publish = createRoute({
  operationId: "publishMessages",
  method: "post",
  path: "/v1/topics/{name}/messages",
  tags: TAG,
  summary: "Publish one message or a batch (all or none); each gets the next offset",
  security: bearer,
  request: { params: TopicParams, ...body(PublishBody) },
  responses: {
    201: json(PublishedSchema, "offsets and ids, in order"),
    ...errorResponses(403, 404, 413),
  },
});

const peek = createRoute({
  operationId: "peekTopicMessages",
  method: "get",
  path: "/v1/topics/{name}/messages",
  tags: TAG,
  summary: "List retained messages from an offset without consuming them",
  security: bearer,
  request: { params: TopicParams, query: PeekQuery },
  responses: { 200: json(PeekSchema, "messages"), ...errorResponses(403, 404) },
});

const subscribe = createRoute({
  operationId: "createSubscription",
  method: "put",
  path: "/v1/topics/{name}/subscriptions/{sub}",
  tags: TAG,
  summary: "Create a named, durable subscription (idempotent for the same options)",
  security: bearer,
  request: { params: SubscriptionParams, ...body(SubscribeBody, false) },
  responses: {
    201: json(SubscriptionCreatedSchema, "created"),
    200: json(SubscriptionCreatedSchema, "it existed with these options"),
    ...errorResponses(403, 404, 409),
  },
});

const getSubscription = createRoute({
  operationId: "getSubscription",
  method: "get",
  path: "/v1/topics/{name}/subscriptions/{sub}",
  tags: TAG,
  summary: "A subscription's options and counts",
  security: bearer,
  request: { params: SubscriptionParams },
  responses: { 200: json(SubscriptionSchema, "the subscription"), ...errorResponses(403, 404) },
});

const listSubscriptions = createRoute({
  operationId: "listSubscriptions",
  method: "get",
  path: "/v1/topics/{name}/subscriptions",
  tags: TAG,
  summary: "Every subscription of a topic, by name",
  security: bearer,
  request: { params: TopicParams },
  responses: { 200: json(SubscriptionListSchema, "subscriptions"), ...errorResponses(403, 404) },
});

const unsubscribe = createRoute({
  operationId: "deleteSubscription",
  method: "delete",
  path: "/v1/topics/{name}/subscriptions/{sub}",
  tags: TAG,
  summary: "Delete a subscription (its creator, the topic owner or an admin)",
  security: bearer,
  request: { params: SubscriptionParams },
  responses: { 204: { description: "deleted" }, ...errorResponses(403, 404) },
});

function subRoute<B extends z.ZodType, R extends z.ZodType>(
  action: string,
  operationId: string,
  summary: string,
  schema: B,
  result: R,
  required = true,
) {
  return createRoute({
    operationId,
    method: "post",
    path: `/v1/topics/{name}/subscriptions/{sub}/${action}`,
    tags: TAG,
    summary,
    security: bearer,
    request: { params: SubscriptionParams, ...body(schema, required) },
    responses: { 200: json(result, "done"), ...errorResponses(403, 404) },
  });
}

const receive = subRoute(
  "receive",
  "receiveSubscriptionMessages",
  "Receive up to `max` messages, waiting up to `waitSeconds` for one",
  TopicReceiveBody,
  TopicDeliveriesSchema,
  false,
);
const ack = subRoute(
  "ack",
  "ackSubscriptionMessages",
  "Acknowledge deliveries by receipt (per-receipt results)",
  TopicAckBody,
  ReceiptResultsSchema,
);
const nack = subRoute(
  "nack",
  "nackSubscriptionMessages",
  "Release deliveries for redelivery, now or after `delaySeconds`",
  TopicNackBody,
  ReceiptResultsSchema,
);
const visibility = subRoute(
  "visibility",
  "changeSubscriptionVisibility",
  "Change the visibility deadline of deliveries",
  TopicVisibilityBody,
  ReceiptResultsSchema,
);
const seek = subRoute(
  "seek",
  "seekSubscription",
  "Move the subscription to an offset or a time; drops its in-flight and pending deliveries " +
    "(its creator, the topic owner or an admin)",
  SeekBody,
  SeekResultSchema,
);
const redrive = subRoute(
  "redrive",
  "redriveSubscriptionMessages",
  "Move dead letters back for redelivery (creator, topic owner or admin)",
  RedriveBody,
  RedriveResultSchema,
  false,
);

const peekDead = createRoute({
  operationId: "peekSubscriptionDeadLetters",
  method: "get",
  path: "/v1/topics/{name}/subscriptions/{sub}/messages",
  tags: TAG,
  summary: "List a subscription's dead letters without removing them",
  security: bearer,
  request: { params: SubscriptionParams, query: DeadPeekQuery },
  responses: { 200: json(DeadLettersSchema, "dead letters"), ...errorResponses(403, 404) },
});

/** Topic routes: topics, publishing, subscriptions and consuming. */
export function registerTopicRoutes(app: OpenAPIHono<AppEnv>, deps: ApiDeps): void {
  const topics = deps.topics;

  app.openapi(createTopic, async (c) => {
    const { name } = c.req.valid("param");
    const config = TopicConfigInput.parse(c.req.valid("json") ?? {});
    const res = await topics.create(c.get("principal"), name, config);
    const out = { ...seenBy(c.get("principal"), res.topic), created: res.created };
    return res.created ? c.json(out, 201) : c.json(out, 200);
  });

  app.openapi(configureTopic, async (c) => {
    const { name } = c.req.valid("param");
    return c.json(await topics.configure(c.get("principal"), name, c.req.valid("json")), 200);
  });

  app.openapi(getTopic, async (c) => {
    const { name } = c.req.valid("param");
    return c.json(seenBy(c.get("principal"), await topics.get(c.get("principal"), name)), 200);
  });

  app.openapi(listTopics, async (c) => {
    return c.json(await topics.list(c.req.valid("query")), 200);
  });

  app.openapi(deleteTopic, async (c) => {
    const { name } = c.req.valid("param");
    await topics.delete(c.get("principal"), name);
    return c.body(null, 204);
  });

  app.openapi(publish, async (c) => {
    const { name } = c.req.valid("param");
    const { messages } = c.req.valid("json");
    return c.json({ messages: await topics.publish(c.get("principal"), name, messages) }, 201);
  });

  app.openapi(peek, async (c) => {
    const { name } = c.req.valid("param");
    return c.json(await topics.peek(c.get("principal"), name, c.req.valid("query")), 200);
  });

  app.openapi(subscribe, async (c) => {
    const { name, sub } = c.req.valid("param");
    const opts = SubscribeBody.parse(c.req.valid("json") ?? {});
    const start = opts.start === "earliest" || opts.start === "latest"
      ? opts.start
      : { time: Date.parse(opts.start) };
    const res = await topics.subscribe(c.get("principal"), name, sub, {
      start,
      visibilityTimeoutSeconds: opts.visibilityTimeoutSeconds,
      maxDeliveries: opts.maxDeliveries,
    });
    const out = { ...res.subscription, created: res.created };
    return res.created ? c.json(out, 201) : c.json(out, 200);
  });

  app.openapi(getSubscription, async (c) => {
    const { name, sub } = c.req.valid("param");
    return c.json(await topics.getSubscription(c.get("principal"), name, sub), 200);
  });

  app.openapi(listSubscriptions, async (c) => {
    const { name } = c.req.valid("param");
    return c.json(
      { subscriptions: await topics.listSubscriptions(c.get("principal"), name) },
      200,
    );
  });

  app.openapi(unsubscribe, async (c) => {
    const { name, sub } = c.req.valid("param");
    await topics.unsubscribe(c.get("principal"), name, sub);
    return c.body(null, 204);
  });

  app.openapi(receive, async (c) => {
    const { name, sub } = c.req.valid("param");
    const opts = TopicReceiveBody.parse(c.req.valid("json") ?? {});
    const messages = await topics.receive(c.get("principal"), name, sub, {
      ...opts,
      signal: longPollSignal(c, opts.waitSeconds),
    });
    return c.json({ messages }, 200);
  });

  app.openapi(ack, async (c) => {
    const { name, sub } = c.req.valid("param");
    const { receipts } = c.req.valid("json");
    return c.json({ results: await topics.ack(c.get("principal"), name, sub, receipts) }, 200);
  });

  app.openapi(nack, async (c) => {
    const { name, sub } = c.req.valid("param");
    const { receipts, delaySeconds } = c.req.valid("json");
    const results = await topics.nack(c.get("principal"), name, sub, receipts, delaySeconds);
    return c.json({ results }, 200);
  });

  app.openapi(visibility, async (c) => {
    const { name, sub } = c.req.valid("param");
    const { receipts, visibilitySeconds } = c.req.valid("json");
    const results = await topics.changeVisibility(
      c.get("principal"),
      name,
      sub,
      receipts,
      visibilitySeconds,
    );
    return c.json({ results }, 200);
  });

  app.openapi(seek, async (c) => {
    const { name, sub } = c.req.valid("param");
    const to = c.req.valid("json");
    const target = "offset" in to ? { offset: to.offset } : { time: Date.parse(to.time) };
    return c.json(await topics.seek(c.get("principal"), name, sub, target), 200);
  });

  app.openapi(redrive, async (c) => {
    const { name, sub } = c.req.valid("param");
    const { max } = RedriveBody.parse(c.req.valid("json") ?? {});
    return c.json(await topics.redrive(c.get("principal"), name, sub, max), 200);
  });

  app.openapi(peekDead, async (c) => {
    const { name, sub } = c.req.valid("param");
    const { skip, limit } = c.req.valid("query");
    return c.json(await topics.peekDead(c.get("principal"), name, sub, { skip, limit }), 200);
  });
}
