import assert from "node:assert/strict";
import { BrokerError } from "../src/broker/errors.ts";
import type { EntityRef } from "../src/broker/keys.ts";
import { ZkSession } from "../src/cluster/zk.ts";
import { Membership } from "../src/cluster/membership.ts";
import { Ownership } from "../src/cluster/ownership.ts";
import { Controller, placeEntity } from "../src/cluster/controller.ts";
import { startZooKeeper, waitFor, type ZooKeeperServer } from "./support/zookeeper.ts";

const SESSION_MS = 2000;

function isCode(code: string) {
  return (err: unknown) => err instanceof BrokerError && err.code === code;
}

/** One node's cluster components over its own ZooKeeper session. */
interface TestNode {
  id: string;
  zk: ZkSession;
  membership: Membership;
  ownership: Ownership;
  controller?: Controller;
  close(): Promise<void>;
}

async function startNode(
  zk: ZooKeeperServer,
  root: string,
  id: string,
  opts: {
    controller?: boolean;
    positionOf?: ConstructorParameters<typeof Controller>[3]["positionOf"];
  } = {},
): Promise<TestNode> {
  const session = await ZkSession.open({ connect: zk.connect, sessionTimeoutMs: SESSION_MS });
  const membership = new Membership(session, {
    nodeId: id,
    http: `${id}:80`,
    grpc: `${id}:90`,
    root,
  });
  const ownership = new Ownership(session, { nodeId: id, root });
  let controller: Controller | undefined;
  try {
    await membership.start();
    await ownership.start();
    if (opts.controller) {
      controller = new Controller(session, membership, ownership, {
        nodeId: id,
        root,
        replicationFactor: 3,
        reconcileIntervalMs: 300,
        positionOf: opts.positionOf,
        probeGraceMs: 1000,
      });
      await controller.start();
    }
  } catch (err) {
    session.close();
    throw err;
  }
  return {
    id,
    zk: session,
    membership,
    ownership,
    controller,
    async close() {
      await controller?.stop().catch(() => {});
      await membership.stop().catch(() => {});
      ownership.stop();
      session.close();
    },
  };
}

Deno.test({
  name:
    "cluster ownership: unique names, epochs, compare-and-set, controller election and failover",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const zk = await startZooKeeper();
    const nodes: TestNode[] = [];
    try {
      await t.step("two concurrent creates of one name give exactly one entity", async () => {
        const a = await startNode(zk, "/t1", "a");
        const b = await startNode(zk, "/t1", "b");
        nodes.push(a, b);
        for (let i = 0; i < 5; i++) {
          const entity: EntityRef = { type: "queue", name: `race-${i}` };
          const results = await Promise.allSettled([
            a.ownership.claim(entity, { replicas: ["b"] }),
            b.ownership.claim(entity, { replicas: ["a"] }),
          ]);
          const won = results.filter((r) => r.status === "fulfilled");
          const lost = results.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
          assert.equal(won.length, 1, "exactly one create wins");
          assert.equal(lost.length, 1);
          assert.ok(isCode("already_exists")(lost[0].reason), String(lost[0].reason));
          const winner = (won[0] as PromiseFulfilledResult<{ owner: string; epoch: number }>)
            .value;
          // Both nodes converge on the same record through their watches.
          for (const n of [a, b]) {
            const seen = await waitFor(
              `${n.id} sees ${entity.name}`,
              () => n.ownership.get(entity),
            );
            assert.equal(seen.owner, winner.owner);
            assert.equal(seen.epoch, winner.epoch);
          }
        }
        // A topic and a queue may share a name: names are unique per type.
        await a.ownership.claim({ type: "topic", name: "race-0" }, { replicas: [] });
      });

      await t.step("transfer bumps the epoch; a stale compare-and-set is refused", async () => {
        const [a, b] = nodes;
        const entity: EntityRef = { type: "queue", name: "moving" };
        const created = await a.ownership.claim(entity, { replicas: ["b"] });
        // The first epoch rests on the znode's creation zxid (unique per incarnation of a name).
        const first = created.epoch;
        assert.equal(first, created.czxid + 1);
        assert.equal(created.version, 0);
        assert.deepEqual(created.isr, [{ node: "b", store: "" }], "replicas start in sync");
        await waitFor("b sees the entity", () => b.ownership.get(entity));
        assert.equal(a.ownership.epochOf(entity), first);
        assert.ok(a.ownership.isWritable(entity));
        assert.throws(() => b.ownership.epochOf(entity), isCode("unavailable"));

        // Transfer guarded by a multi (version 0 must be honoured, not turned into "any").
        const guard = [{ op: "check" as const, path: b.membership.path, version: -1 }];
        const moved = await a.ownership.transfer(entity, { id: "b", session: b.zk.sessionId }, {
          expectedVersion: 0,
          guard,
        });
        assert.equal(moved.epoch, first + 1);
        assert.equal(moved.owner, "b");
        assert.deepEqual(moved.replicas, []);
        assert.deepEqual(moved.isr, []);
        assert.equal(moved.version, 1);

        // A writer still holding version 0 loses, with or without a guard.
        await assert.rejects(
          () => a.ownership.update(entity, 0, { ...created, owner: "a", epoch: first + 1 }, guard),
          isCode("conflict"),
        );
        await assert.rejects(
          () => a.ownership.update(entity, 0, { ...created, owner: "a", epoch: first + 1 }),
          isCode("conflict"),
        );
        // A failing guard makes the whole multi fail.
        await assert.rejects(
          () =>
            a.ownership.update(entity, 1, { ...moved }, [{
              op: "check",
              path: "/t1/nodes/nobody",
              version: -1,
            }]),
          isCode("conflict"),
        );
        const now = await a.ownership.read(entity);
        assert.equal(now?.owner, "b");
        assert.equal(now?.epoch, first + 1);
        assert.equal(now?.version, 1);

        await waitFor("b becomes writable", () => b.ownership.isWritable(entity));
        assert.equal(b.ownership.epochOf(entity), first + 1);
        await waitFor("a stops being writable", () => !a.ownership.isWritable(entity));
        assert.throws(() => a.ownership.epochOf(entity), isCode("unavailable"));
        assert.equal(a.ownership.knownEpoch(entity), first + 1);

        // Removing with a stale version is refused; with the current one it goes.
        await assert.rejects(() => b.ownership.remove(entity, 0), isCode("conflict"));
        await b.ownership.remove(entity, 1);
        await waitFor("a sees the removal", () => a.ownership.get(entity) === undefined);
        assert.ok(a.ownership.list("queue").every((e) => e.entity.name !== "moving"));

        // Taken again: a new incarnation, whose epochs are above every epoch of the old one, so
        // a node still holding the old grant is fenced by any store that saw the new one.
        const again = await b.ownership.claim(entity, { replicas: ["a"] });
        assert.ok(again.czxid > created.czxid);
        assert.ok(again.epoch > first + 1, `${again.epoch} > ${first + 1}`);
        await waitFor(
          "a sees the new incarnation",
          () => a.ownership.get(entity)?.epoch === again.epoch,
        );
      });

      await t.step("every cached record is watched, however it got into the cache", async () => {
        const [a, b] = nodes;
        // a learns of entities only by reading them on demand (a request about them arrives
        // before its children watch fired, or a create it forwarded): each read arms a watch.
        for (let i = 0; i < 20; i++) {
          const entity: EntityRef = { type: "queue", name: `ghost-${i}` };
          const created = await b.ownership.claim(entity, { replicas: ["a"] });
          const seen = await a.ownership.read(entity);
          assert.equal(seen?.epoch, created.epoch);
          if (i % 2 === 0) {
            // A change made elsewhere reaches the cache...
            await b.ownership.update(entity, created.version, {
              ...created,
              replicas: [],
              isr: [],
            });
            await waitFor(
              `a sees ${entity.name} change`,
              () => a.ownership.get(entity)?.version === 1,
            );
            await b.ownership.remove(entity, 1);
          } else {
            await b.ownership.remove(entity, created.version);
          }
          // ...and so does a delete: no ghost stays listed, or writable.
          await waitFor(`a forgets ${entity.name}`, () => a.ownership.get(entity) === undefined);
        }
        assert.deepEqual(
          a.ownership.list("queue").filter((e) => e.entity.name.startsWith("ghost-")),
          [],
        );
        // Read again, still one watch per znode: one change, one notification.
        const once: EntityRef = { type: "queue", name: "watched-once" };
        const created = await b.ownership.claim(once, { replicas: [] });
        await a.ownership.read(once);
        await a.ownership.read(once);
        let notified = 0;
        const off = a.ownership.onChange((_, e) => {
          if (e.name === once.name) notified++;
        });
        await b.ownership.update(once, created.version, { ...created, owner: "b" });
        await waitFor("a sees the change", () => a.ownership.get(once)?.version === 1);
        await new Promise((r) => setTimeout(r, 200));
        off();
        assert.equal(notified, 1);
      });

      await t.step("placement spreads entities over live nodes by count", () => {
        const entries = [
          {
            entity: { type: "queue" as const, name: "x" },
            owner: "a",
            ownerSession: "",
            replicas: ["b"],
            isr: [],
            epoch: 1,
            version: 0,
            czxid: 0,
          },
          {
            entity: { type: "queue" as const, name: "y" },
            owner: "a",
            ownerSession: "",
            replicas: ["c"],
            isr: [],
            epoch: 1,
            version: 0,
            czxid: 0,
          },
          {
            entity: { type: "queue" as const, name: "z" },
            owner: "b",
            ownerSession: "",
            replicas: ["a"],
            isr: [],
            epoch: 1,
            version: 0,
            czxid: 0,
          },
        ];
        assert.deepEqual(placeEntity(["a", "b", "c"], entries, 3), {
          owner: "c",
          replicas: ["b", "a"],
        });
        assert.deepEqual(placeEntity(["a", "b"], entries, 3), { owner: "b", replicas: ["a"] });
        assert.deepEqual(placeEntity(["a", "b", "c"], [], 2), { owner: "a", replicas: ["b"] });
        assert.throws(() => placeEntity([], entries, 3), isCode("unavailable"));
      });

      await t.step("one controller is elected, and another takes over when it dies", async () => {
        const root = "/t2";
        const positions = new Map<string, number>([["n2", 5], ["n3", 7]]);
        const silent = new Set<string>();
        const positionOf = (id: string) =>
          silent.has(id)
            ? Promise.reject(new Error(`${id} does not answer`))
            : Promise.resolve({ seq: positions.get(id) ?? 0, epoch: 1 });
        const group = [
          await startNode(zk, root, "n1", { controller: true, positionOf }),
          await startNode(zk, root, "n2", { controller: true, positionOf }),
          await startNode(zk, root, "n3", { controller: true, positionOf }),
        ];
        nodes.push(...group);
        const leaders = () => group.filter((n) => n.controller!.isController());
        await waitFor("one controller", () => leaders().length === 1);
        const first = leaders()[0];
        assert.equal(first.id, "n1", "the first to join has the lowest sequence");
        for (const n of group) {
          await waitFor(
            `${n.id} knows the controller`,
            () => n.controller!.controllerId === first.id,
          );
        }

        // An entity owned by n1 with copies on n2 and n3; n3 holds the newest state.
        const entity: EntityRef = { type: "queue", name: "orders" };
        const orders = await group[0].ownership.claim(entity, { replicas: ["n2", "n3"] });

        // The controller dies (its session ends): another is elected, and it moves n1's entity
        // to the replica with the newest state, with epoch + 1.
        await group[0].close();
        nodes.splice(nodes.indexOf(group[0]), 1);
        const rest = group.slice(1);
        await waitFor(
          "a new controller",
          () => rest.filter((n) => n.controller!.isController()).length === 1,
        );
        assert.equal(rest.filter((n) => n.controller!.isController())[0].id, "n2");
        const moved = await waitFor("failover of orders", async () => {
          const e = await rest[0].ownership.read(entity);
          return e && e.owner !== "n1" ? e : undefined;
        });
        assert.equal(moved.owner, "n3", "the in-sync replica with the highest sequence wins");
        assert.equal(moved.epoch, orders.epoch + 1);
        assert.equal(moved.moved, "failover");
        assert.equal(moved.ownerSession, rest[1].zk.sessionId);
        assert.deepEqual(moved.replicas, ["n2"], "only live nodes hold copies");
        assert.deepEqual(moved.isr, [{ node: "n2", store: "" }], "n2 stays in sync");
        await waitFor("n3 may write", () => rest[1].ownership.isWritable(entity));
        assert.equal(rest[1].ownership.epochOf(entity), orders.epoch + 1);
        assert.throws(() => rest[0].ownership.epochOf(entity), isCode("unavailable"));

        // A new node joins: the controller fills the replica set from it.
        const n4 = await startNode(zk, root, "n4", { controller: true, positionOf });
        nodes.push(n4);
        const filled = await waitFor("replica added", async () => {
          const e = await n4.ownership.read(entity);
          return e && e.replicas.length === 2 ? e : undefined;
        });
        assert.deepEqual([...filled.replicas].sort(), ["n2", "n4"]);
        assert.deepEqual(filled.isr, [{ node: "n2", store: "" }], "a new replica is not in sync");
        assert.equal(filled.epoch, orders.epoch + 1, "adding a replica keeps the epoch");
        assert.equal(n4.controller!.isController(), false);

        // A candidate that does not answer the position probe (it might hold the newest state)
        // delays the move; after the grace period the best answering replica takes over.
        const n5 = await startNode(zk, root, "n5");
        nodes.push(n5);
        const jobs: EntityRef = { type: "topic", name: "jobs" };
        const jobsEntry = await n5.ownership.claim(jobs, { replicas: ["n3", "n4"] });
        positions.set("n4", 9);
        silent.add("n4");
        await n5.close();
        nodes.splice(nodes.indexOf(n5), 1);
        const took = await waitFor("failover of jobs", async () => {
          const e = await n4.ownership.read(jobs);
          return e && e.owner !== "n5" ? e : undefined;
        });
        assert.equal(took.owner, "n3", "the only replica that answered");
        assert.equal(took.epoch, jobsEntry.epoch + 1);
      });
    } finally {
      for (const n of nodes) await n.close().catch(() => {});
      await zk.stop();
    }
  },
});
