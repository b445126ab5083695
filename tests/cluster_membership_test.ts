import assert from "node:assert/strict";
import { BrokerError } from "../src/broker/errors.ts";
import type { EntityRef } from "../src/broker/keys.ts";
import { ZkSession } from "../src/cluster/zk.ts";
import { Membership } from "../src/cluster/membership.ts";
import { Ownership } from "../src/cluster/ownership.ts";
import { Controller } from "../src/cluster/controller.ts";
import { startTcpProxy, startZooKeeper, waitFor } from "./support/zookeeper.ts";

const SESSION_MS = 2000;

function isCode(code: string) {
  return (err: unknown) => err instanceof BrokerError && err.code === code;
}

/**
 * A node in another process that registers, claims an entity and then waits to be killed: the
 * way to leave a session behind without closing it (kill -9).
 */
async function spawnCrashingNode(
  connect: string,
  root: string,
  id: string,
  entity: EntityRef,
  replicas: string[],
): Promise<{ session: string; kill(): Promise<void> }> {
  const code = `
    import { ZkSession } from ${JSON.stringify(import.meta.resolve("../src/cluster/zk.ts"))};
    import { Membership } from ${
    JSON.stringify(import.meta.resolve("../src/cluster/membership.ts"))
  };
    import { Ownership } from ${JSON.stringify(import.meta.resolve("../src/cluster/ownership.ts"))};
    const zk = await ZkSession.open({ connect: ${
    JSON.stringify(connect)
  }, sessionTimeoutMs: ${SESSION_MS} });
    const m = new Membership(zk, { nodeId: ${JSON.stringify(id)}, http: "h:1", grpc: "g:1", root: ${
    JSON.stringify(root)
  } });
    await m.start();
    const o = new Ownership(zk, { nodeId: ${JSON.stringify(id)}, root: ${JSON.stringify(root)} });
    await o.start();
    await o.claim(${JSON.stringify(entity)}, { replicas: ${JSON.stringify(replicas)} });
    console.log("ready " + zk.sessionId);
    setInterval(() => {}, 1000);
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const kill = async () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await reader.cancel().catch(() => {});
    await child.status;
  };
  try {
    const until = Date.now() + 30_000;
    while (!/ready (\w+)/.test(out)) {
      if (Date.now() > until) throw new Error(`child node did not start: ${out}`);
      const { value, done } = await reader.read();
      if (done) throw new Error(`child node exited: ${out}`);
      out += value;
    }
  } catch (err) {
    await kill();
    throw err;
  }
  return { session: /ready (\w+)/.exec(out)![1], kill };
}

Deno.test({
  name: "cluster membership: register, peers, fast restart, duplicate id, session loss",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const zk = await startZooKeeper();
    const cleanup: (() => Promise<void> | void)[] = [];
    const open = async (connect = zk.connect) => {
      const s = await ZkSession.open({ connect, sessionTimeoutMs: SESSION_MS });
      cleanup.push(() => s.close());
      return s;
    };
    try {
      await t.step("nodes register and see each other; a clean leave is seen", async () => {
        const root = "/m1";
        const za = await open();
        const zb = await open();
        const a = new Membership(za, {
          nodeId: "a",
          http: "127.0.0.1:8001",
          grpc: "127.0.0.1:9001",
          root,
        });
        const b = new Membership(zb, {
          nodeId: "b",
          http: "127.0.0.1:8002",
          grpc: "127.0.0.1:9002",
          root,
        });
        await a.start();
        await b.start();
        assert.ok(a.isRegistered() && b.isRegistered());
        await waitFor("a sees b", () => a.members().length === 2);
        await waitFor("b sees a", () => b.members().length === 2);
        const seen = a.member("b")!;
        assert.equal(seen.http, "127.0.0.1:8002");
        assert.equal(seen.grpc, "127.0.0.1:9002");
        assert.equal(seen.session, zb.sessionId);
        assert.ok(!Number.isNaN(Date.parse(seen.startedAt)));
        assert.deepEqual(a.members().map((m) => m.id), ["a", "b"]);
        const live = await a.readLive();
        assert.deepEqual([...live.keys()].sort(), ["a", "b"]);

        await b.stop();
        await waitFor("a sees b leave", () => a.members().length === 1);
        assert.equal(a.members()[0].id, "a");
        await a.stop();
      });

      await t.step(
        "a fast restart waits out the crashed session's znode; the controller fails over",
        async () => {
          const root = "/m2";
          const entity: EntityRef = { type: "queue", name: "jobs" };
          // Two survivors, one of them the controller.
          const zs1 = await open();
          const zs2 = await open();
          const s1 = new Membership(zs1, { nodeId: "s1", http: "h:1", grpc: "g:1", root });
          const s2 = new Membership(zs2, { nodeId: "s2", http: "h:2", grpc: "g:2", root });
          await s1.start();
          await s2.start();
          const o1 = new Ownership(zs1, { nodeId: "s1", root });
          const o2 = new Ownership(zs2, { nodeId: "s2", root });
          await o1.start();
          await o2.start();
          cleanup.push(() => o1.stop(), () => o2.stop());
          const controller = new Controller(zs1, s1, o1, {
            nodeId: "s1",
            root,
            replicationFactor: 2,
            reconcileIntervalMs: 300,
          });
          await controller.start();
          cleanup.push(() => controller.stop());
          await waitFor("s1 is the controller", () => controller.isController());

          const crashed = await spawnCrashingNode(zk.connect, root, "crashy", entity, ["s2"]);
          cleanup.push(() => crashed.kill());
          await waitFor("s1 sees crashy", () => s1.member("crashy"));
          await waitFor("s2 sees the entity", () => o2.get(entity)?.owner === "crashy");
          const first = o2.get(entity)!.epoch;
          await crashed.kill();

          // The restarted node finds its old znode, still owned by the dead session.
          const zr = await open();
          const before = await zr.exists(`${root}/nodes/crashy`);
          assert.ok(before, "the crashed session's znode is still there");
          assert.equal(before.ephemeralOwner, crashed.session);
          assert.notEqual(before.ephemeralOwner, zr.sessionId);
          const restarted = new Membership(zr, {
            nodeId: "crashy",
            http: "h:9",
            grpc: "g:9",
            root,
          });
          await restarted.start();
          cleanup.push(() => restarted.stop());
          assert.ok(restarted.isRegistered());
          const after = await zr.exists(`${root}/nodes/crashy`);
          assert.equal(after?.ephemeralOwner, zr.sessionId, "registered in the new session");
          await waitFor(
            "s1 sees the new registration",
            () => s1.member("crashy")?.session === zr.sessionId,
          );

          // The controller moved the entity off the dead session to its replica, epoch + 1.
          const moved = await waitFor("failover", async () => {
            const e = await o1.read(entity);
            return e && e.owner === "s2" ? e : undefined;
          });
          assert.equal(moved.epoch, first + 1);
          assert.equal(moved.ownerSession, zs2.sessionId);
          assert.equal(moved.replicas.length, 1, "the replica set is filled again");
          await waitFor("s2 may write", () => o2.isWritable(entity));
          // The restarted node is not the owner, whatever happened before.
          const or = new Ownership(zr, { nodeId: "crashy", root });
          await or.start();
          cleanup.push(() => or.stop());
          await waitFor(
            "restarted node sees the move",
            () => or.get(entity)?.epoch === first + 1,
          );
          assert.throws(() => or.epochOf(entity), isCode("unavailable"));
        },
      );

      await t.step("a second live node with the same id is refused", async () => {
        const root = "/m3";
        const z1 = await open();
        const z2 = await open();
        const first = new Membership(z1, { nodeId: "same", http: "h:1", grpc: "g:1", root });
        await first.start();
        const second = new Membership(z2, {
          nodeId: "same",
          http: "h:2",
          grpc: "g:2",
          root,
          staleWaitMs: 300,
        });
        await assert.rejects(() => second.start(), /another live ZooKeeper session/);
        assert.ok(first.isRegistered());
        await first.stop();
      });

      await t.step(
        "cut off from ZooKeeper: not writable at once; after expiry it re-registers and stays fenced",
        async () => {
          const root = "/m4";
          const entity: EntityRef = { type: "topic", name: "events" };
          const proxy = startTcpProxy(zk.port);
          cleanup.push(() => proxy.close());
          const zx = await open(proxy.address);
          const zy = await open();
          const x = new Membership(zx, { nodeId: "x", http: "h:1", grpc: "g:1", root });
          const y = new Membership(zy, { nodeId: "y", http: "h:2", grpc: "g:2", root });
          await x.start();
          await y.start();
          const ox = new Ownership(zx, { nodeId: "x", root });
          const oy = new Ownership(zy, { nodeId: "y", root });
          await ox.start();
          await oy.start();
          cleanup.push(() => ox.stop(), () => oy.stop());
          const controller = new Controller(zy, y, oy, {
            nodeId: "y",
            root,
            reconcileIntervalMs: 300,
          });
          await controller.start();
          cleanup.push(() => controller.stop());
          const claimed = await ox.claim(entity, { replicas: ["y"] });
          const first = claimed.epoch;
          assert.equal(ox.epochOf(entity), first);
          const oldSession = zx.sessionId;
          const states: string[] = [];
          zx.onState((s) => states.push(s));

          // A connection that fails visibly suspends writes at once; reconnecting within the
          // session timeout keeps the session, its registration and its ownership.
          proxy.setMode("reset");
          await waitFor("x suspended", () => zx.state === "suspended", 10_000);
          assert.equal(ox.isWritable(entity), false);
          proxy.setMode("pass");
          await waitFor("x writable again", () => ox.isWritable(entity), 10_000);
          assert.equal(zx.sessionId, oldSession, "same session after a short disconnect");
          assert.ok(x.isRegistered());
          assert.equal(ox.epochOf(entity), first);

          // A silent partition: nothing answers. The lease lapses well before the session could
          // expire, and from then on x refuses to write.
          proxy.setMode("drop");
          await waitFor("x stops writing", () => !ox.isWritable(entity), 10_000);
          assert.throws(() => ox.epochOf(entity), isCode("unavailable"));
          assert.notEqual(zx.state, "connected");

          // ZooKeeper expires x's session; the controller moves the entity to y.
          await waitFor("x's znode expires", async () => !(await zy.exists(`${root}/nodes/x`)));
          const moved = await waitFor("failover to y", async () => {
            const e = await oy.read(entity);
            return e && e.owner === "y" ? e : undefined;
          });
          assert.equal(moved.epoch, first + 1);

          // Reconnected: x learns its session expired, opens a new one and registers again...
          proxy.setMode("pass");
          await waitFor(
            "x has a new session",
            () => zx.state === "connected" && zx.sessionId !== oldSession,
            20_000,
          );
          assert.ok(states.includes("expired"), `states seen: ${states.join(",")}`);
          await waitFor("x registered again", () => x.isRegistered(), 10_000);
          await waitFor("y sees x again", () => y.member("x")?.session === zx.sessionId);
          // ...but does not write the entity it lost.
          await waitFor("x sees the move", () => ox.get(entity)?.epoch === first + 1);
          assert.equal(ox.isWritable(entity), false);
          assert.throws(() => ox.epochOf(entity), isCode("unavailable"));
          assert.equal(oy.epochOf(entity), first + 1);
          // The controller made x a replica again, in its new session.
          await waitFor(
            "x is a replica",
            async () => (await oy.read(entity))?.replicas.includes("x"),
          );
        },
      );
    } finally {
      for (const fn of cleanup.reverse()) {
        try {
          await fn();
        } catch {
          // best effort
        }
      }
      await zk.stop();
    }
  },
});
