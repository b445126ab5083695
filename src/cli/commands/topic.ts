/** `momd topic ...`: manage topics and subscriptions, publish, receive. */
import type { Subscription, SubscriptionRef, Topic, TopicConfigPatch } from "../../client/mod.ts";
import { attributes, int, need, str, UsageError, type Values } from "../args.ts";
import type { Command, Ctx, Group } from "../context.ts";
import {
  accessFrom,
  deleteCommand,
  type EntityKind,
  listCommand,
  showAccess,
} from "../entities.ts";
import { bytes, duration, keyValues, table, time } from "../output.ts";
import {
  bodyCell,
  RECEIPTS_HELP,
  receiptsFrom,
  RECEIVE_HELP,
  RECEIVE_OPTIONS,
  receiveCommand,
  releasedLine,
  settleReceipts,
  VISIBILITY_MAX,
  VISIBILITY_OPTION_HELP,
  visibilityLine,
  visibilityTimeout,
} from "../receive.ts";
import { sendInput } from "../send.ts";

const CONFIG_OPTIONS = {
  retention: { type: "string" },
  "retention-messages": { type: "string" },
  "retention-bytes": { type: "string" },
  "max-message-bytes": { type: "string" },
  "visibility-timeout": { type: "string" },
  "max-deliveries": { type: "string" },
  restricted: { type: "boolean" },
  unrestricted: { type: "boolean" },
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
  --unrestricted            any authenticated user may publish and receive (default)
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

function showSubscription(s: Subscription): string {
  return keyValues([
    ["topic", s.topic],
    ["subscription", s.name],
    ["creator", s.creator],
    ["created", time(s.createdAt)],
    ["start", s.config.start],
    ["position", s.stats.position],
    ["lag", s.stats.lag],
    ["in flight", s.stats.inFlight],
    ["pending redelivery", s.stats.pendingRedelivery],
    ["dead letters", s.stats.deadLettered],
    ["skipped", s.stats.skipped],
    ["visibility timeout", duration(s.config.visibilityTimeoutSeconds)],
    ["max deliveries", s.config.maxDeliveries],
  ]);
}

/** "subscription 'audit' of topic 'events'", for messages. */
function subLabel(ref: SubscriptionRef): string {
  return `subscription '${ref.subscription}' of topic '${ref.topic}'`;
}

/** TOPIC and SUBSCRIPTION, then the receipts (as arguments or from standard input). */
async function receiptArgs(
  ctx: Ctx,
  helpFor: string,
): Promise<{ ref: SubscriptionRef; receipts: string[] }> {
  if (ctx.positionals.length < 2) {
    throw new UsageError(
      `missing ${ctx.positionals.length ? "SUBSCRIPTION" : "TOPIC and SUBSCRIPTION"}`,
      helpFor,
    );
  }
  const [topic, subscription, ...args] = ctx.positionals;
  return { ref: { topic, subscription }, receipts: await receiptsFrom(ctx, args, helpFor) };
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

const configure: Command = {
  name: "configure",
  summary: "change some settings of a topic (owner or admin)",
  usage: "momd topic configure NAME [options]",
  help: `Changes the given settings of a topic and leaves the others as they are. A shorter
retention applies at once: the messages beyond it leave the log at the next publish or
receive (subscriptions behind them count them as skipped). --visibility-timeout and
--max-deliveries are the defaults of subscriptions created later.

Options:
${CONFIG_HELP}

Example:
  momd topic configure events --retention 3600 --retention-messages 100000`,
  options: CONFIG_OPTIONS,
  async run(ctx) {
    const [name] = need(ctx.positionals, ["NAME"], "topic configure");
    const patch = configFrom(ctx.values);
    if (Object.keys(patch).length === 0) {
      throw new UsageError("nothing to change: give at least one option", "topic configure");
    }
    const t = await (await ctx.client()).topics.configure(name, patch);
    if (ctx.json) return void await ctx.printJson(t);
    await ctx.out(showTopic(t));
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

const subscription: Command = {
  name: "subscription",
  summary: "show one subscription's position, counts and settings",
  usage: "momd topic subscription TOPIC SUBSCRIPTION",
  help: `Shows a subscription: its creator, start, position and lag, deliveries in flight and
pending redelivery, dead letters, messages skipped (retention took them first), and its
visibility timeout and max deliveries.`,
  async run(ctx) {
    const [topic, subscription] = need(
      ctx.positionals,
      ["TOPIC", "SUBSCRIPTION"],
      "topic subscription",
    );
    const s = await (await ctx.client()).topics.getSubscription({ topic, subscription });
    if (ctx.json) return void await ctx.printJson(s);
    await ctx.out(showSubscription(s));
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
  usage: "momd topic ack TOPIC SUBSCRIPTION [RECEIPT...]",
  help: `Acknowledges deliveries of a subscription by the receipts receive printed.

${RECEIPTS_HELP}

Example:
  momd topic receive events audit --max 10 --json | momd topic ack events audit`,
  async run(ctx) {
    const { ref, receipts } = await receiptArgs(ctx, "topic ack");
    const client = await ctx.client();
    return await settleReceipts(ctx, receipts, {
      settle: (batch) => client.topics.ack(ref, batch),
      done: (ok) => `acknowledged ${ok} message(s)\n`,
    });
  },
};

const nack: Command = {
  name: "nack",
  summary: "release deliveries of a subscription for redelivery",
  usage: "momd topic nack TOPIC SUBSCRIPTION [RECEIPT...] [--delay SECS]",
  help: `Releases deliveries of a subscription without acknowledging them: their messages are
delivered again, at once or after --delay. The release counts as a delivery attempt: a message
that has had the subscription's max deliveries goes to its dead letters instead.

${RECEIPTS_HELP}

Options:
  --delay SECS   deliver again after this delay, 0-${VISIBILITY_MAX} (default 0: at once)

Example:
  momd topic nack events audit MTIuX3...  --delay 60`,
  options: { delay: { type: "string" } },
  async run(ctx) {
    const delaySeconds = int(ctx.values, "delay", { max: VISIBILITY_MAX });
    const { ref, receipts } = await receiptArgs(ctx, "topic nack");
    const client = await ctx.client();
    return await settleReceipts(ctx, receipts, {
      settle: (batch) => client.topics.nack(ref, batch, { delaySeconds }),
      done: (ok) => releasedLine(ok, delaySeconds),
    });
  },
};

const visibility: Command = {
  name: "visibility",
  summary: "extend or shorten the visibility timeout of deliveries of a subscription",
  usage: "momd topic visibility TOPIC SUBSCRIPTION [RECEIPT...] --timeout SECS",
  help: `Moves the visibility deadline of deliveries of a subscription to --timeout seconds from
now: more time for long work (the receipts stay valid), or less. 0 ends the deliveries at once:
their messages may be delivered again.

${RECEIPTS_HELP}

Options:
${VISIBILITY_OPTION_HELP}

Example:
  momd topic visibility events audit MTIuX3... --timeout 600`,
  options: { timeout: { type: "string" } },
  async run(ctx) {
    const timeout = visibilityTimeout(ctx, "topic visibility");
    const { ref, receipts } = await receiptArgs(ctx, "topic visibility");
    const client = await ctx.client();
    return await settleReceipts(ctx, receipts, {
      settle: (batch) =>
        client.topics.changeVisibility(ref, { receipts: batch, visibilitySeconds: timeout }),
      done: (ok) => visibilityLine(ok, timeout),
    });
  },
};

const deadLetters: Command = {
  name: "dead-letters",
  summary: "list a subscription's dead letters",
  usage: "momd topic dead-letters TOPIC SUBSCRIPTION [--limit N] [--offset N]",
  help: `Lists the dead letters of a subscription, oldest first, without removing them: the
messages delivered its max deliveries times without an ack. 'momd topic redrive' delivers
them again. With --json, the API's answer: {"messages": [...], "total"}.

Options:
  --limit N    at most N messages, 1-100 (default 10)
  --offset N   skip the first N (default 0)`,
  options: { limit: { type: "string" }, offset: { type: "string" } },
  async run(ctx) {
    const [topic, subscription] = need(
      ctx.positionals,
      ["TOPIC", "SUBSCRIPTION"],
      "topic dead-letters",
    );
    const ref = { topic, subscription };
    const res = await (await ctx.client()).topics.deadLetters(ref, {
      limit: int(ctx.values, "limit", { min: 1, max: 100 }),
      skip: int(ctx.values, "offset"),
    });
    if (ctx.json) return void await ctx.printJson(res);
    if (res.messages.length === 0) {
      const none = res.total ? `no more dead letters (${res.total} in all)` : "no dead letters";
      return void await ctx.err(`${none} in ${subLabel(ref)}\n`);
    }
    await ctx.out(table(
      ["OFFSET", "DELIVERIES", "DEAD SINCE", "KEY", "BODY"],
      res.messages.map((m) => [
        m.offset,
        m.deliveryCount,
        time(m.deadLetteredAt),
        m.key,
        bodyCell(m.body),
      ]),
    ));
    if (res.total > res.messages.length) {
      await ctx.err(`${res.messages.length} of ${res.total} dead letter(s) shown\n`);
    }
  },
};

const redrive: Command = {
  name: "redrive",
  summary: "deliver a subscription's dead letters again (creator, owner, admin)",
  usage: "momd topic redrive TOPIC SUBSCRIPTION [--max N]",
  help: `Moves dead letters of a subscription back for redelivery, oldest first, with their
delivery counts reset (its creator, the topic's owner or an admin). Those whose message
retention took meanwhile are dropped and counted as expired.

Options:
  --max N   move at most N (default: up to 10000)`,
  options: { max: { type: "string" } },
  async run(ctx) {
    const [topic, subscription] = need(
      ctx.positionals,
      ["TOPIC", "SUBSCRIPTION"],
      "topic redrive",
    );
    const ref = { topic, subscription };
    const max = int(ctx.values, "max", { min: 1, max: 10_000 });
    const res = await (await ctx.client()).topics.redrive(ref, max ? { max } : {});
    if (ctx.json) return void await ctx.printJson(res);
    await ctx.out(
      `moved ${res.moved} dead letter(s) back to ${subLabel(ref)}` +
        (res.expired ? `, ${res.expired} expired on the way` : "") +
        `; ${res.remaining} left\n`,
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
    configure,
    del,
    publish,
    peek,
    subscribe,
    unsubscribe,
    subscriptions,
    subscription,
    receive,
    ack,
    nack,
    visibility,
    seek,
    deadLetters,
    redrive,
  ],
};
