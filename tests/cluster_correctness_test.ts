/**
 * Regressions of issue 11 against a real three-node cluster (ZooKeeper, five Redis servers,
 * three node processes, NGINX), each a defect that was reproduced on the earlier code:
 *
 * - creates, failed creates and deletes through nodes that do not own the name left stale
 *   ownership records behind, and a name created again elsewhere had two writing owners;
 * - an owner's local store wiped under it (FLUSHALL) answered 404, then lost acknowledged sends;
 * - a replica whose store failed to apply stayed counted in sync forever;
 * - an owner whose local Redis died answered 503 for as long as it was down;
 * - every delivery in flight came back after a failover (receipts outlived by the move);
 * - SIGTERM drains could answer 503 for applied work, or abort in nghttp2.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { STORE_KEY } from "../src/broker/keys.ts";
import { type Cluster, type ClusterStatus, withCluster } from "./support/cluster.ts";
import {
  assertSameState,
  brief,
  busiestOwner,
  createQueues,
  entityOf,
  moreAcknowledged,
  opts,
  QUEUES,
  SESSION_MS,
  underLoad,
  viewsAgree,
  waitCaughtUp,
  zooKeeperView,
} from "./support/faults.ts";

async function storeIdentity(c: Cluster, id: string): Promise<string> {
  const redis = new Redis(`${c.redisUrl(id)}/0`);
  try {
    return (await redis.hget(STORE_KEY, "id")) ?? "";
  } finally {
    redis.disconnect();
  }
}

/** Waits until none of `entities` is owned by `node` any more, each at a higher epoch. */
async function movedAway(
  c: Cluster,
  node: string,
  entities: ClusterStatus["entities"],
  timeoutMs = 30_000,
): Promise<ClusterStatus> {
  let seen: ClusterStatus | undefined;
  return await c.waitFor(`${node}'s entities to move`, async () => {
    const s = seen = await c.cluster();
    const ok = entities.every((m) => {
      const e = entityOf(s, m.name, m.type);
      return e.owner !== node && e.epoch > m.epoch;
    });
    return ok ? s : undefined;
  }, { timeoutMs, intervalMs: 200, describe: () => brief(seen) });
}

Deno.test({
  name: "cluster: creates, failed creates and deletes through other nodes leave no stale " +
    "ownership; a name taken again has one owner",
  ...opts,
  fn: async () => {
    await withCluster({ sessionTimeoutMs: SESSION_MS }, async (c) => {
      const [a, b, d] = c.nodeIds;
      const via = (id: string) => ({ base: c.nodeUrl(id) });
      for (let i = 0; i < 45; i++) {
        const [x, y, z] = [[a, b, d], [b, d, a], [d, a, b]][i % 3];
        const made = await c.call("PUT", `/v1/queues/storm-${i}`, { ...via(x), body: {} });
        assert.equal(made.status, 201, JSON.stringify(made.body));
        const bad = await c.call("PUT", `/v1/queues/bad-${i}`, {
          ...via(y),
          body: { maxLength: -1 },
        });
        assert.equal(bad.status, 400, JSON.stringify(bad.body));
        const gone = await c.call("DELETE", `/v1/queues/storm-${i}`, via(z));
        assert.equal(gone.status, 204, JSON.stringify(gone.body));
      }
      const truth = await viewsAgree(c);
      assert.equal(truth.size, 0, `ZooKeeper still holds ${[...truth.keys()]}`);
      for (const id of c.nodeIds) {
        const listed = await c.call("GET", "/v1/queues?limit=1000", via(id));
        assert.deepEqual(listed.body.queues, [], `${id} lists ${JSON.stringify(listed.body)}`);
      }

      // A name deleted and created again elsewhere: one owner, every send stored once.
      for (let round = 0; round < 3; round++) {
        const name = `again-${round}`;
        const first = await c.call("PUT", `/v1/queues/${name}`, { ...via(a), body: {} });
        assert.equal(first.status, 201, JSON.stringify(first.body));
        const deleted = await c.call("DELETE", `/v1/queues/${name}`, via(b));
        assert.equal(deleted.status, 204, JSON.stringify(deleted.body));
        const again = await c.call("PUT", `/v1/queues/${name}`, { ...via(d), body: {} });
        assert.equal(again.status, 201, JSON.stringify(again.body));
        const sends = await Promise.all(
          Array.from({ length: 60 }, (_, i) =>
            c.call("POST", `/v1/queues/${name}/messages`, {
              ...via(c.nodeIds[i % 3]),
              body: { messages: [{ body: `m${i}`, dedupId: `m${i}` }] },
            })),
        );
        assert.deepEqual(sends.map((r) => r.status), sends.map(() => 201));
        const stats = await c.call("GET", `/v1/queues/${name}`);
        assert.equal(stats.body.stats.depth, 60, JSON.stringify(stats.body));
      }
      const views = await viewsAgree(c);
      assert.equal(views.size, 3);
    });
  },
});

Deno.test({
  name: "cluster: an owner whose store is wiped under it loses no acknowledged send and never " +
    "answers 404 for what it owned",
  ...opts,
  fn: async () => {
    await withCluster({ sessionTimeoutMs: SESSION_MS }, async (c) => {
      let victim = "";
      const driver = await underLoad(c, "the wipe", async (driver) => {
        const { id, owned } = busiestOwner(await c.cluster());
        victim = id;
        const identity = await storeIdentity(c, victim);
        const redis = new Redis(`${c.redisUrl(victim)}/0`);
        try {
          await redis.flushall();
        } finally {
          redis.disconnect();
        }
        // It notices, takes a new identity and resigns: its in-sync replicas take over.
        const after = await movedAway(c, victim, owned);
        console.log(`wiped: ${victim} resigned ${owned.map((e) => e.name).join(", ")}`);
        const renewed = await storeIdentity(c, victim);
        assert.ok(renewed !== "" && renewed !== identity, `identity ${identity} -> ${renewed}`);
        assert.ok(after.nodes.some((n) => n.id === victim && n.alive), "it stays a member");
        await moreAcknowledged(c, driver, 150);
        // It catches up as a replica of everything and rejoins the in-sync sets.
        await waitCaughtUp(c, victim);
      });
      assert.equal(driver.statuses.get("send 404"), undefined, driver.describe());
      assert.equal(driver.statuses.get("receive 404"), undefined, driver.describe());
      const synced = await c.cluster();
      for (const e of synced.entities.filter((e) => e.replicas.includes(victim))) {
        await assertSameState(c, { type: e.type, name: e.name }, e.owner, victim);
      }
    });
  },
});

Deno.test({
  name: "cluster: a replica whose store stops taking writes leaves the in-sync set; writes go " +
    "on; it rejoins once it catches up",
  ...opts,
  fn: async () => {
    await withCluster({ sessionTimeoutMs: SESSION_MS }, async (c) => {
      let queue = "";
      let replica = "";
      await underLoad(c, "the failing replica", async (driver) => {
        const status = await c.cluster();
        const q = entityOf(status, QUEUES[0]);
        queue = q.name;
        replica = q.replicas[0];
        assert.ok(q.inSync.includes(replica), brief(status));
        const redis = new Redis(`${c.redisUrl(replica)}/0`);
        try {
          // The replica's store holds every write for 10 s (a frozen disk, a stuck store): its
          // node applies nothing and acknowledges nothing meanwhile.
          await redis.call("CLIENT", "PAUSE", "10000", "WRITE");
          let seen: ClusterStatus | undefined;
          await c.waitFor(`${replica} to leave the in-sync set of ${q.name}`, async () => {
            seen = await c.cluster();
            return !entityOf(seen, q.name).inSync.includes(replica);
          }, { timeoutMs: 20_000, intervalMs: 200, describe: () => brief(seen) });
          // The owner and the other in-sync replica still make two copies: sends go on.
          await moreAcknowledged(c, driver, 150);
        } finally {
          await redis.call("CLIENT", "UNPAUSE").catch(() => {});
          redis.disconnect();
        }
        await waitCaughtUp(c, replica);
      });
      const owner = entityOf(await c.cluster(), queue).owner;
      await assertSameState(c, { type: "queue", name: queue }, owner, replica);
    });
  },
});

Deno.test({
  name: "cluster: an owner whose local Redis dies gives its queues to in-sync replicas; back " +
    "from its files, it catches up",
  ...opts,
  fn: async () => {
    await withCluster({ sessionTimeoutMs: SESSION_MS }, async (c) => {
      await underLoad(c, "the dead Redis", async (driver) => {
        const { id: victim, owned } = busiestOwner(await c.cluster());
        const identity = await storeIdentity(c, victim);
        const stoppedAt = Date.now();
        await c.stopRedis(victim);
        await movedAway(c, victim, owned);
        console.log(`redis of ${victim} down: its queues moved after ${Date.now() - stoppedAt} ms`);
        await moreAcknowledged(c, driver, 100);
        await c.startRedis(victim);
        // The same store (its files kept every write it answered): the same identity.
        assert.equal(await storeIdentity(c, victim), identity);
        await waitCaughtUp(c, victim);
      });
    });
  },
});

Deno.test({
  name: "cluster: receipts of deliveries in flight still work after their queue failed over",
  ...opts,
  fn: async () => {
    await withCluster({ sessionTimeoutMs: SESSION_MS }, async (c) => {
      await createQueues(c, ["rq"], { visibilityTimeoutSeconds: 3, dedupWindowSeconds: 600 });
      const sent = await c.call("POST", "/v1/queues/rq/messages", {
        body: { messages: Array.from({ length: 5 }, (_, i) => ({ body: `m${i}` })) },
      });
      assert.equal(sent.status, 201);
      const got = await c.call("POST", "/v1/queues/rq/receive", { body: { max: 5 } });
      assert.equal(got.body.messages.length, 5);
      const receivedAt = Date.now();
      const owner = entityOf(await c.cluster(), "rq").owner;
      await c.kill(owner, "SIGKILL");
      await c.waitFor("a new owner of rq", async () => {
        const s = await c.cluster();
        return entityOf(s, "rq").owner !== owner &&
          (await c.call("GET", "/v1/queues/rq")).status === 200;
      }, { timeoutMs: 30_000, intervalMs: 200 });
      // Past the deliveries' original deadline: the consumer's acks still count.
      const wait = receivedAt + 3_500 - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const acked = await c.call("POST", "/v1/queues/rq/ack", {
        // deno-lint-ignore no-explicit-any
        body: { receipts: got.body.messages.map((m: any) => m.receipt) },
      });
      assert.equal(acked.status, 200, JSON.stringify(acked.body));
      // deno-lint-ignore no-explicit-any
      assert.deepEqual(acked.body.results.map((r: any) => r.ok), [true, true, true, true, true]);
      const stats = (await c.call("GET", "/v1/queues/rq")).body.stats;
      assert.equal(stats.depth + stats.inFlight, 0, JSON.stringify(stats));
      const again = await c.call("POST", "/v1/queues/rq/receive", {
        body: { max: 5, waitSeconds: 1 },
      });
      assert.deepEqual(again.body.messages, [], "nothing comes back as a duplicate");
    });
  },
});

Deno.test({
  name: "cluster: SIGTERM drains under load end with exit code 0, hand everything over and " +
    "lose nothing",
  ...opts,
  fn: async () => {
    await withCluster({ sessionTimeoutMs: SESSION_MS }, async (c) => {
      await underLoad(c, "the drains", async (driver) => {
        for (const node of c.nodeIds) {
          const owned = (await c.cluster()).entities.filter((e) => e.owner === node);
          const stoppedAt = Date.now();
          await c.kill(node, "SIGTERM");
          assert.equal(
            c.exitStatus(node)?.code,
            0,
            `${node}: ${JSON.stringify(c.exitStatus(node))}`,
          );
          const log = await c.nodeLog(node);
          assert.doesNotMatch(log, /nghttp2|Assertion/, `${node} aborted in HTTP/2`);
          for (const e of owned) {
            assert.match(log, new RegExp(`handed ${e.type}/${e.name} over to `), e.name);
          }
          console.log(`drain: ${node} handed over ${owned.length} in ${Date.now() - stoppedAt} ms`);
          await moreAcknowledged(c, driver, 80);
          await c.start(node);
          await waitCaughtUp(c, node);
          await moreAcknowledged(c, driver, 80);
        }
      });
    });
  },
});

Deno.test({
  name: "cluster: a delete racing a create again, and creates racing each other, through " +
    "different nodes: every answer says what happened",
  ...opts,
  fn: async () => {
    await withCluster({ sessionTimeoutMs: SESSION_MS }, async (c) => {
      const [a, b, d] = c.nodeIds;
      const via = (id: string) => ({ base: c.nodeUrl(id) });
      const exists = async (name: string) =>
        (await c.call("GET", `/v1/queues/${name}`, via(c.nodeIds[0]))).status === 200;
      const outcomes = new Map<string, number>();
      for (let round = 0; round < 20; round++) {
        // A delete through one node, a create again through another, staggered over the window.
        const name = `race-${round}`;
        assert.equal(
          (await c.call("PUT", `/v1/queues/${name}`, { ...via(a), body: {} })).status,
          201,
        );
        const [del, put] = await Promise.all([
          c.call("DELETE", `/v1/queues/${name}`, via(b)),
          new Promise((r) => setTimeout(r, round % 10)).then(() =>
            c.call("PUT", `/v1/queues/${name}`, { ...via(d), body: {} })
          ),
        ]);
        const k = `delete ${del.status}, create ${put.status}`;
        outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
        assert.equal(del.status, 204, k);
        if (put.status === 201) {
          // Made after the delete: it exists, and what is sent to it is kept.
          assert.ok(await exists(name), `${name}: ${k}, yet it does not exist`);
          const sent = await c.call("POST", `/v1/queues/${name}/messages`, {
            body: { messages: [{ body: "kept" }] },
          });
          assert.equal(sent.status, 201);
          const got = await c.call("POST", `/v1/queues/${name}/receive`, { body: { max: 1 } });
          assert.deepEqual(got.body.messages.map((m: { body: string }) => m.body), ["kept"]);
        } else {
          // It existed when the create came (200), then was deleted. (A create that waited on the
          // owner behind the delete used to be refused with 503; it is routed again now.)
          assert.equal(put.status, 200, `${name}: ${k} ${JSON.stringify(put.body)}`);
          assert.equal(await exists(name), false, `${name}: ${k}, yet it exists`);
        }

        // Two creates of one name at once, one invalid or of another configuration.
        const other = `pair-${round}`;
        const [x, y] = await Promise.all([
          c.call("PUT", `/v1/queues/${other}`, {
            ...via(a),
            body: round % 2 ? { maxLength: -1 } : { maxLength: 5 },
          }),
          c.call("PUT", `/v1/queues/${other}`, { ...via(b), body: {} }),
        ]);
        const made = [x, y].filter((r) => r.status === 201).length;
        assert.ok(made <= 1, `${other}: ${x.status} and ${y.status}`);
        // Whatever answered 201 exists; nothing that was not made is listed.
        assert.equal(await exists(other), made === 1, `${other}: ${x.status} and ${y.status}`);
      }
      console.log(`delete/create races: ${JSON.stringify([...outcomes])}`);
      const views = await viewsAgree(c);
      const listed = await c.call("GET", "/v1/queues?limit=1000");
      const names = listed.body.queues.map((q: { name: string }) => q.name);
      for (const name of names) assert.ok(await exists(name), `${name} listed, yet not there`);
      assert.ok(views.size >= names.length);
    });
  },
});

Deno.test({
  name: "cluster: a replica whose store refuses writes (out of memory) is not elected; its " +
    "queues move to a healthy replica",
  ...opts,
  fn: async () => {
    await withCluster({ sessionTimeoutMs: SESSION_MS }, async (c) => {
      await underLoad(c, "an out-of-memory replica and its owner's death", async (driver) => {
        const q = entityOf(await c.cluster(), QUEUES[0]);
        const [owner, sick] = [q.owner, q.replicas[0]];
        const redis = new Redis(`${c.redisUrl(sick)}/0`);
        try {
          await redis.config("SET", "maxmemory-policy", "noeviction");
          await redis.config("SET", "maxmemory", "1");
          // Its store takes no write: it says so, and gives up what it owns.
          await c.waitFor(`${sick} to give up what it owns`, async () => {
            const s = await c.cluster();
            return s.entities.every((e) => e.owner !== sick);
          }, { timeoutMs: 20_000, intervalMs: 200 });
          await c.kill(owner, "SIGKILL");
          let seen: ClusterStatus | undefined;
          const moved = await c.waitFor(`${q.name} to move to a healthy replica`, async () => {
            const e = entityOf(seen = await c.cluster(), q.name);
            return e.owner !== owner ? e : undefined;
          }, { timeoutMs: 30_000, intervalMs: 200, describe: () => brief(seen) });
          assert.notEqual(moved.owner, sick, brief(seen));
        } finally {
          await redis.config("SET", "maxmemory", "0").catch(() => {});
          redis.disconnect();
        }
        // One node dead and one store full left a single copy: writes waited (503, not applied)
        // until the store took writes again.
        await moreAcknowledged(c, driver, 100);
        await c.start(owner);
        await waitCaughtUp(c, sick);
      });
    });
  },
});

for (const [type, fault] of [["queue", "SIGSTOP"], ["topic", "SIGKILL"]] as const) {
  Deno.test({
    name: `cluster: a ${type} deleted while its owner was away (${fault}) and created again is ` +
      "new and empty, wherever it is placed",
    ...opts,
    fn: async () => {
      await withCluster({ sessionTimeoutMs: SESSION_MS }, async (c) => {
        const path = `/v1/${type}s/phoenix`;
        const made = await c.call("PUT", path, { body: {} });
        assert.equal(made.status, 201, JSON.stringify(made.body));
        if (type === "topic") {
          const sub = await c.call("PUT", `${path}/subscriptions/s`, { body: {} });
          assert.equal(sub.status, 201, JSON.stringify(sub.body));
        }
        const sent = await c.call("POST", `${path}/messages`, {
          body: { messages: [{ body: "before the delete" }] },
        });
        assert.equal(sent.status, 201, JSON.stringify(sent.body));
        await c.waitFor("every replica in sync", async () => {
          const e = (await c.cluster()).entities.find((e) => e.name === "phoenix");
          return e && e.inSync.length === e.replicas.length;
        });
        const owner = (await zooKeeperView(c)).get(`${type}/phoenix`)!.split("@")[0];
        const other = c.nodeIds.find((id) => id !== owner)!;

        // The owner goes away with its copy; the entity fails over and is deleted meanwhile.
        await c.kill(owner, fault);
        await c.waitFor("the entity failed over", async () => {
          return !(await zooKeeperView(c)).get(`${type}/phoenix`)?.startsWith(`${owner}@`);
        }, { timeoutMs: 30_000, intervalMs: 50 });
        const deleted = await c.waitFor("the delete", async () => {
          const res = await c.call("DELETE", path, { base: c.nodeUrl(other) });
          return res.status === 503 || res.status === 504 ? undefined : res;
        }, { timeoutMs: 30_000, intervalMs: 250 });
        assert.equal(deleted.status, 204, JSON.stringify(deleted.body));
        if (fault === "SIGKILL") await c.start(owner);
        else await c.kill(owner, "SIGCONT");
        await viewsAgree(c);

        // Created again: the returning node owns the fewest entities, so it is placed there
        // (where the old copy is) as often as not; either way the entity is a new one.
        const again = await c.call("PUT", path, { base: c.nodeUrl(other), body: {} });
        assert.equal(again.status, 201, JSON.stringify(again.body));
        assert.notEqual(again.body.createdAt, made.body.createdAt);
        const peek = await c.call("GET", `${path}/messages`);
        assert.equal(peek.status, 200, JSON.stringify(peek.body));
        assert.deepEqual(peek.body.messages, [], "the deleted incarnation's message is back");
        if (type === "topic") {
          const subs = await c.call("GET", `${path}/subscriptions`);
          assert.deepEqual(subs.body.subscriptions, [], JSON.stringify(subs.body));
        }
        const placed = (await zooKeeperView(c)).get(`${type}/phoenix`)!.split("@")[0];
        if (placed === owner) {
          assert.match(await c.nodeLog(owner), /dropped a local copy of an earlier incarnation/);
        }
      });
    },
  });
}

Deno.test({
  name: "cluster: creates and deletes of one name racing through every node answer 200/201 and " +
    "204/404, never 503, and leave one owner",
  ...opts,
  fn: async () => {
    await withCluster({ sessionTimeoutMs: SESSION_MS }, async (c) => {
      const counts = new Map<string, number>();
      const odd: string[] = [];
      const jitter = () => new Promise((r) => setTimeout(r, Math.random() * 20));
      const one = async (method: "PUT" | "DELETE", id: string, ok: number[]) => {
        await jitter();
        const res = await c.call(method, "/v1/queues/contested", {
          base: c.nodeUrl(id),
          body: method === "PUT" ? {} : undefined,
        });
        const k = `${method} ${res.status}`;
        counts.set(k, (counts.get(k) ?? 0) + 1);
        if (!ok.includes(res.status)) odd.push(`${k} via ${id}: ${JSON.stringify(res.body)}`);
      };
      for (let round = 0; round < 100; round++) {
        await Promise.all(c.nodeIds.flatMap((id) => [
          one("PUT", id, [200, 201]),
          one("DELETE", id, [204, 404]),
        ]));
      }
      console.log(`create/delete races: ${JSON.stringify([...counts].sort())}`);
      assert.deepEqual(odd, []);
      const views = await viewsAgree(c);
      const exists = (await c.call("GET", "/v1/queues/contested")).status === 200;
      assert.equal(views.has("queue/contested"), exists);
    });
  },
});
