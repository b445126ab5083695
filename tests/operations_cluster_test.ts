/**
 * What an operator sees of a real three-node cluster behind NGINX: request ids carried through
 * forwards into both nodes' logs, each node's metrics (replication, ownership, forwards), versions
 * and readiness in GET /v1/cluster, /readyz refusing traffic while an owned entity has a live
 * replica outside its in-sync set, and `momd cluster status` exiting 5 while the cluster is
 * degraded and 0 once it has healed.
 */
import assert from "node:assert/strict";
import { withCluster } from "./support/cluster.ts";
import { runMomd } from "./support/cli.ts";
import { sample } from "./support/metrics.ts";
import { VERSION } from "../src/version.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test(
  "operations (cluster): request ids, metrics, readiness and cluster status",
  opts,
  async (t) => {
    await withCluster({}, async (c) => {
      const created = await c.call("PUT", "/v1/queues/watched", {
        body: { visibilityTimeoutSeconds: 30 },
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const owner = created.headers.get("momd-owner")!;
      const other = c.nodeIds.find((id) => id !== owner)!;
      await c.waitFor("both replicas in sync", async () => {
        const e = (await c.cluster()).entities.find((e) => e.name === "watched");
        return e && e.inSync.length === 2;
      });

      await t.step("a request id reaches the owner's log through a forward", async () => {
        const res = await c.call("POST", "/v1/queues/watched/messages", {
          base: c.nodeUrl(other),
          body: { messages: "not a list" },
          headers: { "x-request-id": "cluster-req-7" },
        });
        assert.equal(res.status, 400);
        assert.equal(res.headers.get("x-request-id"), "cluster-req-7");
        const find = async (id: string) =>
          (await c.nodeLog(id)).split("\n").filter((l) => l.startsWith("{"))
            .map((l) => JSON.parse(l)).find((l) => l.reqId === "cluster-req-7");
        const atOwner = await c.waitFor("the owner's access line", () => find(owner));
        assert.equal(atOwner.status, 400);
        assert.equal(atOwner.forwarded, true);
        const atEntry = await c.waitFor("the forwarding node's access line", () => find(other));
        assert.equal(atEntry.forwardedTo, owner);
      });

      await t.step("through NGINX every answer carries a request id", async () => {
        const res = await c.call("GET", "/v1/queues/watched");
        assert.equal(res.status, 200);
        assert.match(res.headers.get("x-request-id") ?? "", /^[0-9a-f-]{32,36}$/);
        const mine = await c.call("GET", "/v1/queues/watched", {
          headers: { "x-request-id": "mine-1" },
        });
        assert.equal(mine.headers.get("x-request-id"), "mine-1");
        const metrics = await fetch(`${c.url}/metrics`);
        await metrics.body?.cancel();
        assert.equal(metrics.status, 404, "NGINX does not pass /metrics on");
      });

      await t.step(
        "the owner's metrics show the queue, its replicas and the forwards",
        async () => {
          for (let i = 0; i < 5; i++) {
            const sent = await c.call("POST", "/v1/queues/watched/messages", {
              base: c.nodeUrl(other),
              body: { messages: [{ body: `m${i}` }] },
            });
            assert.equal(sent.status, 201);
          }
          const scrape = async (id: string) =>
            await (await fetch(`${c.nodeUrl(id)}/metrics`)).text();
          const m = await scrape(owner);
          assert.equal(
            sample(m, "momd_queue_messages_total", { queue: "watched", event: "sent" }),
            5,
          );
          assert.equal(sample(m, "momd_queue_messages", { queue: "watched", state: "ready" }), 5);
          assert.equal(sample(m, "momd_in_sync_replicas", { entity: "queue/watched" }), 2);
          assert.equal(sample(m, "momd_replicas", { entity: "queue/watched" }), 2);
          assert.ok((sample(m, "momd_ownership_epoch", { entity: "queue/watched" }) ?? 0) > 0);
          for (const r of c.nodeIds.filter((id) => id !== owner)) {
            assert.equal(
              sample(m, "momd_replication_lag_records", { entity: "queue/watched", replica: r }),
              0,
            );
          }
          assert.equal(sample(m, "momd_zookeeper_session_up"), 1);
          assert.equal(sample(m, "momd_under_replicated_entities"), 0);
          const o = await scrape(other);
          assert.ok((sample(o, "momd_forwards_total", { outcome: "ok" }) ?? 0) >= 5);
          assert.ok((sample(o, "momd_forward_duration_seconds_count") ?? 0) >= 5);
          // Forwarded requests are counted where they are served, once.
          assert.equal(
            sample(o, "momd_http_requests_total", { route: "/v1/queues/:name/messages" }),
            undefined,
          );
          // The queue's numbers are the owner's alone.
          assert.equal(
            sample(o, "momd_queue_messages", { queue: "watched", state: "ready" }),
            undefined,
          );
        },
      );

      await t.step("GET /v1/cluster names every node's version and readiness", async () => {
        const s = await c.cluster();
        assert.equal(s.version, VERSION);
        for (const n of s.nodes) {
          assert.equal(n.version, VERSION, JSON.stringify(n));
          assert.equal(n.ready, true, JSON.stringify(n));
          assert.ok(n.recoveryPoint && Date.parse(n.recoveryPoint) > 0, JSON.stringify(n));
        }
        assert.equal(s.backup.recoveryPoint, s.nodes.map((n) => n.recoveryPoint).sort()[0]);
        const cli = await runMomd(["cluster", "status", "--url", c.url], { MOMD_TOKEN: c.token });
        assert.equal(cli.code, 0, cli.stderr);
      });

      const replica = c.nodeIds.find((id) => id !== owner)!;
      await t.step(
        "a replica's store down: the owner is not ready, cluster status exits 5",
        async () => {
          await c.stopRedis(replica);
          // The replica stays a member (its node runs) but cannot take records: it leaves the
          // in-sync set once a change does not reach it.
          await c.waitFor("the owner not ready, naming the under-replicated queue", async () => {
            await c.call("POST", "/v1/queues/watched/messages", {
              body: { messages: [{ body: "while degraded" }] },
              timeoutMs: 10_000,
            }).catch(() => undefined);
            const res = await fetch(`${c.nodeUrl(owner)}/readyz`);
            const body = await res.json();
            return res.status === 503 &&
              body.replication?.underReplicated?.includes("queue/watched") &&
              /under-replicated/.test(body.detail);
          }, { timeoutMs: 30_000 });
          const m = await (await fetch(`${c.nodeUrl(owner)}/metrics`)).text();
          assert.ok((sample(m, "momd_under_replicated_entities") ?? 0) >= 1);
          assert.equal(sample(m, "momd_in_sync_replicas", { entity: "queue/watched" }), 1);
          const cli = await runMomd(["cluster", "status", "--url", c.nodeUrl(owner)], {
            MOMD_TOKEN: c.token,
          });
          assert.equal(cli.code, 5, cli.stdout + cli.stderr);
          assert.match(cli.stderr, /degraded: .*under-replicated \(.*queue\/watched/);
        },
      );

      await t.step(
        "the replica's store back: every node ready, cluster status exits 0",
        async () => {
          await c.startRedis(replica);
          await c.waitFor("every node ready again", async () => {
            const answers = await Promise.all(
              c.nodeIds.map((id) =>
                fetch(`${c.nodeUrl(id)}/readyz`).then(async (r) => {
                  await r.body?.cancel();
                  return r.status;
                })
              ),
            );
            return answers.every((s) => s === 200);
          }, { timeoutMs: 60_000 });
          await c.waitFor("cluster status exits 0", async () => {
            const cli = await runMomd(["cluster", "status", "--url", c.url], {
              MOMD_TOKEN: c.token,
            });
            return cli.code === 0;
          }, { timeoutMs: 30_000 });
        },
      );

      await t.step("a node down: cluster status exits 5 and names it", async () => {
        await c.kill(other, "SIGKILL");
        await c.waitFor("the cluster sees the node gone", async () => {
          const s = await c.cluster();
          return s.nodes.some((n) => n.id === other && !n.alive);
        }, { timeoutMs: 30_000 });
        const cli = await runMomd(["cluster", "status", "--url", c.url], { MOMD_TOKEN: c.token });
        assert.equal(cli.code, 5, cli.stdout + cli.stderr);
        assert.match(cli.stderr, new RegExp(`node down: ${other}`));
        // The survivors stay ready: a replica on a dead node is no reason to refuse traffic.
        for (const id of c.nodeIds.filter((id) => id !== other)) {
          const res = await fetch(`${c.nodeUrl(id)}/readyz`);
          const body = await res.json();
          assert.equal(res.status, 200, JSON.stringify(body));
        }
      });

      await t.step("forgetting a live node is refused; the dead one is forgotten", async () => {
        const env = { MOMD_TOKEN: c.token };
        const live = await runMomd(["cluster", "forget", owner, "--url", c.url], env);
        assert.equal(live.code, 3, live.stdout + live.stderr);
        assert.match(live.stderr, /409|live/);
        const unknown = await runMomd(["cluster", "forget", "no-such-node", "--url", c.url], env);
        assert.equal(unknown.code, 3, unknown.stderr);
        const gone = await runMomd(["cluster", "forget", other, "--url", c.url], env);
        assert.equal(gone.code, 0, gone.stderr);
        assert.ok(!(await c.cluster()).nodes.some((n) => n.id === other));
        await c.waitFor("cluster status exits 0 without the forgotten node", async () => {
          const cli = await runMomd(["cluster", "status", "--url", c.url], env);
          return cli.code === 0;
        }, { timeoutMs: 30_000 });
        // It comes back: a member again.
        await c.start(other);
        await c.waitFor("the node known and alive again", async () => {
          const s = await c.cluster();
          return s.nodes.some((n) => n.id === other && n.alive);
        }, { timeoutMs: 30_000 });
      });

      await t.step(
        "an owner that lost its queue while frozen drops the queue's series; the new owner counts",
        async () => {
          const scrape = async (id: string) =>
            await (await fetch(`${c.nodeUrl(id)}/metrics`)).text();
          const series = { queue: "watched", event: "sent" };
          assert.ok((sample(await scrape(owner), "momd_queue_messages_total", series) ?? 0) >= 5);
          await c.kill(owner, "SIGSTOP");
          let next = "";
          try {
            await c.waitFor("the queue failed over", async () => {
              const s = await c.cluster({ via: c.nodeUrl(other) });
              next = s.entities.find((e) => e.name === "watched")?.owner ?? owner;
              return next !== owner;
            }, { timeoutMs: 30_000 });
          } finally {
            await c.kill(owner, "SIGCONT");
          }
          await c.waitFor("the former owner sees the move", async () => {
            const res = await c.call("GET", "/v1/cluster?scope=local", { base: c.nodeUrl(owner) });
            const e = (res.body?.entities ?? []).find((e: { name: string }) =>
              e.name === "watched"
            );
            return res.status === 200 && e?.owner === next;
          }, { timeoutMs: 30_000 });
          assert.equal(sample(await scrape(owner), "momd_queue_messages_total", series), undefined);
          const sent = await c.call("POST", "/v1/queues/watched/messages", {
            base: c.nodeUrl(next),
            body: { messages: [{ body: "after" }] },
          });
          assert.equal(sent.status, 201, JSON.stringify(sent.body));
          assert.equal(sample(await scrape(next), "momd_queue_messages_total", series), 1);
        },
      );

      await t.step("every line the nodes logged is JSON with time, level and node", async () => {
        for (const id of c.nodeIds) {
          for (const line of (await c.nodeLog(id)).split("\n")) {
            if (line.trim() === "" || line.startsWith("--- ")) continue; // the harness's markers
            let parsed: Record<string, unknown>;
            try {
              parsed = JSON.parse(line);
            } catch {
              assert.fail(`${id} logged a line that is not JSON: ${line}`);
            }
            assert.equal(parsed.node, id, line);
            assert.equal(typeof parsed.time, "string", line);
            assert.equal(typeof parsed.level, "string", line);
          }
        }
        // The take-over after the kill is a typed event.
        const events = (await Promise.all(c.nodeIds.map((id) => c.nodeLog(id)))).join("\n")
          .split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
          .filter((l) => l.event);
        assert.ok(events.some((e) => e.event === "in_sync_change"), "in-sync changes are events");
        assert.ok(
          events.some((e) => e.event === "controller" && e.role === "elected"),
          "the controller's election is an event",
        );
      });
    });
  },
);
