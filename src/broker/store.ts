import type { Redis } from "ioredis";
import { type EntityRef, queueKeys, registryKey, STORE_KEY, topicKeys } from "./keys.ts";
import {
  groupScript,
  type LoadedScript,
  loadScripts,
  preloadScripts,
  runScript,
} from "./scripts.ts";
import type { RecordSink, ReplicationRecord } from "../replication/record.ts";
import { BrokerError, fromScriptError, isConnectionError } from "./errors.ts";
import { checkDataFormat } from "../redis.ts";
import { DATA_FORMAT } from "../version.ts";

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
  "queue_resume",
  "topic_resume",
] as const;

/** The name of one broker script. */
export type ScriptName = typeof SCRIPT_NAMES[number];

/**
 * Scripts whose concurrent calls on one entity (and subscription) are committed together
 * (group commit): the calls that arrive while the lane's previous groups are in Redis or waiting
 * for their confirmation go as one script call (`group:<name>`, scripts.ts) and one replication
 * record, each caller with its own result. A call that finds its lane idle goes at once, alone,
 * as the plain script.
 */
export const GROUPED_SCRIPTS = [
  "queue_send",
  "queue_receive",
  "queue_ack",
  "queue_nack",
  "queue_visibility",
  "topic_publish",
  "topic_receive",
  "topic_ack",
  "topic_nack",
  "topic_visibility",
] as const satisfies readonly ScriptName[];

/** Most calls in one group, and most argument bytes (a group holds at least one call). */
const GROUP_MAX_CALLS = 128;
const GROUP_MAX_BYTES = 2 * 1024 * 1024;

function entityKey(entity: EntityRef): string {
  return `${entity.type}/${entity.name}`;
}

/** The name a group record carries: the script it groups, prefixed. */
function groupOp(op: ScriptName): string {
  return `group:${op}`;
}

/** A change made: its JSON payload and, when it yielded a record, that record's shipping. */
interface Made {
  payload: string;
  shipped?: Promise<void>;
}

/** A call waiting for its group. */
interface GroupCall {
  args: string[];
  bytes: number;
  resolve: (made: Made) => void;
  reject: (err: unknown) => void;
}

/** The calls of one script on one entity (and subscription): one group in Redis at a time. */
interface Lane {
  key: string;
  entity: EntityRef;
  op: ScriptName;
  waiting: GroupCall[];
  /** The confirmation of the group before the one in Redis or just answered. */
  previous?: Promise<void>;
}

/**
 * KEYS of every script of an entity type, in a fixed order, so a record names only its entity:
 * the entity's keys (entityKeys), then the store's identity (STORE_KEY), which every script
 * checks first (prologue.lua).
 *
 * Arguments of every script (after the prologue's epoch, expected seq and time): args[0] the
 * caller's username, args[1] its role, args[2] the subscription name ('' when none), then the
 * operation's own arguments.
 */
export function scriptKeys(entity: EntityRef, args: readonly string[]): string[] {
  const keys = entityKeys(entity, args);
  keys.push(STORE_KEY);
  return keys;
}

/**
 * The keys of an entity, in the order its scripts see them.
 * Queue: meta, registry, ready, delayed, inflight, msgs, dc, rc, dead, dd, ddx, tasks, taskx.
 * Topic: meta, registry, log, subs, then the subscription named by args[2] ('' for topic-level
 * scripts): state, redeliver, inflight, dc, rc, dead.
 */
export function entityKeys(entity: EntityRef, args: readonly string[]): string[] {
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
  /** Told when a script finds the store without its identity: it lost its data. */
  onLost?: () => void;
  /**
   * Asked before each change made as the owner (never before a replica's apply); throws to
   * refuse it. The node's memory alarm (MemoryWatch.admit) refuses new messages here.
   */
  admitChange?: (op: ScriptName, args: readonly string[]) => void;
  /** The clock; tests may replace it. */
  now?: () => number;
  /** Group commit of concurrent calls (GROUPED_SCRIPTS); default on. Replicas apply groups
   * either way. */
  groupCommit?: boolean;
}

// Gives an empty Redis its identity and data format; returns the identity and format it has (an
// identity from before formats were recorded is format 1). ARGV: a new id, the time, the format.
const IDENTIFY_LUA = `
local v = redis.call('HMGET', KEYS[1], 'id', 'format')
if v[1] then
  if not v[2] then
    redis.call('HSET', KEYS[1], 'format', '1')
    return { v[1], '1' }
  end
  return v
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'createdAt', ARGV[2], 'format', ARGV[3])
return { ARGV[1], ARGV[3] }
`;

// Writes the time into the identity and returns the id ('' without an identity). ARGV: the time.
const PROBE_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then return '' end
redis.call('HSET', KEYS[1], 'probedAt', ARGV[1])
return redis.call('HGET', KEYS[1], 'id')
`;

/**
 * The identity of the store in `redis` (STORE_KEY), given to it now if it has none: a new Redis
 * becomes a store. Returns the incarnation. Throws DataFormatError, having changed nothing, when
 * the store holds a data format this build cannot read.
 */
export async function identifyStore(redis: Redis, now = Date.now()): Promise<string> {
  const [id, format] = await redis.eval(
    IDENTIFY_LUA,
    1,
    STORE_KEY,
    crypto.randomUUID(),
    String(now),
    String(DATA_FORMAT),
  ) as [string, string];
  checkDataFormat(Number(format), "MOMD_LOCAL_REDIS_URL (the local store)");
  return String(id);
}

/**
 * The node's local Redis, reached only through the broker's Lua scripts. Each change runs one
 * script atomically and yields one replication record, handed to the sink before it resolves.
 *
 * The store has an identity (STORE_KEY), its **incarnation**: a Redis that loses its data loses
 * the identity with it, every script then refuses to run (`store_lost`) and `onLost` is told, so
 * that the node can give up what it owned before a new identity lets the store work again.
 */
export class Store {
  readonly #redis: Redis;
  readonly #scripts: Record<string, LoadedScript>;
  readonly #grouped: ReadonlySet<string>;
  readonly #lanes = new Map<string, Lane>();
  // Per entity, the shipping of its latest record while it is unconfirmed (records are confirmed
  // in order, so it stands for all before it).
  readonly #shipping = new Map<string, Promise<void>>();
  readonly #sink: RecordSink;
  readonly #epochOf: (entity: EntityRef) => number;
  readonly #onLost: () => void;
  readonly #admitChange: (op: ScriptName, args: readonly string[]) => void;
  #incarnation: string;
  readonly now: () => number;

  private constructor(
    redis: Redis,
    scripts: Record<string, LoadedScript>,
    incarnation: string,
    opts: StoreOptions,
  ) {
    this.#redis = redis;
    this.#scripts = scripts;
    this.#grouped = new Set(opts.groupCommit === false ? [] : GROUPED_SCRIPTS);
    this.#incarnation = incarnation;
    this.#sink = opts.sink;
    this.#epochOf = opts.epochOf ?? (() => 0);
    this.#onLost = opts.onLost ?? (() => {});
    this.#admitChange = opts.admitChange ?? (() => {});
    this.now = opts.now ?? Date.now;
  }

  /** Loads the scripts once and returns a store over the given Redis. */
  static async open(redis: Redis, opts: StoreOptions): Promise<Store> {
    const scripts: Record<string, LoadedScript> = await loadScripts(SCRIPT_NAMES);
    for (const name of GROUPED_SCRIPTS) {
      scripts[groupOp(name)] = await groupScript(scripts[name]);
    }
    // Loaded up front so pipelined calls (a replica applying a batch) never meet NOSCRIPT
    // midway; after a Redis restart runScript loads them again on demand.
    await preloadScripts(redis, Object.values(scripts));
    const id = await identifyStore(redis, (opts.now ?? Date.now)());
    return new Store(redis, scripts, id, opts);
  }

  /** The Redis connection (for health checks and snapshots). */
  get redis(): Redis {
    return this.#redis;
  }

  /** The store's incarnation: its identity when this node opened or last renewed it. */
  get incarnation(): string {
    return this.#incarnation;
  }

  /** The identity Redis holds now ("" when it has none: the data is gone). */
  async currentIdentity(): Promise<string> {
    return (await this.#redis.hget(STORE_KEY, "id")) ?? "";
  }

  /**
   * The identity Redis holds now, found by a write (the time, into the identity): a store that
   * answers reads but refuses writes (out of memory, read-only) fails this as one that does not
   * answer at all. "" when the identity is gone.
   */
  async probe(): Promise<string> {
    return String(await this.#redis.eval(PROBE_LUA, 1, STORE_KEY, String(this.now())));
  }

  /**
   * Gives the store a new identity (call it once the node has dealt with a loss: scripts run
   * again from then on). Returns the new incarnation.
   */
  async renew(): Promise<string> {
    // What took the lost data's place may be a later momd's store: never overwrite it.
    const format = await this.#redis.hget(STORE_KEY, "format");
    if (format !== null) checkDataFormat(Number(format), "MOMD_LOCAL_REDIS_URL (the local store)");
    const id = crypto.randomUUID();
    await this.#redis.hset(
      STORE_KEY,
      "id",
      id,
      "createdAt",
      String(this.now()),
      "format",
      String(DATA_FORMAT),
    );
    this.#incarnation = id;
    return id;
  }

  /**
   * Runs a state-changing script as the owner; resolves after its record is shipped. A change
   * the sink could not confirm (too few replicas acknowledged it in time) was made here all the
   * same and may last: it rejects with `outcome_unknown`, never with `unavailable`.
   *
   * `takeOver` is for the node's own changes while it takes an entity over (before it serves
   * it): written with the epoch given, without waiting for the replicas, whose resync snapshot
   * carries the change.
   */
  async change<T>(
    entity: EntityRef,
    op: ScriptName,
    args: readonly (string | number)[],
    opts: { takeOver?: { epoch: number } } = {},
  ): Promise<T> {
    const strArgs = args.map(String);
    const epoch = opts.takeOver?.epoch ?? this.#epochOf(entity);
    if (!opts.takeOver) {
      this.#admitChange(op, strArgs);
      this.#sink.admit?.(entity);
    }
    // Not connected now: the script would wait in ioredis's offline queue and fail there, never
    // sent. A connection that breaks once it is sent leaves the outcome unknown (#failure).
    if (this.#redis.status !== "ready") {
      throw new BrokerError("unavailable", "the local store is not connected; try again", 1);
    }
    const made = !opts.takeOver && this.#grouped.has(op)
      ? await this.#enqueue(entity, op, strArgs)
      : await this.#changeAlone(entity, op, strArgs, epoch);
    if (opts.takeOver) {
      made.shipped?.catch(() => {});
      return JSON.parse(made.payload) as T;
    }
    // A call that changed nothing answered from the entity's state, which may hold changes not
    // yet replicated (a send de-duplicated against one): it waits for them as their callers do.
    const wait = made.shipped ?? this.#shipping.get(entityKey(entity));
    if (wait) {
      try {
        await wait;
      } catch (err) {
        const why = err instanceof BrokerError ? err.detail : String(err);
        throw new BrokerError(
          "outcome_unknown",
          `the change was made on the owner but not confirmed (${why}); it may or may not ` +
            "take effect: retry sends with the same dedupId",
          1,
        );
      }
    }
    return JSON.parse(made.payload) as T;
  }

  /**
   * Hands a record to the sink and remembers it as its entity's latest until it settles. A sink
   * that throws is a failed shipping (its change is made, its confirmation unknown).
   */
  #ship(record: ReplicationRecord): Promise<void> {
    let shipped: Promise<void>;
    try {
      shipped = this.#sink.ship(record);
    } catch (err) {
      shipped = Promise.reject(err);
    }
    const key = entityKey(record.entity);
    this.#shipping.set(key, shipped);
    const settled = () => {
      if (this.#shipping.get(key) === shipped) this.#shipping.delete(key);
    };
    shipped.then(settled, settled);
    return shipped;
  }

  /** Runs one call as its own script and record. */
  async #changeAlone(
    entity: EntityRef,
    op: ScriptName,
    args: string[],
    epoch: number,
  ): Promise<Made> {
    const at = this.now();
    const reply = await this.#run(entity, op, [epoch, "", at, ...args], args, true);
    const seq = Number(reply[0]);
    // Shipped in the turn the reply arrived, as every change is: records reach the sink in the
    // order Redis ran them.
    const shipped = seq > 0 ? this.#ship({ entity, seq, epoch, op, at, args }) : undefined;
    return { payload: reply[1] as string, shipped };
  }

  /** Queues a call for its lane's next group; runs it at once when the lane is idle. */
  #enqueue(entity: EntityRef, op: ScriptName, args: string[]): Promise<Made> {
    const key = `${entityKey(entity)}/${op}/${args[2] ?? ""}`;
    return new Promise<Made>((resolve, reject) => {
      const call: GroupCall = {
        args,
        bytes: args.reduce((n, a) => n + a.length, 0),
        resolve,
        reject,
      };
      const lane = this.#lanes.get(key);
      if (lane) {
        lane.waiting.push(call);
        return;
      }
      const idle: Lane = { key, entity, op, waiting: [] };
      this.#lanes.set(key, idle);
      this.#runGroup(idle, [call]);
    });
  }

  /** Runs one group, then the next with what arrived meanwhile; the lane ends when none did. */
  #runGroup(lane: Lane, calls: GroupCall[]): void {
    this.#commit(lane, calls).then(async ({ shipped }) => {
      // Two groups of a lane at most wait for their confirmation: the next group goes to Redis
      // once the one before the group just answered is confirmed, so groups gather what arrives
      // during a replication round trip while two round trips overlap.
      await lane.previous;
      lane.previous = shipped?.then(() => {}, () => {});
      if (lane.waiting.length === 0) {
        this.#lanes.delete(lane.key);
        return;
      }
      let bytes = 0;
      let n = 0;
      while (
        n < lane.waiting.length && n < GROUP_MAX_CALLS &&
        (n === 0 || bytes + lane.waiting[n].bytes <= GROUP_MAX_BYTES)
      ) {
        bytes += lane.waiting[n++].bytes;
      }
      this.#runGroup(lane, lane.waiting.splice(0, n));
    });
  }

  /** Commits the calls of one group and settles each; never rejects. Returns the group's
   * confirmation, when it yielded a record (in an object: a promise returned would be awaited). */
  async #commit(lane: Lane, calls: GroupCall[]): Promise<{ shipped?: Promise<void> }> {
    const { entity, op } = lane;
    try {
      if (this.#redis.status !== "ready") {
        throw new BrokerError("unavailable", "the local store is not connected; try again", 1);
      }
      const epoch = this.#epochOf(entity);
      if (calls.length === 1) {
        const made = await this.#changeAlone(entity, op, calls[0].args, epoch);
        // Its caller hears a failure; the lane only waits for it.
        made.shipped?.catch(() => {});
        calls[0].resolve(made);
        return { shipped: made.shipped };
      }
      const args = ["", "", calls[0].args[2] ?? "", String(calls.length)];
      for (const call of calls) args.push(String(call.args.length), ...call.args);
      const at = this.now();
      const name = groupOp(op);
      const reply = await this.#run(entity, name, [epoch, "", at, ...args], args, true);
      const seq = Number(reply[0]);
      const shipped = seq > 0 ? this.#ship({ entity, seq, epoch, op: name, at, args }) : undefined;
      // Every caller awaits it; a failure is each caller's outcome_unknown, not an unhandled one.
      shipped?.catch(() => {});
      const results = reply[1] as unknown[];
      calls.forEach((call, i) => {
        if (Number(results[2 * i]) === 1) {
          call.resolve({ payload: String(results[2 * i + 1]), shipped });
        } else {
          call.reject(this.#failure(fromScriptError(new Error(String(results[2 * i + 1])))));
        }
      });
      return { shipped };
    } catch (err) {
      for (const call of calls) call.reject(err);
      return {};
    }
  }

  /**
   * Runs a read-only script (it never changes state, so it yields no record). The right to
   * answer is checked again after the read, as writes are: a node paused between the two must
   * not answer from a copy it may no longer own.
   */
  async read<T>(entity: EntityRef, op: ScriptName, args: readonly (string | number)[]): Promise<T> {
    const strArgs = args.map(String);
    const argv = [this.#epochOf(entity), "", this.now(), ...strArgs];
    const reply = await this.#run(entity, op, argv, strArgs, false);
    this.#epochOf(entity);
    return JSON.parse(reply[1] as string) as T;
  }

  /**
   * Applies a record shipped by the owner (replica side): the same script, the same arguments,
   * the owner's clock. Records already held are acknowledged as duplicates.
   */
  async apply(record: ReplicationRecord): Promise<"applied" | "duplicate"> {
    if (!this.#scripts[record.op]) throw new Error(`unknown replication op '${record.op}'`);
    const argv = [record.epoch, record.seq, record.at, ...record.args];
    const reply = await this.#run(record.entity, record.op, argv, record.args, false);
    return Number(reply[0]) === -1 ? "duplicate" : "applied";
  }

  /**
   * Runs one script on the entity's keys (the keys follow `args`, the script's own arguments);
   * a failure becomes what it means (#failure).
   */
  async #run(
    entity: EntityRef,
    op: string,
    argv: readonly (string | number)[],
    args: readonly string[],
    change: boolean,
  ): Promise<[number, unknown]> {
    try {
      return await runScript(this.#redis, this.#scripts[op], scriptKeys(entity, args), argv) as [
        number,
        unknown,
      ];
    } catch (err) {
      throw this.#failure(err, change ? `${op} on ${entity.type} '${entity.name}'` : undefined);
    }
  }

  /**
   * What a failed script call means: a lost store is reported (once per call) and refused; a
   * connection that broke under a change leaves its outcome unknown (ioredis may have sent the
   * script, and sends it again after a reconnect).
   */
  #failure(err: unknown, change?: string): unknown {
    if (err instanceof BrokerError && err.code === "store_lost") {
      this.#onLost();
      return err;
    }
    // Redis refuses a script that may write before running it when it is out of memory.
    if (err instanceof Error && err.message.startsWith("OOM")) {
      return new BrokerError("unavailable", "the local store is out of memory; try again", 5);
    }
    if (change && isConnectionError(err)) {
      return new BrokerError(
        "outcome_unknown",
        `the local store's connection broke during ${change}; it may or may not have been made`,
        1,
      );
    }
    return err;
  }
}
