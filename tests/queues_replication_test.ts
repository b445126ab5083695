import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { Store } from "../src/broker/store.ts";
import { Notifier } from "../src/broker/notifier.ts";
import { QueueService } from "../src/broker/queues.ts";
import type { EntityRef } from "../src/broker/keys.ts";
import { localOnlySink, type ReplicationRecord } from "../src/replication/record.ts";
import { startTestApi } from "./support/node.ts";
import { startRedis } from "./support/services.ts";
import { dumpEntity } from "./support/state.ts";

Deno.test("queues: every queue script replays on a replica to the same state", async () => {
  const clock = { ms: Date.parse("2026-01-01T00:00:00Z") };
  const records: ReplicationRecord[] = [];
  const sink = { ship: (r: ReplicationRecord) => (records.push(r), Promise.resolve()) };
  const api = await startTestApi({ sink, now: () => clock.ms });
  const replicaRedis = await startRedis();
  const replicaConn = new Redis(replicaRedis.url);
  const entity: EntityRef = { type: "queue", name: "mirrored" };
  const t = api.adminToken;
  const q = "/v1/queues/mirrored";
  // deno-lint-ignore no-explicit-any
  const post = (sub: string, body?: any) => api.call("POST", `${q}/${sub}`, { token: t, body });
  try {
    const replica = await Store.open(replicaConn, { sink: localOnlySink });
    const service = new QueueService(api.store, new Notifier());
    let applied = 0;
    const catchUp = async () => {
      for (; applied < records.length; applied++) {
        assert.equal(await replica.apply(records[applied]), "applied");
      }
      assert.deepEqual(await dumpEntity(replicaConn, entity), await dumpEntity(api.local, entity));
    };

    await api.call("PUT", q, {
      token: t,
      body: {
        maxDeliveries: 2,
        maxLength: 5,
        overflow: "dropHead",
        retentionSeconds: 120,
        visibilityTimeoutSeconds: 5,
      },
    });
    await post("messages", {
      messages: [
        { body: "one", attributes: { a: "1" }, dedupId: "d1" },
        { body: "two", delaySeconds: 10 },
        { body: "three", ttlSeconds: 60 },
      ],
    });
    await post("messages", {
      messages: [{ body: "one again", dedupId: "d1" }, { body: "four" }, { body: "five" }],
    });
    await post("messages", { messages: [{ body: "six" }] }); // drops the oldest ready
    await catchUp();

    const got = (await post("receive", { max: 3 })).body.messages;
    assert.equal(got.length, 3);
    await post("ack", { receipts: [got[0].receipt] });
    await post("nack", { receipts: [got[1].receipt], delaySeconds: 3 });
    await post("visibility", { receipts: [got[2].receipt], visibilitySeconds: 30 });
    await post("receive", { max: 1 });
    await catchUp();

    clock.ms += 20_000; // timeouts, due delayed messages
    await post("receive", { max: 10 });
    clock.ms += 20_000;
    await post("receive", { max: 10 }); // second timeouts: dead letters
    await post("redrive", { max: 1 });
    await api.call("PATCH", q, { token: t, body: { maxLength: 100, overflow: "reject" } });
    await catchUp();

    await post("messages", { messages: [{ body: "late", dedupId: "d2" }] });
    clock.ms += 200_000; // past retention: the sweep drops what expired
    await service.sweep("mirrored");
    await post("messages", { messages: [{ body: "after" }] });
    await post("purge", { deadLetters: true });
    await catchUp();

    const ops = new Set(records.map((r) => r.op));
    for (
      const op of [
        "queue_create",
        "queue_send",
        "queue_receive",
        "queue_ack",
        "queue_nack",
        "queue_visibility",
        "queue_redrive",
        "queue_configure",
        "queue_sweep",
        "queue_purge",
      ]
    ) {
      assert.ok(ops.has(op), `the workload produced a ${op} record`);
    }
    assert.deepEqual(records.map((r) => r.seq), records.map((_, i) => i + 1), "gap-free");
    assert.equal(await replica.apply(records[3]), "duplicate", "a record applied twice");

    await api.call("DELETE", q, { token: t });
    await catchUp();
    assert.deepEqual(await dumpEntity(replicaConn, entity), {});
  } finally {
    replicaConn.disconnect();
    await replicaRedis.stop();
    await api.close();
  }
});

Deno.test("queues: reads and refusals yield no record", async () => {
  const records: ReplicationRecord[] = [];
  const sink = { ship: (r: ReplicationRecord) => (records.push(r), Promise.resolve()) };
  const api = await startTestApi({ sink });
  try {
    const t = api.adminToken;
    const q = "/v1/queues/quiet";
    await api.call("PUT", q, { token: t, body: { maxLength: 1 } });
    const before = records.length;
    await api.call("PUT", q, { token: t, body: { maxLength: 1 } }); // idempotent create
    await api.call("GET", q, { token: t });
    await api.call("GET", `${q}/messages`, { token: t });
    await api.call("POST", `${q}/receive`, { token: t }); // nothing to deliver
    await api.call("POST", `${q}/purge`, { token: t }); // nothing to purge
    await api.call("POST", `${q}/redrive`, { token: t }); // no dead letters
    await api.call("POST", `${q}/messages`, {
      token: t,
      body: { messages: [{ body: "a" }, { body: "b" }] },
    }); // queue_full
    assert.equal(records.length, before);
  } finally {
    await api.close();
  }
});

Deno.test("queues: the sweep lets an idle queue drop what expired", async () => {
  const clock = { ms: Date.parse("2026-01-01T00:00:00Z") };
  const api = await startTestApi({ now: () => clock.ms });
  const service = new QueueService(api.store, new Notifier());
  try {
    const t = api.adminToken;
    const q = "/v1/queues/idle";
    await api.call("PUT", q, { token: t, body: { retentionSeconds: 60, dedupWindowSeconds: 30 } });
    await api.call("POST", `${q}/messages`, {
      token: t,
      body: {
        messages: [
          { body: "expires" },
          { body: "delayed", delaySeconds: 10, ttlSeconds: 60 },
          { body: "dedup", dedupId: "x" },
        ],
      },
    });
    assert.equal(await service.sweep("idle"), 0, "nothing due yet");
    clock.ms += 10_000;
    assert.equal(await service.sweep("idle"), 1, "the delayed message became ready");
    clock.ms += 60_000;
    await service.sweepAll();
    const stats = (await api.call("GET", q, { token: t })).body.stats;
    assert.equal(stats.depth, 0);
    assert.equal(stats.totals.expired, 3);
    assert.deepEqual(
      (await api.local.keys("momd:q:{idle}:*")).sort(),
      ["momd:q:{idle}:meta"],
      "messages and de-duplication ids are gone",
    );
  } finally {
    service.close();
    await api.close();
  }
});
