/**
 * The APIs through NGINX in front of a real three-node cluster (ZooKeeper, five Redis servers,
 * three node processes): the earlier MOM server's client flow unchanged, /v1 requests served
 * whichever node NGINX picks, and owner hints that take requests straight to the owner.
 */
import assert from "node:assert/strict";
import { Transport } from "../src/client/http.ts";
import { withCluster } from "./support/cluster.ts";
import { startTestApi } from "./support/node.ts";

const BASE = "/api/v1.0.0/MomServer";

Deno.test("cluster: the earlier client's flow works unchanged through NGINX", async () => {
  await withCluster({}, async (c) => {
    const mom = (method: string, path: string, body?: unknown, token?: string | null) =>
      c.call(method, `${BASE}${path}`, { body, token });

    const login = await mom("POST", "/login/", {
      username: "cluster-admin",
      password: "cluster-admin-password",
    }, null);
    assert.equal(login.status, 200);
    assert.equal(login.body.token_type, "Bearer");
    const admin = login.body.access_token as string;

    const created = await mom("PUT", "/admin/users/create/", {
      username: "alice",
      password: "alice-password",
    }, admin);
    assert.equal(created.status, 200);
    const alice = (await mom("POST", "/login/", {
      username: "alice",
      password: "alice-password",
    }, null)).body.access_token as string;

    // Several queues, so they land on different nodes.
    const names = ["orders", "invoices", "mails", "jobs"];
    for (const name of names) {
      const res = await mom("PUT", "/admin/queue_topic/create/", { name, type: "queue" }, admin);
      assert.deepEqual([res.status, res.body.success], [200, true], JSON.stringify(res.body));
    }
    const taken = await mom("PUT", "/admin/queue_topic/create/", {
      name: "orders",
      type: "queue",
    }, admin);
    assert.equal(taken.body.success, false);

    const status = await c.cluster();
    const owners = new Set(
      status.entities.filter((e) => names.includes(e.name)).map((e) => e.owner),
    );
    assert.ok(owners.size >= 2, `queues spread over the nodes: ${[...owners]}`);
    // The answering node asks its peers for their lag as the admin who asked: every replica's
    // lag is known, whichever node owns the queue.
    await c.waitFor("the lag of every replica in GET /v1/cluster", async () => {
      const s = await c.cluster();
      return s.entities.filter((e) => names.includes(e.name))
        .every((e) => e.replicas.length > 0 && e.replicas.every((r) => e.lag[r] !== null));
    });
    // Addresses and every entity's placement are for admins.
    for (const via of [undefined, ...c.nodeIds.map((id) => c.nodeUrl(id))]) {
      const asUser = await c.call("GET", "/v1/cluster", { token: alice, base: via });
      assert.equal(asUser.status, 403, JSON.stringify(asUser.body));
      assert.equal(asUser.body.code, "forbidden");
      assert.doesNotMatch(JSON.stringify(asUser.body), /127\.0\.0\.1|grpc/);
    }

    for (const name of names) {
      for (let i = 0; i < 3; i++) {
        const sent = await mom("POST", "/queue_topic/send/", {
          name,
          type: "queue",
          message: `${name}-${i}`,
        }, admin);
        assert.equal(sent.body.success, true, JSON.stringify(sent.body));
      }
      assert.equal(
        (await mom("POST", "/queue_topic/subscribe/", { name, type: "queue" }, alice)).body.success,
        true,
      );
      const got: string[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await mom("POST", "/queue_topic/receive/", { name, type: "queue" }, alice);
        assert.equal(r.body.success, true);
        if (r.body.message) got.push(r.body.message);
      }
      assert.deepEqual(got, [`${name}-0`, `${name}-1`, `${name}-2`], "FIFO, each message once");
    }

    // Topic: the owner starts at the first message, a subscriber at the end, and nobody gets
    // its own messages.
    assert.equal(
      (await mom("PUT", "/admin/queue_topic/create/", { name: "news", type: "topic" }, admin))
        .body.success,
      true,
    );
    await mom(
      "POST",
      "/queue_topic/send/",
      { name: "news", type: "topic", message: "early" },
      alice,
    );
    assert.equal(
      (await mom("POST", "/queue_topic/subscribe/", { name: "news", type: "topic" }, alice)).body
        .success,
      true,
    );
    await mom(
      "POST",
      "/queue_topic/send/",
      { name: "news", type: "topic", message: "late" },
      admin,
    );
    await mom(
      "POST",
      "/queue_topic/send/",
      { name: "news", type: "topic", message: "mine" },
      alice,
    );
    const forAlice = await mom(
      "POST",
      "/queue_topic/receive/",
      { name: "news", type: "topic" },
      alice,
    );
    assert.equal(forAlice.body.message, "late");
    const forAdmin = await mom(
      "POST",
      "/queue_topic/receive/",
      { name: "news", type: "topic" },
      admin,
    );
    assert.equal(forAdmin.body.message, "early");

    // Only the owner deletes; the name is then free cluster-wide.
    const del = await c.call("DELETE", `${BASE}/admin/queue_topic/delete/jobs?mom_type=queue`, {
      token: admin,
    });
    assert.equal(del.body.success, true);
    assert.equal((await c.call("GET", "/v1/queues/jobs")).status, 404);
    const again = await mom(
      "PUT",
      "/admin/queue_topic/create/",
      { name: "jobs", type: "queue" },
      admin,
    );
    assert.equal(again.body.success, true);

    // Error shapes are the old ones.
    assert.equal((await mom("POST", "/queue_topic/send/", {}, null)).status, 403);
    assert.equal((await mom("POST", "/queue_topic/send/", {}, "garbage")).status, 401);
  });
});

Deno.test("cluster: /v1 receipts obtained through one node are acked through another", async () => {
  await withCluster({}, async (c) => {
    assert.equal((await c.call("PUT", "/v1/queues/work", { body: {} })).status, 201);
    const sent = await c.call("POST", "/v1/queues/work/messages", {
      body: { messages: [{ body: "a" }, { body: "b" }] },
    });
    assert.equal(sent.status, 201);
    const [n1, n2] = c.nodeIds;
    const got = await c.call("POST", "/v1/queues/work/receive", {
      base: c.nodeUrl(n1),
      body: { max: 2 },
    });
    assert.equal(got.status, 200);
    assert.deepEqual(got.body.messages.map((m: { body: string }) => m.body), ["a", "b"]);
    const acked = await c.call("POST", "/v1/queues/work/ack", {
      base: c.nodeUrl(n2),
      body: { receipts: got.body.messages.map((m: { receipt: string }) => m.receipt) },
    });
    assert.deepEqual(acked.body.results.map((r: { ok: boolean }) => r.ok), [true, true]);
    const stats = await c.call("GET", "/v1/queues/work");
    assert.deepEqual([stats.body.stats.depth, stats.body.stats.inFlight], [0, 0]);
    const status = await c.cluster();
    const work = status.entities.find((e) => e.name === "work")!;
    assert.equal(work.replicas.length, 2);
  });
});

Deno.test("cluster: owner hints take requests straight to the owner through NGINX", async () => {
  await withCluster({}, async (c) => {
    const names = ["h1", "h2", "h3", "h4"];
    const owners = new Map<string, string>();
    for (const name of names) {
      const res = await c.call("PUT", `/v1/queues/${name}`, { body: {} });
      assert.equal(res.status, 201);
      owners.set(name, res.headers.get("momd-owner") ?? "");
    }
    const status = await c.cluster();
    for (const name of names) {
      const entry = status.entities.find((e) => e.name === name)!;
      assert.equal(owners.get(name), entry.owner, `${name}: Momd-Owner names its owner`);
    }
    const send = (name: string, headers: Record<string, string> = {}) =>
      c.call("POST", `/v1/queues/${name}/messages`, {
        body: { messages: [{ body: "m" }] },
        headers,
      });

    let forwarded = 0;
    for (const name of names) {
      const owner = owners.get(name)!;
      for (let i = 0; i < 6; i++) {
        // Without a hint NGINX picks a node; a node that does not own the queue forwards it.
        const plain = await send(name);
        assert.equal(plain.status, 201);
        assert.equal(plain.headers.get("momd-owner"), owner);
        if (plain.headers.get("via") !== null) {
          assert.match(plain.headers.get("via")!, /^1\.1 node\d$/);
          assert.notEqual(plain.headers.get("via"), `1.1 ${owner}`);
          forwarded++;
        }
        // With the owner's hint, the owner answers itself.
        const hinted = await send(name, { "momd-route": owner });
        assert.equal(hinted.status, 201);
        assert.equal(hinted.headers.get("via"), null, `${name}: not forwarded with the hint`);
        assert.equal(hinted.headers.get("momd-owner"), owner);
      }
      // A hint naming another node, or no node, is still served (forwarded, or balanced).
      const other = c.nodeIds.find((id) => id !== owner)!;
      const wrong = await send(name, { "momd-route": other });
      assert.equal(wrong.status, 201);
      assert.equal(wrong.headers.get("via"), `1.1 ${other}`);
      assert.equal((await send(name, { "momd-route": "no-such-node" })).status, 201);
    }
    // 24 unhinted sends over three nodes (least_conn, one at a time: they take turns).
    assert.ok(forwarded > 0, "some unhinted sends were forwarded");

    // momd's client learns the owner from the first answer and sends the hint from then on.
    const t = new Transport({ url: c.url });
    const path = "/v1/queues/h1/messages";
    const call = () =>
      t.call<unknown>({
        method: "POST",
        path,
        body: { messages: [{ body: "m" }] },
        token: c.token,
        retry: true,
      });
    await call();
    assert.equal(t.ownerHint(path), owners.get("h1"));
    for (let i = 0; i < 6; i++) assert.equal((await call()).headers.get("via"), null);

    // The owner dies: its upstream's backups answer, the queue fails over, and the client's
    // hint follows the new owner.
    const dead = owners.get("h1")!;
    await c.kill(dead, "SIGKILL");
    const moved = await c.waitFor("h1 served by a new owner", async () => {
      const res = await call().catch(() => undefined);
      const owner = res?.headers.get("momd-owner");
      return owner && owner !== dead ? owner : undefined;
    }, { timeoutMs: 30_000 });
    assert.equal(t.ownerHint(path), moved);
    assert.equal((await call()).headers.get("via"), null);
  });
});

Deno.test("cluster status: admins only (a user gets a 403 problem)", async () => {
  const api = await startTestApi();
  try {
    const user = await api.userToken("plain");
    const refused = await api.call("GET", "/v1/cluster", { token: user });
    assert.equal(refused.status, 403);
    assert.equal(refused.headers.get("content-type"), "application/problem+json");
    assert.equal(refused.body.code, "forbidden");
    assert.equal(refused.body.nodes, undefined);
    const local = await api.call("GET", "/v1/cluster?scope=local", { token: user });
    assert.equal(local.status, 403);
    const ok = await api.call("GET", "/v1/cluster", { token: api.adminToken });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.mode, "single");
  } finally {
    await api.close();
  }
});
