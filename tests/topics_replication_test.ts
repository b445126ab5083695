import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { Store } from "../src/broker/store.ts";
import type { EntityRef } from "../src/broker/keys.ts";
import { localOnlySink, type ReplicationRecord } from "../src/replication/record.ts";
import { startTestApi } from "./support/node.ts";
import { startRedis } from "./support/services.ts";
import { dumpEntity } from "./support/state.ts";

Deno.test("topics: replaying the records of every topic operation reproduces the state", async () => {
  let clock = Date.parse("2026-05-01T00:00:00Z");
  const records: ReplicationRecord[] = [];
  const sink = { ship: (r: ReplicationRecord) => (records.push(r), Promise.resolve()) };
  const owner = await startTestApi({ sink, now: () => clock });
  const replicaRedis = await startRedis();
  const replicaConn = new Redis(replicaRedis.url);
  try {
    const replica = await Store.open(replicaConn, { sink: localOnlySink });
    const token = owner.adminToken;
    const t = "/v1/topics/events";
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await owner.call(method, path, { token, body });
      assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    };
    const publish = (...bodies: string[]) =>
      call("POST", `${t}/messages`, {
        messages: bodies.map((body, i) => ({ body, key: `k${i}`, attributes: { n: `${i}` } })),
      });

    await call("PUT", t, { retentionMaxMessages: 6, retentionSeconds: 3600 });
    await call("PUT", `${t}/subscriptions/a`, { start: "earliest", maxDeliveries: 2 });
    await call("PUT", `${t}/subscriptions/b`, { start: "latest", visibilityTimeoutSeconds: 5 });
    await publish("e0", "e1", "e2");
    clock += 1000;
    await publish("e3", "e4");
    const ra = await call("POST", `${t}/subscriptions/a/receive`, { max: 3 });
    await call("POST", `${t}/subscriptions/a/ack`, { receipts: [ra.messages[0].receipt] });
    await call("POST", `${t}/subscriptions/a/nack`, {
      receipts: [ra.messages[1].receipt],
      delaySeconds: 2,
    });
    await call("POST", `${t}/subscriptions/a/visibility`, {
      receipts: [ra.messages[2].receipt],
      visibilitySeconds: 1,
    });
    const rb = await call("POST", `${t}/subscriptions/b/receive`, { max: 10 });
    assert.equal(rb.messages.length, 5);
    clock += 30_000; // everything in flight times out
    await call("POST", `${t}/subscriptions/a/receive`, { max: 10 }); // redeliveries
    clock += 30_000;
    await call("POST", `${t}/subscriptions/a/receive`, { max: 10 }); // dead letters
    await call("POST", `${t}/subscriptions/a/redrive`, {});
    await publish("e5", "e6", "e7", "e8"); // retention trims the log
    await call("POST", `${t}/subscriptions/b/seek`, { time: "2026-05-01T00:00:00.500Z" });
    await call("POST", `${t}/subscriptions/b/receive`, { max: 2 });
    await call("PATCH", t, { retentionSeconds: 60, access: { restricted: true } });
    clock += 60_000;
    await call("POST", `${t}/subscriptions/a/receive`, { max: 1 }); // retention by age
    await call("PUT", `${t}/subscriptions/c`, {});
    await call("DELETE", `${t}/subscriptions/c`);

    const events: EntityRef = { type: "topic", name: "events" };
    const state = await dumpEntity(owner.local, events);
    assert.ok(Object.keys(state).length >= 8, "the scenario left state behind");
    assert.deepEqual(records.map((r) => r.seq), records.map((_, i) => i + 1), "no gaps");
    for (const r of records) assert.equal(await replica.apply(r), "applied");
    assert.deepEqual(await dumpEntity(replicaConn, events), state);

    // Deleting the topic replicates too: nothing of it is left on either side.
    const before = records.length;
    await call("DELETE", t);
    for (const r of records.slice(before)) assert.equal(await replica.apply(r), "applied");
    assert.deepEqual(await owner.local.keys("momd:t:*"), []);
    assert.deepEqual(await replicaConn.keys("momd:t:*"), []);
  } finally {
    replicaConn.disconnect();
    await replicaRedis.stop();
    await owner.close();
  }
});
