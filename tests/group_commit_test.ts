/**
 * Group commit (Store, GROUPED_SCRIPTS): concurrent calls of one script on one entity run as one
 * script call and one replication record, each caller with its own outcome. Checked against real
 * Redis: every caller's result, refusals that stay with their own caller, fewer records than
 * calls, and a replica that replays the group records (in order, again, stale, out of order)
 * reaching the owner's state exactly. Several seeds shape the concurrent load.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { Store } from "../src/broker/store.ts";
import { BrokerError } from "../src/broker/errors.ts";
import { Notifier } from "../src/broker/notifier.ts";
import { DEFAULT_QUEUE_CONFIG, QueueService } from "../src/broker/queues.ts";
import { TopicService } from "../src/broker/topics.ts";
import { DEFAULT_TOPIC_CONFIG } from "../src/broker/topics.ts";
import type { EntityRef } from "../src/broker/keys.ts";
import { decodeReceipt, encodeReceipt, newToken } from "../src/broker/receipts.ts";
import { localOnlySink, type ReplicationRecord } from "../src/replication/record.ts";
import { startRedis } from "./support/services.ts";
import { dumpEntity } from "./support/state.ts";
import { mulberry32 as random } from "./support/nemesis.ts";

const admin = { username: "admin", role: "admin" as const };
const alice = { username: "alice", role: "user" as const };
const mallory = { username: "mallory", role: "user" as const };

/** An owner store whose records are kept, and a replica store on its own Redis. */
async function pair(groupCommit = true) {
  const ownerServer = await startRedis();
  const replicaServer = await startRedis();
  const ownerConn = new Redis(ownerServer.url);
  const replicaConn = new Redis(replicaServer.url);
  const records: ReplicationRecord[] = [];
  const owner = await Store.open(ownerConn, {
    sink: { ship: (r) => (records.push(r), Promise.resolve()) },
    epochOf: () => 1,
    groupCommit,
  });
  const replica = await Store.open(replicaConn, { sink: localOnlySink });
  const notifier = new Notifier();
  return {
    owner,
    replica,
    records,
    queues: new QueueService(owner, notifier),
    topics: new TopicService(owner, notifier),
    ownerConn,
    replicaConn,
    async close() {
      ownerConn.disconnect();
      replicaConn.disconnect();
      await ownerServer.stop();
      await replicaServer.stop();
    },
  };
}

/** A receipt of the same message with another attempt's token: refused, alone. */
function forged(receipt: string): string {
  const { id } = decodeReceipt(receipt)!;
  return encodeReceipt(id, newToken());
}

async function applyAll(replica: Store, records: readonly ReplicationRecord[]) {
  for (const r of records) assert.equal(await replica.apply(r), "applied");
}

async function sameState(
  a: Redis,
  b: Redis,
  entity: EntityRef,
) {
  assert.deepEqual(await dumpEntity(b, entity), await dumpEntity(a, entity));
}

for (const seed of [1, 2, 3]) {
  Deno.test(`group commit: concurrent sends, receives and acks (seed ${seed})`, async () => {
    const rnd = random(seed);
    const p = await pair();
    try {
      const q: EntityRef = { type: "queue", name: "orders" };
      await p.queues.create(admin, "orders", { ...DEFAULT_QUEUE_CONFIG, maxMessageBytes: 1000 });
      const bodies: string[] = [];
      const sends = Array.from({ length: 150 }, (_, i) => {
        // Some calls carry a batch, some a message too large for this queue, some a dedup id
        // that an earlier call of the same group already used.
        const kind = rnd();
        const body = `m${i}`;
        if (kind < 0.1) return { i, messages: [{ body: "x".repeat(2000) }], bad: true };
        if (kind < 0.2) return { i, messages: [{ body, dedupId: `d${i % 5}` }], dedup: true };
        if (kind < 0.3) {
          return { i, messages: [{ body }, { body: `${body}b` }, { body: `${body}c` }] };
        }
        return { i, messages: [{ body }] };
      });
      const outcomes = await Promise.allSettled(
        sends.map((s) => p.queues.send(alice, "orders", s.messages)),
      );
      const seenDedup = new Map<string, string>();
      outcomes.forEach((o, k) => {
        const s = sends[k];
        if (s.bad) {
          assert.equal(o.status, "rejected", `send ${k} (too large) must fail alone`);
          assert.ok(o.reason instanceof BrokerError && o.reason.code === "too_large");
          return;
        }
        assert.equal(o.status, "fulfilled", `send ${k}: ${(o as PromiseRejectedResult).reason}`);
        const results = o.value;
        assert.equal(results.length, s.messages.length);
        if (s.dedup) {
          const dedupId = s.messages[0].dedupId!;
          const first = seenDedup.get(dedupId);
          if (first === undefined) {
            assert.equal(results[0].duplicate, false);
            seenDedup.set(dedupId, results[0].id);
            bodies.push(s.messages[0].body);
          } else {
            // Calls of one group see what the earlier ones did, as if run one after another.
            assert.deepEqual(results[0], { id: first, duplicate: true });
          }
          return;
        }
        for (const m of s.messages) bodies.push(m.body);
      });
      // Fewer records than changing calls: the point of the exercise.
      assert.ok(p.records.length < 100, `${p.records.length} records for 150 sends`);
      assert.ok(p.records.some((r) => r.op === "group:queue_send"), "no group record");

      // Concurrent receives of one message each get distinct messages; then concurrent acks.
      const got = await Promise.all(
        Array.from({ length: bodies.length }, () => p.queues.receive(alice, "orders", { max: 1 })),
      );
      const deliveries = got.flat();
      assert.equal(deliveries.length, bodies.length);
      // FIFO: messages are stored in the order of the calls, and the receives of one group
      // take them in the order of theirs.
      assert.deepEqual(deliveries.map((d) => d.body), bodies);
      const stale = deliveries[0].receipt;
      const acks = await Promise.all(
        deliveries.map((d, i) =>
          p.queues.ack(alice, "orders", i % 7 === 0 ? [d.receipt, forged(d.receipt)] : [d.receipt])
        ),
      );
      acks.forEach((results, i) => {
        assert.equal(results[0].ok, true, `ack ${i}`);
        if (i % 7 === 0) assert.equal(results[1].ok, false);
      });
      assert.equal((await p.queues.ack(alice, "orders", [stale]))[0].ok, false);
      const stats = await p.queues.get(admin, "orders");
      assert.equal(stats.stats.depth, 0);
      assert.equal(stats.stats.inFlight, 0);
      assert.equal(stats.stats.totals.acked, bodies.length);

      // The replica replays every record, group or not, to the same state.
      await applyAll(p.replica, p.records);
      await sameState(p.ownerConn, p.replicaConn, q);
      // Again: each is a record already held.
      for (const r of p.records) assert.equal(await p.replica.apply(r), "duplicate");
    } finally {
      await p.close();
    }
  });
}

Deno.test("group commit: a caller's refusal stays its own (rights, missing queue)", async () => {
  const p = await pair();
  try {
    await p.queues.create(alice, "private", {
      ...DEFAULT_QUEUE_CONFIG,
      access: { restricted: true, senders: [], receivers: [] },
    });
    const calls = Array.from({ length: 40 }, (_, i) => {
      const who = i % 4 === 1 ? mallory : alice;
      return p.queues.send(who, "private", [{ body: `b${i}` }]);
    });
    const [missing] = await Promise.allSettled([p.queues.send(alice, "nowhere", [{ body: "x" }])]);
    const out = await Promise.allSettled(calls);
    out.forEach((o, i) => {
      if (i % 4 === 1) {
        assert.equal(o.status, "rejected");
        assert.equal((o.reason as BrokerError).code, "forbidden");
      } else assert.equal(o.status, "fulfilled", String((o as PromiseRejectedResult).reason));
    });
    assert.equal(missing.status, "rejected");
    assert.equal((missing.reason as BrokerError).code, "not_found");
    assert.equal((await p.queues.get(admin, "private")).stats.depth, 30);
    await applyAll(p.replica, p.records);
    await sameState(p.ownerConn, p.replicaConn, { type: "queue", name: "private" });
  } finally {
    await p.close();
  }
});

Deno.test("group commit: topic publishes and a subscription's receives and acks", async () => {
  const p = await pair();
  try {
    const t: EntityRef = { type: "topic", name: "events" };
    await p.topics.create(admin, "events", DEFAULT_TOPIC_CONFIG);
    await p.topics.subscribe(admin, "events", "audit", { start: "earliest" });
    await p.topics.subscribe(admin, "events", "billing", { start: "earliest" });
    const published = await Promise.all(
      Array.from({ length: 80 }, (_, i) => p.topics.publish(alice, "events", [{ body: `e${i}` }])),
    );
    // Offsets: one each, no gaps, no repeats, in the order the calls were made.
    assert.deepEqual(published.map((r) => r[0].offset), Array.from({ length: 80 }, (_, i) => i));
    assert.ok(p.records.some((r) => r.op === "group:topic_publish"));
    for (const sub of ["audit", "billing"]) {
      const got = (await Promise.all(
        Array.from({ length: 80 }, () => p.topics.receive(alice, "events", sub, { max: 1 })),
      )).flat();
      assert.deepEqual(
        got.map((d) => d.offset).sort((a, b) => a - b),
        published.map((r) => r[0].offset),
      );
      const acks = await Promise.all(
        got.map((d) => p.topics.ack(alice, "events", sub, [d.receipt])),
      );
      assert.ok(acks.every((r) => r[0].ok));
    }
    await applyAll(p.replica, p.records);
    await sameState(p.ownerConn, p.replicaConn, t);
  } finally {
    await p.close();
  }
});

Deno.test("group commit: a replica refuses a group record that is stale or out of order", async () => {
  const p = await pair();
  try {
    await p.queues.create(admin, "fenced", DEFAULT_QUEUE_CONFIG);
    await Promise.all(
      Array.from({ length: 30 }, (_, i) => p.queues.send(alice, "fenced", [{ body: `f${i}` }])),
    );
    const group = p.records.find((r) => r.op === "group:queue_send");
    assert.ok(group, "no group record");
    const before = p.records.filter((r) => r.seq < group.seq);
    // Out of order: the group before its predecessors is refused whole, and changes nothing.
    if (before.length > 1) {
      await applyAll(p.replica, before.slice(0, 1));
      await assert.rejects(p.replica.apply(group), /conflict/);
    }
    await applyAll(p.replica, before.slice(before.length > 1 ? 1 : 0));
    // A newer epoch known on the replica fences the owner's group.
    const newer: ReplicationRecord = { ...before[before.length - 1] };
    await p.replicaConn.hset("momd:q:{fenced}:meta", "epoch", "2");
    await assert.rejects(p.replica.apply(group), /stale_epoch/);
    await p.replicaConn.hset("momd:q:{fenced}:meta", "epoch", "1");
    assert.equal(await p.replica.apply(group), "applied");
    assert.equal(await p.replica.apply(newer), "duplicate");
  } finally {
    await p.close();
  }
});

Deno.test("group commit: off, every call is its own record (the replica's view is the same)", async () => {
  const p = await pair(false);
  try {
    await p.queues.create(admin, "plain", DEFAULT_QUEUE_CONFIG);
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => p.queues.send(alice, "plain", [{ body: `p${i}` }])),
    );
    assert.equal(p.records.length, 21);
    assert.ok(p.records.every((r) => !r.op.startsWith("group:")));
  } finally {
    await p.close();
  }
});
