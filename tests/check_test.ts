/**
 * The consistency check without a cluster: the comparison (compareFacts) with hand-made facts,
 * the rounds of runCheck with scripted sources (what settles by itself, what is asked in which
 * order), and what a node reports of a real Redis (digests, keys) and a single node's check.
 */
import assert from "node:assert/strict";
import {
  type CheckFacts,
  type CheckSources,
  compareFacts,
  type CopyRead,
  type Finding,
  type NodeFacts,
  runCheck,
  singleNodeChecker,
  type ZkRecord,
} from "../src/cluster/check.ts";
import {
  classifyKey,
  copyFacts,
  type InspectReply,
  type InspectRequest,
  inspectStore,
} from "../src/replication/inspect.ts";
import { restoreSnapshot, takeSnapshot } from "../src/replication/snapshot.ts";
import { backupKeys } from "../src/backup/keys.ts";
import { writeBackup } from "../src/backup/store.ts";
import type { EntityRef } from "../src/broker/keys.ts";
import { connectRedis } from "../src/redis.ts";
import { startTestApi } from "./support/node.ts";

// ---- hand-made facts ----------------------------------------------------------------------------

const Q = "queue/orders";
const NODES = ["n1", "n2", "n3"];

function record(over: Partial<ZkRecord> = {}): ZkRecord {
  return {
    entity: Q,
    owner: "n1",
    ownerSession: "s1",
    ownerStore: "st-n1",
    replicas: ["n2", "n3"],
    isr: [{ node: "n2", store: "st-n2" }, { node: "n3", store: "st-n3" }],
    epoch: 7,
    state: "live",
    ...over,
  };
}

function read(over: Partial<CopyRead> = {}): CopyRead {
  return {
    exists: true,
    seq: 42,
    epoch: 7,
    created: 1000,
    digest: "d42",
    keys: 5,
    registered: true,
    note: "",
    askedAt: 0,
    answeredAt: 1,
    ...over,
  };
}

function node(id: string, over: Partial<NodeFacts> = {}): NodeFacts {
  return {
    id,
    store: `st-${id}`,
    views: { [Q]: { owner: "n1", epoch: 7 } },
    reads: { [Q]: [read()] },
    registry: [Q],
    groups: [{
      entity: { type: "queue", name: "orders" },
      count: 5,
      sample: [],
      stray: [],
      strayCount: 0,
    }],
    scanned: 7,
    ...over,
  };
}

/** A consistent three-node cluster with one queue, everything equal, the backup at seq 40. */
function facts(): CheckFacts {
  return {
    mode: "cluster",
    node: "n1",
    now: 10_000,
    replicationFactor: 3,
    zookeeper: {
      records: [record()],
      members: NODES.map((id) => ({
        id,
        session: `s${id.slice(1)}`,
        store: `st-${id}`,
        storeUp: true,
      })),
    },
    nodes: NODES.map((id) => node(id)),
    backup: {
      reads: {
        [Q]: [{
          head: { created: 1000, epoch: 7, seq: 40, savedAt: 9_500, deleted: false },
          askedAt: -1,
          answeredAt: -0.5,
        }],
      },
    },
  };
}

function nodeOf(f: CheckFacts, id: string): NodeFacts {
  return f.nodes.find((n) => n.id === id)!;
}

function kinds(found: Finding[]): string[] {
  return found.map((p) => `${p.severity} ${p.kind}${p.node ? ` ${p.node}` : ""}`);
}

function errors(found: Finding[]): Finding[] {
  return found.filter((p) => p.severity === "error");
}

Deno.test("check: a consistent cluster has no errors; a backup behind is a warning", () => {
  const found = compareFacts(facts());
  assert.deepEqual(kinds(found), ["warning backup_behind n1"]);
  assert.match(found[0].detail, /2 records behind \(seq 40 of 42\), written 0\.5 s ago/);
  assert.equal(found[0].settles, false);
});

Deno.test("check: a replica's copy that differs at the same seq is a digest mismatch", () => {
  const f = facts();
  nodeOf(f, "n3").reads[Q] = [read({ digest: "other" })];
  const found = errors(compareFacts(f));
  assert.deepEqual(kinds(found), ["error digest_mismatch n3"]);
  assert.equal(found[0].entity, Q);
  assert.match(found[0].detail, /at seq 42 \(epoch 7\)/);
  // A later pair of reads at one seq decides: equal then means the copies agree.
  nodeOf(f, "n3").reads[Q].push(read({ seq: 43, digest: "d43", askedAt: 5, answeredAt: 6 }));
  nodeOf(f, "n1").reads[Q].push(read({ seq: 43, digest: "d43", askedAt: 7, answeredAt: 8 }));
  assert.deepEqual(errors(compareFacts(f)), []);
});

Deno.test("check: a replica behind is lagging (a warning that may settle)", () => {
  const f = facts();
  nodeOf(f, "n2").reads[Q] = [read({ seq: 39, digest: "d39" })];
  const found = compareFacts(f).filter((p) => p.kind === "lagging");
  assert.equal(found.length, 1);
  assert.equal(found[0].severity, "warning");
  assert.equal(found[0].settles, true);
  assert.match(found[0].detail, /3 records behind the owner n1 \(seq 39 of 42; in the in-sync/);
  // Outside the in-sync set it is said so, and the set membership is a warning too.
  f.zookeeper!.records[0].isr = [{ node: "n3", store: "st-n3" }];
  assert.match(
    compareFacts(f).find((p) => p.kind === "lagging")!.detail,
    /catching up outside the in-sync set/,
  );
});

Deno.test("check: a replica ahead of its owner is an error only when read before the owner", () => {
  const f = facts();
  // Overlapping reads: the owner may have moved on since; look again (not an error yet).
  nodeOf(f, "n2").reads[Q] = [read({ seq: 50, digest: "d50" })];
  let found = compareFacts(f);
  assert.deepEqual(errors(found), []);
  const unverified = found.find((p) => p.kind === "unverified" && p.node === "n2")!;
  assert.equal(unverified.settles, true);
  // The owner read after the replica answered, still below it: the replica is ahead.
  nodeOf(f, "n1").reads[Q].push(read({ askedAt: 2, answeredAt: 3 }));
  found = errors(compareFacts(f));
  assert.deepEqual(kinds(found), ["error ahead n2"]);
  assert.match(found[0].detail, /seq 50, ahead of the owner n1 \(seq 42/);
  // Records of an earlier epoch beyond the new owner's (after a failover) await its resync.
  nodeOf(f, "n2").reads[Q] = [read({ seq: 50, epoch: 6, digest: "d50" })];
  assert.deepEqual(errors(compareFacts(f)), []);
});

Deno.test("check: views, owners, stores and epochs against ZooKeeper", () => {
  const f = facts();
  nodeOf(f, "n3").views[Q] = { owner: "n2", epoch: 6 };
  nodeOf(f, "n2").views = {};
  nodeOf(f, "n2").views[Q] = { owner: "", epoch: 0 };
  f.zookeeper!.records[0].isr[0].store = "st-old";
  nodeOf(f, "n1").reads[Q] = [read({ epoch: 6 })];
  f.backup.reads[Q][0].head!.epoch = 6;
  const found = errors(compareFacts(f));
  assert.deepEqual(kinds(found).sort(), [
    "error epoch_mismatch n1",
    "error store_mismatch n2",
    "error view_mismatch n2",
    "error view_mismatch n3",
  ]);
  assert.match(
    found.find((p) => p.node === "n3")!.detail,
    /sees owner n2 at epoch 6, ZooKeeper n1/,
  );
  assert.match(
    found.find((p) => p.kind === "view_mismatch" && p.node === "n2")!.detail,
    /does not know it/,
  );
});

Deno.test("check: nodes that do not answer, or are named but not live, are unreachable", () => {
  const f = facts();
  nodeOf(f, "n3").error = "inspect of 127.0.0.1:9: DEADLINE_EXCEEDED";
  let found = compareFacts(f);
  assert.deepEqual(kinds(errors(found)), ["error unreachable n3"]);
  assert.match(found[0].detail, /did not answer \(inspect of .*DEADLINE_EXCEEDED\)/);
  // Its session ended: no member, still named as a replica; under-replicated as well.
  f.zookeeper!.members = f.zookeeper!.members.filter((m) => m.id !== "n3");
  f.nodes = f.nodes.filter((n) => n.id !== "n3");
  found = compareFacts(f);
  assert.deepEqual(kinds(errors(found)), ["error unreachable n3"]);
  assert.match(found[0].detail, /not live .* a replica of 1 entities/);
  assert.ok(kinds(found).includes("warning under_replicated"), kinds(found).join());
  // The owner gone: nobody serves the queue until the failover.
  f.zookeeper!.members = f.zookeeper!.members.filter((m) => m.id !== "n1");
  assert.ok(kinds(compareFacts(f)).includes("error no_owner n1"));
});

Deno.test("check: orphan keys, stray keys and listed entities without a record", () => {
  const f = facts();
  const n2 = nodeOf(f, "n2");
  n2.groups.push(
    { entity: null, count: 1, sample: ["momd:junk"], stray: [], strayCount: 0 },
    {
      entity: { type: "queue", name: "ghost" },
      count: 2,
      sample: ["momd:q:{ghost}:meta", "momd:q:{ghost}:msgs"],
      stray: [],
      strayCount: 0,
    },
  );
  n2.groups[0] = { ...n2.groups[0], stray: ["momd:q:{orders}:weird"], strayCount: 1 };
  n2.registry.push("topic/unrecorded");
  const found = errors(compareFacts(f));
  assert.deepEqual(kinds(found), [
    "error orphan_keys n2",
    "error orphan_keys n2",
    "error orphan_keys n2",
    "error unrecorded_entity n2",
  ]);
  const text = found.map((p) => `${p.entity ?? "-"}: ${p.detail}`).join("\n");
  assert.match(text, /-: 1 key \(momd:junk\) of no queue or topic/);
  assert.match(text, /queue\/ghost: 2 keys .* which has no ZooKeeper record/);
  assert.match(text, /queue\/orders: 1 key named after queue\/orders that are not among its keys/);
  assert.match(text, /topic\/unrecorded: listed in this node's registry, but ZooKeeper has no/);
  assert.deepEqual(found[0].probe, ["momd:junk"]);
  // A copy of a known entity on a node ZooKeeper no longer places it on.
  f.zookeeper!.records[0].replicas = ["n2"];
  f.zookeeper!.records[0].isr = [{ node: "n2", store: "st-n2" }];
  const stale = errors(compareFacts(f)).filter((p) => p.node === "n3");
  // Its keys and its registry entry: one finding per entity and node.
  assert.deepEqual(kinds(stale), ["error orphan_keys n3"]);
  assert.match(stale[0].detail, /which ZooKeeper places on n1, n2 \(owner n1\)/);
});

Deno.test("check: the backup against the owner", () => {
  const f = facts();
  const head = f.backup.reads[Q][0].head!;
  head.seq = 45;
  // Read before the owner: ahead for certain.
  assert.deepEqual(kinds(errors(compareFacts(f))), ["error backup_ahead n1"]);
  // Read while the owner was read: it may only have looked ahead.
  f.backup.reads[Q][0].answeredAt = 0.5;
  assert.deepEqual(errors(compareFacts(f)), []);
  assert.ok(kinds(compareFacts(f)).includes("warning unverified n1"));
  // The tombstone of this very incarnation would make a restore lose it.
  f.backup.reads[Q][0] = { ...f.backup.reads[Q][0], head: { ...head, deleted: true, seq: 40 } };
  assert.deepEqual(kinds(errors(compareFacts(f))), ["error backup_deleted n1"]);
  f.backup.reads[Q][0].head = null;
  assert.deepEqual(kinds(compareFacts(f)), ["warning backup_missing"]);
  f.backup.error = "connect ECONNREFUSED";
  assert.deepEqual(kinds(compareFacts(f)), ["error backup_unreachable"]);
});

Deno.test("check: a single node checks its store and backups only", () => {
  const f: CheckFacts = {
    ...facts(),
    mode: "single",
    zookeeper: undefined,
    nodes: [node("solo", {
      registry: [Q, "topic/gone"],
      reads: { [Q]: [read()], "topic/gone": [read({ exists: false, digest: "" })] },
      groups: [
        {
          entity: { type: "queue", name: "orders" },
          count: 5,
          sample: [],
          stray: [],
          strayCount: 0,
        },
        {
          entity: { type: "queue", name: "unlisted" },
          count: 1,
          sample: ["momd:q:{unlisted}:meta"],
          stray: [],
          strayCount: 0,
        },
      ],
    })],
  };
  f.backup.reads[Q][0].head!.seq = 42;
  const found = compareFacts(f);
  assert.deepEqual(kinds(found), ["error missing_copy solo", "error orphan_keys solo"]);
  assert.match(found[1].detail, /queue\/unlisted, which is not in the registry/);
});

// ---- the rounds ---------------------------------------------------------------------------------

/** Scripted sources: each node's answer per call, and the order of the calls. */
function scripted(
  answer: (node: string, req: InspectRequest, call: number) => InspectReply,
): { sources: CheckSources; calls: string[] } {
  const calls: string[] = [];
  let n = 0;
  const sources: CheckSources = {
    mode: "cluster",
    node: "n1",
    replicationFactor: 3,
    readZooKeeper: () =>
      Promise.resolve({
        records: [record()],
        members: NODES.map((id) => ({
          id,
          session: `s${id.slice(1)}`,
          store: `st-${id}`,
          storeUp: true,
        })),
      }),
    inspect(node, req) {
      calls.push(`${node}:${req.scan ? "scan" : req.copies.map((e) => e.name).join(",")}`);
      return Promise.resolve(answer(node, req, n++));
    },
    backupHeads: (entities) =>
      Promise.resolve(entities.map((entity) => ({
        entity,
        created: 1000,
        epoch: 7,
        seq: 42,
        savedAt: Date.now(),
        keys: 5,
        base: 42,
        bytes: 10,
        logLen: 0,
        logBytes: 0,
        deleted: false,
      }))),
  };
  return { sources, calls };
}

function reply(node: string, req: InspectRequest, seq: number): InspectReply {
  const orders: EntityRef = { type: "queue", name: "orders" };
  return {
    store: `st-${node}`,
    views: req.views.map((entity) => ({ entity, owner: "n1", epoch: 7 })),
    copies: req.copies.map((entity) => ({
      entity,
      exists: true,
      seq,
      epoch: 7,
      created: 1000,
      digest: `d${seq}`,
      keys: 5,
      registered: true,
      note: "",
    })),
    registry: req.scan ? [orders] : [],
    groups: req.scan ? [{ entity: orders, count: 5, sample: [], stray: [], strayCount: 0 }] : [],
    scanned: req.scan ? 7 : 0,
  };
}

Deno.test("check: a replica catching up is asked again, replicas before owners", async () => {
  // n3 is behind at first, then at the owner's seq.
  const { sources, calls } = scripted((node, req, call) =>
    reply(node, req, node === "n3" && call < 3 ? 40 : 42)
  );
  const report = await runCheck(sources, { settleMs: 2000 });
  assert.equal(report.consistent, true, JSON.stringify(report.problems));
  assert.deepEqual(report.problems, []);
  assert.equal(report.entities, 1);
  assert.deepEqual(report.replicaCopies, { copies: 2, verified: 2 });
  assert.deepEqual(report.nodes.map((n) => [n.id, n.reached, n.copies]), [
    ["n1", true, 1],
    ["n2", true, 1],
    ["n3", true, 1],
  ]);
  // Round one scans every node; then the replica is read before the owner.
  assert.deepEqual(calls.slice(0, 3).sort(), ["n1:scan", "n2:scan", "n3:scan"]);
  const later = calls.slice(3).filter((c) => c.endsWith(":orders"));
  assert.ok(later.indexOf("n3:orders") < later.indexOf("n1:orders"), calls.join(" "));
});

Deno.test("check: what does not settle in time is reported; a silent node is unreachable", async () => {
  const { sources } = scripted((node, req) => reply(node, req, node === "n3" ? 40 : 42));
  const inspect = sources.inspect;
  sources.inspect = (node, req, deadlineMs) =>
    node === "n2"
      ? Promise.reject(new Error("inspect of n2: DEADLINE_EXCEEDED"))
      : inspect(node, req, deadlineMs);
  const started = Date.now();
  const report = await runCheck(sources, { settleMs: 300 });
  assert.ok(Date.now() - started < 5000);
  assert.equal(report.consistent, false);
  assert.deepEqual(report.replicaCopies, { copies: 1, verified: 0 });
  assert.deepEqual(report.problems.map((p) => `${p.severity} ${p.kind} ${p.node}`), [
    "error unreachable n2",
    "warning lagging n3",
  ]);
  assert.deepEqual(report.nodes.find((n) => n.id === "n2"), {
    id: "n2",
    reached: false,
    store: null,
    copies: 0,
    keys: 0,
  });
});

Deno.test("check: a delete still reaching a replica is looked at again, not reported", async () => {
  const gone: EntityRef = { type: "queue", name: "gone" };
  // n2 lists and holds "gone" at the scan; asked again, its delete has arrived.
  const { sources, calls } = scripted((node, req) => {
    const r = reply(node, req, 42);
    if (node !== "n2") return r;
    if (req.scan) {
      r.registry.push(gone);
      r.groups.push({
        entity: gone,
        count: 2,
        sample: ["momd:q:{gone}:meta", "momd:q:{gone}:msgs"],
        stray: [],
        strayCount: 0,
      });
    }
    r.copies = r.copies.map((c) =>
      c.entity.name === "gone" ? { ...c, exists: false, registered: false, digest: "" } : c
    );
    return r;
  });
  const report = await runCheck(sources, { settleMs: 2000 });
  assert.deepEqual(report.problems, []);
  assert.ok(calls.some((c) => c.startsWith("n2:") && c.includes("gone")), calls.join(" "));
});

// ---- a real store -------------------------------------------------------------------------------

const ORDERS: EntityRef = { type: "queue", name: "orders" };
const NEWS: EntityRef = { type: "topic", name: "news" };

Deno.test("check: digests of a real store: canonical, whole or paged, and sensitive", async () => {
  const api = await startTestApi();
  const other = connectRedis(`${api.redis.url}/2`, "test-other");
  try {
    const t = api.adminToken;
    const ok = (res: { status: number; body: unknown }, status: number) =>
      assert.equal(res.status, status, JSON.stringify(res.body));
    ok(await api.call("PUT", "/v1/queues/orders", { token: t, body: {} }), 201);
    ok(await api.call("PUT", "/v1/topics/news", { token: t, body: {} }), 201);
    ok(
      await api.call("PUT", "/v1/topics/news/subscriptions/audit", {
        token: t,
        body: { start: "earliest" },
      }),
      201,
    );
    for (let i = 0; i < 40; i++) {
      ok(
        await api.call("POST", "/v1/queues/orders/messages", {
          token: t,
          body: { messages: [{ body: `order ${i}`, attributes: { n: String(i) } }] },
        }),
        201,
      );
      ok(
        await api.call("POST", "/v1/topics/news/messages", {
          token: t,
          body: { messages: [{ body: `news ${i}` }] },
        }),
        201,
      );
    }
    ok(await api.call("POST", "/v1/queues/orders/receive", { token: t, body: { max: 3 } }), 200);
    ok(
      await api.call("POST", "/v1/topics/news/subscriptions/audit/receive", {
        token: t,
        body: { max: 3 },
      }),
      200,
    );
    await other.ping();
    for (const e of [ORDERS, NEWS]) {
      const whole = await copyFacts(api.local, e);
      assert.equal(whole.exists, true);
      assert.equal(whole.registered, true);
      assert.ok(whole.seq > 40 && whole.created > 0 && whole.keys >= 5, JSON.stringify(whole));
      assert.match(whole.digest, /^[0-9a-f]{64}$/);
      // In pages of 7 (HSCAN, LRANGE, ZRANGE, XRANGE), the same digest.
      const paged = await copyFacts(api.local, e, { smallLimit: 0, pageSize: 7 });
      assert.equal(paged.digest, whole.digest, `${e.name}: paged`);
      // Another Redis holding the same state (a replica's snapshot): the same digest.
      await restoreSnapshot(other, await takeSnapshot(api.local, e)).catch(async (err) => {
        // A snapshot restore needs the store's identity, as on a node.
        await other.hset("momd:store", "id", "other", "createdAt", "1");
        if (!String(err).includes("store_lost")) throw err;
        await restoreSnapshot(other, await takeSnapshot(api.local, e));
      });
      const copy = await copyFacts(other, e);
      assert.deepEqual({ ...copy }, { ...whole }, e.name);
    }
    // One field of one message changed on the copy: another digest at the same seq.
    const msgs = "momd:q:{orders}:msgs";
    const [id] = await other.hkeys(msgs);
    await other.hset(msgs, id, "tampered");
    const tampered = await copyFacts(other, ORDERS);
    const original = await copyFacts(api.local, ORDERS);
    assert.equal(tampered.seq, original.seq);
    assert.notEqual(tampered.digest, original.digest);
    // A subscription's position, too.
    await other.hset("momd:t:{news}:s:audit:state", "pos", "0");
    assert.notEqual(
      (await copyFacts(other, NEWS)).digest,
      (await copyFacts(api.local, NEWS)).digest,
    );
    assert.equal((await copyFacts(api.local, { type: "queue", name: "absent" })).exists, false);
  } finally {
    other.disconnect();
    await api.close();
  }
});

Deno.test("check: digests taken while the entity changes agree whenever the seq does", async () => {
  const api = await startTestApi();
  try {
    const t = api.adminToken;
    assert.equal((await api.call("PUT", "/v1/queues/orders", { token: t, body: {} })).status, 201);
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        await api.call("POST", "/v1/queues/orders/messages", {
          token: t,
          body: { messages: [{ body: `m${i}` }, { body: `n${i}` }] },
        });
        if (i % 3 === 0) {
          const got = await api.call("POST", "/v1/queues/orders/receive", {
            token: t,
            body: { max: 2 },
          });
          assert.equal(got.status, 200, JSON.stringify(got.body));
          const receipts = got.body.messages.map((m: { receipt: string }) => m.receipt);
          if (receipts.length) {
            await api.call("POST", "/v1/queues/orders/ack", { token: t, body: { receipts } });
          }
        }
      }
    })();
    const seen = new Map<number, Set<string>>();
    let taken = 0;
    try {
      for (let i = 0; i < 60; i++) {
        // Whole in one MULTI, and in pages of 5 with the meta hash checked at the end.
        const read = await copyFacts(
          api.local,
          ORDERS,
          i % 2 ? {} : { smallLimit: 0, pageSize: 5 },
        );
        if (!read.digest) continue;
        taken++;
        if (!seen.has(read.seq)) seen.set(read.seq, new Set());
        seen.get(read.seq)!.add(read.digest);
      }
    } finally {
      writing = false;
      await writer;
    }
    assert.ok(taken >= 30, `${taken} of 60 reads had a digest`);
    assert.ok(seen.size > 5, `the reads saw ${seen.size} states`);
    for (const [seq, digests] of seen) assert.equal(digests.size, 1, `seq ${seq}`);
  } finally {
    await api.close();
  }
});

Deno.test("check: keys of a real store, classified by the key layout", async () => {
  assert.deepEqual(classifyKey("momd:store"), { kind: "bookkeeping" });
  assert.deepEqual(classifyKey("momd:registry:topic"), { kind: "bookkeeping" });
  assert.deepEqual(classifyKey("momd:backup:q:{x}:head"), { kind: "foreign" });
  assert.deepEqual(classifyKey("momd:user:alice"), { kind: "foreign" });
  assert.deepEqual(classifyKey("momd:junk"), { kind: "unknown" });
  assert.deepEqual(classifyKey("momd:q:{a}:msgs"), {
    kind: "entity",
    entity: { type: "queue", name: "a" },
    part: "msgs",
    known: true,
  });
  assert.deepEqual(classifyKey("momd:t:{a}:s:sub-1:inflight"), {
    kind: "entity",
    entity: { type: "topic", name: "a" },
    part: "s:sub-1:inflight",
    sub: "sub-1",
    known: true,
  });
  assert.equal((classifyKey("momd:q:{a}:nope") as { known: boolean }).known, false);

  const api = await startTestApi();
  try {
    const t = api.adminToken;
    assert.equal((await api.call("PUT", "/v1/queues/orders", { token: t, body: {} })).status, 201);
    assert.equal((await api.call("PUT", "/v1/topics/news", { token: t, body: {} })).status, 201);
    await api.call("PUT", "/v1/topics/news/subscriptions/audit", { token: t, body: {} });
    await api.local.set("momd:junk", "x");
    await api.local.hset("momd:q:{ghost}:msgs", "a", "b");
    await api.local.hset("momd:t:{news}:s:gone:state", "pos", "1");
    await api.local.set("not-momd", "x");
    const r = await inspectStore(api.local, { views: [NEWS], copies: [], scan: true, keys: [] }, {
      viewOf: () => ({ owner: "me", epoch: 3 }),
    });
    assert.match(r.store, /^[0-9a-f-]{36}$/);
    assert.deepEqual(r.views, [{ entity: NEWS, owner: "me", epoch: 3 }]);
    assert.deepEqual(r.registry, [ORDERS, NEWS]);
    const byName = new Map(r.groups.map((g) => [g.entity?.name ?? "", g]));
    assert.deepEqual([...byName.keys()].sort(), ["", "ghost", "news", "orders"]);
    assert.deepEqual(byName.get("")!.sample, ["momd:junk"]);
    assert.deepEqual(byName.get("news")!.stray, ["momd:t:{news}:s:gone:state"]);
    assert.equal(byName.get("orders")!.strayCount, 0);
    // Probed again: only keys that still exist come back.
    await api.local.del("momd:junk");
    const again = await inspectStore(api.local, {
      views: [],
      copies: [],
      scan: false,
      keys: ["momd:junk", "momd:q:{ghost}:msgs"],
    });
    assert.deepEqual(again.groups.map((g) => [g.entity?.name ?? "", g.count]), [["ghost", 1]]);
  } finally {
    await api.close();
  }
});

Deno.test("check: a single node's check over its store and backup", async () => {
  const api = await startTestApi();
  const backup = connectRedis(`${api.redis.url}/3`, "test-backup");
  try {
    const checker = singleNodeChecker({
      local: api.local,
      backup,
      config: { nodeId: "solo" },
    });
    const t = api.adminToken;
    assert.equal((await api.call("PUT", "/v1/queues/orders", { token: t, body: {} })).status, 201);
    await api.call("POST", "/v1/queues/orders/messages", {
      token: t,
      body: { messages: [{ body: "one" }] },
    });
    const created = Number(await api.local.hget("momd:q:{orders}:meta", "createdAt"));
    const snapshot = await takeSnapshot(api.local, ORDERS);
    await writeBackup(backup, snapshot, { created });

    let report = await checker.check({ settleMs: 0 });
    assert.equal(report.consistent, true, JSON.stringify(report.problems));
    assert.equal(report.mode, "single");
    assert.equal(report.entities, 1);
    assert.deepEqual(report.problems, []);
    assert.equal(report.notApplicable.length, 1);
    assert.deepEqual(report.nodes.map((n) => [n.id, n.reached, n.copies]), [["solo", true, 1]]);

    // Sent to after the backup: behind, a warning. Ahead of the store: an error.
    await api.call("POST", "/v1/queues/orders/messages", {
      token: t,
      body: { messages: [{ body: "two" }] },
    });
    report = await checker.check({ settleMs: 0 });
    assert.deepEqual(report.problems.map((p) => p.kind), ["backup_behind"]);
    assert.equal(report.consistent, true);
    await backup.hset(backupKeys(ORDERS).head, "seq", "99");
    await api.local.hset("momd:q:{stray}:meta", "seq", "1");
    report = await checker.check({ settleMs: 300 });
    assert.equal(report.consistent, false);
    assert.deepEqual(report.problems.map((p) => `${p.kind} ${p.entity}`), [
      "orphan_keys queue/stray",
      "backup_ahead queue/orders",
    ]);
  } finally {
    backup.disconnect();
    await api.close();
  }
});

Deno.test("check: the route is documented, for admins only, and 503 without a checker", async () => {
  const api = await startTestApi();
  try {
    const doc = await api.call("GET", "/openapi.json");
    const op = doc.body.paths["/v1/cluster/check"].get;
    assert.equal(op.operationId, "checkCluster");
    assert.match(op.description, /consistent/);
    assert.ok(doc.body.components.schemas.CheckReport, "the report's schema");
    assert.deepEqual(
      doc.body.components.schemas.CheckProblem.properties.kind.enum.slice(0, 2),
      ["unreachable", "zookeeper_unreachable"],
    );
    const user = await api.userToken("alice");
    const refused = await api.call("GET", "/v1/cluster/check", { token: user });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.code, "forbidden");
    const bad = await api.call("GET", "/v1/cluster/check?timeout=0", { token: api.adminToken });
    assert.equal(bad.status, 400);
    // This test API wires no checker (main.ts does).
    const none = await api.call("GET", "/v1/cluster/check", { token: api.adminToken });
    assert.equal(none.status, 503);
    assert.equal(none.headers.get("content-type"), "application/problem+json");
  } finally {
    await api.close();
  }
});
