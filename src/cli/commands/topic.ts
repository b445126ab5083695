/** `momd topic ...`: manage topics and subscriptions, publish, receive. */
import type { Subscription, Topic, TopicConfigPatch } from "../../client/mod.ts";
import { attributes, int, need, str, UsageError, type Values } from "../args.ts";
import type { Command, Group } from "../context.ts";
import {
  accessFrom,
  deleteCommand,
  type EntityKind,
  listCommand,
  reportAck,
  showAccess,
} from "../entities.ts";
import { bytes, duration, keyValues, table, time } from "../output.ts";
import { bodyCell, RECEIVE_HELP, RECEIVE_OPTIONS, receiveCommand } from "../receive.ts";
import { sendInput } from "../send.ts";

const CONFIG_OPTIONS = {
  retention: { type: "string" },
  "retention-messages": { type: "string" },
  "retention-bytes": { type: "string" },
  "max-message-bytes": { type: "string" },
  "visibility-timeout": { type: "string" },
  "max-deliveries": { type: "string" },
  restricted: { type: "boolean" },
  sender: { type: "string", multiple: true },
  receiver: { type: "string", multiple: true },
} as const;

const CONFIG_HELP =
  `  --retention SECS          messages older than this leave the log (0: no age limit)
  --retention-messages N    keep at most N messages (0: no count limit)
  --retention-bytes N       keep at most N bytes of messages (0: no size limit)
  --max-message-bytes N     largest message
  --visibility-timeout SECS default visibility timeout of new subscriptions
  --max-deliveries N        default deliveries before dead-lettering, for new subscriptions
  --restricted              only the owner, admins and the listed users may publish/receive
  --sender USER             may publish when restricted (repeat for several)
  --receiver USER           may subscribe and receive when restricted (repeat for several)`;

function configFrom(values: Values): TopicConfigPatch {
  const out: TopicConfigPatch = {};
  const set = <K extends keyof TopicConfigPatch>(k: K, v: TopicConfigPatch[K] | undefined) => {
    if (v !== undefined) out[k] = v;
  };
  set("retentionSeconds", int(values, "retention"));
  set("retentionMaxMessages", int(values, "retention-messages"));
  set("retentionMaxBytes", int(values, "retention-bytes"));
  set("maxMessageBytes", int(values, "max-message-bytes", { min: 1 }));
  set("visibilityTimeoutSeconds", int(values, "visibility-timeout"));
  set("maxDeliveries", int(values, "max-deliveries", { min: 1 }));
  const access = accessFrom(values);
  if (Object.keys(access).length) out.access = access;
  return out;
}

const TOPICS: EntityKind = {
  name: "topic",
  listAll: (client, opts) => client.topics.listAll(opts),
  delete: (client, name) => client.topics.delete(name),
};

function limit(n: number, show: (n: number) => string): string {
  return n === 0 ? "none" : show(n);
}

function showTopic(t: Topic): string {
  const c = t.config;
  const s = t.stats;
  return keyValues([
    ["name", t.name],
    ["owner", t.owner],
    ["created", time(t.createdAt)],
    [
      "messages",
      `${s.messages} (offsets ${s.firstOffset}-${Math.max(s.firstOffset, s.nextOffset - 1)})`,
    ],
    ["next offset", s.nextOffset],
    ["size", bytes(s.bytes)],
    ["subscriptions", s.subscriptions],
    [
      "retention",
      `age ${limit(c.retentionSeconds, duration)}, count ${
        limit(c.retentionMaxMessages, String)
      }, size ${limit(c.retentionMaxBytes, bytes)}`,
    ],
    ["max message size", bytes(c.maxMessageBytes)],
    ["visibility timeout", duration(c.visibilityTimeoutSeconds)],
    ["max deliveries", c.maxDeliveries],
    ["access", showAccess(c.access)],
  ]);
}

function subscriptionTable(subs: Subscription[]): string {
  return table(
    ["SUBSCRIPTION", "POSITION", "LAG", "IN FLIGHT", "REDELIVER", "DEAD", "SKIPPED", "CREATOR"],
    subs.map((s) => [
      s.name,
      s.stats.position,
      s.stats.lag,
      s.stats.inFlight,
      s.stats.pendingRedelivery,
      s.stats.deadLettered,
      s.stats.skipped,
      s.creator,
    ]),
  );
}

const create: Command = {
  name: "create",
  summary: "create a topic (same configuration again: no change)",
  usage: "momd topic create NAME [options]",
  help: `Creates a topic owned by you. Creating it again with the same configuration changes
nothing; with another one it is refused (409).

Options:
${CONFIG_HELP}

Example:
  momd topic create events --retention 86400`,
  options: CONFIG_OPTIONS,
  async run(ctx) {
    const [name] = need(ctx.positionals, ["NAME"], "topic create");
    const t = await (await ctx.client()).topics.create(name, configFrom(ctx.values));
    if (ctx.json) return void await ctx.printJson(t);
    await ctx.out(t.created ? `created topic '${name}'\n` : `topic '${name}' exists already\n`);
  },
};

const get: Command = {
  name: "get",
  summary: "show a topic's settings, counts and subscriptions",
  usage: "momd topic get NAME",
  help: "Shows a topic's owner, offsets, retention, settings and its subscriptions.",
  async run(ctx) {
    const [name] = need(ctx.positionals, ["NAME"], "topic get");
    const client = await ctx.client();
    const t = await client.topics.get(name);
    const subs = await client.topics.listSubscriptions(name).catch(() => null);
    if (ctx.json) return void await ctx.printJson({ ...t, subscriptions: subs ?? undefined });
    await ctx.out(showTopic(t));
    if (subs?.length) await ctx.out("\n" + subscriptionTable(subs));
  },
};

const del = deleteCommand(TOPICS, {
  summary: "delete a topic, its messages and subscriptions (owner or admin)",
  help: "Deletes a topic with its messages and every subscription.",
});

const publish: Command = {
  name: "publish",
  summary: "publish messages from arguments, a file or standard input",
  usage: "momd topic publish NAME [BODY...] [--file PATH] [--key KEY] [--attr NAME=VALUE]",
  help: `Publishes each BODY argument as a message, in batches of 100 (each all or none, at
consecutive offsets). Without arguments, each line of --file PATH (or of standard input:
'--file -', or anything piped in) is one message, published over a producer stream as it is
read (batches of 100 when the server has no streams). Blank lines are skipped. A publish is
never repeated (topics have no de-duplication ids): after a failure nothing more is sent and
the command says which lines were published; a publish in flight when the connection was
lost may or may not have been stored (504 outcome_unknown). With --json, one line per
message: {"line", "offset", "id", ...}.

Options:
  --file PATH         read messages from PATH, one per line ('-': standard input)
  --key KEY           key of every message
  --attr NAME=VALUE   attribute of every message (repeat for several)

Examples:
  momd topic publish events "user signed up"
  tail -f app.log | momd topic publish logs`,
  options: {
    file: { type: "string" },
    key: { type: "string" },
    attr: { type: "string", multiple: true },
  },
  async run(ctx) {
    if (ctx.positionals.length < 1) throw new UsageError("missing NAME", "topic publish");
    const [name, ...bodies] = ctx.positionals;
    const key = str(ctx.values, "key");
    const attrs = attributes(ctx.values);
    const client = await ctx.client();
    await sendInput(ctx, bodies, {
      label: `topic '${name}'`,
      batchSize: 100,
      producer() {
        const producer = client.topics.producer(name);
        return {
          connect: () => producer.connect(),
          send: (body) => producer.send({ body, key, attributes: attrs }),
          close: () => producer.close(),
        };
      },
      send: (lines) =>
        client.topics.publishBatch(name, lines.map((body) => ({ body, key, attributes: attrs }))),
    });
  },
};

const peek: Command = {
  name: "peek",
  summary: "list retained messages from an offset",
  usage: "momd topic peek NAME [--from OFFSET] [--limit N]",
  help: `Lists retained messages without consuming them.

Options:
  --from OFFSET   first offset (default: the oldest retained)
  --limit N       at most N messages, 1-100 (default 10)`,
  options: { from: { type: "string" }, limit: { type: "string" } },
  async run(ctx) {
    const [name] = need(ctx.positionals, ["NAME"], "topic peek");
    const res = await (await ctx.client()).topics.peek(name, {
      from: int(ctx.values, "from"),
      limit: int(ctx.values, "limit", { min: 1, max: 100 }),
    });
    if (ctx.json) return void await ctx.printJson(res);
    if (res.messages.length === 0) return void await ctx.err(`no messages in '${name}'\n`);
    await ctx.out(table(
      ["OFFSET", "PUBLISHED", "PUBLISHER", "KEY", "BODY"],
      res.messages.map((
        m,
      ) => [m.offset, time(m.publishedAt), m.publisher, m.key, bodyCell(m.body)]),
    ));
  },
};

const subscribe: Command = {
  name: "subscribe",
  summary: "create a named, durable subscription",
  usage: "momd topic subscribe TOPIC SUBSCRIPTION [--start earliest|latest|TIME] [options]",
  help: `Creates a subscription: it sees every message of the topic from its start on, and its
consumers share its messages (each acknowledges what it receives).

Options:
  --start WHERE             earliest retained message, latest (the next one published; the
                            default), or the first published at or after an ISO 8601 TIME
  --visibility-timeout SECS visibility timeout of its deliveries (default: the topic's)
  --max-deliveries N        deliveries before dead-lettering (default: the topic's)

Example:
  momd topic subscribe events audit --start earliest`,
  options: {
    start: { type: "string" },
    "visibility-timeout": { type: "string" },
    "max-deliveries": { type: "string" },
  },
  async run(ctx) {
    const [topic, subscription] = need(
      ctx.positionals,
      ["TOPIC", "SUBSCRIPTION"],
      "topic subscribe",
    );
    const start = str(ctx.values, "start");
    if (
      start !== undefined && start !== "earliest" && start !== "latest" && isNaN(Date.parse(start))
    ) {
      throw new UsageError(`--start must be earliest, latest or an ISO 8601 time (got '${start}')`);
    }
    const s = await (await ctx.client()).topics.subscribe({ topic, subscription }, {
      start,
      visibilityTimeoutSeconds: int(ctx.values, "visibility-timeout"),
      maxDeliveries: int(ctx.values, "max-deliveries", { min: 1 }),
    });
    if (ctx.json) return void await ctx.printJson(s);
    await ctx.out(
      s.created
        ? `subscribed '${subscription}' to topic '${topic}' from offset ${s.stats.position}\n`
        : `subscription '${subscription}' of topic '${topic}' exists already\n`,
    );
  },
};

const unsubscribe: Command = {
  name: "unsubscribe",
  summary: "delete a subscription",
  usage: "momd topic unsubscribe TOPIC SUBSCRIPTION",
  help: "Deletes a subscription (its creator, the topic's owner or an admin).",
  async run(ctx) {
    const [topic, subscription] = need(
      ctx.positionals,
      ["TOPIC", "SUBSCRIPTION"],
      "topic unsubscribe",
    );
    await (await ctx.client()).topics.unsubscribe({ topic, subscription });
    if (ctx.json) return void await ctx.printJson({ deleted: { topic, subscription } });
    await ctx.out(`deleted subscription '${subscription}' of topic '${topic}'\n`);
  },
};

const subscriptions: Command = {
  name: "subscriptions",
  summary: "list a topic's subscriptions with their positions",
  usage: "momd topic subscriptions TOPIC",
  help: "Lists the subscriptions of a topic: position, lag, in flight, dead letters.",
  async run(ctx) {
    const [topic] = need(ctx.positionals, ["TOPIC"], "topic subscriptions");
    const subs = await (await ctx.client()).topics.listSubscriptions(topic);
    if (ctx.json) return void await ctx.printJson({ subscriptions: subs });
    if (subs.length === 0) return void await ctx.out(`topic '${topic}' has no subscriptions\n`);
    await ctx.out(subscriptionTable(subs));
  },
};

const receive: Command = {
  name: "receive",
  summary: "receive messages of a subscription (--ack, --follow)",
  usage:
    "momd topic receive TOPIC SUBSCRIPTION [--max N] [--wait SECS] [--ack|--no-ack] [--follow]",
  help: `Receives messages of a subscription and prints them. Unacknowledged ones stay in flight
until their visibility timeout ends, then are delivered again. --follow prints them as they
come (over a stream when the server has one) and acknowledges each once printed unless
--no-ack. With --json, one line per message.

Options:
${RECEIVE_HELP}

Example:
  momd topic receive events audit --follow`,
  options: RECEIVE_OPTIONS,
  async run(ctx) {
    const [topic, subscription] = need(ctx.positionals, ["TOPIC", "SUBSCRIPTION"], "topic receive");
    const ref = { topic, subscription };
    const client = await ctx.client();
    await receiveCommand(ctx, {
      label: `subscription '${subscription}' of topic '${topic}'`,
      receive: (opts) => client.topics.receive(ref, opts),
      ack: (ms) => client.topics.ack(ref, ms),
      stream: (options) => client.topics.stream(ref, options),
      headers: ["OFFSET", "DELIVERY", "KEY"],
      row: (m) => [m.offset, m.deliveryCount, m.key],
      body: (m) => m.body,
    });
  },
};

const seek: Command = {
  name: "seek",
  summary: "move a subscription to an offset or a time",
  usage: "momd topic seek TOPIC SUBSCRIPTION (--offset N | --time TIME)",
  help: `Moves a subscription's position (its creator, the topic's owner or an admin): the next
receive starts there. Its deliveries in flight and pending redeliveries are dropped (their
receipts turn stale); dead letters stay. An offset outside the retained messages moves to the
nearest end of them, and the command says so.

Options:
  --offset N   the offset of the next message to deliver
  --time TIME  the first message published at or after an ISO 8601 TIME

Example:
  momd topic seek events audit --offset 0`,
  options: { offset: { type: "string" }, time: { type: "string" } },
  async run(ctx) {
    const [topic, subscription] = need(ctx.positionals, ["TOPIC", "SUBSCRIPTION"], "topic seek");
    const offset = int(ctx.values, "offset");
    const at = str(ctx.values, "time");
    if ((offset === undefined) === (at === undefined)) {
      throw new UsageError("give one of --offset and --time", "topic seek");
    }
    if (at !== undefined && isNaN(Date.parse(at))) {
      throw new UsageError(`--time must be an ISO 8601 time (got '${at}')`, "topic seek");
    }
    const target = offset !== undefined ? { offset } : { time: new Date(at!).toISOString() };
    const res = await (await ctx.client()).topics.seek({ topic, subscription }, target);
    if (ctx.json) return void await ctx.printJson(res);
    const where = `subscription '${subscription}' of topic '${topic}'`;
    let text = `moved ${where} to offset ${res.position}`;
    if (res.clamped) {
      text += ` (offset ${res.requestedOffset} is outside the retained messages: moved to the ` +
        `nearest end)`;
    }
    text += `; ${res.dropped} delivery(ies) in flight or pending dropped\n`;
    await ctx.out(text);
  },
};

const ack: Command = {
  name: "ack",
  summary: "acknowledge deliveries of a subscription by receipt",
  usage: "momd topic ack TOPIC SUBSCRIPTION RECEIPT...",
  help: "Acknowledges deliveries of a subscription by the receipts receive printed.",
  async run(ctx) {
    if (ctx.positionals.length < 3) {
      throw new UsageError("missing TOPIC, SUBSCRIPTION or RECEIPT", "topic ack");
    }
    const [topic, subscription, ...receipts] = ctx.positionals;
    return await reportAck(
      ctx,
      await (await ctx.client()).topics.ack({ topic, subscription }, receipts),
    );
  },
};

/** The `topic` command group. */
export const topicGroup: Group = {
  name: "topic",
  summary: "manage topics and subscriptions, publish and receive",
  help: "Publish/subscribe: every subscription of a topic sees every message, at its offset.",
  commands: [
    create,
    listCommand(TOPICS),
    get,
    del,
    publish,
    peek,
    subscribe,
    unsubscribe,
    subscriptions,
    receive,
    ack,
    seek,
  ],
};
