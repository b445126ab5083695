/** `momd queue ...`: manage queues, send, receive, peek, redrive. */
import type { OutgoingMessage, QueueConfigPatch, QueueDetail } from "../../client/mod.ts";
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
  VISIBILITY_OPTION_HELP,
  visibilityLine,
  visibilityTimeout,
} from "../receive.ts";
import { sendInput } from "../send.ts";

const CONFIG_OPTIONS = {
  "visibility-timeout": { type: "string" },
  "max-deliveries": { type: "string" },
  retention: { type: "string" },
  "max-length": { type: "string" },
  overflow: { type: "string" },
  delay: { type: "string" },
  "max-message-bytes": { type: "string" },
  "dedup-window": { type: "string" },
  restricted: { type: "boolean" },
  unrestricted: { type: "boolean" },
  sender: { type: "string", multiple: true },
  receiver: { type: "string", multiple: true },
} as const;

const CONFIG_HELP =
  `  --visibility-timeout SECS   how long a delivery waits for its ack (default 30)
  --max-deliveries N          deliveries before a message is dead-lettered (default 5)
  --retention SECS            message time to live, 60-1209600 (default 345600, 4 days)
  --max-length N              most messages held (default 1000000)
  --overflow reject|dropHead  when full: refuse sends (default) or drop the oldest
  --delay SECS                default delivery delay, 0-900 (default 0)
  --max-message-bytes N       largest message (default 262144)
  --dedup-window SECS         how long a dedupId is remembered, 0-86400 (default 300)
  --restricted                only the owner, admins and the listed users may send/receive
  --unrestricted              any authenticated user may send and receive (default)
  --sender USER               may send when restricted (repeat for several)
  --receiver USER             may receive when restricted (repeat for several)`;

/** The configuration fields given on the command line (absent ones left out). */
function configFrom(values: Values): QueueConfigPatch {
  const out: QueueConfigPatch = {};
  const n = (flag: string, opts: { min?: number; max?: number } = {}) => int(values, flag, opts);
  const set = <K extends keyof QueueConfigPatch>(k: K, v: QueueConfigPatch[K] | undefined) => {
    if (v !== undefined) out[k] = v;
  };
  set("visibilityTimeoutSeconds", n("visibility-timeout", { min: 1 }));
  set("maxDeliveries", n("max-deliveries", { min: 1 }));
  set("retentionSeconds", n("retention", { min: 1 }));
  set("maxLength", n("max-length", { min: 1 }));
  set("delaySeconds", n("delay"));
  set("maxMessageBytes", n("max-message-bytes", { min: 1 }));
  set("dedupWindowSeconds", n("dedup-window"));
  const overflow = str(values, "overflow");
  if (overflow !== undefined) {
    if (overflow !== "reject" && overflow !== "dropHead") {
      throw new UsageError(`--overflow must be reject or dropHead (got '${overflow}')`);
    }
    out.overflow = overflow;
  }
  const access = accessFrom(values);
  if (Object.keys(access).length) out.access = access;
  return out;
}

const QUEUES: EntityKind = {
  name: "queue",
  listAll: (client, opts) => client.queues.listAll(opts),
  delete: (client, name) => client.queues.delete(name),
};

function showQueue(q: Omit<QueueDetail, "stats"> & Partial<Pick<QueueDetail, "stats">>): string {
  const c = q.config;
  const pairs: [string, string | number | null][] = [
    ["name", q.name],
    ["owner", q.owner],
    ["created", time(q.createdAt)],
  ];
  if (q.stats) {
    const s = q.stats;
    pairs.push(
      ["ready", s.depth],
      ["in flight", s.inFlight],
      ["delayed", s.delayed],
      ["dead letters", s.deadLettered],
      [
        "oldest message",
        s.oldestMessageAgeSeconds === null ? "-" : duration(s.oldestMessageAgeSeconds),
      ],
      [
        "totals",
        `sent ${s.totals.sent}, delivered ${s.totals.delivered}, acked ${s.totals.acked}, ` +
        `dead-lettered ${s.totals.deadLettered}, expired ${s.totals.expired}`,
      ],
    );
  }
  pairs.push(
    ["visibility timeout", duration(c.visibilityTimeoutSeconds)],
    ["max deliveries", c.maxDeliveries],
    ["retention", duration(c.retentionSeconds)],
    ["max length", `${c.maxLength} (${c.overflow} when full)`],
    ["delay", duration(c.delaySeconds)],
    ["max message size", bytes(c.maxMessageBytes)],
    ["dedup window", duration(c.dedupWindowSeconds)],
    ["access", showAccess(c.access)],
  );
  return keyValues(pairs);
}

const create: Command = {
  name: "create",
  summary: "create a queue (same configuration again: no change)",
  usage: "momd queue create NAME [options]",
  help: `Creates a queue owned by you. Creating it again with the same configuration changes
nothing; with another one it is refused (409): use 'momd queue configure'.

Options:
${CONFIG_HELP}

Example:
  momd queue create jobs --visibility-timeout 60 --max-deliveries 3`,
  options: CONFIG_OPTIONS,
  async run(ctx) {
    const [name] = need(ctx.positionals, ["NAME"], "queue create");
    const q = await (await ctx.client()).queues.create(name, configFrom(ctx.values));
    if (ctx.json) return void await ctx.printJson(q);
    await ctx.out(q.created ? `created queue '${name}'\n` : `queue '${name}' exists already\n`);
  },
};

const configure: Command = {
  name: "configure",
  summary: "change some settings of a queue (owner or admin)",
  usage: "momd queue configure NAME [options]",
  help: `Changes the given settings of a queue and leaves the others as they are.

Options:
${CONFIG_HELP}`,
  options: CONFIG_OPTIONS,
  async run(ctx) {
    const [name] = need(ctx.positionals, ["NAME"], "queue configure");
    const patch = configFrom(ctx.values);
    if (Object.keys(patch).length === 0) {
      throw new UsageError("nothing to change: give at least one option", "queue configure");
    }
    const q = await (await ctx.client()).queues.configure(name, patch);
    if (ctx.json) return void await ctx.printJson(q);
    await ctx.out(showQueue(q));
  },
};

const get: Command = {
  name: "get",
  summary: "show a queue's settings and counts",
  usage: "momd queue get NAME",
  help: "Shows a queue's owner, counts (ready, in flight, delayed, dead letters) and settings.",
  async run(ctx) {
    const [name] = need(ctx.positionals, ["NAME"], "queue get");
    const q = await (await ctx.client()).queues.get(name);
    if (ctx.json) return void await ctx.printJson(q);
    await ctx.out(showQueue(q));
  },
};

const del = deleteCommand(QUEUES, {
  summary: "delete a queue and its messages (owner or admin)",
  help: "Deletes a queue with every message it holds, dead letters included.",
});

const purge: Command = {
  name: "purge",
  summary: "drop a queue's messages, keep the queue (owner or admin)",
  usage: "momd queue purge NAME [--dead-letters]",
  help: `Drops the ready, delayed and in-flight messages of a queue.

Options:
  --dead-letters   drop the dead letters too (default: kept)`,
  options: { "dead-letters": { type: "boolean" } },
  async run(ctx) {
    const [name] = need(ctx.positionals, ["NAME"], "queue purge");
    const res = await (await ctx.client()).queues.purge(name, {
      deadLetters: ctx.values["dead-letters"] === true,
    });
    if (ctx.json) return void await ctx.printJson(res);
    await ctx.out(`purged ${res.purged} message(s) from queue '${name}'\n`);
  },
};

const redrive: Command = {
  name: "redrive",
  summary: "move dead letters back to the queue (owner or admin)",
  usage: "momd queue redrive NAME [--max N]",
  help: `Moves dead letters back to ready, oldest first, with their delivery counts reset.

Options:
  --max N   move at most N (default: up to 10000)`,
  options: { max: { type: "string" } },
  async run(ctx) {
    const [name] = need(ctx.positionals, ["NAME"], "queue redrive");
    const max = int(ctx.values, "max", { min: 1, max: 10_000 });
    const res = await (await ctx.client()).queues.redrive(name, max ? { max } : {});
    if (ctx.json) return void await ctx.printJson(res);
    await ctx.out(
      `moved ${res.moved} dead letter(s) back to '${name}'` +
        (res.expired ? `, ${res.expired} expired on the way` : "") +
        `; ${res.remaining} left\n`,
    );
  },
};

const peek: Command = {
  name: "peek",
  summary: "list messages without consuming them",
  usage: "momd queue peek NAME [--state ready|delayed|inflight|dead] [--limit N] [--offset N]",
  help: `Lists messages of a queue without receiving them (needs the receive right).

Options:
  --state STATE   ready (default, in delivery order), delayed, inflight or dead
  --limit N       at most N messages, 1-100 (default 10)
  --offset N      skip the first N (default 0)`,
  options: { state: { type: "string" }, limit: { type: "string" }, offset: { type: "string" } },
  async run(ctx) {
    const [name] = need(ctx.positionals, ["NAME"], "queue peek");
    const state = str(ctx.values, "state") ?? "ready";
    if (!["ready", "delayed", "inflight", "dead"].includes(state)) {
      throw new UsageError(`--state must be ready, delayed, inflight or dead (got '${state}')`);
    }
    const messages = await (await ctx.client()).queues.peek(name, {
      state: state as "ready",
      limit: int(ctx.values, "limit", { min: 1, max: 100 }),
      offset: int(ctx.values, "offset"),
    });
    if (ctx.json) return void await ctx.printJson({ messages });
    if (messages.length === 0) return void await ctx.err(`no ${state} messages in '${name}'\n`);
    await ctx.out(table(
      ["ID", "STATE", "DELIVERIES", "SENT", "BODY"],
      messages.map((m) => [m.id, m.state, m.deliveryCount, time(m.enqueuedAt), bodyCell(m.body)]),
    ));
  },
};

const send: Command = {
  name: "send",
  summary: "send messages from arguments, a file or standard input",
  usage: "momd queue send NAME [BODY...] [--file PATH] [options]",
  help: `Sends each BODY argument as a message, in batches of 100 (each stored all or none).
Without arguments, each line of --file PATH (or of standard input: '--file -', or anything
piped in) is one message, sent over a producer stream as it is read (many in flight, each
answered; batches of 100 when the server has no streams). Blank lines are skipped. A terminal
shows a progress line for long inputs. With --json, one line per message: {"line", "id",
"duplicate"}.

Every message gets a de-duplication id, so a send whose answer was lost (a dropped
connection, a 504) is sent again and stored once. --dedup-prefix gives line N the id
PREFIX-N, which also makes running the same command again after a failure safe within the
queue's dedup window. After a failure nothing more is sent, and the command says how far it
got.

Options:
  --file PATH           read messages from PATH, one per line ('-': standard input)
  --attr NAME=VALUE     attribute of every message (repeat for several)
  --delay SECS          deliver after this delay, 0-900
  --ttl SECS            time to live (default: the queue's retention)
  --dedup-id ID         de-duplication id (a single message only)
  --dedup-prefix PREFIX de-duplication id PREFIX-N for the message of line/argument N

Examples:
  momd queue send jobs "hello" "world"
  seq 1 10000 | momd queue send jobs
  momd queue send jobs --file orders.txt --dedup-prefix orders-2026-01-01`,
  options: {
    file: { type: "string" },
    attr: { type: "string", multiple: true },
    delay: { type: "string" },
    ttl: { type: "string" },
    "dedup-id": { type: "string" },
    "dedup-prefix": { type: "string" },
  },
  async run(ctx) {
    if (ctx.positionals.length < 1) throw new UsageError("missing NAME", "queue send");
    const [name, ...bodies] = ctx.positionals;
    const dedupId = str(ctx.values, "dedup-id");
    const prefix = str(ctx.values, "dedup-prefix");
    if (dedupId !== undefined && (bodies.length !== 1 || prefix !== undefined)) {
      throw new UsageError("--dedup-id goes with exactly one BODY argument (see --dedup-prefix)");
    }
    const common: Omit<OutgoingMessage, "body"> = {
      attributes: attributes(ctx.values),
      delaySeconds: int(ctx.values, "delay", { max: 900 }),
      ttlSeconds: int(ctx.values, "ttl", { min: 1 }),
    };
    const client = await ctx.client();
    const dedupOf = (line: number) =>
      dedupId ?? (prefix !== undefined ? `${prefix}-${line}` : undefined);
    await sendInput(ctx, bodies, {
      label: `queue '${name}'`,
      batchSize: 100,
      producer() {
        const producer = client.queues.producer(name);
        return {
          connect: () => producer.connect(),
          send: (body, line) => producer.send({ body, ...common, dedupId: dedupOf(line) }),
          close: () => producer.close(),
        };
      },
      send: (lines, numbers) =>
        client.queues.sendBatch(
          name,
          lines.map((body, i) => ({
            body,
            ...common,
            dedupId: dedupOf(numbers[i]),
          })),
        ),
    });
  },
};

const receive: Command = {
  name: "receive",
  summary: "receive messages (--ack, --follow)",
  usage: "momd queue receive NAME [--max N] [--wait SECS] [--ack|--no-ack] [--follow]",
  help: `Receives messages and prints them. Unacknowledged ones stay in flight until their
visibility timeout ends, then are delivered again. --follow prints them as they come (over a
stream when the server has one) and acknowledges each once printed unless --no-ack. With
--json, one line per message (the delivery as the API returns it).

Options:
${RECEIVE_HELP}

Examples:
  momd queue receive jobs --max 10 --ack
  momd queue receive jobs --follow --json
  momd queue receive jobs --follow --no-ack`,
  options: RECEIVE_OPTIONS,
  async run(ctx) {
    const [name] = need(ctx.positionals, ["NAME"], "queue receive");
    const client = await ctx.client();
    await receiveCommand(ctx, {
      label: `queue '${name}'`,
      receive: (opts) => client.queues.receive(name, opts),
      ack: (ms) => client.queues.ack(name, ms),
      stream: (options) => client.queues.stream(name, options),
      headers: ["ID", "DELIVERY"],
      row: (m) => [m.id, m.deliveryCount],
      body: (m) => m.body,
    });
  },
};

/** Longest nack delay of a queue (the server's limit). */
const NACK_DELAY_MAX = 900;

const ack: Command = {
  name: "ack",
  summary: "acknowledge deliveries by receipt",
  usage: "momd queue ack NAME [RECEIPT...]",
  help: `Acknowledges deliveries (their messages are deleted) by the receipts receive printed.

${RECEIPTS_HELP}

Examples:
  momd queue ack jobs MDFNODNW...
  momd queue receive jobs --max 10 --json | momd queue ack jobs`,
  async run(ctx: Ctx) {
    if (ctx.positionals.length < 1) throw new UsageError("missing NAME", "queue ack");
    const [name, ...args] = ctx.positionals;
    const receipts = await receiptsFrom(ctx, args, "queue ack");
    const client = await ctx.client();
    return await settleReceipts(ctx, receipts, {
      settle: (batch) => client.queues.ack(name, batch),
      done: (ok) => `acknowledged ${ok} message(s)\n`,
    });
  },
};

const nack: Command = {
  name: "nack",
  summary: "release deliveries for redelivery by receipt",
  usage: "momd queue nack NAME [RECEIPT...] [--delay SECS]",
  help: `Releases deliveries without acknowledging them: their messages are delivered again, at
once (first in line) or after --delay. The release counts as a delivery attempt: a message
that has had the queue's max deliveries goes to its dead letters instead.

${RECEIPTS_HELP}

Options:
  --delay SECS   deliver again after this delay, 0-${NACK_DELAY_MAX} (default 0: at once)

Examples:
  momd queue nack jobs MDFNODNW... --delay 30
  momd queue receive jobs --max 10 --json | momd queue nack jobs`,
  options: { delay: { type: "string" } },
  async run(ctx: Ctx) {
    if (ctx.positionals.length < 1) throw new UsageError("missing NAME", "queue nack");
    const [name, ...args] = ctx.positionals;
    const delaySeconds = int(ctx.values, "delay", { max: NACK_DELAY_MAX });
    const receipts = await receiptsFrom(ctx, args, "queue nack");
    const client = await ctx.client();
    return await settleReceipts(ctx, receipts, {
      settle: (batch) => client.queues.nack(name, batch, { delaySeconds }),
      done: (ok) => releasedLine(ok, delaySeconds),
    });
  },
};

const visibility: Command = {
  name: "visibility",
  summary: "extend or shorten the visibility timeout of deliveries",
  usage: "momd queue visibility NAME [RECEIPT...] --timeout SECS",
  help: `Moves the visibility deadline of deliveries to --timeout seconds from now: more time for
long work (the receipts stay valid), or less. 0 ends the deliveries at once: their messages
may be delivered again (without counting as a nack).

${RECEIPTS_HELP}

Options:
${VISIBILITY_OPTION_HELP}

Example:
  momd queue visibility jobs MDFNODNW... --timeout 600`,
  options: { timeout: { type: "string" } },
  async run(ctx: Ctx) {
    if (ctx.positionals.length < 1) throw new UsageError("missing NAME", "queue visibility");
    const [name, ...args] = ctx.positionals;
    const timeout = visibilityTimeout(ctx, "queue visibility");
    const receipts = await receiptsFrom(ctx, args, "queue visibility");
    const client = await ctx.client();
    return await settleReceipts(ctx, receipts, {
      settle: (batch) =>
        client.queues.changeVisibility(name, { receipts: batch, visibilitySeconds: timeout }),
      done: (ok) => visibilityLine(ok, timeout),
    });
  },
};

/** The `queue` command group. */
export const queueGroup: Group = {
  name: "queue",
  summary: "manage queues, send and receive messages",
  help: "Point-to-point queues: each message goes to one consumer, which acknowledges it.",
  commands: [
    create,
    listCommand(QUEUES),
    get,
    configure,
    del,
    purge,
    redrive,
    peek,
    send,
    receive,
    ack,
    nack,
    visibility,
  ],
};
