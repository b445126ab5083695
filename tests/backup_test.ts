import assert from "node:assert/strict";
import type { Redis } from "ioredis";
import type { EntityRef } from "../src/broker/keys.ts";
import { connectRedis } from "../src/redis.ts";
import { identifyStore } from "../src/broker/store.ts";
import type { ReplicationRecord } from "../src/replication/record.ts";
import { restoreSnapshot, takeSnapshot } from "../src/replication/snapshot.ts";
import { backupIndexKey, backupKeys } from "../src/backup/keys.ts";
import { BackupSync, type BackupSyncOptions, registeredEntities } from "../src/backup/sync.ts";
import { listBackups, restoreBeforeServing, restoreIfNewer } from "../src/backup/restore.ts";
import { readBackupHead, writeBackup } from "../src/backup/store.ts";
import { type RedisServer, startRedis } from "./support/services.ts";
import { startTestApi, type TestApi } from "./support/node.ts";
import { dumpEntity } from "./support/state.ts";
import { waitFor } from "./support/zookeeper.ts";

const Q = (name: string): EntityRef => ({ type: "queue", name });
const T = (name: string): EntityRef => ({ type: "topic", name });

/** A store over a real Redis driven through the API, and a second Redis as the backup. */
interface Setup {
  api: TestApi;
  backupServer: RedisServer;
  backup: Redis;
  /** The loop under test: owns every entity of the store, epoch 0 (as a single node). */
  sync: BackupSync;
  /** What the loops built here logged. */
  logs: string[];
  /** Another loop over the same stores (e.g. a zombie owner with an older epoch). */
  loop(epochOf: (e: EntityRef) => number, intervalMs?: number): BackupSync;
  close(): Promise<void>;
}

/** `options` go to the loop under test (`sync`). */
async function setup(options: Partial<BackupSyncOptions> = {}): Promise<Setup> {
  const holder: { sync?: BackupSync } = {};
  // The store's delete records reach the loop the way the wiring passes them (recordSink).
  const api = await startTestApi({
    sink: {
      ship: (record: ReplicationRecord) => {
        holder.sync?.observe(record);
        return Promise.resolve();
      },
    },
  });
  const backupServer = await startRedis();
  const backup = connectRedis(backupServer.url, "test-backup");
  const logs: string[] = [];
  const loop = (
    epochOf: (e: EntityRef) => number,
    intervalMs = 3_600_000,
    more: Partial<BackupSyncOptions> = {},
  ) =>
    new BackupSync({
      local: api.local,
      backup,
      owned: () => registeredEntities(api.local),
      epochOf,
      intervalMs, // by default passes run only through flush()
      log: (m) => logs.push(m),
      ...more,
    });
  const sync = loop(() => 0, undefined, options);
  holder.sync = sync;
  const s: Setup = {
    api,
    backupServer,
    backup,
    sync,
    logs,
    loop,
    async close() {
      await sync.stop();
      backup.disconnect();
      await s.backupServer.stop();
      await api.close();
    },
  };
  return s;
}

function queueOps(api: TestApi, name: string, token = () => api.adminToken) {
  const path = `/v1/queues/${name}`;
  // deno-lint-ignore no-explicit-any
  const post = async (sub: string, body: any, want: number) => {
    const res = await api.call("POST", `${path}/${sub}`, { token: token(), body });
    assert.equal(res.status, want, JSON.stringify(res.body));
    return res.body;
  };
  return {
    create: async () => {
      const res = await api.call("PUT", path, { token: token(), body: {} });
      assert.equal(res.status, 201, JSON.stringify(res.body));
    },
    // deno-lint-ignore no-explicit-any
    send: (...messages: any[]) => post("messages", { messages }, 201),
    receive: async (max: number): Promise<{ body: string; receipt: string }[]> =>
      (await post("receive", { max }, 200)).messages,
    ack: async (receipts: string[]) => (await post("ack", { receipts }, 200)).results,
    delete: async () => {
      const res = await api.call("DELETE", path, { token: token() });
      assert.equal(res.status, 204, JSON.stringify(res.body));
    },
  };
}

function topicOps(api: TestApi, name: string, token = () => api.adminToken) {
  const path = `/v1/topics/${name}`;
  return {
    create: async () => {
      const res = await api.call("PUT", path, { token: token(), body: {} });
      assert.equal(res.status, 201, JSON.stringify(res.body));
    },
    subscribe: async (sub: string) => {
      const res = await api.call("PUT", `${path}/subscriptions/${sub}`, {
        token: token(),
        body: { start: "earliest" },
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
    },
    publish: async (...bodies: string[]) => {
      const res = await api.call("POST", `${path}/messages`, {
        token: token(),
        body: { messages: bodies.map((body) => ({ body })) },
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
    },
    receive: async (sub: string, max: number): Promise<{ body: string; receipt: string }[]> => {
      const res = await api.call("POST", `${path}/subscriptions/${sub}/receive`, {
        token: token(),
        body: { max },
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.messages;
    },
    ack: async (sub: string, receipts: string[]) => {
      const res = await api.call("POST", `${path}/subscriptions/${sub}/ack`, {
        token: token(),
        body: { receipts },
      });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.results;
    },
  };
}

async function dumpAll(redis: Redis, entities: EntityRef[]) {
  const out: Record<string, unknown> = {};
  for (const e of entities) Object.assign(out, await dumpEntity(redis, e));
  return out;
}

async function commandCalls(redis: Redis, command: string): Promise<number> {
  const info = await redis.info("commandstats");
  const m = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, "m").exec(info);
  return m ? Number(m[1]) : 0;
}

Deno.test({
  name: "backup: a wiped local Redis is rebuilt from the backup and the API serves it again",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const s = await setup();
    const token = s.api.adminToken;
    try {
      const orders = queueOps(s.api, "orders", () => token);
      const events = topicOps(s.api, "events", () => token);
      await orders.create();
      await queueOps(s.api, "empty", () => token).create();
      await orders.send(
        { body: "o1" },
        { body: "o2", attributes: { kind: "x" } },
        { body: "o3", dedupId: "d-3" },
        { body: "o4" },
        { body: "later", delaySeconds: 600 },
      );
      const inFlight = await orders.receive(2); // o1, o2
      assert.deepEqual(inFlight.map((m) => m.body), ["o1", "o2"]);
      assert.deepEqual((await orders.ack([inFlight[0].receipt]))[0].ok, true);
      await events.create();
      await events.subscribe("audit");
      await events.subscribe("billing");
      await events.publish("e0", "e1", "e2", "e3");
      const got = await events.receive("audit", 3);
      await events.ack("audit", [got[0].receipt, got[1].receipt]); // e2 stays in flight

      const pass = await s.sync.flush();
      assert.deepEqual(
        { checked: pass.checked, written: pass.written, failed: pass.failed },
        { checked: 3, written: 3, failed: 0 },
      );
      const entities = [Q("empty"), Q("orders"), T("events")];
      const listed = await listBackups(s.backup);
      assert.deepEqual(listed.map((b) => b.entity), entities);
      assert.deepEqual((await listBackups(s.backup, "topic")).map((b) => b.entity), [T("events")]);
      const before = await dumpAll(s.api.local, entities);

      // The node's local Redis is wiped. (The test server's db 1 stands for the central users
      // Redis, which a node's wipe does not touch.)
      await s.api.local.flushdb();
      assert.equal(await s.api.local.dbsize(), 0);
      await s.api.store.renew(); // the node notices the loss (StoreGuard): a new identity
      assert.deepEqual(await registeredEntities(s.api.local), []);

      for (const b of listed) {
        const r = await restoreIfNewer(s.api.local, s.backup, s.api.store, b.entity);
        assert.equal(r.action, "restored", `${b.entity.name}: ${JSON.stringify(r)}`);
        assert.equal(r.local.exists, false);
        assert.deepEqual(r.backup, { created: b.created, epoch: b.epoch, seq: b.seq });
      }
      assert.deepEqual(await dumpAll(s.api.local, entities), before);

      // The API serves the restored state: the rest of the queue, the receipt of the message
      // still in flight, the de-duplication id, the topic's subscriptions and positions.
      assert.deepEqual((await orders.receive(10)).map((m) => m.body), ["o3", "o4"]);
      assert.deepEqual((await orders.ack([inFlight[1].receipt]))[0].ok, true);
      const dup = await orders.send({ body: "o3 again", dedupId: "d-3" });
      assert.equal(dup.messages[0].duplicate, true);
      assert.deepEqual((await events.receive("audit", 10)).map((m) => m.body), ["e3"]);
      assert.deepEqual((await events.ack("audit", [got[2].receipt]))[0].ok, true);
      assert.deepEqual((await events.receive("billing", 10)).map((m) => m.body), [
        "e0",
        "e1",
        "e2",
        "e3",
      ]);
    } finally {
      await s.close();
    }
  },
});

Deno.test({
  name: "backup: incremental, an unchanged entity costs one HMGET and is not rewritten",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const s = await setup();
    try {
      const a = queueOps(s.api, "a");
      const b = queueOps(s.api, "b");
      await a.create();
      await b.create();
      await topicOps(s.api, "c").create();
      await a.send({ body: "1" });
      assert.equal((await s.sync.flush()).written, 3);
      const headA = await readBackupHead(s.backup, Q("a"));
      const headB = await readBackupHead(s.backup, Q("b"));

      const hmget = await commandCalls(s.api.local, "hmget");
      const evals = await commandCalls(s.api.local, "eval");
      const backupCalls = Number(/total_commands_processed:(\d+)/.exec(await s.backup.info())![1]);
      const idle = await s.sync.flush();
      assert.deepEqual(idle, {
        checked: 3,
        written: 0,
        appended: 0,
        records: 0,
        unchanged: 3,
        skipped: 0,
        fenced: 0,
        failed: 0,
      });
      assert.equal(await commandCalls(s.api.local, "hmget"), hmget + 3, "one HMGET per entity");
      assert.equal(await commandCalls(s.api.local, "eval"), evals, "no snapshot taken");
      const backupNow = Number(/total_commands_processed:(\d+)/.exec(await s.backup.info())![1]);
      assert.equal(backupNow, backupCalls + 1, "nothing sent to the backup (but INFO)");

      // One entity changes: only its record is sent, appended to its log.
      await a.send({ body: "2" });
      const next = await s.sync.flush();
      assert.deepEqual(
        { written: next.written, appended: next.appended, unchanged: next.unchanged },
        { written: 0, appended: 1, unchanged: 2 },
      );
      assert.equal(await commandCalls(s.api.local, "eval"), evals, "still no snapshot taken");
      const localSeq = Number(await s.api.local.hget("momd:q:{a}:meta", "seq"));
      const newA = await readBackupHead(s.backup, Q("a"));
      assert.equal(newA?.seq, localSeq);
      assert.ok(localSeq > headA!.seq);
      assert.deepEqual(await readBackupHead(s.backup, Q("b")), headB, "b not rewritten");
      assert.deepEqual(s.sync.lastBackup(Q("a")), {
        created: newA!.created,
        epoch: 0,
        seq: localSeq,
      });
      assert.deepEqual(
        { base: newA!.base, logLen: newA!.logLen },
        { base: headA!.seq, logLen: localSeq - headA!.seq },
      );
      const stats = s.sync.stats;
      assert.equal(stats.passes, 3);
      assert.equal(stats.written, 3);
      assert.equal(stats.appended, 1);
    } finally {
      await s.close();
    }
  },
});

Deno.test({
  name: "backup: fencing, a lower epoch or the same epoch with a lower seq never overwrites",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const s = await setup();
    try {
      const q = queueOps(s.api, "jobs");
      await q.create();
      await q.send({ body: "1" });
      const early = await takeSnapshot(s.api.local, Q("jobs"), { epoch: 2 });
      await q.send({ body: "2" });

      // The current owner holds epoch 2.
      const owner = s.loop(() => 2);
      assert.equal((await owner.flush()).written, 1);
      const head = await readBackupHead(s.backup, Q("jobs"));
      assert.equal(head?.epoch, 2);

      // A zombie (deposed owner, epoch 1) is refused, even with more changes than the backup.
      const zombie = s.loop(() => 1);
      await q.send({ body: "3" });
      const z = await zombie.flush();
      assert.deepEqual({ written: z.written, fenced: z.fenced }, { written: 0, fenced: 1 });
      assert.deepEqual(await readBackupHead(s.backup, Q("jobs")), head);
      assert.ok(s.logs.some((l) => l.includes("refused")), s.logs.join("\n"));

      // Same epoch, lower seq: refused; the same version: nothing written.
      const created = head!.created;
      const older = await writeBackup(s.backup, early, { created });
      assert.equal(older.status, "fenced");
      assert.deepEqual(older.stored, { created, epoch: 2, seq: head!.seq });
      const current = await takeSnapshot(s.api.local, Q("jobs"), { epoch: 2 });
      assert.equal(
        (await writeBackup(s.backup, { ...current, seq: head!.seq }, { created }))
          .status,
        "same",
      );

      // A node that may not write the entity (epochOf throws) does not even look at it.
      const notMine = s.loop(() => {
        throw new Error("not the owner");
      });
      assert.deepEqual(await notMine.flush(), {
        checked: 1,
        written: 0,
        appended: 0,
        records: 0,
        unchanged: 0,
        skipped: 1,
        fenced: 0,
        failed: 0,
      });

      // The owner moves on (higher seq, same epoch); then a new owner with epoch 3.
      assert.equal((await owner.flush()).written, 1);
      assert.equal((await readBackupHead(s.backup, Q("jobs")))?.seq, current.seq);
      assert.equal((await s.loop(() => 3).flush()).written, 1);
      assert.equal((await readBackupHead(s.backup, Q("jobs")))?.epoch, 3);
      assert.equal((await owner.flush()).fenced, 0, "unchanged for the old owner: not retried");
    } finally {
      await s.close();
    }
  },
});

Deno.test({
  name: "backup: a deleted entity's backup goes away; a late write of it is refused",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const s = await setup();
    try {
      const q = queueOps(s.api, "temp");
      await q.create();
      await q.send({ body: "1" });
      await queueOps(s.api, "kept").create();
      assert.equal((await s.sync.flush()).written, 2);
      const old = await takeSnapshot(s.api.local, Q("temp"));
      const oldHead = await readBackupHead(s.backup, Q("temp"));

      await q.delete(); // the delete record reaches the loop, which drops the backup
      await s.sync.flush(); // runs after the drop
      assert.deepEqual((await listBackups(s.backup)).map((b) => b.entity), [Q("kept")]);
      assert.deepEqual(await s.backup.zrange(backupIndexKey("queue"), "0", "-1"), ["kept"]);
      const k = backupKeys(Q("temp"));
      assert.equal(await s.backup.exists(k.data), 0);
      const tomb = await readBackupHead(s.backup, Q("temp"));
      assert.equal(tomb?.deleted, true);
      assert.ok((await s.backup.pttl(k.head)) > 0, "the tombstone expires");
      assert.equal(s.sync.stats.deleted, 1);
      assert.equal(
        (await restoreIfNewer(s.api.local, s.backup, s.api.store, Q("temp"))).action,
        "no_backup",
      );
      assert.ok(!s.logs.some((l) => l.includes("missing locally")), s.logs.join("\n"));

      // A late writer of the deleted incarnation (a zombie's pass) cannot bring it back.
      const late = await writeBackup(s.backup, old, { created: oldHead!.created });
      assert.equal(late.status, "fenced");
      assert.deepEqual((await listBackups(s.backup)).map((b) => b.entity), [Q("kept")]);

      // Created again under the same name: a new incarnation (epochs start again) is backed up.
      await new Promise((r) => setTimeout(r, 5));
      await q.create();
      const again = await s.loop(() => 1).flush(); // a new owner (epoch 1) of both queues
      assert.deepEqual({ written: again.written, fenced: again.fenced }, { written: 2, fenced: 0 });
      const head = await readBackupHead(s.backup, Q("temp"));
      assert.ok(head!.created > oldHead!.created);
      assert.deepEqual({ seq: head!.seq, deleted: head!.deleted }, { seq: 1, deleted: false });

      // ... and the earlier incarnation, even with a higher epoch, does not replace it.
      const zombie = await writeBackup(s.backup, { ...old, epoch: 9 }, {
        created: oldHead!.created,
      });
      assert.equal(zombie.status, "fenced");

      // An entity missing locally while still owned (a wiped Redis) keeps its backup. One pass
      // is no news (a create or a delete in progress); the second in a row is reported, once.
      await s.api.local.del("momd:q:{kept}:meta");
      const missing = () => s.logs.filter((l) => l.includes("kept is owned but missing locally"));
      assert.equal((await s.sync.flush()).skipped, 1);
      assert.deepEqual(missing(), []);
      assert.equal((await s.sync.flush()).skipped, 1);
      assert.equal((await s.sync.flush()).skipped, 1);
      assert.equal(missing().length, 1, s.logs.join("\n"));
      assert.deepEqual((await listBackups(s.backup)).map((b) => b.entity.name), ["kept", "temp"]);
    } finally {
      await s.close();
    }
  },
});

Deno.test({
  name: "backup: restoreIfNewer leaves a local copy that is as new or newer alone",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const s = await setup();
    try {
      const q = queueOps(s.api, "work");
      assert.deepEqual(await restoreIfNewer(s.api.local, s.backup, s.api.store, Q("work")), {
        action: "no_backup",
        local: { created: 0, epoch: 0, seq: 0, exists: false },
      });
      await q.create();
      await q.send({ body: "1" }, { body: "2" });
      await s.sync.flush();
      const same = await restoreIfNewer(s.api.local, s.backup, s.api.store, Q("work"));
      assert.equal(same.action, "up_to_date");
      const { created, epoch, seq } = same.local;
      assert.deepEqual(same.backup, { created, epoch, seq });

      // The local copy moved on after the backup: it is kept as it is.
      await q.send({ body: "3" });
      await q.receive(1);
      const before = await dumpEntity(s.api.local, Q("work"));
      const newer = await restoreIfNewer(s.api.local, s.backup, s.api.store, Q("work"));
      assert.equal(newer.action, "up_to_date");
      assert.ok(newer.local.seq > newer.backup!.seq);
      assert.deepEqual(await dumpEntity(s.api.local, Q("work")), before);

      // A local copy behind the backup (same incarnation) is replaced.
      await s.sync.flush();
      const backedUp = await dumpEntity(s.api.local, Q("work"));
      const stale = await takeSnapshot(s.api.local, Q("work"));
      await q.send({ body: "4" });
      await s.sync.flush();
      const latest = await dumpEntity(s.api.local, Q("work"));
      await restoreSnapshot(s.api.local, stale); // the local copy goes back in time
      assert.deepEqual(await dumpEntity(s.api.local, Q("work")), backedUp);
      const behind = await restoreIfNewer(s.api.local, s.backup, s.api.store, Q("work"));
      assert.equal(behind.action, "restored");
      // The local copy was a prefix of the backup's history: only the rest was applied.
      assert.equal(behind.replayed, behind.backup!.seq - behind.local.seq);
      assert.deepEqual(await dumpEntity(s.api.local, Q("work")), latest);

      // A leftover of an earlier incarnation, even with a higher epoch, gives way to a backup of
      // the entity created again under the same name (whose epochs started again).
      const first = await takeSnapshot(s.api.local, Q("work"));
      await q.delete();
      await new Promise((r) => setTimeout(r, 5));
      await q.create();
      await q.send({ body: "new life" });
      await s.sync.flush();
      const reborn = await dumpEntity(s.api.local, Q("work"));
      await restoreSnapshot(s.api.local, { ...first, epoch: 7 });
      const leftover = await restoreIfNewer(s.api.local, s.backup, s.api.store, Q("work"));
      assert.equal(leftover.action, "restored");
      assert.equal(leftover.local.epoch, 7);
      assert.ok(leftover.backup!.created > leftover.local.created);
      assert.deepEqual(await dumpEntity(s.api.local, Q("work")), reborn);
      assert.equal(
        (await restoreIfNewer(s.api.local, s.backup, s.api.store, Q("work"))).action,
        "up_to_date",
      );

      // The take-over step waits for an unreachable backup only so long, then serves locally.
      await s.backupServer.stop();
      const logs: string[] = [];
      const started = Date.now();
      const gaveUp = await restoreBeforeServing(s.api.local, s.backup, s.api.store, Q("work"), {
        patienceMs: 300,
        retryMs: 50,
        log: (m) => logs.push(m),
      });
      assert.equal(gaveUp, undefined);
      assert.ok(Date.now() - started >= 300);
      assert.ok(
        logs.at(-1)?.startsWith("backup: serving queue/work without checking"),
        logs.join(),
      );
    } finally {
      await s.close();
    }
  },
});

Deno.test({
  name: "backup: the loop runs every interval, survives a backup outage, stops after its pass",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const s = await setup();
    const sync = s.loop(() => 0, 50);
    try {
      const q = queueOps(s.api, "live");
      await q.create();
      const gone = queueOps(s.api, "gone");
      await gone.create();
      assert.equal((await s.sync.flush()).written, 2); // the loop that sees delete records
      sync.start();
      const seqOf = async () => Number(await s.api.local.hget("momd:q:{live}:meta", "seq"));
      await waitFor(
        "the first backup",
        async () => (await readBackupHead(s.backup, Q("live")))?.seq === 1,
      );

      // The backup Redis goes away: passes fail, are logged, and the loop goes on.
      await s.backupServer.stop();
      await q.send({ body: "during the outage" });
      await gone.delete(); // removing its backup fails now; retried by the next passes
      const failedBefore = sync.stats.failed;
      await waitFor("a failed pass", () => sync.stats.failed > failedBefore);
      assert.ok(s.logs.some((l) => l.startsWith("backup: queue/live:")), s.logs.join("\n"));

      // It comes back (same port, same data): the change is backed up.
      await startRedis({ port: s.backupServer.port, dir: s.backupServer.dir }).then((r) =>
        s.backupServer = r
      );
      await waitFor(
        "the change made during the outage in the backup",
        async () => (await readBackupHead(s.backup, Q("live")))?.seq === await seqOf(),
      );
      assert.equal((await readBackupHead(s.backup, Q("gone")))?.deleted, false);
      await s.sync.flush();
      assert.equal((await readBackupHead(s.backup, Q("gone")))?.deleted, true);
      assert.deepEqual((await listBackups(s.backup)).map((b) => b.entity), [Q("live")]);

      await sync.stop();
      const passes = sync.stats.passes;
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(sync.stats.passes, passes, "no pass after stop()");
    } finally {
      await sync.stop();
      await s.close();
    }
  },
});

Deno.test({
  name: "backup: changes go to the log as records; a restore replays them; the log is compacted",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const s = await setup({ maxLogRecords: 12 });
    try {
      const orders = queueOps(s.api, "orders");
      const events = topicOps(s.api, "events");
      await orders.create();
      await events.create();
      await events.subscribe("audit");
      assert.equal((await s.sync.flush()).written, 2);
      const entities = [Q("orders"), T("events")];
      const snapshots = await commandCalls(s.api.local, "eval");

      // Every kind of change: sends, a delayed send, receive, ack, publish, topic receive/ack.
      await orders.send({ body: "o1" }, { body: "o2", attributes: { k: "v" } });
      await orders.send({ body: "o3", dedupId: "d-3" }, { body: "later", delaySeconds: 600 });
      const got = await orders.receive(2);
      await orders.ack([got[0].receipt]);
      await events.publish("e0", "e1");
      const ev = await events.receive("audit", 1);
      await events.ack("audit", [ev[0].receipt]);
      const pass = await s.sync.flush();
      assert.deepEqual(
        { written: pass.written, appended: pass.appended, failed: pass.failed },
        { written: 0, appended: 2, failed: 0 },
      );
      assert.equal(await commandCalls(s.api.local, "eval"), snapshots, "no snapshot taken");
      const heads = await Promise.all(entities.map((e) => readBackupHead(s.backup, e)));
      for (const [i, e] of entities.entries()) {
        const seq = Number(await s.api.local.hget(`momd:${e.type[0]}:{${e.name}}:meta`, "seq"));
        assert.equal(heads[i]!.seq, seq, e.name);
        assert.equal(heads[i]!.logLen, seq - heads[i]!.base, e.name);
      }
      assert.equal(pass.records, heads[0]!.logLen + heads[1]!.logLen);
      assert.ok(heads[0]!.logLen >= 4 && heads[1]!.logLen >= 3, JSON.stringify(heads));

      // A wiped node: snapshot plus replayed log give back exactly the state it had.
      const before = await dumpAll(s.api.local, entities);
      await s.api.local.flushdb();
      await s.api.store.renew(); // the node notices the loss (StoreGuard): a new identity
      for (const [i, e] of entities.entries()) {
        const r = await restoreIfNewer(s.api.local, s.backup, s.api.store, e);
        assert.equal(r.action, "restored");
        assert.equal(r.replayed, heads[i]!.logLen);
      }
      assert.deepEqual(await dumpAll(s.api.local, entities), before);
      assert.deepEqual((await orders.receive(10)).map((m) => m.body), ["o3"]);
      assert.deepEqual((await orders.ack([got[1].receipt]))[0].ok, true);
      const dup = await orders.send({ body: "o3 again", dedupId: "d-3" });
      assert.equal(dup.messages[0].duplicate, true);

      // The restore made no records (it is not a change of the owner): nothing to append.
      // The changes after it are; once the log would pass maxLogRecords (12), a snapshot
      // replaces snapshot and log.
      const appended = await s.sync.flush();
      assert.equal(appended.appended, 1, JSON.stringify(appended));
      for (let i = 0; i < 12; i++) await orders.send({ body: `more ${i}` });
      const compacted = await s.sync.flush();
      assert.equal(compacted.written, 1, JSON.stringify(compacted));
      const head = await readBackupHead(s.backup, Q("orders"));
      const seq = Number(await s.api.local.hget("momd:q:{orders}:meta", "seq"));
      assert.deepEqual({ seq: head!.seq, base: head!.base, logLen: head!.logLen, logBytes: 0 }, {
        seq,
        base: seq,
        logLen: 0,
        logBytes: head!.logBytes,
      });
      assert.equal(await s.backup.llen(backupKeys(Q("orders")).log), 0);
      await orders.send({ body: "after" });
      assert.equal((await s.sync.flush()).appended, 1, "appending again after the snapshot");

      const latest = await dumpAll(s.api.local, entities);
      await s.api.local.flushdb();
      await s.api.store.renew(); // the node notices the loss (StoreGuard): a new identity
      for (const e of entities) await restoreIfNewer(s.api.local, s.backup, s.api.store, e);
      assert.deepEqual(await dumpAll(s.api.local, entities), latest);
    } finally {
      await s.close();
    }
  },
});

Deno.test({
  name: "backup: a backup that lost its data, or records that went missing, get a snapshot",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const s = await setup({ maxPendingRecords: 3 });
    try {
      const q = queueOps(s.api, "jobs");
      await q.create();
      assert.equal((await s.sync.flush()).written, 1);
      await q.send({ body: "1" });
      assert.equal((await s.sync.flush()).appended, 1);

      // The backup Redis comes back empty (no persistence): the append finds nothing to
      // continue, and the loop writes the whole entity instead.
      await s.backup.flushall();
      await q.send({ body: "2" });
      const refilled = await s.sync.flush();
      assert.deepEqual({ written: refilled.written, appended: refilled.appended }, {
        written: 1,
        appended: 0,
      });
      const seqOf = async () => Number(await s.api.local.hget("momd:q:{jobs}:meta", "seq"));
      assert.equal((await readBackupHead(s.backup, Q("jobs")))?.seq, await seqOf());

      // More records than the loop keeps between passes: the oldest are gone, a snapshot
      // follows.
      for (let i = 0; i < 4; i++) await q.send({ body: `burst ${i}` });
      const burst = await s.sync.flush();
      assert.deepEqual({ written: burst.written, appended: burst.appended }, {
        written: 1,
        appended: 0,
      });
      const head = await readBackupHead(s.backup, Q("jobs"));
      assert.deepEqual({ seq: head?.seq, logLen: head?.logLen }, { seq: await seqOf(), logLen: 0 });

      const before = await dumpEntity(s.api.local, Q("jobs"));
      await s.api.local.flushdb();
      await s.api.store.renew(); // the node notices the loss (StoreGuard): a new identity
      await restoreIfNewer(s.api.local, s.backup, s.api.store, Q("jobs"));
      assert.deepEqual(await dumpEntity(s.api.local, Q("jobs")), before);
    } finally {
      await s.close();
    }
  },
});

Deno.test({
  name: "backup: a log that would outgrow compactRatio times its snapshot is folded into one",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    for (const [ratio, appended] of [[100, 1], [0.5, 0]] as const) {
      const s = await setup({ minCompactBytes: 0, compactRatio: ratio });
      try {
        const q = queueOps(s.api, "sized");
        await q.create();
        await q.send({ body: "small" });
        assert.equal((await s.sync.flush()).written, 1);
        const base = await readBackupHead(s.backup, Q("sized"));
        // One record larger than half the snapshot, far smaller than 100 times it.
        await q.send({ body: "x".repeat(2 * base!.bytes) });
        const pass = await s.sync.flush();
        assert.deepEqual(
          { appended: pass.appended, written: pass.written },
          { appended, written: 1 - appended },
          `ratio ${ratio}`,
        );
      } finally {
        await s.close();
      }
    }
  },
});

Deno.test({
  name: "backup: a snapshot that replaces a log is read from a replica's copy that continues it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const replicaServer = await startRedis();
    const replica = connectRedis(replicaServer.url, "test-replica");
    await identifyStore(replica);
    let asked = 0;
    const s = await setup({
      maxLogRecords: 2,
      replicaSnapshot: (e) => {
        asked++;
        return takeSnapshot(replica, e);
      },
    });
    try {
      const q = queueOps(s.api, "jobs");
      await q.create();
      assert.equal((await s.sync.flush()).written, 1); // nothing backed up yet: the local copy
      assert.equal(asked, 0);
      await q.send({ body: "1" });
      assert.equal((await s.sync.flush()).appended, 1);
      // The replica has the owner's records up to here (a little behind the owner).
      await q.send({ body: "2" });
      await restoreSnapshot(replica, await takeSnapshot(s.api.local, Q("jobs")));
      const replicaSeq = Number(await replica.hget("momd:q:{jobs}:meta", "seq"));

      // The log is due for compaction: the replica's copy replaces it, the owner's Redis is not
      // read, and the records after the replica's seq follow in the log.
      for (let i = 3; i <= 4; i++) await q.send({ body: String(i) });
      const evals = await commandCalls(s.api.local, "eval");
      const compacted = await s.sync.flush();
      assert.equal(compacted.written, 1, JSON.stringify(compacted));
      assert.equal(asked, 1);
      assert.equal(await commandCalls(s.api.local, "eval"), evals, "no snapshot of the owner");
      const head = await readBackupHead(s.backup, Q("jobs"));
      assert.deepEqual({ base: head!.base, seq: head!.seq }, { base: replicaSeq, seq: replicaSeq });
      assert.equal((await s.sync.flush()).appended, 1, "the owner's newer records follow");
      const latest = await dumpEntity(s.api.local, Q("jobs"));
      await s.api.local.flushdb();
      await s.api.store.renew(); // the node notices the loss (StoreGuard): a new identity
      await restoreIfNewer(s.api.local, s.backup, s.api.store, Q("jobs"));
      assert.deepEqual(await dumpEntity(s.api.local, Q("jobs")), latest);

      // A replica copy no newer than the backup, or of another incarnation, is not used.
      for (let i = 5; i <= 7; i++) await q.send({ body: String(i) });
      const before = await commandCalls(s.api.local, "eval");
      assert.equal((await s.sync.flush()).written, 1);
      assert.equal(await commandCalls(s.api.local, "eval"), before + 1, "the owner's copy");
      await q.delete();
      await new Promise((r) => setTimeout(r, 5));
      await q.create();
      await s.sync.flush(); // the new incarnation's first backup: the local copy
      await q.send({ body: "again 0" });
      // A copy past the backup's seq, but of another incarnation.
      await restoreSnapshot(replica, await takeSnapshot(s.api.local, Q("jobs")));
      await replica.hset("momd:q:{jobs}:meta", "createdAt", "1");
      for (let i = 1; i < 3; i++) await q.send({ body: `again ${i}` });
      const again = await commandCalls(s.api.local, "eval");
      assert.equal((await s.sync.flush()).written, 1);
      assert.equal(await commandCalls(s.api.local, "eval"), again + 1, "not the other incarnation");
    } finally {
      await s.close();
      replica.disconnect();
      await replicaServer.stop();
    }
  },
});
