/**
 * Faults injected into a real three-node cluster (ZooKeeper, five Redis servers, three node
 * processes, NGINX in front; tests/support/cluster.ts), with a checker that records every
 * acknowledged send, every delivery and every ack (tests/support/checker.ts):
 *
 * - kill -9 of the busiest queue's owner under load, then its restart (catch-up, rebalancing);
 * - SIGSTOP of an owner past the session timeout (the zombie), then SIGCONT;
 * - a node's local Redis wiped; every node killed and every local Redis wiped (backup restore);
 * - ZooKeeper restarted; concurrent creates of one name through different nodes.
 *
 * Failover times are printed, never asserted beyond a generous bound. Every test is bounded by
 * withCluster's deadline, so a hang fails that test instead of holding the suite.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { queueKeys } from "../src/broker/keys.ts";
import { type ClusterStatus, withCluster } from "./support/cluster.ts";
import { History, LoadDriver } from "./support/checker.ts";
import {
  assertSafe,
  assertSameState,
  brief,
  createQueues,
  entityOf,
  moreAcknowledged,
  opts,
  QUEUE_CONFIG,
  QUEUES,
  SESSION_MS,
  steadyLoad,
  step,
  waitCaughtUp,
} from "./support/faults.ts";

Deno.test({
  name: "cluster: kill -9 of the busiest queue's owner under load loses no acknowledged send; " +
    "the restarted node catches up, ownership rebalances, and a SIGTERM hands work over",
  ...opts,
  fn: async (t) => {
    await withCluster({ sessionTimeoutMs: SESSION_MS }, async (c) => {
      await createQueues(c, QUEUES);
      const driver = new LoadDriver({
        base: c.url,
        token: c.token,
        queues: QUEUES,
        weights: [4, 1, 1, 1, 1, 1],
        producers: 4,
        consumers: 3,
        maxMessages: 20_000,
        maxDurationMs: 60_000,
      });
      let victim = "";
      try {
        driver.start();
        await moreAcknowledged(c, driver, 150);

        await step(t, "kill -9 the owner: another node serves its queues", async () => {
          const perQueue = [...driver.acknowledgedPerQueue()].sort((a, b) => b[1] - a[1]);
          const busiest = perQueue[0][0];
          const before = await c.cluster();
          victim = entityOf(before, busiest).owner;
          const moved = before.entities.filter((e) => e.owner === victim);
          const killedAt = Date.now();
          await c.kill(victim, "SIGKILL");

          const firstWrite = await c.waitFor(
            `a successful send to ${busiest} after the kill (${driver.describe()})`,
            () => driver.firstSendAfter(busiest, killedAt),
            { timeoutMs: 60_000, intervalMs: 50 },
          );
          const failoverMs = firstWrite - killedAt;
          console.log(
            `failover: ${victim} (owner of ${busiest}, the busiest queue with ` +
              `${perQueue[0][1]} sends) killed; first successful send to ${busiest} after ` +
              `${failoverMs} ms (session timeout ${SESSION_MS} ms)`,
          );
          assert.ok(failoverMs < 60_000);

          let seen: ClusterStatus | undefined;
          const after = await c.waitFor("the killed node's queues to move", async () => {
            const s = seen = await c.cluster();
            const ok = moved.every((m) => {
              const e = entityOf(s, m.name, m.type);
              return e.owner !== victim && e.epoch > m.epoch;
            });
            return ok && !s.nodes.some((n) => n.id === victim && n.alive) ? s : undefined;
          }, { timeoutMs: 30_000, intervalMs: 200, describe: () => brief(seen) });
          for (const m of moved) {
            const e = entityOf(after, m.name, m.type);
            console.log(
              `  ${m.name}: ${victim} (epoch ${m.epoch}) -> ${e.owner} (epoch ${e.epoch})`,
            );
          }

          // Load goes on through the survivors, then everything acknowledged must come out.
          await moreAcknowledged(c, driver, 100);
          const drained = await driver.drain(30_000);
          console.log(`load: ${driver.describe()}`);
          assertSafe(driver.history.report(), "kill -9");
          assert.ok(drained, "draining did not end");
        });

        await step(
          t,
          "the killed node restarts, catches up as a replica, and takes work back",
          async () => {
            assert.ok(victim, "the previous step chose no node");
            const startedAt = Date.now();
            await c.start(victim);
            const synced = await waitCaughtUp(c, victim);
            console.log(`restart: ${victim} back in sync after ${Date.now() - startedAt} ms`);
            for (const e of synced.entities) {
              assert.ok(
                e.owner === victim || e.replicas.includes(victim),
                `${e.name}: ${victim} is neither owner nor replica: ${JSON.stringify(e)}`,
              );
            }
            for (const e of synced.entities.filter((e) => e.owner !== victim)) {
              await assertSameState(c, { type: e.type, name: e.name }, e.owner, victim);
            }

            // Rebalancing (with its hysteresis) gives every node a share of the six queues.
            const balanced = await c.waitFor("every node to own at least one queue", async () => {
              const s = await c.cluster();
              const owners = new Set(s.entities.map((e) => e.owner));
              return c.nodeIds.every((id) => owners.has(id)) ? s : undefined;
            }, { timeoutMs: 60_000, intervalMs: 500 });
            console.log(
              `rebalanced after ${Date.now() - startedAt} ms: ` +
                balanced.nodes.map((n) => `${n.id} owns ${n.owned}`).join(", "),
            );

            // The moved queues still work, through any node.
            const after = new LoadDriver({
              base: c.url,
              token: c.token,
              queues: QUEUES,
              producers: 2,
              consumers: 2,
              maxMessages: 120,
              history: driver.history,
            });
            after.start();
            await moreAcknowledged(c, after, 100);
            const drained = await after.drain(30_000);
            console.log(`load after rebalancing: ${after.describe()}`);
            assertSafe(after.history.report(), "after rebalancing");
            assert.ok(drained, "draining did not end");
          },
        );

        await step(t, "SIGTERM under load hands every owned queue over, then exits 0", async () => {
          const load = steadyLoad(c, driver.history);
          try {
            load.start();
            await moreAcknowledged(c, load, 100);
            const before = await c.cluster();
            const leaving = [...before.nodes].sort((a, b) => b.owned - a.owned)[0].id;
            const owned = before.entities.filter((e) => e.owner === leaving);
            assert.ok(owned.length > 0, brief(before));
            const stoppedAt = Date.now();
            await c.kill(leaving, "SIGTERM");
            const stopMs = Date.now() - stoppedAt;
            assert.equal(c.exitStatus(leaving)?.code, 0, `${leaving} did not exit cleanly`);
            // Every queue went by hand-over (the owner passed it on itself), none by failover.
            const log = await c.nodeLog(leaving);
            for (const e of owned) {
              assert.match(log, new RegExp(`handed ${e.type}/${e.name} over to `), e.name);
            }
            const after = await c.cluster();
            for (const e of owned) {
              const now = entityOf(after, e.name, e.type);
              assert.notEqual(now.owner, leaving, `${e.name} still owned by ${leaving}`);
              assert.equal(now.epoch, e.epoch + 1, `${e.name}: one move, one epoch`);
            }
            console.log(
              `sigterm: ${leaving} handed over ${owned.map((e) => e.name).join(", ")} and ` +
                `exited in ${stopMs} ms`,
            );
            await moreAcknowledged(c, load, 100);
            const drained = await load.drain(30_000);
            console.log(`load around SIGTERM: ${load.describe()}`);
            assertSafe(load.history.report(), "SIGTERM");
            assert.ok(drained, "draining did not end");
          } finally {
            await load.stop();
          }
        });
      } finally {
        await driver.stop();
      }
    });
  },
});

/** Bodies found in a queue's stored messages on one node's local Redis. */
async function storedBodies(redisUrl: string, queue: string, bodies: string[]): Promise<string[]> {
  const redis = new Redis(`${redisUrl}/0`);
  try {
    const values = await redis.hvals(queueKeys(queue).messages);
    return bodies.filter((b) => values.some((v) => v.endsWith(b)));
  } finally {
    redis.disconnect();
  }
}

Deno.test({
  name: "cluster: an owner paused past the session timeout accepts no write for what it lost",
  ...opts,
  fn: async () => {
    await withCluster({ sessionTimeoutMs: SESSION_MS }, async (c) => {
      await createQueues(c, QUEUES);
      const history = new History();
      const driver = new LoadDriver({
        base: c.url,
        token: c.token,
        queues: QUEUES,
        producers: 4,
        consumers: 3,
        maxMessages: 20_000,
        maxDurationMs: 60_000,
        history,
      });
      try {
        driver.start();
        await moreAcknowledged(c, driver, 150);
        const before = await c.cluster();
        const zombie = entityOf(before, "q0").owner;
        const other = c.nodeIds.find((id) => id !== zombie)!;
        const lost = before.entities.filter((e) => e.owner === zombie);
        const zombieUrl = c.nodeUrl(zombie);
        const directSend = (queue: string, body: string) =>
          fetch(`${zombieUrl}/v1/queues/${queue}/messages`, {
            method: "POST",
            headers: { authorization: `Bearer ${c.token}`, "content-type": "application/json" },
            body: JSON.stringify({ messages: [{ body }] }),
            signal: AbortSignal.timeout(20_000),
          }).then(async (res) => ({ queue, body, status: res.status, text: await res.text() }));

        const stoppedAt = Date.now();
        await c.kill(zombie, "SIGSTOP");
        let seen: ClusterStatus | undefined;
        const moved = await c.waitFor(`${zombie}'s queues to move while it is paused`, async () => {
          const s = seen = await c.cluster({ via: c.nodeUrl(other) });
          return lost.every((m) => {
              const e = entityOf(s, m.name, m.type);
              return e.owner !== zombie && e.epoch > m.epoch;
            })
            ? s
            : undefined;
        }, { timeoutMs: 30_000, intervalMs: 200, describe: () => brief(seen) });
        console.log(
          `zombie: ${zombie} paused; its ${lost.length} queues moved after ` +
            `${Date.now() - stoppedAt} ms: ` +
            lost.map((m) => `${m.name} -> ${entityOf(moved, m.name).owner}`).join(", "),
        );
        await c.waitFor(
          "the pause to outlast the session timeout",
          () => Date.now() - stoppedAt > SESSION_MS + 500,
        );

        // Writes addressed to the paused node: they wait in its socket backlog and reach it the
        // moment it runs again, before it could learn anything from ZooKeeper.
        const queued = lost.map((m, i) => {
          const body = `zombie-queued-${i}-${crypto.randomUUID()}`;
          history.attempted(m.name, body);
          return directSend(m.name, body);
        });
        await new Promise((r) => setTimeout(r, 200));
        await c.kill(zombie, "SIGCONT");
        const fresh = lost.map((m, i) => {
          const body = `zombie-after-${i}-${crypto.randomUUID()}`;
          history.attempted(m.name, body);
          return directSend(m.name, body);
        });
        const answers = await Promise.all([...queued, ...fresh]);
        // 201 (forwarded to the new owner) or 503; anything else is reported after the checks.
        const wrong: string[] = [];
        for (const a of answers) {
          console.log(`  direct write to ${zombie} for ${a.queue}: ${a.status}`);
          if (a.status === 201) {
            history.acknowledged(a.queue, a.body, JSON.parse(a.text).messages[0].id);
            continue;
          }
          if (a.status !== 503) wrong.push(`${a.queue}: ${a.status} ${a.text}`);
          // Not acknowledged: it must not sit in the zombie's own copy under the old epoch.
          const kept = await storedBodies(c.redisUrl(zombie), a.queue, [a.body]);
          assert.deepEqual(kept, [], `${zombie} stored a write it refused for ${a.queue}`);
        }

        // The zombie rejoins as a replica; the load goes on, then everything must come out.
        await waitCaughtUp(c, zombie);
        await moreAcknowledged(c, driver, 100);
        const drained = await driver.drain(30_000);
        console.log(`load: ${driver.describe()}`);
        assertSafe(history.report(), "SIGSTOP");
        assert.deepEqual(wrong, [], `writes to the zombie answered neither 201 nor 503`);
        assert.ok(drained, "draining did not end");
      } finally {
        await driver.stop();
      }
    });
  },
});

/** Sends `perQueue` messages to each queue through NGINX; every one must be acknowledged. */
async function fill(driver: LoadDriver, queues: readonly string[], perQueue: number, tag: string) {
  await Promise.all(queues.map(async (q) => {
    for (let i = 0; i < perQueue; i++) {
      const status = await driver.sendOne(q, `${tag}-${q}-${i}`, 20_000);
      assert.equal(status, 201, `send ${i} to ${q}`);
    }
  }));
}

Deno.test({
  name: "cluster: a node whose local Redis was wiped gets its state back from the owners",
  ...opts,
  fn: async () => {
    await withCluster({ sessionTimeoutMs: SESSION_MS }, async (c) => {
      await createQueues(c, QUEUES);
      const driver = new LoadDriver({
        base: c.url,
        token: c.token,
        queues: QUEUES,
        producers: 0,
        consumers: 2,
      });
      await fill(driver, QUEUES, 25, "wipe");
      const victim = "node2";
      await c.kill(victim, "SIGKILL");
      await c.wipeRedis(victim);
      const startedAt = Date.now();
      await c.start(victim);
      const status = await waitCaughtUp(c, victim);
      console.log(`wipe: ${victim} back in sync after ${Date.now() - startedAt} ms`);
      for (const e of status.entities) {
        if (e.owner === victim) continue;
        await assertSameState(c, { type: e.type, name: e.name }, e.owner, victim);
      }
      driver.start();
      const drained = await driver.drain(30_000);
      assertSafe(driver.history.report(), "wiped Redis");
      assert.ok(drained, driver.describe());
    });
  },
});

Deno.test({
  name: "cluster: every node killed and every local Redis wiped: the backup brings everything back",
  ...opts,
  fn: async () => {
    const backupIntervalMs = 500;
    await withCluster({ sessionTimeoutMs: SESSION_MS, backupIntervalMs }, async (c) => {
      const queues = QUEUES.slice(0, 4);
      const config = { ...QUEUE_CONFIG, visibilityTimeoutSeconds: 7, maxDeliveries: 9 };
      await createQueues(c, queues, config);
      assert.equal((await c.call("PUT", "/v1/topics/events", { body: {} })).status, 201);
      const sub = await c.call("PUT", "/v1/topics/events/subscriptions/audit", {
        body: { start: "earliest" },
      });
      assert.equal(sub.status, 201, JSON.stringify(sub.body));
      const published = Array.from({ length: 5 }, (_, i) => ({ body: `event-${i}` }));
      const pub = await c.call("POST", "/v1/topics/events/messages", {
        body: { messages: published },
      });
      assert.equal(pub.status, 201, JSON.stringify(pub.body));

      const history = new History();
      const driver = new LoadDriver({
        base: c.url,
        token: c.token,
        queues,
        producers: 0,
        consumers: 0,
        receiveMax: 5,
        waitSeconds: 0,
        history,
      });
      await fill(driver, queues, 20, "backup");
      // Five received and acked per queue: gone for good, also after the restore.
      for (const q of queues) assert.equal(await driver.receiveOnce(q), 5);
      const before = history.report();
      assert.equal(before.acked, 5 * queues.length);

      // Longer than a few backup intervals: the backup holds all of this.
      await new Promise((r) => setTimeout(r, 4 * backupIntervalMs + 1000));
      await Promise.all(c.nodeIds.map((id) => c.kill(id, "SIGKILL")));
      await Promise.all(c.nodeIds.map((id) => c.wipeRedis(id)));
      const startedAt = Date.now();
      await Promise.all(c.nodeIds.map((id) => c.start(id)));
      await c.waitFor("every node alive", async () => {
        const s = await c.cluster();
        return c.nodeIds.every((id) => s.nodes.some((n) => n.id === id && n.alive));
      }, { timeoutMs: 30_000 });
      console.log(`restore: the cluster answers ${Date.now() - startedAt} ms after the restart`);

      for (const q of queues) {
        // 503 while the entity has no owner yet; then the restored queue, never a 404.
        const res = await c.waitFor(`GET /v1/queues/${q} after the restore`, async () => {
          const r = await c.call("GET", `/v1/queues/${q}`);
          return r.status !== 503 ? r : undefined;
        }, { timeoutMs: 30_000, intervalMs: 250 });
        assert.equal(res.status, 200, `${q} after the restore: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.config.visibilityTimeoutSeconds, 7, JSON.stringify(res.body));
        assert.equal(res.body.config.maxDeliveries, 9);
        assert.equal(res.body.stats.depth, 15, JSON.stringify(res.body));
      }
      // A change waits (503, not applied) until a replica of the restored copy is in sync again.
      const events = await c.waitFor("a receive from the restored topic", async () => {
        const r = await c.call("POST", "/v1/topics/events/subscriptions/audit/receive", {
          body: { max: 10 },
        });
        return r.status !== 503 ? r : undefined;
      }, { timeoutMs: 30_000, intervalMs: 250 });
      assert.equal(events.status, 200, JSON.stringify(events.body));
      assert.deepEqual(
        // deno-lint-ignore no-explicit-any
        events.body.messages.map((m: any) => m.body),
        published.map((m) => m.body),
      );

      const consumers = new LoadDriver({
        base: c.url,
        token: c.token,
        queues,
        producers: 0,
        consumers: 2,
        history,
      });
      consumers.start();
      const drained = await consumers.drain(30_000);
      const report = history.report();
      assertSafe(report, "full restore");
      assert.ok(drained, consumers.describe());
      assert.equal(report.delivered, 20 * queues.length);
    });
  },
});

Deno.test({
  name: "cluster: ZooKeeper restarted within the session timeout, the cluster keeps serving",
  ...opts,
  fn: async () => {
    // The longest session a 200 ms tick allows (20 ticks): ZooKeeper's JVM needs a while.
    const sessionTimeoutMs = 4000;
    await withCluster({ sessionTimeoutMs }, async (c) => {
      await createQueues(c, QUEUES);
      const driver = steadyLoad(c);
      try {
        driver.start();
        await moreAcknowledged(c, driver, 100);
        const before = await c.cluster();
        const stoppedAt = Date.now();
        const { downMs } = await c.restartZooKeeper();
        const backAt = Date.now();
        const firstWrite = await c.waitFor(
          `a successful send after ZooKeeper is back (${driver.describe()})`,
          () => {
            const times = QUEUES.map((q) => driver.firstSendAfter(q, backAt))
              .filter((x): x is number => x !== undefined);
            return times.length ? Math.min(...times) : undefined;
          },
          { timeoutMs: 30_000, intervalMs: 50 },
        );
        console.log(
          `zookeeper: down ${downMs} ms (session timeout ${sessionTimeoutMs} ms); first ` +
            `successful send ${firstWrite - stoppedAt} ms after it went down`,
        );
        await moreAcknowledged(c, driver, 100);
        const after = await c.cluster();
        for (const id of c.nodeIds) assert.ok(c.isRunning(id), `${id} exited`);
        assert.ok(after.nodes.every((n) => n.alive), JSON.stringify(after.nodes));
        if (downMs < sessionTimeoutMs) {
          // The sessions survived: nothing failed over.
          for (const e of before.entities) {
            const now = entityOf(after, e.name, e.type);
            assert.deepEqual(
              [now.owner, now.epoch],
              [e.owner, e.epoch],
              `${e.name} moved although every session survived`,
            );
          }
        }
        const drained = await driver.drain(30_000);
        console.log(`load: ${driver.describe()}`);
        assertSafe(driver.history.report(), "ZooKeeper restart");
        assert.ok(drained, "draining did not end");
      } finally {
        await driver.stop();
      }
    });
  },
});

Deno.test({
  name: "cluster: concurrent creates of one name through different nodes make one entity",
  ...opts,
  fn: async () => {
    await withCluster({ sessionTimeoutMs: SESSION_MS }, async (c) => {
      const names = ["race0", "race1", "race2", "race3"];
      for (const name of names) {
        const answers = await Promise.all(
          c.nodeIds.map((id) =>
            c.call("PUT", `/v1/queues/${name}`, { base: c.nodeUrl(id), body: QUEUE_CONFIG })
          ),
        );
        const statuses = answers.map((a) => a.status);
        const detail = `${name}: ${JSON.stringify(answers.map((a) => [a.status, a.body]))}`;
        assert.equal(statuses.filter((s) => s === 201).length, 1, detail);
        assert.equal(statuses.filter((s) => s === 200).length, c.nodeIds.length - 1, detail);
      }
      const topic = await Promise.all(
        c.nodeIds.map((id) =>
          c.call("PUT", "/v1/topics/race-topic", { base: c.nodeUrl(id), body: {} })
        ),
      );
      assert.equal(topic.filter((a) => a.status === 201).length, 1, JSON.stringify(topic));
      assert.ok(topic.every((a) => a.status === 201 || a.status === 200), JSON.stringify(topic));

      const status = await c.cluster();
      for (const name of names) {
        assert.equal(status.entities.filter((e) => e.name === name).length, 1);
      }
      assert.equal(status.entities.filter((e) => e.name === "race-topic").length, 1);
      for (const id of c.nodeIds) {
        const list = await c.call("GET", "/v1/queues?prefix=race", { base: c.nodeUrl(id) });
        // deno-lint-ignore no-explicit-any
        assert.deepEqual(list.body.queues.map((q: any) => q.name), names);
      }

      // One queue: a message sent through each node comes out of it.
      for (const name of names) {
        for (const id of c.nodeIds) {
          const res = await c.call("POST", `/v1/queues/${name}/messages`, {
            base: c.nodeUrl(id),
            body: { messages: [{ body: `via-${id}` }] },
          });
          assert.equal(res.status, 201, JSON.stringify(res.body));
        }
        const got = await c.call("POST", `/v1/queues/${name}/receive`, {
          body: { max: 10, waitSeconds: 1 },
        });
        assert.equal(got.status, 200, JSON.stringify(got.body));
        assert.deepEqual(
          // deno-lint-ignore no-explicit-any
          got.body.messages.map((m: any) => m.body).sort(),
          c.nodeIds.map((id) => `via-${id}`).sort(),
        );
      }
    });
  },
});
