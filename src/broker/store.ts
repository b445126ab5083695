import type { Redis } from "ioredis";
import { type EntityRef, queueKeys, registryKey, topicKeys } from "./keys.ts";
import { type LoadedScript, loadScripts, preloadScripts, runScript } from "./scripts.ts";
import type { RecordSink, ReplicationRecord } from "../replication/record.ts";

/** Every Lua script of the broker; each file is `src/broker/scripts/<name>.lua`. */
export const SCRIPT_NAMES = [
  "queue_create",
  "queue_delete",
  "queue_purge",
  "queue_configure",
  "queue_send",
  "queue_receive",
  "queue_ack",
  "queue_nack",
  "queue_visibility",
  "queue_redrive",
  "queue_peek",
  "queue_stats",
  "topic_create",
  "topic_delete",
  "topic_configure",
  "topic_publish",
  "topic_subscribe",
  "topic_unsubscribe",
  "topic_receive",
  "topic_ack",
  "topic_nack",
  "topic_seek",
  "topic_stats",
  "topic_peek",
  "topic_redrive",
  "topic_visibility",
  "queue_sweep",
  "queue_request",
  "queue_reply",
  "queue_task",
  "queue_compat_subscribe",
  "queue_compat_unsubscribe",
  "queue_compat_subscribed",
] as const;

/** The name of one broker script. */
export type ScriptName = typeof SCRIPT_NAMES[number];

/**
 * KEYS of every script of an entity type, in a fixed order, so a record names only its entity.
 * Queue scripts: meta, registry, ready, delayed, inflight, msgs, dc, rc, dead, dd, ddx, tasks,
 * taskx.
 * Topic scripts: meta, registry, log, subs, then the subscription named by args[2] ('' for
 * topic-level scripts): state, redeliver, inflight, dc, rc, dead.
 *
 * Arguments of every script (after the prologue's epoch, expected seq and time): args[0] the
 * caller's username, args[1] its role, args[2] the subscription name ('' when none), then the
 * operation's own arguments.
 */
export function scriptKeys(entity: EntityRef, args: readonly string[]): string[] {
  if (entity.type === "queue") {
    const k = queueKeys(entity.name);
    return [
      k.meta,
      registryKey("queue"),
      k.ready,
      k.delayed,
      k.inflight,
      k.messages,
      k.deliveries,
      k.receipts,
      k.dead,
      k.dedup,
      k.dedupExpiry,
      k.tasks,
      k.taskExpiry,
    ];
  }
  const k = topicKeys(entity.name);
  const s = k.sub(args[2] ?? "");
  return [
    k.meta,
    registryKey("topic"),
    k.log,
    k.subs,
    s.state,
    s.redeliver,
    s.inflight,
    s.deliveries,
    s.receipts,
    s.dead,
  ];
}

/** Options of a Store. */
export interface StoreOptions {
  /** Receives every record of every change, in sequence order per entity. */
  sink: RecordSink;
  /** The ownership epoch this node writes with for an entity (0 on a single node). */
  epochOf?: (entity: EntityRef) => number;
  /** The clock; tests may replace it. */
  now?: () => number;
}

/**
 * The node's local Redis, reached only through the broker's Lua scripts. Each change runs one
 * script atomically and yields one replication record, handed to the sink before it resolves.
 */
export class Store {
  readonly #redis: Redis;
  readonly #scripts: Record<ScriptName, LoadedScript>;
  readonly #sink: RecordSink;
  readonly #epochOf: (entity: EntityRef) => number;
  readonly now: () => number;

  private constructor(redis: Redis, scripts: Record<ScriptName, LoadedScript>, opts: StoreOptions) {
    this.#redis = redis;
    this.#scripts = scripts;
    this.#sink = opts.sink;
    this.#epochOf = opts.epochOf ?? (() => 0);
    this.now = opts.now ?? Date.now;
  }

  /** Loads the scripts once and returns a store over the given Redis. */
  static async open(redis: Redis, opts: StoreOptions): Promise<Store> {
    const scripts = await loadScripts(SCRIPT_NAMES);
    // Loaded up front so pipelined calls (a replica applying a batch) never meet NOSCRIPT
    // midway; after a Redis restart runScript loads them again on demand.
    await preloadScripts(redis, Object.values(scripts));
    return new Store(redis, scripts, opts);
  }

  /** The Redis connection (for health checks and snapshots). */
  get redis(): Redis {
    return this.#redis;
  }

  /** Runs a state-changing script as the owner; resolves after its record is shipped. */
  async change<T>(
    entity: EntityRef,
    op: ScriptName,
    args: readonly (string | number)[],
  ): Promise<T> {
    const strArgs = args.map(String);
    const at = this.now();
    const epoch = this.#epochOf(entity);
    const reply = await runScript(
      this.#redis,
      this.#scripts[op],
      scriptKeys(entity, strArgs),
      [epoch, "", at, ...strArgs],
    ) as [number, string];
    const seq = Number(reply[0]);
    if (seq > 0) {
      await this.#sink.ship({ entity, seq, epoch, op, at, args: strArgs });
    }
    return JSON.parse(reply[1]) as T;
  }

  /** Runs a read-only script (it never changes state, so it yields no record). */
  async read<T>(entity: EntityRef, op: ScriptName, args: readonly (string | number)[]): Promise<T> {
    const strArgs = args.map(String);
    const reply = await runScript(
      this.#redis,
      this.#scripts[op],
      scriptKeys(entity, strArgs),
      [this.#epochOf(entity), "", this.now(), ...strArgs],
    ) as [number, string];
    return JSON.parse(reply[1]) as T;
  }

  /**
   * Applies a record shipped by the owner (replica side): the same script, the same arguments,
   * the owner's clock. Records already held are acknowledged as duplicates.
   */
  async apply(record: ReplicationRecord): Promise<"applied" | "duplicate"> {
    const op = record.op as ScriptName;
    if (!this.#scripts[op]) throw new Error(`unknown replication op '${record.op}'`);
    const reply = await runScript(
      this.#redis,
      this.#scripts[op],
      scriptKeys(record.entity, record.args),
      [record.epoch, record.seq, record.at, ...record.args],
    ) as [number, string];
    return Number(reply[0]) === -1 ? "duplicate" : "applied";
  }
}
