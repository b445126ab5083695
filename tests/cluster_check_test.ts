/**
 * The consistency check (`GET /v1/cluster/check`, `momd check`) against a real three-node
 * cluster: consistent while queues, topics and subscriptions take light live load; then faults
 * injected straight into a node's Redis, the backup Redis or a node's process, each of which
 * the check must find and name (kind, entity, node), and after whose repair it is consistent
 * again. Also: admins only, and the command line's exit codes.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { type Cluster, withCluster } from "./support/cluster.ts";
import { cliUser } from "./support/cli.ts";
import { opts, step } from "./support/faults.ts";
import type { CheckReport } from "../src/api/schemas/check.ts";
import { queueKeys, registryKey, topicKeys } from "../src/broker/keys.ts";
import { backupKeys } from "../src/backup/keys.ts";

const QUEUES = ["q0", "q1", "q2", "q3"];
const TOPICS = ["t0", "t1"];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs the check on one node (its own address: the check may take longer than NGINX waits). */
async function check(c: Cluster, query = "wait=1", via = "node1"): Promise<CheckReport> {
  const res = await c.call("GET", `/v1/cluster/check?${query}`, {
    base: c.nodeUrl(via),
    timeoutMs: 30_000,
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const r = res.body as CheckReport;
  const kinds = r.problems.map((p) => `${p.severity} ${p.kind} ${p.entity ?? ""} ${p.node ?? ""}`);
  console.log(
    `  check via ${via} (${query}): ${r.consistent ? "consistent" : "INCONSISTENT"} in ` +
      `${r.durationMs} ms, ${r.replicaCopies.verified}/${r.replicaCopies.copies} copies ` +
      `verified; ${kinds.join("; ") || "no problems"}`,
  );
  return r;
}

function errorsOf(r: CheckReport): string[] {
  return r.problems.filter((p) => p.severity === "error")
    .map((p) => `${p.kind} ${p.entity ?? "-"} ${p.node ?? "-"}: ${p.detail}`);
}

/** The report names an error of this kind (about this entity and node, when given). */
function assertFound(
  r: CheckReport,
  kind: string,
  where: { entity?: string; node?: string },
): void {
  assert.equal(r.consistent, false, `the check found nothing: ${JSON.stringify(r.problems)}`);
  const found = r.problems.find((p) =>
    p.kind === kind && p.severity === "error" &&
    (where.entity === undefined || p.entity === where.entity) &&
    (where.node === undefined || p.node === where.node)
  );
  assert.ok(
    found,
    `no ${kind} error about ${JSON.stringify(where)}; found:\n  ${errorsOf(r).join("\n  ")}`,
  );
}

/** Checks until consistent (a repair that moved the entity's seq needs a moment to settle). */
async function assertConsistent(c: Cluster, what: string): Promise<CheckReport> {
  let last: CheckReport | undefined;
  await c.waitFor(`a consistent check ${what}`, async () => {
    last = await check(c);
    return last.consistent;
  }, { timeoutMs: 20_000, intervalMs: 200, describe: () => errorsOf(last!).join("; ") });
  return last!;
}

/** Sends, publishes, receives and acks a few times a second until stopped. */
function lightLoad(c: Cluster): { readonly rounds: number; stop(): Promise<number> } {
  let running = true;
  let done = 0;
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const q = QUEUES[i % QUEUES.length];
      const t = TOPICS[i % TOPICS.length];
      const sent = await c.call("POST", `/v1/queues/${q}/messages`, {
        body: { messages: [{ body: `load ${i}`, dedupId: `load-${i}` }] },
      });
      const published = await c.call("POST", `/v1/topics/${t}/messages`, {
        body: { messages: [{ body: `event ${i}`, key: `k${i % 3}` }] },
      });
      if (sent.status === 201 && published.status === 201) done++;
      if (i % 2 === 0) {
        const got = await c.call("POST", `/v1/queues/${q}/receive`, {
          body: { max: 2, waitSeconds: 0 },
        });
        const receipts = (got.body?.messages ?? []).map((m: { receipt: string }) => m.receipt);
        if (receipts.length) {
          await c.call("POST", `/v1/queues/${q}/ack`, { body: { receipts } });
        }
        const sub = await c.call("POST", `/v1/topics/${t}/subscriptions/audit/receive`, {
          body: { max: 2, waitSeconds: 0 },
        });
        const acks = (sub.body?.messages ?? []).map((m: { receipt: string }) => m.receipt);
        if (acks.length) {
          await c.call("POST", `/v1/topics/${t}/subscriptions/audit/ack`, {
            body: { receipts: acks },
          });
        }
      }
      await sleep(30);
    }
  })();
  return {
    get rounds() {
      return done;
    },
    async stop() {
      running = false;
      await loop;
      return done;
    },
  };
}

/** Opens a node's local Redis (or the backup's) for a fault, and closes it afterwards. */
async function withRedis<T>(c: Cluster, id: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(`${c.redisUrl(id)}/0`, { maxRetriesPerRequest: 1 });
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

Deno.test({
  name: "cluster check: consistent under live load, then each injected fault found and named",
  ...opts,
  async fn(t) {
    await withCluster({ sessionTimeoutMs: 4000 }, async (c) => {
      for (const q of QUEUES) {
        const res = await c.call("PUT", `/v1/queues/${q}`, { body: {} });
        assert.equal(res.status, 201, JSON.stringify(res.body));
      }
      for (const name of TOPICS) {
        assert.equal((await c.call("PUT", `/v1/topics/${name}`, { body: {} })).status, 201);
        const sub = await c.call("PUT", `/v1/topics/${name}/subscriptions/audit`, {
          body: { start: "earliest" },
        });
        assert.equal(sub.status, 201, JSON.stringify(sub.body));
      }
      const user = await cliUser();
      try {
        await step(t, "consistent while the load goes on (each node, NGINX, the CLI)", async () => {
          const load = lightLoad(c);
          let before = 0;
          try {
            await c.waitFor("the load going", () => load.rounds >= 10);
            before = load.rounds;
            for (const via of c.nodeIds) {
              const r = await check(c, "wait=2", via);
              assert.deepEqual(errorsOf(r), [], `via ${via}`);
              assert.equal(r.consistent, true);
              assert.equal(r.mode, "cluster");
              assert.equal(r.node, via);
              assert.equal(r.entities, QUEUES.length + TOPICS.length);
              assert.deepEqual(
                r.nodes.map((n) => [n.id, n.reached, n.copies]),
                c.nodeIds.map((id) => [id, true, QUEUES.length + TOPICS.length]),
              );
              // Warnings only of what a live cluster shows (a backup a pass behind, a replica a
              // record behind), none of what it must never show.
              for (const p of r.problems) {
                assert.ok(
                  ["backup_behind", "backup_missing", "lagging", "unverified"].includes(p.kind),
                  JSON.stringify(p),
                );
              }
            }
            const viaNginx = await c.call("GET", "/v1/cluster/check", { timeoutMs: 30_000 });
            assert.equal(viaNginx.status, 200, JSON.stringify(viaNginx.body));
            assert.equal(viaNginx.body.consistent, true, JSON.stringify(viaNginx.body.problems));

            const cli = await user.run(["check", "--url", c.nodeUrl("node2")], {
              env: { MOMD_TOKEN: c.token },
            });
            assert.equal(cli.code, 0, cli.stderr);
            assert.match(cli.stdout, /^consistent: cluster of 3 nodes, checked by 'node2'/);
            assert.match(cli.stdout, /NODE +REACHED +STORE +COPIES +KEYS/);
            const json = await user.run(["check", "--json", "--url", c.nodeUrl("node3")], {
              env: { MOMD_TOKEN: c.token },
            });
            assert.equal(json.code, 0, json.stderr);
            assert.equal(JSON.parse(json.stdout).consistent, true);
          } finally {
            const done = await load.stop();
            // Sends went on while the six checks ran (each takes well under a second).
            assert.ok(done > before + 2, `the load made ${done - before} rounds during the checks`);
          }
          // At rest every replica copy is compared and equal to its owner's.
          const copies = 2 * (QUEUES.length + TOPICS.length);
          let rest: CheckReport | undefined;
          await c.waitFor("every copy verified at rest", async () => {
            rest = await check(c);
            return rest.consistent && rest.replicaCopies.verified === copies;
          }, { timeoutMs: 20_000, describe: () => JSON.stringify(rest?.replicaCopies) });
          assert.deepEqual(rest!.replicaCopies, { copies, verified: copies });
        });

        await step(t, "admins only: 403 for a user, exit 3 on the command line", async () => {
          const created = await c.call("POST", "/v1/users", {
            body: { username: "alice", password: "alice-password" },
          });
          assert.equal(created.status, 201, JSON.stringify(created.body));
          const alice = await c.login("alice", "alice-password");
          const res = await c.call("GET", "/v1/cluster/check", { token: alice });
          assert.equal(res.status, 403);
          assert.equal(res.body.code, "forbidden");
          assert.match(res.headers.get("content-type") ?? "", /application\/problem\+json/);
          const cli = await user.run(["check", "--url", c.url], { env: { MOMD_TOKEN: alice } });
          assert.equal(cli.code, 3, cli.stderr);
          assert.match(cli.stderr, /admin/);
          const bad = await c.call("GET", "/v1/cluster/check?wait=99", {});
          assert.equal(bad.status, 400, JSON.stringify(bad.body));
          const usage = await user.run(["check", "--wait", "-1", "--url", c.url]);
          assert.equal(usage.code, 2);
        });

        const status = await c.cluster();
        const of = (name: string) => status.entities.find((e) => e.name === name)!;

        await step(t, "a replica's copy altered: digest_mismatch (CLI exit 5)", async () => {
          const q = of("q0");
          const replica = q.replicas[0];
          for (let i = 0; i < 3; i++) {
            const res = await c.call("POST", "/v1/queues/q0/messages", {
              body: { messages: [{ body: `kept ${i}` }] },
            });
            assert.equal(res.status, 201);
          }
          const msgs = queueKeys("q0").messages;
          const [id, original] = await withRedis(c, replica, async (r) => {
            await c.waitFor("the replica's copy of q0", async () => (await r.hlen(msgs)) >= 3);
            const [id] = await r.hkeys(msgs);
            const value = (await r.hget(msgs, id))!;
            await r.hset(msgs, id, "tampered");
            return [id, value];
          });
          const r = await check(c);
          assertFound(r, "digest_mismatch", { entity: "queue/q0", node: replica });
          const cli = await user.run(["check", "--wait", "1", "--url", c.nodeUrl("node2")], {
            env: { MOMD_TOKEN: c.token },
          });
          assert.equal(cli.code, 5, cli.stderr);
          assert.match(cli.stdout, /^INCONSISTENT/);
          assert.match(cli.stdout, new RegExp(`error +digest_mismatch +queue/q0 +${replica}`));
          assert.match(cli.stderr, /inconsistent: \d+ error/);
          await withRedis(c, replica, (r) => r.hset(msgs, id, original));
          await assertConsistent(c, "after the copy is repaired");
        });

        await step(t, "a replica with a seq ahead of its owner: ahead", async () => {
          const q = of("q1");
          const replica = q.replicas[q.replicas.length - 1];
          await withRedis(c, replica, (r) => r.hincrby(queueKeys("q1").meta, "seq", 100));
          const r = await check(c);
          assertFound(r, "ahead", { entity: "queue/q1", node: replica });
          await withRedis(c, replica, (r) => r.hincrby(queueKeys("q1").meta, "seq", -100));
          await assertConsistent(c, "after the seq is put back");
        });

        await step(t, "orphan keys in a node's Redis: orphan_keys", async () => {
          await withRedis(c, "node2", async (r) => {
            await r.hset(queueKeys("ghost").messages, "m1", "left over");
            await r.set("momd:junk", "x");
            await r.hset(topicKeys("t0").sub("gone").state, "pos", "3");
          });
          const r = await check(c);
          assertFound(r, "orphan_keys", { entity: "queue/ghost", node: "node2" });
          assertFound(r, "orphan_keys", { entity: "topic/t0", node: "node2" });
          const junk = r.problems.find((p) => p.kind === "orphan_keys" && !p.entity);
          assert.match(junk?.detail ?? "", /momd:junk\) of no queue or topic/);
          await withRedis(
            c,
            "node2",
            (r) =>
              r.del(queueKeys("ghost").messages, "momd:junk", topicKeys("t0").sub("gone").state),
          );
          await assertConsistent(c, "after the orphans are deleted");
        });

        await step(
          t,
          "a registry entry without a ZooKeeper record: unrecorded_entity",
          async () => {
            await withRedis(c, "node3", (r) => r.zadd(registryKey("queue"), 0, "phantom"));
            const r = await check(c);
            assertFound(r, "unrecorded_entity", { entity: "queue/phantom", node: "node3" });
            await withRedis(c, "node3", (r) => r.zrem(registryKey("queue"), "phantom"));
            await assertConsistent(c, "after the registry entry is removed");
          },
        );

        await step(t, "a backup ahead of its owner: backup_ahead", async () => {
          const head = backupKeys({ type: "queue", name: "q2" }).head;
          await c.waitFor("a backup of q2", () => withRedis(c, "backup", (r) => r.exists(head)));
          await withRedis(c, "backup", (r) => r.hincrby(head, "seq", 50));
          const r = await check(c);
          assertFound(r, "backup_ahead", { entity: "queue/q2", node: of("q2").owner });
          await withRedis(c, "backup", (r) => r.hincrby(head, "seq", -50));
          await assertConsistent(c, "after the backup's seq is put back");
        });

        await step(t, "a node that does not answer (SIGSTOP): unreachable", async () => {
          await c.kill("node3", "SIGSTOP");
          const started = Date.now();
          const r = await check(c, "wait=1&timeout=1");
          assertFound(r, "unreachable", { node: "node3" });
          assert.equal(r.nodes.find((n) => n.id === "node3")?.reached, false);
          assert.ok(Date.now() - started < 15_000);
          const cli = await user.run(
            ["check", "--json", "--timeout", "1", "--wait", "0", "--url", c.nodeUrl("node1")],
            { env: { MOMD_TOKEN: c.token } },
          );
          assert.equal(cli.code, 5, cli.stderr);
          assert.equal(JSON.parse(cli.stdout).consistent, false);
        });
      } finally {
        await user.close();
      }
    });
  },
});
