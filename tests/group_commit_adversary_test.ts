/**
 * Adversarial tests of group commit (Store, GROUPED_SCRIPTS), against real Redis. Calls go
 * straight to Store.change with ids, tokens and a clock the test chooses, so that an oracle (the
 * same calls, one after another, group commit off) says what each caller must get. Checked:
 * per-caller results against the oracle, replica state after applying the records (once, twice),
 * records in sequence order, ship failures and slow ships, Redis paused or killed mid-group, the
 * identity key deleted, the epoch changing mid-stream, huge and tiny calls mixed, two topic
 * subscriptions interleaved. Several seeds shape the load.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { Store, type StoreOptions } from "../src/broker/store.ts";
import { BrokerError } from "../src/broker/errors.ts";
import { Notifier } from "../src/broker/notifier.ts";
import { DEFAULT_QUEUE_CONFIG, QueueService } from "../src/broker/queues.ts";
import { DEFAULT_TOPIC_CONFIG, TopicService } from "../src/broker/topics.ts";
import { type EntityRef, STORE_KEY } from "../src/broker/keys.ts";
import { localOnlySink, type ReplicationRecord } from "../src/replication/record.ts";
import { type RedisServer, startRedis } from "./support/services.ts";
import { dumpEntity } from "./support/state.ts";
import { mulberry32 as random } from "./support/nemesis.ts";

const admin = { username: "admin", role: "admin" as const };
const NOW = 1_800_000_000_000;

/** A sink that keeps every record and lets a test decide each ship's fate. */
class Sink {
  readonly records: ReplicationRecord[] = [];
  readonly failed = new Set<ReplicationRecord>();
  /** Decides a record's ship: undefined resolves at once; a promise is awaited. */
  decide: (r: ReplicationRecord) => Promise<void> | undefined = () => undefined;
  ship = (r: ReplicationRecord): Promise<void> => {
    this.records.push(r);
    const p = this.decide(r) ?? Promise.resolve();
    return p.catch((err) => {
      this.failed.add(r);
      throw err;
    });
  };
}

interface Node {
  server: RedisServer;
  conn: Redis;
  store: Store;
  sink: Sink;
}

async function node(opts: Partial<StoreOptions> = {}, server?: RedisServer): Promise<Node> {
  server ??= await startRedis();
  const conn = new Redis(server.url, { maxRetriesPerRequest: 1 });
  conn.on("error", () => {}); // a killed Redis is expected; the calls report it
  const sink = new Sink();
  const store = await Store.open(conn, { sink, epochOf: () => 1, now: () => NOW, ...opts });
  return { server, conn, store, sink };
}

async function closeAll(...nodes: Node[]) {
  for (const n of nodes) {
    n.conn.disconnect();
    await n.server.stop();
  }
}

/** One call of a grouped script, with everything it carries chosen by the test. */
interface Call {
  op:
    | "queue_send"
    | "queue_receive"
    | "queue_ack"
    | "queue_nack"
    | "queue_visibility"
    | "topic_publish"
    | "topic_receive"
    | "topic_ack"
    | "topic_nack"
    | "topic_visibility";
  args: string[];
}

type Outcome = { ok: true; value: unknown } | { ok: false; code: string };

function outcomeOf(s: PromiseSettledResult<unknown>): Outcome {
  if (s.status === "fulfilled") return { ok: true, value: s.value };
  const e = s.reason;
  return { ok: false, code: e instanceof BrokerError ? e.code : `raw:${String(e)}` };
}

function codeOf(e: unknown): string {
  return e instanceof BrokerError ? e.code : `raw:${String(e)}`;
}

let idCounter = 0;
function sendCall(user: string, msgs: { body: string; dedup?: string; size?: number }[]): Call {
  const args = [user, "user", "", String(msgs.length)];
  for (const m of msgs) {
    args.push(
      m.body,
      "",
      "",
      "",
      m.dedup ?? "",
      `id${++idCounter}`,
      String(m.size ?? m.body.length),
    );
  }
  return { op: "queue_send", args };
}

let tokenCounter = 0;
function receiveCall(user: string, max: number, sub = ""): Call {
  const tokens = Array.from({ length: max }, () => `t${++tokenCounter}`);
  if (sub === "") {
    return { op: "queue_receive", args: [user, "user", "", String(max), "", ...tokens] };
  }
  return { op: "topic_receive", args: [user, "user", sub, String(max), "", ...tokens] };
}

/** queue_ack / nack / visibility (and topic_*) on [id, token] pairs. */
function receiptCall(
  op: "ack" | "nack" | "visibility",
  user: string,
  pairs: [string, string][],
  sub = "",
  extra = "0",
): Call {
  const prefix = sub === "" ? "queue_" : "topic_";
  const args = [user, "user", sub];
  if (op !== "ack") args.push(extra);
  for (const [id, token] of pairs) args.push(id, token);
  return { op: `${prefix}${op}` as Call["op"], args };
}

/** Issues every call at once (arrival order = array order); their outcomes. */
async function fire(store: Store, entity: EntityRef, calls: Call[]): Promise<Outcome[]> {
  const out = await Promise.allSettled(calls.map((c) => store.change(entity, c.op, c.args)));
  return out.map(outcomeOf);
}

/** The oracle: the same calls, one after another. */
async function fireInOrder(store: Store, entity: EntityRef, calls: Call[]): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (const c of calls) {
    try {
      out.push({ ok: true, value: await store.change(entity, c.op, c.args) });
    } catch (e) {
      out.push({ ok: false, code: codeOf(e) });
    }
  }
  return out;
}

/** An entity's state without the per-record bookkeeping (seq, last change) that groups change. */
async function logicalState(redis: Redis, entity: EntityRef) {
  const dump = await dumpEntity(redis, entity);
  for (const [key, value] of Object.entries(dump)) {
    if (key.endsWith(":meta") && value && typeof value === "object") {
      const v = { ...(value as Record<string, string>) };
      delete v.seq;
      delete v.changed;
      dump[key] = v;
    }
  }
  return dump;
}

/** Records reach the sink in sequence order per entity, with no gap and no repeat. */
function assertRecordOrder(records: readonly ReplicationRecord[]) {
  const last = new Map<string, number>();
  for (const r of records) {
    const k = `${r.entity.type}/${r.entity.name}`;
    const prev = last.get(k);
    if (prev !== undefined) {
      assert.equal(r.seq, prev + 1, `record ${r.op} seq ${r.seq} after ${prev}`);
    }
    last.set(k, r.seq);
  }
}

/** Applies the records to a fresh replica and checks it ends with the owner's state, twice. */
async function assertReplicaMatches(owner: Node, entities: EntityRef[]) {
  // With group commit off: a replica applies group records either way (claim 6).
  const replica = await node({ sink: localOnlySink, groupCommit: false });
  try {
    const records = owner.sink.records;
    let probes = 0;
    for (const [i, r] of records.entries()) {
      // Before each group record: the next one (out of order) and this one under an older
      // epoch are refused whole and change nothing.
      if (r.op.startsWith("group:") && probes < 40 && entities.length === 1) {
        probes++;
        const before = await dumpEntity(replica.conn, entities[0]);
        const next = records.slice(i + 1).find((x) => x.entity.name === r.entity.name);
        // (A record whose calls find nothing to change out of order is answered "applied"
        // rather than refused: see the test of that below. What matters here: no change.)
        if (next) {
          await replica.store.apply(next).catch((err) => assert.match(String(err), /conflict/));
        }
        if (i > 0 && records[i - 1].epoch === r.epoch && r.epoch > 0) {
          await assert.rejects(replica.store.apply({ ...r, epoch: r.epoch - 1 }), /stale_epoch/);
        }
        assert.deepEqual(await dumpEntity(replica.conn, entities[0]), before);
      }
      assert.equal(await replica.store.apply(r), "applied", `apply ${r.op} seq ${r.seq}`);
    }
    for (const e of entities) {
      assert.deepEqual(await dumpEntity(replica.conn, e), await dumpEntity(owner.conn, e));
    }
    for (const r of owner.sink.records) assert.equal(await replica.store.apply(r), "duplicate");
    for (const e of entities) {
      assert.deepEqual(await dumpEntity(replica.conn, e), await dumpEntity(owner.conn, e));
    }
  } finally {
    await closeAll(replica);
  }
}

interface Held {
  id: string;
  token: string;
}

/** Deliveries of a queue_receive payload as [id, token]. */
function delivered(value: unknown): Held[] {
  const m = (value as { m: unknown[][] | Record<string, never> }).m;
  if (!Array.isArray(m)) return [];
  return m.map((d) => ({ id: String(d[0]), token: String(d[4]) }));
}

/** Deliveries of a topic_receive payload as [offset, token]. */
function deliveredTopic(value: unknown): Held[] {
  const m = (value as { messages: { offset: number; token: string }[] | Record<string, never> })
    .messages;
  if (!Array.isArray(m)) return [];
  return m.map((d) => ({ id: String(d.offset), token: d.token }));
}

/**
 * A random wave of calls: waves alternate between one of sends and receives, and one of acks,
 * nacks and visibility changes on disjoint receipts (calls of different lanes run in whatever
 * order their lanes reach Redis, so only calls that commute may share a wave).
 */
function queueWave(rnd: () => number, held: Held[], wave: number): Call[] {
  const calls: Call[] = [];
  const n = 5 + Math.floor(rnd() * 60);
  const users = ["alice", "alice", "alice", "mallory"];
  const user = () => users[Math.floor(rnd() * users.length)];
  if (wave % 3 === 0) {
    for (let i = 0; i < n; i++) {
      const k = rnd();
      if (k < 0.1) calls.push(sendCall(user(), [{ body: "x", size: 5000 }]));
      else if (k < 0.3) {
        calls.push(sendCall(user(), [{ body: `d${i}`, dedup: `k${Math.floor(rnd() * 6)}` }]));
      } else if (k < 0.4) {
        calls.push(
          sendCall(
            user(),
            Array.from({ length: 1 + Math.floor(rnd() * 8) }, (_, j) => ({ body: `b${i}.${j}` })),
          ),
        );
      } else if (k < 0.45) {
        // A batch whose last message is too large: all or none.
        calls.push(sendCall(user(), [{ body: `ok${i}` }, { body: "y", size: 5000 }]));
      } else if (k < 0.55) {
        // Bodies that look like the store's own encoding, or nothing at all.
        const odd = ["", "|", "1,2,3|x", "é🙂\n\u0000", "{}", "nil"][Math.floor(rnd() * 6)];
        calls.push(sendCall(user(), [{ body: odd }]));
      } else calls.push(sendCall(user(), [{ body: `m${i}` }]));
    }
  } else if (wave % 3 === 1) {
    for (let i = 0; i < n; i++) calls.push(receiveCall(user(), 1 + Math.floor(rnd() * 5)));
  } else {
    // Ack, nack and visibility lanes each get their own receipts; within a lane, the same
    // receipt may come twice, and some are forged or of a message already gone.
    const pool = [...held];
    held.length = 0;
    const lanes: Record<string, Held[]> = { ack: [], nack: [], visibility: [] };
    for (const h of pool) {
      const k = rnd();
      if (k < 0.5) lanes.ack.push(h);
      else if (k < 0.7) lanes.nack.push(h);
      else if (k < 0.85) lanes.visibility.push(h);
      else held.push(h); // kept for a later wave
    }
    for (const [op, hs] of Object.entries(lanes)) {
      let i = 0;
      while (i < hs.length) {
        const take = 1 + Math.floor(rnd() * 4);
        const pairs: [string, string][] = hs.slice(i, i + take).map((h) => [h.id, h.token]);
        i += take;
        if (rnd() < 0.2) pairs.push([pairs[0][0], "forged"]);
        if (rnd() < 0.15) pairs.push([pairs[0][0], pairs[0][1]]); // the same receipt twice
        const extra = op === "visibility" ? String(Math.floor(rnd() * 3) * 30) : "0";
        calls.push(receiptCall(op as "ack", user(), pairs, "", extra));
        // A later call of the same lane with the same receipt: stale by then (or not, for
        // visibility, which keeps the attempt).
        if (rnd() < 0.1) calls.push(receiptCall(op as "ack", user(), [pairs[0]], "", extra));
      }
    }
    // Interleave the lanes' calls in arrival order.
    for (let i = calls.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [calls[i], calls[j]] = [calls[j], calls[i]];
    }
  }
  return calls;
}

for (const seed of [11, 22, 33, 44]) {
  Deno.test(`adversary: random queue waves match one-after-another (seed ${seed})`, async () => {
    const rnd = random(seed);
    const owner = await node();
    const oracle = await node({ groupCommit: false });
    try {
      const q: EntityRef = { type: "queue", name: "mix" };
      const cfg = {
        ...DEFAULT_QUEUE_CONFIG,
        maxMessageBytes: 1000,
        maxLength: 25,
        // Half the seeds drop the oldest ready messages instead of refusing.
        overflow: seed % 22 === 0 ? "dropHead" as const : "reject" as const,
        maxDeliveries: 1000,
        access: { restricted: true, senders: ["alice"], receivers: ["alice"] },
      };
      for (const n of [owner, oracle]) {
        await new QueueService(n.store, new Notifier()).create(admin, "mix", cfg);
      }
      const held: Held[] = [];
      let calls = 0;
      const codes = new Set<string>();
      for (let wave = 0; wave < 12; wave++) {
        const wcalls = queueWave(rnd, held, wave);
        calls += wcalls.length;
        const got = await fire(owner.store, q, wcalls);
        const want = await fireInOrder(oracle.store, q, wcalls);
        got.forEach((g, i) => {
          assert.deepEqual(g, want[i], `wave ${wave} call ${i} (${wcalls[i].op}) differs`);
          if (!g.ok) codes.add(g.code);
          if (g.ok && wcalls[i].op === "queue_receive") held.push(...delivered(g.value));
        });
        assert.deepEqual(await logicalState(owner.conn, q), await logicalState(oracle.conn, q));
      }
      assert.ok(owner.sink.records.length < oracle.sink.records.length, "nothing was grouped");
      assert.ok(owner.sink.records.some((r) => r.op.startsWith("group:")));
      assertRecordOrder(owner.sink.records);
      assertRecordOrder(oracle.sink.records);
      assert.ok(oracle.sink.records.every((r) => !r.op.startsWith("group:")));
      assert.ok(calls > 100);
      // The load did reach the corners: refusals of each kind, and groups of many calls.
      const expected = ["forbidden", "too_large", ...(seed % 22 === 0 ? [] : ["queue_full"])];
      for (const code of expected) assert.ok(codes.has(code), code);
      const biggest = Math.max(
        ...owner.sink.records.map((r) => r.op.startsWith("group:") ? Number(r.args[3]) : 1),
      );
      assert.ok(biggest >= 10, `largest group ${biggest}`);
      await assertReplicaMatches(owner, [q]);
    } finally {
      await closeAll(owner, oracle);
    }
  });
}

/** A queue on the node, as alice may use it. */
async function makeQueue(n: Node, name: string, patch: Partial<typeof DEFAULT_QUEUE_CONFIG> = {}) {
  await new QueueService(n.store, new Notifier()).create(admin, name, {
    ...DEFAULT_QUEUE_CONFIG,
    ...patch,
  });
}

/** The ids of every message a queue holds. */
async function heldIds(redis: Redis, name: string): Promise<Set<string>> {
  return new Set(await redis.hkeys(`momd:q:{${name}}:msgs`));
}

/** The new id a single-message send call carries. */
function sentId(c: Call): string {
  return c.args[9];
}

/** The records of the sink that carry an argument. */
function recordsWith(records: readonly ReplicationRecord[], arg: string) {
  return records.filter((r) => r.args.includes(arg));
}

/*
 * Calls of different scripts go in different lanes, so a receive that arrives after a send
 * waiting behind another send may run first and not see it (with group commit off it would).
 * What holds is a serial order: the receive sees a prefix of the sends, in order, and the rest
 * stays ready.
 */
Deno.test("adversary: sends and a receive in different lanes match some serial order", async () => {
  const owner = await node();
  try {
    const q: EntityRef = { type: "queue", name: "order" };
    await makeQueue(owner, "order");
    const calls = [
      sendCall("alice", [{ body: "first" }]),
      sendCall("alice", [{ body: "second" }]),
      receiveCall("alice", 2),
    ];
    const got = await fire(owner.store, q, calls);
    assert.ok(got.every((o) => o.ok), JSON.stringify(got));
    const seen = delivered((got[2] as { value: unknown }).value).map((h) => h.id);
    const sent = [sentId(calls[0]), sentId(calls[1])];
    assert.deepEqual(seen, sent.slice(0, seen.length), "the receive saw sends out of order");
    const rest = await fire(owner.store, q, [receiveCall("alice", 2)]);
    const later = delivered((rest[0] as { value: unknown }).value).map((h) => h.id);
    assert.deepEqual(later, sent.slice(seen.length));
  } finally {
    await closeAll(owner);
  }
});

for (const seed of [5, 6, 7]) {
  Deno.test(`adversary: ship failures give outcome_unknown to the whole group, nobody else (seed ${seed})`, async () => {
    const rnd = random(seed);
    const owner = await node();
    try {
      const q: EntityRef = { type: "queue", name: "ship" };
      await makeQueue(owner, "ship");
      // Some records fail to ship, some ship late, and some first fail then the rest go.
      owner.sink.decide = (r) => {
        const k = rnd();
        if (r.op === "queue_create") return undefined;
        if (k < 0.3) return Promise.reject(new BrokerError("unavailable", "replicas did not ack"));
        if (k < 0.6) return new Promise((res) => setTimeout(res, Math.floor(rnd() * 20)));
        return undefined;
      };
      const calls = Array.from({ length: 300 }, (_, i) => sendCall("alice", [{ body: `s${i}` }]));
      const out = await fire(owner.store, q, calls);
      const failed = owner.sink.failed;
      assert.ok(failed.size > 0, "no ship failed");
      const stored = await heldIds(owner.conn, "ship");
      out.forEach((o, i) => {
        const id = sentId(calls[i]);
        const recs = recordsWith(owner.sink.records, id);
        assert.equal(recs.length, 1, `send ${i} in ${recs.length} records`);
        if (o.ok) {
          assert.ok(!failed.has(recs[0]), `send ${i} fulfilled but its record failed to ship`);
        } else {
          assert.equal(o.code, "outcome_unknown", `send ${i}`);
          assert.ok(failed.has(recs[0]), `send ${i} failed but its record shipped`);
        }
        // Made on the owner either way (outcome_unknown: it may last).
        assert.ok(stored.has(id));
      });
      // Every caller of a failed group got outcome_unknown; a group's callers share one fate.
      const fates = new Map<ReplicationRecord, Set<boolean>>();
      out.forEach((o, i) => {
        const r = recordsWith(owner.sink.records, sentId(calls[i]))[0];
        fates.set(r, (fates.get(r) ?? new Set()).add(o.ok));
      });
      for (const f of fates.values()) assert.equal(f.size, 1);
      assertRecordOrder(owner.sink.records);
    } finally {
      await closeAll(owner);
    }
  });
}

Deno.test("adversary: a sink that fails one group record only", async () => {
  const owner = await node();
  try {
    const q: EntityRef = { type: "queue", name: "one" };
    await makeQueue(owner, "one");
    let victim: ReplicationRecord | undefined;
    owner.sink.decide = (r) => {
      if (!victim && r.op.startsWith("group:")) {
        victim = r;
        return Promise.reject(new Error("lost in transit"));
      }
      return undefined;
    };
    const calls = Array.from({ length: 100 }, (_, i) => sendCall("alice", [{ body: `o${i}` }]));
    const out = await fire(owner.store, q, calls);
    assert.ok(victim, "no group record");
    const inVictim = new Set(
      out.map((_, i) => i).filter((i) => victim!.args.includes(sentId(calls[i]))),
    );
    assert.ok(inVictim.size > 1);
    out.forEach((o, i) => {
      if (inVictim.has(i)) {
        assert.deepEqual(o, { ok: false, code: "outcome_unknown" }, `send ${i}`);
      } else assert.equal(o.ok, true, `send ${i}`);
    });
  } finally {
    await closeAll(owner);
  }
});

Deno.test("adversary: no caller settles before its record shipped (slow, out-of-order ships)", async () => {
  const owner = await node();
  try {
    const q: EntityRef = { type: "queue", name: "slow" };
    await makeQueue(owner, "slow");
    const pending: { r: ReplicationRecord; release: () => void }[] = [];
    const released = new Set<ReplicationRecord>();
    owner.sink.decide = (r) =>
      r.op === "queue_create" ? undefined : new Promise<void>((res) => {
        pending.push({ r, release: () => (released.add(r), res()) });
      });
    const calls = Array.from({ length: 120 }, (_, i) => sendCall("alice", [{ body: `w${i}` }]));
    const settledEarly: number[] = [];
    const all = calls.map((c, i) =>
      owner.store.change(q, c.op, c.args).finally(() => {
        const r = recordsWith(owner.sink.records, sentId(c))[0];
        if (!r || !released.has(r)) settledEarly.push(i);
      })
    );
    // A lane has at most two groups waiting for their ships: while nothing is released,
    // nobody may settle, and later calls gather behind the first two records.
    while (pending.length === 0) await new Promise((res) => setTimeout(res, 5));
    await new Promise((res) => setTimeout(res, 50));
    assert.deepEqual(settledEarly, []);
    const shipping = owner.sink.records.filter((r) => r.op !== "queue_create").length;
    assert.ok(shipping <= 2, `${shipping} groups went to Redis before any was confirmed`);
    // Released newest first whenever several wait, until every call settled.
    let done = false;
    Promise.all(all).finally(() => (done = true));
    while (!done) {
      pending.pop()?.release();
      await new Promise((res) => setTimeout(res, 1));
    }
    await Promise.all(all);
    assert.deepEqual(settledEarly, []);
  } finally {
    await closeAll(owner);
  }
});

/*
 * A sink whose ship() throws (instead of returning a rejected promise) after Redis committed the
 * group: every caller hears outcome_unknown, never a success or a plain failure.
 */
Deno.test("adversary: a ship that throws is outcome_unknown, never a success", async () => {
  const owner = await node();
  try {
    const q: EntityRef = { type: "queue", name: "throw" };
    await makeQueue(owner, "throw");
    owner.sink.decide = (r) => {
      if (r.op !== "queue_create") throw new Error("sink exploded");
      return undefined;
    };
    const calls = Array.from({ length: 40 }, (_, i) => sendCall("alice", [{ body: `t${i}` }]));
    const out = await fire(owner.store, q, calls);
    for (const o of out) assert.equal(o.ok, false);
    const codes = new Set(out.map((o) => (o as { code: string }).code));
    // Made in Redis all the same: the callers must hear "maybe", not a plain failure.
    assert.equal((await heldIds(owner.conn, "throw")).size, 40);
    assert.deepEqual([...codes], ["outcome_unknown"]);
  } finally {
    await closeAll(owner);
  }
});

Deno.test("adversary: CLIENT PAUSE mid-stream changes nothing but timing", async () => {
  const rnd = random(99);
  const owner = await node();
  const oracle = await node({ groupCommit: false });
  const pauser = new Redis(owner.server.url);
  try {
    const q: EntityRef = { type: "queue", name: "paused" };
    const cfg = { maxLength: 30, maxMessageBytes: 1000, maxDeliveries: 1000 };
    await makeQueue(owner, "paused", cfg);
    await makeQueue(oracle, "paused", cfg);
    const held: Held[] = [];
    for (let wave = 0; wave < 6; wave++) {
      const calls = queueWave(rnd, held, wave);
      let paused = false;
      owner.sink.decide = () => {
        if (!paused) {
          paused = true;
          // Issued on its own connection while the next group is on its way.
          pauser.call("CLIENT", "PAUSE", "150", "WRITE").catch(() => {});
        }
        return undefined;
      };
      const got = await fire(owner.store, q, calls);
      const want = await fireInOrder(oracle.store, q, calls);
      assert.deepEqual(got, want, `wave ${wave}`);
      for (const g of got) {
        if (g.ok && "m" in (g.value as object)) held.push(...delivered(g.value));
      }
    }
    assert.deepEqual(await logicalState(owner.conn, q), await logicalState(oracle.conn, q));
    await assertReplicaMatches(owner, [q]);
  } finally {
    pauser.disconnect();
    await closeAll(owner, oracle);
  }
});

Deno.test("adversary: Redis killed mid-group: nobody is told done for what it lost", async () => {
  const owner = await node();
  try {
    const q: EntityRef = { type: "queue", name: "killed" };
    await makeQueue(owner, "killed");
    let stopping: Promise<void> | undefined;
    let groups = 0;
    owner.sink.decide = (r) => {
      if (!stopping && r.op.startsWith("group:") && ++groups === 3) stopping = owner.server.stop();
      return undefined;
    };
    // A steady stream of calls, so that groups are forming and running when Redis goes.
    const calls: Call[] = [];
    const settled: Promise<Outcome[]>[] = [];
    // Until the kill has shown (a refusal), bounded.
    let refusedOne = false;
    for (let burst = 0; burst < 500 && !refusedOne; burst++) {
      const wave = Array.from(
        { length: 20 },
        (_, i) => sendCall("alice", [{ body: `k${burst}.${i}` }]),
      );
      calls.push(...wave);
      settled.push(
        fire(owner.store, q, wave).then((o) => {
          if (o.some((x) => !x.ok)) refusedOne = true;
          return o;
        }),
      );
      await new Promise((res) => setTimeout(res, 2));
    }
    const out = (await Promise.all(settled)).flat();
    assert.ok(stopping, "no group before the kill");
    await stopping;
    const restarted = await startRedis({ port: owner.server.port, dir: owner.server.dir });
    owner.server = restarted;
    const check = new Redis(restarted.url);
    try {
      const stored = await heldIds(check, "killed");
      const codes = new Set<string>();
      out.forEach((o, i) => {
        const id = sentId(calls[i]);
        if (o.ok) {
          assert.ok(stored.has(id), `send ${i} was acknowledged but is gone`);
          const shipped = recordsWith(owner.sink.records, id);
          assert.equal(shipped.length, 1, `send ${i} acknowledged without a record`);
        } else {
          codes.add(o.code);
          // "unavailable" promises it was not made.
          if (o.code === "unavailable") {
            assert.ok(!stored.has(id), `send ${i} unavailable yet held`);
          }
          assert.ok(["unavailable", "outcome_unknown"].includes(o.code), `send ${i}: ${o.code}`);
        }
      });
      assert.ok(out.some((o) => !o.ok), "the kill came too late to matter");
    } finally {
      check.disconnect();
    }
  } finally {
    await closeAll(owner);
  }
});

Deno.test("adversary: identity deleted between groups: every later call is refused, nothing changes", async () => {
  let lost = 0;
  const owner = await node({ onLost: () => lost++ });
  try {
    const q: EntityRef = { type: "queue", name: "wiped" };
    await makeQueue(owner, "wiped");
    let deleted = false;
    owner.sink.decide = (r) => {
      // On the store's own connection: ahead of the next group's script.
      if (!deleted && r.op.startsWith("group:")) {
        deleted = true;
        owner.conn.del(STORE_KEY).catch(() => {});
      }
      return undefined;
    };
    const calls = Array.from({ length: 200 }, (_, i) => sendCall("alice", [{ body: `i${i}` }]));
    const out = await fire(owner.store, q, calls);
    assert.ok(deleted);
    const stored = await heldIds(owner.conn, "wiped");
    let refused = 0;
    out.forEach((o, i) => {
      const id = sentId(calls[i]);
      if (o.ok) assert.ok(stored.has(id), `send ${i}`);
      else {
        refused++;
        assert.equal(o.code, "store_lost", `send ${i}`);
        assert.ok(!stored.has(id), `send ${i} refused but held`);
      }
    });
    assert.ok(refused > 0);
    assert.ok(lost > 0);
    // Receives and acks find nothing to do either.
    const after = await fire(owner.store, q, [receiveCall("alice", 3), receiveCall("alice", 3)]);
    for (const o of after) assert.deepEqual(o, { ok: false, code: "store_lost" });
    assert.equal((await heldIds(owner.conn, "wiped")).size, stored.size);
    // Once renewed, the store works again.
    await owner.store.renew();
    const again = await fire(owner.store, q, [receiveCall("alice", 1), receiveCall("alice", 1)]);
    assert.ok(again.every((o) => o.ok));
  } finally {
    await closeAll(owner);
  }
});

Deno.test("adversary: the epoch changes mid-stream; a stale epoch is refused whole", async () => {
  let epoch = 1;
  const owner = await node({ epochOf: () => epoch });
  try {
    const q: EntityRef = { type: "queue", name: "epochs" };
    await makeQueue(owner, "epochs");
    owner.sink.decide = (r) => {
      if (r.op.startsWith("group:") && epoch === 1) epoch = 2;
      return undefined;
    };
    const calls = Array.from({ length: 150 }, (_, i) => sendCall("alice", [{ body: `e${i}` }]));
    const out = await fire(owner.store, q, calls);
    assert.ok(out.every((o) => o.ok));
    const epochs = owner.sink.records.map((r) => r.epoch);
    assert.ok(epochs.includes(2));
    assert.deepEqual([...epochs].sort(), epochs, "epochs go back");
    await assertReplicaMatches(owner, [q]);

    // A node whose epoch is older than the one written: whole groups refused, nothing changed.
    epoch = 1;
    owner.sink.decide = () => undefined;
    const before = await dumpEntity(owner.conn, q);
    const records = owner.sink.records.length;
    const stale = await fire(owner.store, q, [
      ...Array.from({ length: 30 }, (_, i) => sendCall("alice", [{ body: `z${i}` }])),
      receiveCall("alice", 5),
      receiveCall("alice", 5),
    ]);
    for (const o of stale) assert.deepEqual(o, { ok: false, code: "stale_epoch" });
    assert.deepEqual(await dumpEntity(owner.conn, q), before);
    assert.equal(owner.sink.records.length, records);
  } finally {
    await closeAll(owner);
  }
});

/*
 * Under a stale epoch a group is refused whole: a call that alone would have been refused for its
 * own reason (no right) may hear stale_epoch instead. Either refusal sends the client on to the
 * real owner, which gives the call's own answer; what must hold is that nothing is stored.
 */
Deno.test("adversary: under a stale epoch every call is refused and nothing changes", async () => {
  let epoch = 2;
  const owner = await node({ epochOf: () => epoch });
  try {
    const q: EntityRef = { type: "queue", name: "fenced" };
    const cfg = { access: { restricted: true, senders: ["alice"], receivers: ["alice"] } };
    await makeQueue(owner, "fenced", cfg);
    const before = await dumpEntity(owner.conn, q);
    const records = owner.sink.records.length;
    epoch = 1;
    const calls = [
      sendCall("alice", [{ body: "a" }]),
      sendCall("mallory", [{ body: "b" }]),
      sendCall("alice", [{ body: "c" }]),
      sendCall("mallory", [{ body: "d" }]),
    ];
    const got = await fire(owner.store, q, calls);
    for (const [i, o] of got.entries()) {
      assert.equal(o.ok, false, `call ${i} succeeded under a stale epoch`);
      const code = (o as { code: string }).code;
      const allowed = calls[i].args[0] === "alice" ? ["stale_epoch"] : ["stale_epoch", "forbidden"];
      assert.ok(allowed.includes(code), `call ${i}: ${code}`);
    }
    assert.deepEqual(await dumpEntity(owner.conn, q), before);
    assert.equal(owner.sink.records.length, records);
  } finally {
    await closeAll(owner);
  }
});

Deno.test("adversary: huge and tiny calls mixed (group byte limit)", async () => {
  const rnd = random(1234);
  const owner = await node();
  const oracle = await node({ groupCommit: false });
  try {
    const q: EntityRef = { type: "queue", name: "sizes" };
    const cfg = { maxMessageBytes: 1_048_576, maxLength: 1000 };
    await makeQueue(owner, "sizes", cfg);
    await makeQueue(oracle, "sizes", cfg);
    const calls: Call[] = [];
    for (let i = 0; i < 80; i++) {
      const k = rnd();
      if (k < 0.1) {
        const body = String(i % 10).repeat(700_000 + Math.floor(rnd() * 300_000));
        calls.push(sendCall("alice", [{ body }]));
      } else if (k < 0.15) {
        // Over the queue's limit: refused alone, and big enough to be a group of its own.
        calls.push(sendCall("alice", [{ body: "q".repeat(1_100_000) }]));
      } else calls.push(sendCall("alice", [{ body: `tiny${i}`, dedup: `s${i % 7}` }]));
    }
    const got = await fire(owner.store, q, calls);
    const want = await fireInOrder(oracle.store, q, calls);
    assert.deepEqual(got, want);
    // No group above the byte limit unless it is a single call.
    for (const r of owner.sink.records) {
      if (!r.op.startsWith("group:")) continue;
      const bytes = r.args.slice(4).reduce((n, a) => n + a.length, 0);
      assert.ok(bytes <= 2 * 1024 * 1024 + 10_000, `group of ${bytes} bytes`);
    }
    const receives = Array.from({ length: 30 }, () => receiveCall("alice", 4));
    assert.deepEqual(
      await fire(owner.store, q, receives),
      await fireInOrder(oracle.store, q, receives),
    );
    assert.deepEqual(await logicalState(owner.conn, q), await logicalState(oracle.conn, q));
    await assertReplicaMatches(owner, [q]);
  } finally {
    await closeAll(owner, oracle);
  }
});

function publishCall(user: string, bodies: string[]): Call {
  const args = [user, "user", "", String(bodies.length)];
  for (const b of bodies) args.push(`p${++idCounter}`, b, "", "", String(b.length));
  return { op: "topic_publish", args };
}

for (const seed of [3, 8, 13]) {
  Deno.test(`adversary: two subscriptions' calls interleave (seed ${seed})`, async () => {
    const rnd = random(seed);
    const owner = await node();
    const oracle = await node({ groupCommit: false });
    try {
      const t: EntityRef = { type: "topic", name: "news" };
      for (const n of [owner, oracle]) {
        const topics = new TopicService(n.store, new Notifier());
        await topics.create(admin, "news", { ...DEFAULT_TOPIC_CONFIG });
        await topics.subscribe(admin, "news", "a", { start: "earliest" });
        await topics.subscribe(admin, "news", "b", { start: "earliest" });
      }
      const held: Record<string, Held[]> = { a: [], b: [] };
      for (let wave = 0; wave < 10; wave++) {
        const calls: Call[] = [];
        if (wave % 3 === 0) {
          for (let i = 0; i < 40; i++) {
            calls.push(
              publishCall(
                "alice",
                Array.from({ length: 1 + Math.floor(rnd() * 3) }, (_, j) => `w${wave}.${i}.${j}`),
              ),
            );
          }
        } else if (wave % 3 === 1) {
          for (let i = 0; i < 40; i++) {
            calls.push(receiveCall("alice", 1 + Math.floor(rnd() * 4), rnd() < 0.5 ? "a" : "b"));
          }
        } else {
          for (const sub of ["a", "b"]) {
            const pool = held[sub];
            held[sub] = [];
            for (const h of pool) {
              const k = rnd();
              const pair: [string, string] = [h.id, h.token];
              if (k < 0.5) calls.push(receiptCall("ack", "alice", [pair], sub));
              else if (k < 0.65) calls.push(receiptCall("nack", "alice", [pair], sub));
              else if (k < 0.8) calls.push(receiptCall("visibility", "alice", [pair], sub, "60"));
              else held[sub].push(h);
              // The other subscription's lane gets a receipt it does not hold.
              if (rnd() < 0.1) {
                calls.push(receiptCall("ack", "alice", [pair], sub === "a" ? "b" : "a"));
              }
            }
          }
          for (let i = calls.length - 1; i > 0; i--) {
            const j = Math.floor(rnd() * (i + 1));
            [calls[i], calls[j]] = [calls[j], calls[i]];
          }
        }
        // Receives of different subscriptions commute; receipts of one subscription given to
        // the other do not (nor does an ack racing a nack of the same receipt: not made here).
        const got = await fire(owner.store, t, calls);
        const want = await fireInOrder(oracle.store, t, calls);
        got.forEach((g, i) => {
          assert.deepEqual(
            g,
            want[i],
            `wave ${wave} call ${i} (${calls[i].op} ${calls[i].args[2]})`,
          );
          if (g.ok && calls[i].op === "topic_receive") {
            held[calls[i].args[2]].push(...deliveredTopic(g.value));
          }
        });
      }
      assert.deepEqual(await logicalState(owner.conn, t), await logicalState(oracle.conn, t));
      assert.ok(owner.sink.records.some((r) => r.op === "group:topic_receive"));
      assertRecordOrder(owner.sink.records);
      await assertReplicaMatches(owner, [t]);
    } finally {
      await closeAll(owner, oracle);
    }
  });
}

Deno.test("adversary: group commit off under concurrency: one record per changing call", async () => {
  const owner = await node({ groupCommit: false });
  try {
    const q: EntityRef = { type: "queue", name: "off" };
    await makeQueue(owner, "off", { maxLength: 50 });
    const calls = Array.from({ length: 80 }, (_, i) => sendCall("alice", [{ body: `o${i}` }]));
    const out = await fire(owner.store, q, calls);
    const made = out.filter((o) => o.ok).length;
    assert.equal(made, 50);
    assert.ok(out.slice(50).every((o) => !o.ok && o.code === "queue_full"));
    assert.equal(owner.sink.records.length, 1 + made);
    assert.ok(owner.sink.records.every((r) => !r.op.startsWith("group:")));
    assertRecordOrder(owner.sink.records);
    await assertReplicaMatches(owner, [q]);
  } finally {
    await closeAll(owner);
  }
});

Deno.test("adversary: the owner loses the entity mid-stream (epochOf throws)", async () => {
  let owned = true;
  const owner = await node({
    epochOf: () => {
      if (!owned) throw new BrokerError("unavailable", "not the owner any more");
      return 1;
    },
  });
  try {
    const q: EntityRef = { type: "queue", name: "moved" };
    await makeQueue(owner, "moved");
    owner.sink.decide = (r) => {
      if (r.op.startsWith("group:")) owned = false;
      return undefined;
    };
    const calls = Array.from({ length: 200 }, (_, i) => sendCall("alice", [{ body: `v${i}` }]));
    const out = await fire(owner.store, q, calls);
    const stored = await heldIds(owner.conn, "moved");
    let refused = 0;
    out.forEach((o, i) => {
      const id = sentId(calls[i]);
      if (o.ok) assert.ok(stored.has(id));
      else {
        refused++;
        assert.equal(o.code, "unavailable");
        assert.ok(!stored.has(id), `send ${i} refused but held`);
      }
    });
    assert.ok(refused > 0);
  } finally {
    await closeAll(owner);
  }
});

for (const seed of [17, 18, 19]) {
  Deno.test(`adversary: consumers receive many and ack, nack, extend while others receive (seed ${seed})`, async () => {
    const rnd = random(seed);
    const owner = await node();
    try {
      const q: EntityRef = { type: "queue", name: "work" };
      await makeQueue(owner, "work", { maxDeliveries: 1000 });
      const total = 200;
      const sends = Array.from({ length: total }, (_, i) => sendCall("alice", [{ body: `j${i}` }]));
      const sent = await fire(owner.store, q, sends);
      assert.ok(sent.every((o) => o.ok));
      const ids = new Set(sends.map(sentId));
      const acked = new Map<string, number>();
      const tokensSeen = new Set<string>();
      const consumer = async () => {
        for (let round = 0; round < 400 && acked.size < total; round++) {
          const r = receiveCall("alice", 1 + Math.floor(rnd() * 6));
          const got = delivered(await owner.store.change(q, r.op, r.args));
          for (const d of got) {
            assert.ok(ids.has(d.id), `unexpected message ${d.id}`);
            assert.ok(!acked.has(d.id), `${d.id} delivered after its ack`);
            assert.ok(!tokensSeen.has(d.token), `token ${d.token} handed out twice`);
            tokensSeen.add(d.token);
          }
          // Ack, nack and extend without waiting for one another: different lanes at once.
          const work: Promise<void>[] = [];
          for (const d of got) {
            const k = rnd();
            const op = k < 0.6 ? "ack" : k < 0.8 ? "nack" : "visibility";
            const c = receiptCall(
              op,
              "alice",
              [[d.id, d.token]],
              "",
              op === "visibility" ? "0" : "0",
            );
            work.push(
              owner.store.change<string[] | Record<string, never>>(q, c.op, c.args).then((res) => {
                const ok = Array.isArray(res) && res.length > 0 && res[0] === "ok";
                if (op === "ack" && ok) acked.set(d.id, (acked.get(d.id) ?? 0) + 1);
              }),
            );
          }
          await Promise.all(work);
          if (got.length === 0) await new Promise((res) => setTimeout(res, 1));
        }
      };
      await Promise.all(Array.from({ length: 8 }, consumer));
      assert.equal(acked.size, total);
      for (const [id, n] of acked) assert.equal(n, 1, `${id} acked ${n} times`);
      assert.equal((await heldIds(owner.conn, "work")).size, 0);
      assert.ok(owner.sink.records.some((r) => r.op === "group:queue_ack"));
      assertRecordOrder(owner.sink.records);
      await assertReplicaMatches(owner, [q]);
    } finally {
      await closeAll(owner);
    }
  });
}

/*
 * A record applied out of order is refused whole, also one that finds nothing to change:
 * topic_ack / topic_nack / topic_visibility on a receipt the missing earlier record handed out.
 */
Deno.test("adversary: an out-of-order topic ack that finds nothing to change is refused", async () => {
  const owner = await node();
  const replica = await node({ sink: localOnlySink });
  try {
    const t: EntityRef = { type: "topic", name: "gap" };
    const topics = new TopicService(owner.store, new Notifier());
    await topics.create(admin, "gap", { ...DEFAULT_TOPIC_CONFIG });
    await topics.subscribe(admin, "gap", "s", { start: "earliest" });
    await fire(owner.store, t, [publishCall("alice", ["one"])]);
    const [got] = await fire(owner.store, t, [receiveCall("alice", 1, "s")]);
    const [held] = deliveredTopic((got as { value: unknown }).value);
    await fire(owner.store, t, [receiptCall("ack", "alice", [[held.id, held.token]], "s")]);
    const records = owner.sink.records;
    const ack = records[records.length - 1];
    assert.equal(ack.op, "topic_ack");
    assert.equal(records[records.length - 2].op, "topic_receive");
    for (const x of records.slice(0, -2)) await replica.store.apply(x);
    const before = await dumpEntity(replica.conn, t);
    // The ack before the receive that handed its receipt out.
    const outcome = await replica.store.apply(ack).then((v) => v, (e) => codeOf(e));
    assert.deepEqual(await dumpEntity(replica.conn, t), before);
    assert.equal(outcome, "conflict");
  } finally {
    await closeAll(owner, replica);
  }
});

/*
 * Acknowledged means replicated: a send whose de-duplication id matches a message of an earlier
 * call changes nothing and yields no record, but its answer says the message is stored. It must
 * wait for the entity's records still shipping (the original's among them), and share their fate.
 */
for (const groupCommit of [true, false]) {
  Deno.test(`adversary: a duplicate send is not acknowledged before the original is replicated (group commit ${groupCommit ? "on" : "off"})`, async () => {
    const owner = await node({ groupCommit });
    try {
      const q: EntityRef = { type: "queue", name: "dd" };
      await makeQueue(owner, "dd");
      // The replicas: pending until they fail, then down until they come back.
      let down = false;
      const waiting: ((err: Error) => void)[] = [];
      owner.sink.decide = (r) =>
        r.op === "queue_create"
          ? undefined
          : down
          ? Promise.reject(new Error("replicas down"))
          : new Promise<void>((_, rej) => waiting.push(rej));
      const send = () =>
        fire(owner.store, q, [sendCall("alice", [{ body: "once", dedup: "order-42" }])]);
      const firstOutcome = send();
      while (owner.sink.records.length < 2) await new Promise((res) => setTimeout(res, 2));
      // The original is in Redis, its record not yet acknowledged by any replica.
      let secondSettled = false;
      const second = send().finally(() => (secondSettled = true));
      await new Promise((res) => setTimeout(res, 50));
      const early = secondSettled;
      down = true;
      for (const fail of waiting.splice(0)) fail(new Error("replicas never acknowledged"));
      const [a] = await firstOutcome;
      const [b] = await second;
      assert.deepEqual(a, { ok: false, code: "outcome_unknown" });
      assert.equal(early, false, "the duplicate was answered before the original replicated");
      assert.equal(
        b.ok,
        false,
        `the duplicate of an unreplicated send succeeded: ${JSON.stringify(b)}`,
      );
      // A retry while the replicas are down is not acknowledged either; once they are back,
      // it is, with the original's id.
      const [c] = await send();
      assert.equal(c.ok, false, `acknowledged with the replicas down: ${JSON.stringify(c)}`);
      down = false;
      owner.sink.decide = () => undefined;
      const [d] = await send();
      assert.ok(d.ok, JSON.stringify(d));
      const held = [...await heldIds(owner.conn, "dd")];
      assert.deepEqual((d as { value: [string, boolean][] }).value, [[held[0], true]]);
      assert.equal(held.length, 1);
    } finally {
      await closeAll(owner);
    }
  });
}

/*
 * A Redis that errors mid-group. Scripts are not rolled back on an error: a call that fails after
 * its first write (here a receive meeting a key of the wrong type, the only way to make Redis fail
 * mid-script on purpose) leaves its writes. Alone, the script fails and no record goes (the
 * replica sees a gap and resyncs); a group must do the same, not ship a record whose replay
 * differs from what the owner holds.
 */
Deno.test("adversary: a call that fails mid-script in a group ships no record; the replica meets a gap", async () => {
  const owner = await node();
  try {
    const q: EntityRef = { type: "queue", name: "broken" };
    await makeQueue(owner, "broken");
    await fire(
      owner.store,
      q,
      Array.from({ length: 6 }, (_, i) => sendCall("alice", [{ body: `x${i}` }])),
    );
    // The first receive goes alone; the key is broken right behind it on the same connection
    // (the receipts hash becomes a string), so the others meet it as one group.
    const first = owner.store.change(q, "queue_receive", receiveCall("alice", 1).args);
    const broken = owner.conn.set("momd:q:{broken}:rc", "corrupt");
    const out = await fire(
      owner.store,
      q,
      Array.from({ length: 5 }, () => receiveCall("alice", 1)),
    );
    await first;
    await broken;
    assert.ok(out.every((o) => !o.ok), "a receive succeeded over a broken key");
    assert.ok(
      !owner.sink.records.some((r) => r.op === "group:queue_receive"),
      "a group that failed mid-script shipped its record",
    );
    // The owner's sequence moved past its last record, as a lone call failing mid-script leaves
    // it: a replica meets the gap at the next record and is resynced, never quietly different.
    await owner.conn.del("momd:q:{broken}:rc");
    await fire(owner.store, q, [sendCall("alice", [{ body: "after" }])]);
    const replica = await node({ sink: localOnlySink });
    try {
      const records = owner.sink.records;
      for (const r of records.slice(0, -1)) assert.equal(await replica.store.apply(r), "applied");
      const last = await replica.store.apply(records[records.length - 1]).then(
        (v) => v,
        (e) => codeOf(e),
      );
      assert.equal(last, "conflict");
    } finally {
      await closeAll(replica);
    }
  } finally {
    await closeAll(owner);
  }
});

Deno.test("adversary: the store's connection is killed while a group waits in a paused Redis", async () => {
  const owner = await node();
  const admin2 = new Redis(owner.server.url);
  try {
    const q: EntityRef = { type: "queue", name: "cut" };
    await makeQueue(owner, "cut");
    const id = Number(await owner.conn.call("CLIENT", "ID"));
    let cut = false;
    owner.sink.decide = (r) => {
      if (!cut && r.op.startsWith("group:")) {
        cut = true;
        // The next group reaches a paused Redis, then its connection is cut under it.
        admin2.call("CLIENT", "PAUSE", "200", "WRITE")
          .then(() => new Promise((res) => setTimeout(res, 30)))
          .then(() => admin2.call("CLIENT", "KILL", "ID", String(id)))
          .catch(() => {});
      }
      return undefined;
    };
    const calls: Call[] = [];
    const settled: Promise<Outcome[]>[] = [];
    for (let burst = 0; burst < 30; burst++) {
      const wave = Array.from(
        { length: 10 },
        (_, i) => sendCall("alice", [{ body: `c${burst}.${i}` }]),
      );
      calls.push(...wave);
      settled.push(fire(owner.store, q, wave));
      await new Promise((res) => setTimeout(res, 3));
    }
    const out = (await Promise.all(settled)).flat();
    assert.ok(cut);
    await new Promise((res) => setTimeout(res, 300));
    const ready = await admin2.lrange("momd:q:{cut}:ready", 0, -1);
    // No message twice (a script sent again after the reconnect must not run twice).
    assert.equal(new Set(ready).size, ready.length, "a message is in ready twice");
    out.forEach((o, i) => {
      const mid = sentId(calls[i]);
      if (o.ok) {
        assert.ok(ready.includes(mid), `send ${i} acknowledged but not held`);
        assert.equal(recordsWith(owner.sink.records, mid).length, 1, `send ${i} without a record`);
      } else {
        assert.ok(["unavailable", "outcome_unknown"].includes(o.code), `send ${i}: ${o.code}`);
        if (o.code === "unavailable") {
          assert.ok(!ready.includes(mid), `send ${i} unavailable yet held`);
        }
      }
    });
    // Whatever Redis holds, a record says so: the replica ends where the owner is.
    assertRecordOrder(owner.sink.records);
    await assertReplicaMatches(owner, [q]);
  } finally {
    admin2.disconnect();
    await closeAll(owner);
  }
});
