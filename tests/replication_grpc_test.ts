import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Redis } from "ioredis";
import grpc from "@grpc/grpc-js";
import { mayWait } from "../src/api/routing.ts";
import { BrokerError } from "../src/broker/errors.ts";
import type { EntityRef } from "../src/broker/keys.ts";
import { identifyStore, scriptKeys, Store } from "../src/broker/store.ts";
import { type LoadedScript, runScript } from "../src/broker/scripts.ts";
import type { RecordSink, ReplicationRecord } from "../src/replication/record.ts";
import { localOnlySink } from "../src/replication/record.ts";
import { type ForwardHandler, ReplicationServer } from "../src/replication/server.ts";
import { Shipper, type ShipperOptions } from "../src/replication/shipper.ts";
import { PeerClients, type ReplicateCall } from "../src/replication/peers.ts";
import { momdProto, toWireRecord, toWireSnapshot, type WireAck } from "../src/replication/proto.ts";
import { authenticatedServer, bindServer, secretChecker } from "../src/replication/grpc_auth.ts";
import {
  adoptEpoch,
  type EntitySnapshot,
  readPosition,
  restoreSnapshot,
  takeSnapshot,
} from "../src/replication/snapshot.ts";
import { freePort, type RedisServer, startRedis } from "./support/services.ts";
import { dumpEntity } from "./support/state.ts";
import { startTestApi } from "./support/node.ts";
import { waitFor } from "./support/zookeeper.ts";

const SECRET = "cluster-secret-cluster-secret-0123456789";

/**
 * A store with a few small scripts built on the real prologue (same KEYS layout, same ARGV,
 * same sequence and epoch rules as the broker's scripts), so replication is tested without
 * depending on the queue and topic scripts.
 */
const BODIES: Record<string, string> = {
  // queue: KEYS meta, registry, ready, ...
  t_create: `
    if redis.call('EXISTS', META) == 1 then return done(0, {}) end
    local seq = begin_change()
    redis.call('HSET', META, 'owner', ARGV[4], 'created', NOW)
    redis.call('ZADD', KEYS[2], 0, string.match(META, '{(.-)}'))
    return done(seq, {})`,
  t_push: `
    if redis.call('EXISTS', META) == 0 then fail('not_found', 'no such entity') end
    local seq = begin_change()
    redis.call('RPUSH', KEYS[3], ARGV[7])
    redis.call('HSET', KEYS[6], ARGV[7], ARGV[8])
    redis.call('ZADD', KEYS[5], NOW + 30000, ARGV[7])
    return done(seq, { seq = seq })`,
  t_pop: `
    if redis.call('EXISTS', META) == 0 then fail('not_found', 'no such entity') end
    if redis.call('LLEN', KEYS[3]) == 0 then return done(0, {}) end
    local seq = begin_change()
    local id = redis.call('LPOP', KEYS[3])
    redis.call('HDEL', KEYS[6], id)
    redis.call('ZREM', KEYS[5], id)
    return done(seq, { id = id })`,
  // topic: KEYS meta, registry, log, subs, then the subscription's state, redeliver, inflight...
  t_topic: `
    if redis.call('EXISTS', META) == 1 then return done(0, {}) end
    local seq = begin_change()
    redis.call('HSET', META, 'owner', ARGV[4], 'next', 1)
    redis.call('ZADD', KEYS[2], 0, string.match(META, '{(.-)}'))
    return done(seq, {})`,
  t_publish: `
    local seq = begin_change()
    local off = redis.call('HINCRBY', META, 'next', 1) - 1
    redis.call('XADD', KEYS[3], off .. '-1', 'body', ARGV[7])
    return done(seq, {})`,
  t_subscribe: `
    local seq = begin_change()
    redis.call('HSET', KEYS[4], ARGV[6], '{}')
    redis.call('HSET', KEYS[5], 'position', 0)
    redis.call('ZADD', KEYS[7], NOW, 'x')
    return done(seq, {})`,
};

class TestStore {
  #scripts = new Map<string, LoadedScript>();
  constructor(
    readonly redis: Redis,
    readonly sink: RecordSink,
    readonly epochOf: (e: EntityRef) => number = () => 1,
  ) {}

  static async open(redis: Redis, sink: RecordSink, epochOf?: (e: EntityRef) => number) {
    const s = new TestStore(redis, sink, epochOf);
    await identifyStore(redis);
    const prologue = await Deno.readTextFile(
      new URL("../src/broker/scripts/includes/prologue.lua", import.meta.url),
    );
    for (const [name, body] of Object.entries(BODIES)) {
      const source = `${prologue}\n${body}`;
      const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(source));
      const sha = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join(
        "",
      );
      s.#scripts.set(name, { name, source, sha });
    }
    return s;
  }

  async change(entity: EntityRef, op: string, args: string[]): Promise<number> {
    const epoch = this.epochOf(entity);
    const at = Date.now();
    const reply = await runScript(this.redis, this.#scripts.get(op)!, scriptKeys(entity, args), [
      epoch,
      "",
      at,
      ...args,
    ]) as [number, string];
    const seq = Number(reply[0]);
    if (seq > 0) await this.sink.ship({ entity, seq, epoch, op, at, args });
    return seq;
  }

  async apply(record: ReplicationRecord): Promise<"applied" | "duplicate"> {
    const reply = await runScript(
      this.redis,
      this.#scripts.get(record.op)!,
      scriptKeys(record.entity, record.args),
      [record.epoch, record.seq, record.at, ...record.args],
    ) as [number, string];
    return Number(reply[0]) === -1 ? "duplicate" : "applied";
  }
}

/** Counts the batches written to every Replicate stream. */
class CountingPeers extends PeerClients {
  batches = 0;
  records = 0;
  override replicate(address: string): ReplicateCall {
    const call = super.replicate(address);
    const write = call.write.bind(call);
    // deno-lint-ignore no-explicit-any
    call.write = ((batch: any, ...rest: any[]) => {
      this.batches++;
      this.records += batch.records.length;
      return write(batch, ...rest);
    }) as typeof call.write;
    return call;
  }
}

const Q = (name: string): EntityRef => ({ type: "queue", name });
const T = (name: string): EntityRef => ({ type: "topic", name });

function isCode(code: string) {
  return (err: unknown) => err instanceof BrokerError && err.code === code;
}

interface Pair {
  ownerRedis: RedisServer;
  replicaRedis: RedisServer;
  owner: Redis;
  replica: Redis;
  close(): Promise<void>;
}

async function pair(): Promise<Pair> {
  const ownerRedis = await startRedis();
  const replicaRedis = await startRedis();
  const owner = new Redis(ownerRedis.url);
  const replica = new Redis(replicaRedis.url);
  await Promise.all([identifyStore(owner), identifyStore(replica)]);
  return {
    ownerRedis,
    replicaRedis,
    owner,
    replica,
    async close() {
      owner.disconnect();
      replica.disconnect();
      await ownerRedis.stop();
      await replicaRedis.stop();
    },
  };
}

function shipperOptions(
  p: Pair,
  peers: PeerClients,
  address: () => string | undefined,
  extra: Partial<ShipperOptions> = {},
): ShipperOptions {
  return {
    nodeId: "owner",
    peers,
    redis: p.owner,
    minInSyncReplicas: 2,
    replicasOf: () => ["replica"],
    addressOf: (id) => id === "replica" ? address() : undefined,
    ackTimeoutMs: 10_000,
    ...extra,
  };
}

/** The entity's keys are equal on both; registries are compared by the entity's member only. */
async function sameState(a: Redis, b: Redis, entities: EntityRef[]) {
  for (const e of entities) {
    const registry = `momd:registry:${e.type}`;
    const [want, got] = [await dumpEntity(a, e), await dumpEntity(b, e)];
    delete want[registry];
    delete got[registry];
    assert.deepEqual(got, want, `${e.type} ${e.name}`);
    assert.equal(await b.zscore(registry, e.name), await a.zscore(registry, e.name));
  }
}

Deno.test({
  name: "replication over gRPC: a replica fed by the shipper reaches the owner's state",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const p = await pair();
    const peers = new CountingPeers({ secret: SECRET });
    let server: ReplicationServer | undefined;
    let shipper: Shipper | undefined;
    try {
      const replicaStore = await TestStore.open(p.replica, localOnlySink);
      server = await ReplicationServer.start({
        listen: "127.0.0.1:0",
        secret: SECRET,
        redis: p.replica,
        applier: replicaStore,
      });
      const address = server.address;
      shipper = new Shipper(shipperOptions(p, peers, () => address));
      const owner = await TestStore.open(p.owner, shipper);

      const queues = [Q("orders"), Q("emails"), Q("audit")];
      for (const q of queues) await owner.change(q, "t_create", ["alice", "user", ""]);
      // Many concurrent changes: each resolves only once the replica acknowledged it.
      const work: Promise<number>[] = [];
      for (let i = 0; i < 300; i++) {
        const q = queues[i % 3];
        work.push(owner.change(q, "t_push", ["alice", "user", "", `m${i}`, `body ${i}`]));
        if (i % 7 === 0) work.push(owner.change(q, "t_pop", ["alice", "user", ""]));
      }
      const topic = T("events");
      await owner.change(topic, "t_topic", ["bob", "user", ""]);
      for (let i = 0; i < 20; i++) {
        work.push(owner.change(topic, "t_publish", ["bob", "user", "", `e${i}`]));
      }
      work.push(owner.change(topic, "t_subscribe", ["bob", "user", "audit"]));
      work.push(owner.change(topic, "t_subscribe", ["bob", "user", "billing"]));
      await Promise.all(work);

      // Every ship() resolved after the replica's ack: the state is already there.
      await sameState(p.owner, p.replica, [...queues, topic]);
      for (const e of [...queues, topic]) {
        const [mine, theirs] = [await readPosition(p.replica, e), await readPosition(p.owner, e)];
        assert.deepEqual({ ...mine, store: "" }, { ...theirs, store: "" });
        assert.notEqual(mine.store, theirs.store, "each store has its own identity");
      }
      const lag = shipper.lag();
      assert.equal(lag.length, 4);
      for (const l of lag) {
        assert.equal(l.lag, 0, JSON.stringify(l));
        assert.equal(l.peer, "replica");
        assert.ok(l.connected);
        assert.equal(l.syncing, false);
      }
      assert.ok(peers.records >= 300, `records shipped: ${peers.records}`);
      assert.ok(
        peers.batches < peers.records,
        `batched: ${peers.batches} batches for ${peers.records} records`,
      );
    } finally {
      shipper?.close();
      peers.close();
      await server?.stop();
      await p.close();
    }
  },
});

Deno.test({
  name:
    "replication over gRPC: catch-up after downtime, a wiped replica, and an owner change; fencing",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const p = await pair();
    const peers = new PeerClients({ secret: SECRET });
    let server: ReplicationServer | undefined;
    let shipper: Shipper | undefined;
    let address: string | undefined;
    let epoch = 1;
    let fence = 0;
    const fenced: string[] = [];
    try {
      const replicaStore = await TestStore.open(p.replica, localOnlySink);
      const startServer = async (port = 0) => {
        server = await ReplicationServer.start({
          listen: `127.0.0.1:${port}`,
          secret: SECRET,
          redis: p.replica,
          applier: replicaStore,
          fence: () => fence,
        });
        address = server.address;
        return server.port;
      };
      const port = await startServer();
      shipper = new Shipper(shipperOptions(p, peers, () => address, {
        ackTimeoutMs: 4_000,
        reconnectMaxMs: 200,
        epochOf: () => epoch,
        onFenced: (e, detail) => fenced.push(`${e.name}: ${detail}`),
      }));
      const owner = await TestStore.open(p.owner, shipper, () => epoch);
      const q = Q("jobs");
      await owner.change(q, "t_create", ["alice", "user", ""]);
      for (let i = 0; i < 5; i++) {
        await owner.change(q, "t_push", ["alice", "user", "", `a${i}`, "x"]);
      }

      // The replica goes away: a change is not acknowledged (one copy only) ...
      await server!.stop(0);
      await assert.rejects(
        () => owner.change(q, "t_push", ["alice", "user", "", "lost-ack", "x"]),
        isCode("unavailable"),
      );
      // ... but it is kept, and sent when the replica is back (on the same address).
      await startServer(port);
      await waitFor(
        "the replica answers again",
        () => peers.position(address!, q).then(() => true),
      );
      await owner.change(q, "t_push", ["alice", "user", "", "after", "x"]);
      await sameState(p.owner, p.replica, [q]);

      // A replica that lost its data: the next record leaves a gap; a snapshot fills it.
      await p.replica.flushall();
      await identifyStore(p.replica); // its node notices the loss and takes a new identity
      await owner.change(q, "t_push", ["alice", "user", "", "after-wipe", "x"]);
      await sameState(p.owner, p.replica, [q]);
      assert.ok(shipper.lag().every((l) => l.lag === 0));

      // A new epoch (this node took the entity over): the replica cannot know whether its
      // history matches, so it is resynced by a snapshot stamped with the new epoch.
      await p.replica.hset(scriptKeys(q, [])[0], "garbage", "from an old owner");
      epoch = 2;
      await owner.change(q, "t_push", ["alice", "user", "", "epoch-2", "x"]);
      await sameState(p.owner, p.replica, [q]);
      assert.equal((await readPosition(p.replica, q)).epoch, 2);

      // Proactive resync after a take-over.
      await p.replica.hset(scriptKeys(q, [])[0], "garbage", "again");
      shipper.resync(q);
      await waitFor(
        "resync",
        async () => !(await p.replica.hexists(scriptKeys(q, [])[0], "garbage")),
      );
      await sameState(p.owner, p.replica, [q]);

      // The replica learns of a newer epoch (ZooKeeper granted the entity elsewhere): this owner
      // is fenced; its change is refused by the replica and not acknowledged.
      fence = 3;
      await assert.rejects(
        () => owner.change(q, "t_push", ["alice", "user", "", "zombie", "x"]),
        isCode("unavailable"),
      );
      assert.equal(fenced.length, 1, fenced.join("; "));
      assert.match(fenced[0], /older than 3/);
      assert.equal(await p.replica.hexists(scriptKeys(q, [])[5], "zombie"), 0);
    } finally {
      shipper?.close();
      peers.close();
      await server?.stop();
      await p.close();
    }
  },
});

Deno.test({
  name: "replication over gRPC: only the owner's snapshot replaces a copy",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const p = await pair();
    const peers = new PeerClients({ secret: SECRET });
    let server: ReplicationServer | undefined;
    let shipper: Shipper | undefined;
    try {
      // The replica side owns the entity now (epoch 2); the shipping side held it before and
      // kept an older copy, as a node that restarted and restored from the backup would.
      const q = Q("jobs");
      const current = await TestStore.open(p.replica, localOnlySink, () => 2);
      const former = await TestStore.open(p.owner, localOnlySink, () => 2);
      await current.change(q, "t_create", ["alice", "user", ""]);
      await current.change(q, "t_push", ["alice", "user", "", "m1", "x"]);
      await current.change(q, "t_push", ["alice", "user", "", "m2", "x"]);
      await former.change(q, "t_create", ["alice", "user", ""]);
      await former.change(q, "t_push", ["alice", "user", "", "stale", "x"]);
      const before = await dumpEntity(p.replica, q);
      server = await ReplicationServer.start({
        listen: "127.0.0.1:0",
        secret: SECRET,
        redis: p.replica,
        applier: current,
        fence: () => 2,
        ownerOf: () => "current-owner",
      });
      const address = server.address;
      let mayWrite = false;
      const fenced: string[] = [];
      shipper = new Shipper(shipperOptions(p, peers, () => address, {
        epochOf: () => {
          if (!mayWrite) throw new BrokerError("unavailable", "owned by current-owner", 1);
          return 2;
        },
        onFenced: (_e, detail) => fenced.push(detail),
      }));

      // A node that may not write the entity sends no snapshot: it forgets the entity.
      shipper.resync(q);
      await waitFor("the entity to be dropped", () => shipper!.lag().length === 0);
      assert.deepEqual(await dumpEntity(p.replica, q), before);

      // A snapshot that claims the known epoch from a node that is not the owner is refused.
      mayWrite = true;
      shipper.resync(q);
      await waitFor("the snapshot to be refused", () => fenced.length > 0);
      assert.match(fenced[0], /owner is not the owner of queue\/jobs at epoch 2/);
      assert.deepEqual(await dumpEntity(p.replica, q), before);
    } finally {
      shipper?.close();
      peers.close();
      await server?.stop();
      await p.close();
    }
  },
});

/** What a replica acknowledged for one entity of a batch. */
interface EntityAnswer {
  seq: number;
  epoch: number;
  error: string;
}

/** A Replicate stream carrying hand-made batches to a replica, one batch at a time. */
function replicateBy(peers: PeerClients, address: string) {
  const call = peers.replicate(address);
  const waiting = new Map<string, { resolve: (a: WireAck) => void; reject: (e: Error) => void }>();
  call.on("data", (ack: WireAck) => {
    waiting.get(ack.batchId)?.resolve(ack);
    waiting.delete(ack.batchId);
  });
  call.on("error", (err: Error) => {
    for (const w of waiting.values()) w.reject(err);
    waiting.clear();
  });
  let batches = 0;
  return {
    /** Sends one batch of one entity's records (after its snapshot, if any); its answer. */
    send(records: ReplicationRecord[], snapshot?: EntitySnapshot): Promise<EntityAnswer> {
      const batchId = String(++batches);
      return new Promise<WireAck>((resolve, reject) => {
        waiting.set(batchId, { resolve, reject });
        call.write({
          batchId,
          fromNode: "owner",
          records: records.map(toWireRecord),
          snapshots: snapshot ? [toWireSnapshot(snapshot)] : [],
        });
      }).then((ack) => {
        const [e] = ack.entities;
        return { seq: Number(e.seq), epoch: Number(e.epoch), error: e.error };
      });
    },
    close() {
      call.end();
    },
  };
}

/** How many HMGET commands (position reads) the Redis ran since its stats were reset. */
async function hmgetCalls(redis: Redis): Promise<number> {
  const info = await redis.info("commandstats");
  return Number(/cmdstat_hmget:calls=(\d+)/.exec(info)?.[1] ?? 0);
}

Deno.test({
  name:
    "replication over gRPC: a replica reads its position again whenever its copy may have changed behind its back",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const p = await pair();
    let replicaRedis = p.replicaRedis;
    const peers = new PeerClients({ secret: SECRET });
    let server: ReplicationServer | undefined;
    let stream: ReturnType<typeof replicateBy> | undefined;
    try {
      const applier = await TestStore.open(p.replica, localOnlySink);
      server = await ReplicationServer.start({
        listen: "127.0.0.1:0",
        secret: SECRET,
        redis: p.replica,
        applier,
      });
      stream = replicateBy(peers, server.address);
      // The owner's records are kept here and sent by hand, batch by batch.
      const shipped: ReplicationRecord[] = [];
      const keep: RecordSink = {
        ship: (r) => {
          shipped.push(r);
          return Promise.resolve();
        },
      };
      let epoch = 1;
      const owner = await TestStore.open(p.owner, keep, () => epoch);
      const push = async (e: EntityRef, id: string) => {
        await owner.change(e, "t_push", ["alice", "user", "", id, "x"]);
        return shipped.at(-1)!;
      };
      const create = async (e: EntityRef) => {
        await owner.change(e, "t_create", ["alice", "user", ""]);
        return shipped.at(-1)!;
      };
      const send = (records: ReplicationRecord[], snapshot?: EntitySnapshot) =>
        stream!.send(records, snapshot);

      // The common case: each batch follows the one before; only the first reads the position.
      const q = Q("jobs");
      await p.replica.config("RESETSTAT");
      assert.deepEqual(await send([await create(q)]), { seq: 1, epoch: 1, error: "" });
      for (let i = 2; i <= 4; i++) {
        assert.deepEqual(await send([await push(q, `m${i}`)]), { seq: i, epoch: 1, error: "" });
      }
      assert.deepEqual(await send([await push(q, "m5"), await push(q, "m6")]), {
        seq: 6,
        epoch: 1,
        error: "",
      });
      assert.equal(await hmgetCalls(p.replica), 1, "one position read, for the first batch");
      await sameState(p.owner, p.replica, [q]);

      // Wiped behind the server's back: the next record leaves a gap at 0; a snapshot fills it.
      await p.replica.flushdb();
      await identifyStore(p.replica); // its node notices the loss and takes a new identity
      assert.deepEqual(await send([await push(q, "m7")]), { seq: 0, epoch: 0, error: "gap" });
      const at7 = await takeSnapshot(p.owner, q);
      assert.deepEqual(await send([], at7), { seq: 7, epoch: 1, error: "" });
      await sameState(p.owner, p.replica, [q]);

      // Rolled back behind its back (an older copy restored): a gap at the older position.
      assert.deepEqual(await send([await push(q, "m8")]), { seq: 8, epoch: 1, error: "" });
      await restoreSnapshot(p.replica, at7);
      const m9 = await push(q, "m9");
      assert.deepEqual(await send([m9]), { seq: 7, epoch: 1, error: "gap" });
      assert.deepEqual(await send([shipped.at(-2)!, m9]), { seq: 9, epoch: 1, error: "" });
      await sameState(p.owner, p.replica, [q]);

      // Moved on behind its back under a newer epoch (this node owned it meanwhile and wrote
      // record 10 itself): the old owner's record 10 is not "already held"; it is refused.
      await adoptEpoch(p.replica, q, 2);
      await (await TestStore.open(p.replica, localOnlySink, () => 2))
        .change(q, "t_push", ["alice", "user", "", "written-here", "x"]);
      assert.deepEqual(await readPosition(p.replica, q), {
        seq: 10,
        epoch: 2,
        exists: true,
        store: await p.replica.hget("momd:store", "id"),
      });
      const stale = await send([await push(q, "m10")]);
      assert.deepEqual(stale, { seq: 10, epoch: 2, error: "stale_epoch" });
      assert.equal(await p.replica.hexists(scriptKeys(q, [])[5], "m10"), 0);

      // A copy replaced behind its back by another history of the same length but an older
      // epoch: a record of the newer epoch must not be applied on top of it (resync).
      epoch = 2;
      const older = async (e: EntityRef, redis: Redis) => {
        const before = await TestStore.open(redis, localOnlySink, () => 1);
        await before.change(e, "t_create", ["alice", "user", ""]);
        await before.change(e, "t_push", ["alice", "user", "", "old-a", "x"]);
        await before.change(e, "t_push", ["alice", "user", "", "old-b", "x"]);
      };
      // ... told by forget(): the node restored the entity, or owned it meanwhile.
      const r = Q("restored");
      assert.deepEqual(await send([await create(r), await push(r, "a"), await push(r, "b")]), {
        seq: 3,
        epoch: 2,
        error: "",
      });
      const nothing = await takeSnapshot(p.replica, Q("none"));
      await restoreSnapshot(p.replica, { ...nothing, entity: r, epoch: 2 }); // deletes it
      await older(r, p.replica);
      server.forget(r);
      assert.deepEqual(await send([await push(r, "c")]), { seq: 3, epoch: 1, error: "resync" });
      assert.equal(await p.replica.hexists(scriptKeys(r, [])[5], "c"), 0);

      // ... or after its Redis restarted, holding an older copy.
      const s = Q("restarted");
      assert.deepEqual(await send([await create(s), await push(s, "a"), await push(s, "b")]), {
        seq: 3,
        epoch: 2,
        error: "",
      });
      const closed = new Promise((resolve) => p.replica.once("close", resolve));
      await replicaRedis.stop();
      replicaRedis = await startRedis({ port: replicaRedis.port });
      await closed;
      await waitFor("the replica's Redis connection is back", () => p.replica.status === "ready");
      await older(s, p.replica);
      assert.deepEqual(await send([await push(s, "c")]), { seq: 3, epoch: 1, error: "resync" });
      assert.equal(await p.replica.hexists(scriptKeys(s, [])[5], "c"), 0);
    } finally {
      stream?.close();
      peers.close();
      await server?.stop();
      p.owner.disconnect();
      p.replica.disconnect();
      await p.ownerRedis.stop();
      await replicaRedis.stop();
    }
  },
});

Deno.test({
  name:
    "replication over gRPC: ship() waits for every in-sync replica and minInSyncReplicas copies",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const p = await pair();
    const peers = new PeerClients({ secret: SECRET });
    const shippers: Shipper[] = [];
    let server: ReplicationServer | undefined;
    try {
      server = await ReplicationServer.start({
        listen: "127.0.0.1:0",
        secret: SECRET,
        redis: p.replica,
        applier: await TestStore.open(p.replica, localOnlySink),
      });
      const live = server.address;
      const dead = `127.0.0.1:${freePort()}`;
      const make = (min: number, replicas: string[], inSync: () => string[] = () => replicas) => {
        const s = new Shipper({
          nodeId: "owner",
          peers,
          redis: p.owner,
          minInSyncReplicas: min,
          replicasOf: () => replicas,
          inSyncOf: inSync,
          addressOf: (id) => id === "live" ? live : id === "dead" ? dead : undefined,
          ackTimeoutMs: 1_000,
        });
        shippers.push(s);
        return s;
      };
      // One copy (the owner's) is enough: no replica needed.
      const alone = await TestStore.open(p.owner, make(1, []));
      assert.ok(await alone.change(Q("solo"), "t_create", ["a", "user", ""]) > 0);
      // Three copies with one replica in sync: refused before the change is made.
      assert.throws(() => make(3, ["live"]).admit(Q("few")), isCode("unavailable"));
      // Two copies; the dead replica is out of the in-sync set: the live one's ack is enough.
      const mixed = await TestStore.open(p.owner, make(2, ["dead", "live"], () => ["live"]));
      await mixed.change(Q("pair"), "t_create", ["a", "user", ""]);
      await mixed.change(Q("pair"), "t_push", ["a", "user", "", "m1", "x"]);
      await sameState(p.owner, p.replica, [Q("pair")]);
      // Every in-sync replica must hold a change, however few copies are required: a dead one in
      // the set holds it up, until the set no longer names it.
      let inSync = ["dead", "live"];
      const strict = make(2, ["dead", "live"], () => inSync);
      const strictStore = await TestStore.open(p.owner, strict);
      await assert.rejects(
        () => strictStore.change(Q("pair"), "t_push", ["a", "user", "", "m2", "x"]),
        (err) =>
          isCode("unavailable")(err) &&
          /not acknowledged in 1000 ms by in-sync replica dead/.test((err as BrokerError).detail),
      );
      assert.equal(strict.lag().find((l) => l.peer === "dead")?.connected, false);
      assert.ok((strict.replica(Q("pair"), "dead")?.behindMs ?? 0) > 0);
      assert.equal(strict.replica(Q("pair"), "live")?.behindMs, 0);
      const waiting = strictStore.change(Q("pair"), "t_push", ["a", "user", "", "m3", "x"]);
      await new Promise((r) => setTimeout(r, 200));
      inSync = ["live"];
      strict.recheck(Q("pair"));
      assert.ok(await waiting > 0, "acknowledged once the dead replica left the set");
    } finally {
      for (const s of shippers) s.close();
      peers.close();
      await server?.stop();
      await p.close();
    }
  },
});

Deno.test({
  name: "replication over gRPC: calls without the cluster secret are refused UNAUTHENTICATED",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const redis = await startRedis();
    const conn = new Redis(redis.url);
    let applied = 0;
    let forwarded = 0;
    const server = await ReplicationServer.start({
      listen: "127.0.0.1:0",
      secret: SECRET,
      redis: conn,
      applier: { apply: () => (applied++, Promise.resolve("applied" as const)) },
      forward: () => (forwarded++, Promise.resolve(new Response("no"))),
    });
    const { Replication, Forward } = momdProto();
    const bare = new Replication(server.address, grpc.credentials.createInsecure());
    const bareForward = new Forward(server.address, grpc.credentials.createInsecure());
    const wrong = new PeerClients({ secret: "not-the-cluster-secret-not-the-cluster" });
    const right = new PeerClients({ secret: SECRET });
    try {
      assert.ok(secretChecker(SECRET)(`Bearer ${SECRET}`));
      assert.ok(!secretChecker(SECRET)(`Bearer ${SECRET}x`));
      assert.ok(!secretChecker(SECRET)(SECRET));
      assert.ok(!secretChecker(SECRET)(undefined));
      assert.ok(!secretChecker("")("Bearer "));
      // One checker (the secret hashed once) answers every call alike.
      const matches = secretChecker(SECRET);
      for (let i = 0; i < 2; i++) {
        assert.ok(matches(`Bearer ${SECRET}`));
        assert.ok(!matches(`Bearer ${SECRET.slice(0, -1)}`));
        assert.ok(!matches(`Bearer ${SECRET}${SECRET}`));
        assert.ok(!matches("Bearer "));
        assert.ok(!matches(["Bearer", SECRET]));
      }
      assert.ok(!secretChecker("")("Bearer "));

      const code = (err: unknown) => (err as grpc.ServiceError).code;
      // Unary calls without metadata.
      const e1 = await new Promise((resolve) =>
        bare.Position({ type: "queue", name: "q" }, (err: unknown) => resolve(err))
      );
      assert.equal(code(e1), grpc.status.UNAUTHENTICATED);
      const e2 = await new Promise((resolve) =>
        bareForward.Http({ method: "GET", path: "/healthz" }, (err: unknown) => resolve(err))
      );
      assert.equal(code(e2), grpc.status.UNAUTHENTICATED);
      // A stream without metadata: refused before any batch reaches the applier.
      const stream = bare.Replicate();
      const e3 = await new Promise((resolve) => {
        stream.on("error", resolve);
        stream.on("data", () => resolve(new Error("got an ack")));
        stream.write({
          batchId: "1",
          fromNode: "intruder",
          records: [{
            entity: { type: "queue", name: "q" },
            seq: "1",
            epoch: "9",
            op: "t_create",
            at: "1",
            args: [],
          }],
        });
      });
      assert.equal(code(e3), grpc.status.UNAUTHENTICATED);
      // A wrong secret.
      await assert.rejects(
        () => wrong.position(server.address, Q("q")),
        (err) => isCode("unavailable")(err) && /UNAUTHENTICATED/.test((err as BrokerError).detail),
      );
      const wrongStream = wrong.replicate(server.address);
      const e4 = await new Promise((resolve) => {
        wrongStream.on("error", resolve);
        wrongStream.write({ batchId: "1", fromNode: "x", records: [], snapshots: [] });
      });
      assert.equal(code(e4), grpc.status.UNAUTHENTICATED);
      await assert.rejects(
        () => wrong.forwardHttp(server.address, new Request("http://x/healthz"), null),
        (err) => isCode("unavailable")(err) && /UNAUTHENTICATED/.test((err as BrokerError).detail),
      );
      assert.equal(applied, 0);
      assert.equal(forwarded, 0);
      // Bound to the configured address only.
      await assert.rejects(() => Deno.connect({ hostname: "127.0.0.2", port: server.port }));
      // The right secret works.
      // A Redis without a store identity answers "" (the controller elects no such copy).
      assert.deepEqual(await right.position(server.address, Q("q")), {
        seq: 0,
        epoch: 0,
        exists: false,
        store: "",
      });
    } finally {
      bare.close();
      bareForward.close();
      wrong.close();
      right.close();
      await server.stop();
      conn.disconnect();
      await redis.stop();
    }
  },
});

Deno.test({
  name: "replication over gRPC: Snapshot + restore reproduces an entity; Position reports it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const p = await pair();
    const third = await startRedis();
    const target = new Redis(third.url);
    const peers = new PeerClients({ secret: SECRET });
    let server: ReplicationServer | undefined;
    try {
      const store = await TestStore.open(p.owner, localOnlySink, () => 4);
      const t = T("events");
      const q = Q("orders");
      await store.change(t, "t_topic", ["bob", "user", ""]);
      for (let i = 0; i < 10; i++) {
        await store.change(t, "t_publish", ["bob", "user", "", `e${i}\u0000\u00ff`]);
      }
      await store.change(t, "t_subscribe", ["bob", "user", "audit"]);
      await store.change(t, "t_subscribe", ["bob", "user", "billing"]);
      await store.change(q, "t_create", ["alice", "user", ""]);
      await store.change(q, "t_push", ["alice", "user", "", "m1", "one"]);
      await store.change(q, "t_push", ["alice", "user", "", "m2", "two"]);
      await p.owner.pexpire(scriptKeys(q, [])[2], 600_000);
      server = await ReplicationServer.start({
        listen: "127.0.0.1:0",
        secret: SECRET,
        redis: p.owner,
        applier: store,
      });

      // The target holds an older, different version of the topic (a subscription since
      // deleted, other messages): restoring replaces all of it.
      const old = await TestStore.open(target, localOnlySink, () => 2);
      await old.change(t, "t_topic", ["bob", "user", ""]);
      await old.change(t, "t_subscribe", ["bob", "user", "gone"]);
      await old.change(t, "t_publish", ["bob", "user", "", "stale"]);
      await target.zadd("momd:registry:topic", 0, "other-topic");

      for (const e of [t, q]) {
        const snap = await peers.snapshot(server.address, e);
        assert.equal(snap.epoch, 4);
        assert.deepEqual(await peers.position(server.address, e), {
          seq: snap.seq,
          epoch: 4,
          exists: true,
          store: await p.owner.hget("momd:store", "id"),
        });
        await restoreSnapshot(target, snap);
      }
      assert.deepEqual(await target.zrange("momd:registry:topic", "0", "-1"), [
        "events",
        "other-topic",
      ]);
      assert.deepEqual(await target.zrange("momd:registry:queue", "0", "-1"), ["orders"]);
      for (const e of [t, q]) {
        const want = await dumpEntity(p.owner, e);
        const got = await dumpEntity(target, e);
        // Registries are shared by every entity of a type; only this entity's member travels.
        delete want["momd:registry:topic"];
        delete got["momd:registry:topic"];
        assert.deepEqual(got, want);
      }
      assert.equal(await target.exists("momd:t:{events}:s:gone:state"), 0);
      const ttl = await target.pttl(scriptKeys(q, [])[2]);
      assert.ok(ttl > 0 && ttl <= 600_000, `ttl kept: ${ttl}`);

      // An older snapshot does not overwrite a newer epoch.
      const older = await takeSnapshot(p.owner, q);
      await assert.rejects(
        () => restoreSnapshot(target, { ...older, epoch: 3 }),
        isCode("stale_epoch"),
      );
      // A snapshot of a missing entity deletes it.
      const none = await takeSnapshot(p.owner, Q("missing"));
      assert.deepEqual(none.keys, []);
      await restoreSnapshot(target, { ...none, entity: q, epoch: 5 });
      assert.deepEqual(await readPosition(target, q), {
        seq: 0,
        epoch: 0,
        exists: false,
        store: await target.hget("momd:store", "id"),
      });
      assert.equal(await target.zscore("momd:registry:queue", "orders"), null);
      assert.equal((await peers.position(server.address, Q("missing"))).exists, false);
    } finally {
      peers.close();
      await server?.stop();
      target.disconnect();
      await third.stop();
      await p.close();
    }
  },
});

Deno.test({
  name: "forwarding over gRPC: a forwarded request round-trips with its principal",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const redis = await startRedis();
    const conn = new Redis(redis.url);
    const seen: {
      method: string;
      url: string;
      principal: unknown;
      body: string;
      headers: Headers;
    }[] = [];
    const forward: ForwardHandler = async ({ request, principal }) => {
      seen.push({
        method: request.method,
        url: request.url,
        principal,
        body: await request.text(),
        headers: request.headers,
      });
      if (request.method === "DELETE") return new Response(null, { status: 204 });
      return new Response(JSON.stringify({ ok: true, echo: seen.at(-1)!.body }), {
        status: 201,
        headers: { "content-type": "application/json", "retry-after": "3", "x-owner": "node2" },
      });
    };
    const server = await ReplicationServer.start({
      listen: "127.0.0.1:0",
      secret: SECRET,
      redis: conn,
      applier: { apply: () => Promise.resolve("applied" as const) },
      forward,
    });
    const plain = await ReplicationServer.start({
      listen: "127.0.0.1:0",
      secret: SECRET,
      redis: conn,
      applier: { apply: () => Promise.resolve("applied" as const) },
    });
    const peers = new PeerClients({ secret: SECRET });
    try {
      const body = JSON.stringify({ messages: [{ body: "héllo \u0000" }] });
      const res = await peers.forwardHttp(
        server.address,
        new Request("http://127.0.0.1:8080/v1/queues/orders/messages?wait=2&x=%20y", {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "x-request-id": "abc",
            authorization: "Bearer tok",
          },
          body,
        }),
        { username: "alice", role: "user" },
      );
      assert.equal(res.status, 201);
      assert.equal(res.headers.get("content-type"), "application/json");
      assert.equal(res.headers.get("retry-after"), "3");
      assert.equal(res.headers.get("x-owner"), "node2");
      assert.deepEqual(await res.json(), { ok: true, echo: body });
      assert.equal(seen.length, 1);
      assert.equal(seen[0].method, "POST");
      assert.equal(
        new URL(seen[0].url).pathname + new URL(seen[0].url).search,
        "/v1/queues/orders/messages?wait=2&x=%20y",
      );
      assert.deepEqual(seen[0].principal, { username: "alice", role: "user" });
      assert.equal(seen[0].body, body);
      assert.equal(seen[0].headers.get("x-request-id"), "abc");
      assert.equal(seen[0].headers.get("content-type"), "application/json");

      const del = await peers.forwardHttp(
        server.address,
        new Request("http://x/v1/queues/orders", { method: "DELETE" }),
        null,
      );
      assert.equal(del.status, 204);
      assert.equal(await del.text(), "");
      assert.equal(seen[1].principal, null);

      // A node without a forward handler, and a node that is not there: unavailable (503).
      await assert.rejects(
        () => peers.forwardHttp(plain.address, new Request("http://x/healthz"), null),
        (err) => isCode("unavailable")(err) && /UNIMPLEMENTED/.test((err as BrokerError).detail),
      );
      const down = plain.address;
      await plain.stop();
      await assert.rejects(
        () => peers.forwardHttp(down, new Request("http://x/healthz"), null, { deadlineMs: 3000 }),
        isCode("unavailable"),
      );
      // A change for a node nobody listens at never left: 503 (send it again), not 504.
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const nobody = `127.0.0.1:${listener.addr.port}`;
      listener.close();
      const send = new Request("http://x/v1/queues/q/messages", { method: "POST", body: "{}" });
      await assert.rejects(
        () => peers.forwardHttp(nobody, send, null, { deadlineMs: 3000 }),
        (err) => isCode("unavailable")(err) && /No connection/.test((err as BrokerError).detail),
      );
    } finally {
      peers.close();
      await server.stop();
      await plain.stop();
      conn.disconnect();
      await redis.stop();
    }
  },
});

/**
 * A node's gRPC server serving `forward`, and a node of an earlier version that serves only
 * Forward.Http (with `http`), with the peer clients that reach both.
 */
async function forwardingNodes(
  forward: ForwardHandler,
  // deno-lint-ignore no-explicit-any
  http: (call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) => void,
) {
  const redis = await startRedis();
  const conn = new Redis(redis.url);
  const server = await ReplicationServer.start({
    listen: "127.0.0.1:0",
    secret: SECRET,
    redis: conn,
    applier: { apply: () => Promise.resolve("applied" as const) },
    forward,
  });
  const earlier = authenticatedServer(SECRET);
  earlier.addService(momdProto().Forward.service, { Http: http });
  const earlierAddress = `127.0.0.1:${await bindServer(earlier, "127.0.0.1:0")}`;
  const peers = new PeerClients({ secret: SECRET });
  return {
    server,
    earlierAddress,
    peers,
    async close() {
      peers.close();
      earlier.forceShutdown();
      await server.stop();
      conn.disconnect();
      await redis.stop();
    },
  };
}

Deno.test({
  name: "forwarding over gRPC: requests share a stream and are answered as each is ready; " +
    "a node without the stream gets unary calls",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    let releaseSlow!: () => void;
    const slowGate = new Promise<void>((resolve) => releaseSlow = resolve);
    const nodes = await forwardingNodes(
      async ({ request }) => {
        const path = new URL(request.url).pathname;
        if (path === "/slow") await slowGate;
        if (path === "/fail") throw new Error("the handler broke");
        return new Response(path);
      },
      // The node of an earlier version answers every call.
      (call, cb) =>
        cb(null, { status: 200, headers: [], body: Buffer.from(`unary ${call.request.path}`) }),
    );
    const { server, earlierAddress, peers } = nodes;
    const get = async (address: string, path: string) =>
      await (await peers.forwardHttp(address, new Request(`http://x${path}`), null)).text();
    try {
      const slow = get(server.address, "/slow");
      // The request still being served holds nothing up.
      assert.equal(await get(server.address, "/fast"), "/fast");
      await assert.rejects(
        () => get(server.address, "/fail"),
        (err) =>
          isCode("unavailable")(err) &&
          /INTERNAL the handler broke/.test((err as BrokerError).detail),
      );
      // A request that failed does not end the stream.
      assert.equal(await get(server.address, "/after"), "/after");
      releaseSlow();
      assert.equal(await slow, "/slow");

      assert.equal(await get(earlierAddress, "/a"), "unary /a");
      assert.equal(await get(earlierAddress, "/b"), "unary /b");
    } finally {
      await nodes.close();
    }
  },
});

Deno.test({
  name: "forwarding over gRPC: a long poll whose client goes away is cancelled on the owner too",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    /** Per path, what the handler saw: "aborted" once its request's signal fired. */
    const seen = new Map<string, string>();
    const entered = new Map<string, () => void>();
    const started = (path: string) => new Promise<void>((resolve) => entered.set(path, resolve));
    const forward: ForwardHandler = async ({ request }) => {
      const path = new URL(request.url).pathname;
      entered.get(path)?.();
      if (path.endsWith("/receive")) {
        // A long poll: it ends when its request's signal says the client went away.
        await new Promise<void>((resolve) => {
          if (request.signal.aborted) resolve();
          request.signal.addEventListener("abort", () => resolve(), { once: true });
        });
        seen.set(path, "aborted");
        return new Response("ended");
      }
      return new Response(path);
    };
    // The node of an earlier version never answers; it records cancelled calls.
    const cancelled: string[] = [];
    const nodes = await forwardingNodes(forward, (call) => {
      call.on("cancelled", () => cancelled.push(call.request.path));
      entered.get(call.request.path)?.();
    });
    const { server, earlierAddress, peers } = nodes;
    const poll = (address: string, path: string, signal: AbortSignal) =>
      peers.forwardHttp(address, new Request(`http://x${path}`, { method: "POST" }), null, {
        signal,
      });
    try {
      // The requests that carry their client's signal across a forward: those that may wait.
      for (
        const path of [
          "/v1/queues/q/receive",
          "/v1/topics/t/subscriptions/s/receive?x=1",
          "/v1/queues/q/requests",
          "/v1/tasks/abc",
        ]
      ) assert.ok(mayWait(path), path);
      for (const path of ["/v1/queues/q/messages", "/v1/tasks/abc/reply", "/v1/queues/q"]) {
        assert.ok(!mayWait(path), path);
      }
      for (const address of [server.address, earlierAddress]) {
        const path = `/v1/queues/q${address === server.address ? 1 : 2}/receive`;
        const client = new AbortController();
        const running = started(path);
        const answer = poll(address, path, client.signal);
        answer.catch(() => {});
        await running;
        client.abort();
        await assert.rejects(answer, isCode("unavailable"));
        await waitFor(
          `${path} cancelled on the serving node`,
          () => seen.get(path) === "aborted" || cancelled.includes(path),
        );
      }
      // The stream carries on: other requests are served, and a poll left alone is not cut.
      const stay = new AbortController();
      const staying = poll(server.address, "/v1/queues/q3/receive", stay.signal);
      staying.catch(() => {});
      const get = await peers.forwardHttp(server.address, new Request("http://x/a"), null);
      assert.equal(await get.text(), "/a");
      assert.equal(seen.has("/v1/queues/q3/receive"), false);
      stay.abort();
      await assert.rejects(staying);
    } finally {
      await nodes.close();
    }
  },
});

Deno.test({
  name: "replication over gRPC: the API's changes of queues and topics reach a replica Store",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const replicaRedis = await startRedis();
    const replicaConn = new Redis(replicaRedis.url);
    const peers = new CountingPeers({ secret: SECRET });
    let server: ReplicationServer | undefined;
    let shipper: Shipper | undefined;
    const owner = await startTestApi({
      sink: { ship: (r) => shipper ? shipper.ship(r) : Promise.reject(new Error("no shipper")) },
    });
    try {
      const replicaStore = await Store.open(replicaConn, { sink: localOnlySink });
      server = await ReplicationServer.start({
        listen: "127.0.0.1:0",
        secret: SECRET,
        redis: replicaConn,
        applier: replicaStore,
      });
      const address = server.address;
      shipper = new Shipper({
        nodeId: "owner",
        peers,
        redis: owner.local,
        minInSyncReplicas: 2,
        replicasOf: () => ["replica"],
        addressOf: () => address,
        ackTimeoutMs: 10_000,
      });
      const t = owner.adminToken;
      const q = "/v1/queues/orders";
      assert.equal((await owner.call("PUT", q, { token: t, body: {} })).status, 201);
      const sends = [];
      for (let i = 0; i < 20; i++) {
        sends.push(owner.call("POST", `${q}/messages`, {
          token: t,
          body: { messages: [{ body: `m${i}` }, { body: `d${i % 3}`, dedupId: `d-${i % 3}` }] },
        }));
      }
      for (const r of await Promise.all(sends)) assert.equal(r.status, 201, JSON.stringify(r.body));
      const got = await owner.call("POST", `${q}/receive`, {
        token: t,
        body: { max: 5, visibilitySeconds: 30 },
      });
      assert.equal(got.body.messages.length, 5);
      const acked = await owner.call("POST", `${q}/ack`, {
        token: t,
        body: {
          receipts: got.body.messages.slice(0, 3).map((m: { receipt: string }) => m.receipt),
        },
      });
      assert.equal(acked.status, 200, JSON.stringify(acked.body));

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

      // Each API call answered after the replica acknowledged its records.
      const entities = [Q("orders"), T("events")];
      await sameState(owner.local, replicaConn, entities);
      assert.ok(shipper.lag().every((l) => l.lag === 0), JSON.stringify(shipper.lag()));
      // Group commit folds the 20 concurrent sends into one record or a few; the other
      // seven changes each ship their own.
      assert.ok(peers.records >= 8, `records shipped: ${peers.records}`);

      // A replica wiped and restarted catches up by snapshot on the next change.
      await replicaConn.flushall();
      await identifyStore(replicaConn); // its node notices the loss and takes a new identity
      await owner.call("POST", `${q}/messages`, {
        token: t,
        body: { messages: [{ body: "late" }] },
      });
      await owner.call("POST", `${topic}/messages`, {
        token: t,
        body: { messages: [{ body: "e4" }] },
      });
      await sameState(owner.local, replicaConn, entities);
    } finally {
      shipper?.close();
      peers.close();
      await server?.stop();
      replicaConn.disconnect();
      await replicaRedis.stop();
      await owner.close();
    }
  },
});

Deno.test({
  name: "replication over gRPC: a replica whose store fails falls behind; the owner opens the " +
    "stream again and the replica catches up",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const p = await pair();
    const peers = new PeerClients({ secret: SECRET });
    let server: ReplicationServer | undefined;
    let shipper: Shipper | undefined;
    let replicaRedis = p.replicaRedis;
    try {
      server = await ReplicationServer.start({
        listen: "127.0.0.1:0",
        secret: SECRET,
        redis: p.replica,
        applier: await TestStore.open(p.replica, localOnlySink),
      });
      const address = server.address;
      shipper = new Shipper(shipperOptions(p, peers, () => address, { ackTimeoutMs: 500 }));
      const owner = await TestStore.open(p.owner, shipper);
      const q = Q("orders");
      await owner.change(q, "t_create", ["alice", "user", ""]);
      for (let i = 0; i < 5; i++) {
        await owner.change(q, "t_push", ["alice", "user", "", `m${i}`, "x"]);
      }

      // The replica's store goes away: its batches fail, and the stream ends (with a status).
      await replicaRedis.stop();
      await assert.rejects(
        () => owner.change(q, "t_push", ["alice", "user", "", "m5", "x"]),
        isCode("unavailable"),
      );
      await waitFor("the owner sees the stream end", () => {
        const r = shipper!.replica(q, "replica");
        return r !== undefined && r.behindMs > 0;
      });

      // Back from its files: the owner's stream is open again and everything unacknowledged
      // (m5) reaches the replica; new changes are acknowledged again.
      replicaRedis = await startRedis({ port: replicaRedis.port, dir: replicaRedis.dir });
      p.replicaRedis.stop = replicaRedis.stop;
      await waitFor("the replica caught up", () => {
        const r = shipper!.replica(q, "replica");
        return r?.connected && r.behindMs === 0 && r.ackedSeq === 7;
      }, 15_000);
      assert.ok(await owner.change(q, "t_push", ["alice", "user", "", "m6", "x"]) > 0);
      await sameState(p.owner, p.replica, [q]);
    } finally {
      shipper?.close();
      peers.close();
      await server?.stop();
      await p.close();
    }
  },
});

Deno.test({
  name: "replication over gRPC: a stream whose batches stay unacknowledged is cut and opened again",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const p = await pair();
    const peers = new CountingPeers({ secret: SECRET });
    let opened = 0;
    const replicate = peers.replicate.bind(peers);
    peers.replicate = (address: string) => (opened++, replicate(address));
    let server: ReplicationServer | undefined;
    let shipper: Shipper | undefined;
    try {
      const store = await TestStore.open(p.replica, localOnlySink);
      // The replica's first apply hangs for 2 s (a frozen store, a stuck script): nothing is
      // acknowledged on that stream meanwhile.
      let first = true;
      server = await ReplicationServer.start({
        listen: "127.0.0.1:0",
        secret: SECRET,
        redis: p.replica,
        applier: {
          apply: async (r) => {
            if (first) {
              first = false;
              await new Promise((resolve) => setTimeout(resolve, 2_000));
            }
            return await store.apply(r);
          },
        },
      });
      const address = server.address;
      shipper = new Shipper(shipperOptions(p, peers, () => address, { stallTimeoutMs: 500 }));
      const owner = await TestStore.open(p.owner, shipper);
      const q = Q("orders");
      await owner.change(q, "t_create", ["alice", "user", ""]);
      assert.ok(opened >= 2, `the stalled stream was opened again (${opened} streams)`);
      await owner.change(q, "t_push", ["alice", "user", "", "m1", "x"]);
      await sameState(p.owner, p.replica, [q]);
    } finally {
      shipper?.close();
      peers.close();
      await server?.stop();
      await p.close();
    }
  },
});
