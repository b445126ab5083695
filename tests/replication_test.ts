import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { Store } from "../src/broker/store.ts";
import { BrokerError } from "../src/broker/errors.ts";
import { Notifier } from "../src/broker/notifier.ts";
import { DEFAULT_QUEUE_CONFIG, QueueService } from "../src/broker/queues.ts";
import type { EntityRef } from "../src/broker/keys.ts";
import { localOnlySink, type ReplicationRecord } from "../src/replication/record.ts";
import { startTestApi } from "./support/node.ts";
import { startRedis } from "./support/services.ts";
import { dumpEntity } from "./support/state.ts";

/** Collects every record the owner's store yields. */
function collector() {
  const records: ReplicationRecord[] = [];
  return {
    records,
    sink: { ship: (r: ReplicationRecord) => (records.push(r), Promise.resolve()) },
  };
}

Deno.test("replication: a replica applying the owner's records reaches the same state", async () => {
  let clock = Date.parse("2026-01-01T00:00:00Z");
  const { records, sink } = collector();
  const owner = await startTestApi({ sink, now: () => clock });
  const replicaRedis = await startRedis();
  const replicaConn = new Redis(replicaRedis.url);
  try {
    const replica = await Store.open(replicaConn, { sink: localOnlySink });
    const t = owner.adminToken;
    const q = "/v1/queues/orders";
    assert.equal((await owner.call("PUT", q, { token: t, body: {} })).status, 201);
    const sent = await owner.call("POST", `${q}/messages`, {
      token: t,
      body: {
        messages: [
          { body: "one", attributes: { kind: "a" } },
          { body: "two", dedupId: "d-2" },
          { body: "three", delaySeconds: 5 },
          { body: "two again", dedupId: "d-2" },
        ],
      },
    });
    assert.equal(sent.status, 201);
    const got = await owner.call("POST", `${q}/receive`, {
      token: t,
      body: { max: 2, visibilitySeconds: 10 },
    });
    assert.equal(got.body.messages.length, 2);
    await owner.call("POST", `${q}/ack`, {
      token: t,
      body: { receipts: [got.body.messages[0].receipt] },
    });
    clock += 11_000; // the second delivery times out, the delayed message becomes due
    const again = await owner.call("POST", `${q}/receive`, { token: t, body: { max: 10 } });
    assert.ok(again.body.messages.length >= 2);
    await owner.call("POST", `${q}/nack`, {
      token: t,
      body: { receipts: [again.body.messages[0].receipt], delaySeconds: 3 },
    });

    const topic = "/v1/topics/events";
    assert.equal((await owner.call("PUT", topic, { token: t, body: {} })).status, 201);
    await owner.call("PUT", `${topic}/subscriptions/audit`, {
      token: t,
      body: { start: "earliest" },
    });
    await owner.call("POST", `${topic}/messages`, {
      token: t,
      body: { messages: [{ body: "e1", key: "k" }, { body: "e2" }, { body: "e3" }] },
    });
    const tm = await owner.call("POST", `${topic}/subscriptions/audit/receive`, {
      token: t,
      body: { max: 2 },
    });
    assert.equal(tm.body.messages.length, 2);
    await owner.call("POST", `${topic}/subscriptions/audit/ack`, {
      token: t,
      body: { receipts: [tm.body.messages[1].receipt] },
    });

    assert.ok(records.length >= 10, `expected records, got ${records.length}`);
    const entities: EntityRef[] = [{ type: "queue", name: "orders" }, {
      type: "topic",
      name: "events",
    }];
    for (const e of entities) {
      const mine = records.filter((r) => r.entity.type === e.type && r.entity.name === e.name);
      assert.deepEqual(mine.map((r) => r.seq), mine.map((_, i) => i + 1), "gap-free sequence");
    }

    for (const r of records) assert.equal(await replica.apply(r), "applied");
    for (const e of entities) {
      assert.deepEqual(await dumpEntity(replicaConn, e), await dumpEntity(owner.local, e));
    }

    // Applying a record twice changes nothing.
    assert.equal(await replica.apply(records[0]), "duplicate");
    assert.equal(await replica.apply(records.at(-1)!), "duplicate");
    for (const e of entities) {
      assert.deepEqual(await dumpEntity(replicaConn, e), await dumpEntity(owner.local, e));
    }
  } finally {
    replicaConn.disconnect();
    await replicaRedis.stop();
    await owner.close();
  }
});

Deno.test("replication: records out of order or from an older epoch are refused", async () => {
  const { records, sink } = collector();
  let epoch = 3;
  const redisA = await startRedis();
  const redisB = await startRedis();
  const a = new Redis(redisA.url);
  const b = new Redis(redisB.url);
  try {
    const owner = await Store.open(a, { sink, epochOf: () => epoch });
    const replica = await Store.open(b, { sink: localOnlySink });
    const e: EntityRef = { type: "queue", name: "fenced" };
    await new QueueService(owner, new Notifier()).create(
      { username: "alice", role: "user" },
      e.name,
      DEFAULT_QUEUE_CONFIG,
    );
    assert.ok(records.length === 1, "create yields one record");
    // A gap: record 2 before record 1.
    epoch = 4;
    const fake: ReplicationRecord = { ...records[0], seq: 2 };
    await assert.rejects(() => replica.apply(fake), (err) => err instanceof BrokerError);
    assert.equal(await replica.apply(records[0]), "applied");
    // A newer epoch was seen; a record written under an older one is fenced off.
    const newer: ReplicationRecord = {
      ...records[0],
      seq: 2,
      epoch: 5,
      op: "queue_purge",
      args: ["alice", "user", ""],
    };
    assert.equal(await replica.apply(newer), "applied");
    const stale: ReplicationRecord = { ...newer, seq: 3, epoch: 4 };
    await assert.rejects(
      () => replica.apply(stale),
      (err) => err instanceof BrokerError && err.code === "stale_epoch",
    );
  } finally {
    a.disconnect();
    b.disconnect();
    await redisA.stop();
    await redisB.stop();
  }
});
