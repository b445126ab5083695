/**
 * What a node's store promises about a change, on one node against a real Redis (issue 11):
 *
 * - a 503 means "not applied": a change refused before it is made (too few in-sync copies, no
 *   connection) leaves nothing behind; a 504 "outcome unknown" is a change made here that the
 *   replicas did not confirm in time;
 * - a store that lost its data (its identity gone) refuses every script and says so, until its
 *   node gives it a new identity;
 * - a read is answered only if the right to answer still holds after it;
 * - after a failover, deliveries in flight get back the time their queue or topic could not be
 *   reached, the same way on the owner and on a replica.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { BrokerError } from "../src/broker/errors.ts";
import type { EntityRef } from "../src/broker/keys.ts";
import { STORE_KEY } from "../src/broker/keys.ts";
import { Store } from "../src/broker/store.ts";
import { Notifier } from "../src/broker/notifier.ts";
import { DEFAULT_QUEUE_CONFIG, QueueService } from "../src/broker/queues.ts";
import { resumeInFlight } from "../src/broker/resume.ts";
import type { RecordSink, ReplicationRecord } from "../src/replication/record.ts";
import { localOnlySink } from "../src/replication/record.ts";
import { startTestApi } from "./support/node.ts";
import { startRedis } from "./support/services.ts";
import { dumpEntity } from "./support/state.ts";

const isCode = (code: string) => (err: unknown) => err instanceof BrokerError && err.code === code;

Deno.test("store: 503 means not applied, 504 means made but not confirmed", async () => {
  let admit = true;
  let confirm = true;
  const sink: RecordSink = {
    admit: () => {
      if (!admit) {
        throw new BrokerError("unavailable", "1 in-sync copy; 2 must hold each change", 1);
      }
    },
    ship: () =>
      confirm
        ? Promise.resolve()
        : Promise.reject(new BrokerError("unavailable", "not acknowledged in time", 1)),
  };
  const api = await startTestApi({ sink });
  const t = api.adminToken;
  const send = (body: string) =>
    api.call("POST", "/v1/queues/jobs/messages", {
      token: t,
      body: { messages: [{ body, dedupId: body }] },
    });
  const depth = async () =>
    (await api.call("GET", "/v1/queues/jobs", { token: t })).body.stats.depth as number;
  try {
    assert.equal((await api.call("PUT", "/v1/queues/jobs", { token: t, body: {} })).status, 201);

    // Refused before the change: 503, Retry-After, and nothing stored.
    admit = false;
    const refused = await send("refused");
    assert.equal(refused.status, 503);
    assert.equal(refused.body.code, "unavailable");
    assert.equal(refused.headers.get("retry-after"), "1");
    assert.equal(await depth(), 0);

    // Made here, not confirmed: 504 outcome unknown. The message is there (it may be delivered),
    // and a retry with the same dedupId stores nothing twice.
    admit = true;
    confirm = false;
    const unknown = await send("maybe");
    assert.equal(unknown.status, 504);
    assert.equal(unknown.body.code, "outcome_unknown");
    assert.equal(unknown.headers.get("content-type"), "application/problem+json");
    assert.equal(unknown.headers.get("retry-after"), "1");
    assert.match(unknown.body.detail, /dedupId/);
    confirm = true;
    const retried = await send("maybe");
    assert.equal(retried.status, 201);
    assert.equal(retried.body.messages[0].duplicate, true);
    assert.equal(await depth(), 1);
  } finally {
    await api.close();
  }
});

Deno.test("store: a store that lost its data refuses every script until it has a new identity", async () => {
  const api = await startTestApi();
  const t = api.adminToken;
  let lost = 0;
  const store = await Store.open(api.local, { sink: localOnlySink, onLost: () => lost++ });
  const q: EntityRef = { type: "queue", name: "jobs" };
  try {
    assert.equal((await api.call("PUT", "/v1/queues/jobs", { token: t, body: {} })).status, 201);
    const before = store.incarnation;
    assert.equal(await store.currentIdentity(), before);
    assert.equal(api.store.incarnation, before, "one Redis, one identity");

    await api.local.flushdb();
    assert.equal(await store.currentIdentity(), "");
    // Writes, reads and creates alike: nothing answers from, or writes into, the empty store.
    const send = await api.call("POST", "/v1/queues/jobs/messages", {
      token: t,
      body: { messages: [{ body: "x" }] },
    });
    assert.equal(send.status, 503);
    assert.equal(send.body.code, "store_lost");
    assert.equal((await api.call("GET", "/v1/queues/jobs", { token: t })).status, 503);
    const create = await api.call("PUT", "/v1/queues/jobs", { token: t, body: {} });
    assert.equal(create.status, 503, "a create must not bring a lost queue back empty");
    await assert.rejects(
      () => store.read(q, "queue_stats", ["admin", "admin", ""]),
      isCode("store_lost"),
    );
    assert.ok(lost > 0, "the loss is reported");
    assert.equal(await api.local.exists(STORE_KEY), 0);

    // The node dealt with it: a new identity, and the store works again (empty).
    const renewed = await store.renew();
    assert.notEqual(renewed, before);
    assert.equal(await store.currentIdentity(), renewed);
    assert.equal((await api.call("GET", "/v1/queues/jobs", { token: t })).status, 404);
  } finally {
    await api.close();
  }
});

Deno.test("store: a read is answered only if the right to answer holds after it", async () => {
  const redis = await startRedis();
  const conn = new Redis(redis.url);
  let owner = true;
  let reads = 0;
  try {
    const store = await Store.open(conn, {
      sink: localOnlySink,
      epochOf: () => {
        if (!owner) throw new BrokerError("unavailable", "owned by another node", 1);
        return 1;
      },
    });
    const q: EntityRef = { type: "queue", name: "jobs" };
    await new QueueService(store, new Notifier()).create(
      { username: "alice", role: "user" },
      "jobs",
      DEFAULT_QUEUE_CONFIG,
    );
    // The owner is deposed while the read runs (a pause between the check and the answer).
    const original = conn.evalsha.bind(conn);
    // deno-lint-ignore no-explicit-any
    (conn as any).evalsha = async (...args: any[]) => {
      // deno-lint-ignore no-explicit-any
      const reply = await (original as any)(...args);
      reads++;
      owner = false;
      return reply;
    };
    await assert.rejects(
      () => store.read(q, "queue_stats", ["alice", "user", ""]),
      isCode("unavailable"),
    );
    assert.equal(reads, 1, "the script ran; its answer was withheld");
  } finally {
    conn.disconnect();
    await redis.stop();
  }
});

Deno.test("store: after a failover deliveries in flight get back the time they lost", async () => {
  let clock = Date.parse("2026-12-01T00:00:00Z");
  const records: ReplicationRecord[] = [];
  const sink: RecordSink = { ship: (r) => (records.push(r), Promise.resolve()) };
  const api = await startTestApi({ sink, now: () => clock });
  const replicaServer = await startRedis();
  const replicaConn = new Redis(replicaServer.url);
  const t = api.adminToken;
  try {
    const replica = await Store.open(replicaConn, { sink: localOnlySink });
    const post = (path: string, body: unknown) => api.call("POST", path, { token: t, body });
    assert.equal((await api.call("PUT", "/v1/queues/jobs", { token: t, body: {} })).status, 201);
    assert.equal((await api.call("PUT", "/v1/topics/news", { token: t, body: {} })).status, 201);
    const sub = await api.call("PUT", "/v1/topics/news/subscriptions/audit", {
      token: t,
      body: { start: "earliest" },
    });
    assert.equal(sub.status, 201);
    await post("/v1/queues/jobs/messages", { messages: [{ body: "a" }, { body: "b" }] });
    await post("/v1/topics/news/messages", { messages: [{ body: "n1" }, { body: "n2" }] });
    // One delivery of each with 10 s of visibility, one with 60 s; the topic's second message
    // is nacked with a delay (in flight without a receipt: it keeps its time).
    const a = (await post("/v1/queues/jobs/receive", { max: 1, visibilitySeconds: 10 })).body;
    const b = (await post("/v1/queues/jobs/receive", { max: 1, visibilitySeconds: 60 })).body;
    const n = (await post("/v1/topics/news/subscriptions/audit/receive", {
      max: 2,
      visibilitySeconds: 10,
    })).body;
    await post("/v1/topics/news/subscriptions/audit/nack", {
      receipts: [n.messages[1].receipt],
      delaySeconds: 30,
    });
    const lastChange = clock;

    // The owner dies 2 s later; the new owner serves 7 s after that (9 s after the receive).
    clock += 9_000;
    const q: EntityRef = { type: "queue", name: "jobs" };
    const topic: EntityRef = { type: "topic", name: "news" };
    for (const e of [q, topic]) {
      await resumeInFlight(api.store, e, { epoch: 0, unreachableSince: lastChange - 5_000 });
    }
    // Unreachable since the last change (later than the bound given): 9 s back on each.
    const inflight = await api.local.zrange("momd:q:{jobs}:inflight", "0", "-1", "WITHSCORES");
    const deadlines = Object.fromEntries(
      Array.from(
        { length: inflight.length / 2 },
        (_, i) => [inflight[2 * i], Number(inflight[2 * i + 1])],
      ),
    );
    assert.equal(deadlines[a.messages[0].id], lastChange + 10_000 + 9_000);
    assert.equal(deadlines[b.messages[0].id], lastChange + 60_000 + 9_000);
    const subInflight = await api.local.zrange(
      "momd:t:{news}:s:audit:inflight",
      "0",
      "-1",
      "WITHSCORES",
    );
    assert.deepEqual(subInflight, [
      "0",
      String(lastChange + 10_000 + 9_000),
      "1",
      String(lastChange + 30_000),
    ]);
    // The consumer acks after the failover, past its original deadline: the receipt works.
    clock += 2_000;
    const acked = await post("/v1/queues/jobs/ack", { receipts: [a.messages[0].receipt] });
    assert.equal(acked.body.results[0].ok, true, JSON.stringify(acked.body));
    const tacked = await post("/v1/topics/news/subscriptions/audit/ack", {
      receipts: [n.messages[0].receipt],
    });
    assert.equal(tacked.body.results[0].ok, true, JSON.stringify(tacked.body));

    // The same records make a replica's copy equal (the extension replays exactly).
    for (const r of records) await replica.apply(r);
    for (const e of [q, topic]) {
      assert.deepEqual(await dumpEntity(replicaConn, e), await dumpEntity(api.local, e));
    }
    // Nothing in flight before the bound: nothing to extend, and no record.
    const count = records.length;
    clock += 1;
    const none = await resumeInFlight(api.store, q, { epoch: 0, unreachableSince: clock });
    assert.equal(none, 0);
    assert.equal(records.length, count);
  } finally {
    replicaConn.disconnect();
    await replicaServer.stop();
    await api.close();
  }
});
