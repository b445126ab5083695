import assert from "node:assert/strict";
import { startTestApi } from "./support/node.ts";
import { DEFAULT_TOPIC_CONFIG } from "../src/broker/topics.ts";

/** Asserts a problem+json answer. */
function isProblem(res: { status: number; headers: Headers; body: { status: number } }) {
  assert.equal(res.headers.get("content-type"), "application/problem+json");
  assert.equal(res.body.status, res.status);
}

Deno.test("topics: create, get, configure, list and delete", async (t) => {
  const api = await startTestApi();
  const admin = api.adminToken;
  try {
    const alice = await api.userToken("alice");
    const bob = await api.userToken("bob");

    await t.step("create answers 201 with the defaults, the creator as owner", async () => {
      const res = await api.call("PUT", "/v1/topics/orders", { token: alice, body: {} });
      assert.equal(res.status, 201);
      assert.equal(res.body.created, true);
      assert.equal(res.body.owner, "alice");
      assert.deepEqual(res.body.config, DEFAULT_TOPIC_CONFIG);
      assert.deepEqual(res.body.stats, {
        firstOffset: 0,
        nextOffset: 0,
        messages: 0,
        bytes: 0,
        subscriptions: 0,
      });
    });

    await t.step("creating again with the same configuration is a 200, created false", async () => {
      const again = await api.call("PUT", "/v1/topics/orders", { token: alice });
      assert.equal(again.status, 200);
      assert.equal(again.body.created, false);
      const explicit = await api.call("PUT", "/v1/topics/orders", {
        token: alice,
        body: { retentionSeconds: DEFAULT_TOPIC_CONFIG.retentionSeconds },
      });
      assert.equal(explicit.status, 200);
    });

    await t.step("creating again with a different configuration is a 409", async () => {
      const res = await api.call("PUT", "/v1/topics/orders", {
        token: alice,
        body: { maxDeliveries: 9 },
      });
      assert.equal(res.status, 409);
      assert.equal(res.headers.get("content-type"), "application/problem+json");
      assert.equal(res.body.code, "already_exists");
      const get = await api.call("GET", "/v1/topics/orders", { token: alice });
      assert.equal(get.body.config.maxDeliveries, DEFAULT_TOPIC_CONFIG.maxDeliveries);
    });

    await t.step("get shows configuration, owner, creation time and counts", async () => {
      await api.call("PUT", "/v1/topics/orders/subscriptions/s1", { token: bob, body: {} });
      await api.call("POST", "/v1/topics/orders/messages", {
        token: bob,
        body: { messages: [{ body: "abc" }, { body: "de", key: "k", attributes: { x: "y" } }] },
      });
      const res = await api.call("GET", "/v1/topics/orders", { token: bob });
      assert.equal(res.status, 200);
      assert.equal(res.body.name, "orders");
      assert.equal(res.body.owner, "alice");
      assert.ok(!Number.isNaN(Date.parse(res.body.createdAt)));
      // Bytes: body + key + attribute names and values.
      assert.deepEqual(res.body.stats, {
        firstOffset: 0,
        nextOffset: 2,
        messages: 2,
        bytes: 3 + (2 + 1 + 2),
        subscriptions: 1,
      });
    });

    await t.step("the owner changes the configuration with PATCH; others get 403", async () => {
      const denied = await api.call("PATCH", "/v1/topics/orders", {
        token: bob,
        body: { maxDeliveries: 3 },
      });
      assert.equal(denied.status, 403);
      assert.match(denied.body.detail, /manage/);
      const res = await api.call("PATCH", "/v1/topics/orders", {
        token: alice,
        body: { maxDeliveries: 3, access: { receivers: ["bob"] } },
      });
      assert.equal(res.status, 200);
      assert.equal(res.body.config.maxDeliveries, 3);
      assert.deepEqual(res.body.config.access, {
        restricted: false,
        senders: [],
        receivers: ["bob"],
      });
      assert.equal(res.body.config.retentionSeconds, DEFAULT_TOPIC_CONFIG.retentionSeconds);
      const byAdmin = await api.call("PATCH", "/v1/topics/orders", {
        token: admin,
        body: { retentionMaxMessages: 1000 },
      });
      assert.equal(byAdmin.status, 200);
      assert.equal(byAdmin.body.config.retentionMaxMessages, 1000);
    });

    await t.step("the listing pages through names with a prefix filter", async () => {
      for (const name of ["logs-a", "logs-b", "logs-c", "metrics"]) {
        assert.equal((await api.call("PUT", `/v1/topics/${name}`, { token: bob })).status, 201);
      }
      const first = await api.call("GET", "/v1/topics?prefix=logs-&limit=2", { token: alice });
      assert.equal(first.status, 200);
      assert.deepEqual(first.body.topics.map((x: { name: string }) => x.name), [
        "logs-a",
        "logs-b",
      ]);
      assert.equal(first.body.topics[0].owner, "bob");
      assert.equal(first.body.next, "logs-b");
      const second = await api.call(
        "GET",
        `/v1/topics?prefix=logs-&limit=2&after=${first.body.next}`,
        { token: alice },
      );
      assert.deepEqual(second.body.topics.map((x: { name: string }) => x.name), ["logs-c"]);
      assert.equal(second.body.next, null);
      const all = await api.call("GET", "/v1/topics", { token: alice });
      assert.deepEqual(all.body.topics.map((x: { name: string }) => x.name), [
        "logs-a",
        "logs-b",
        "logs-c",
        "metrics",
        "orders",
      ]);
    });

    await t.step("delete is the owner's; it removes every key of the topic", async () => {
      await api.call("PUT", "/v1/topics/orders/subscriptions/s2", { token: bob, body: {} });
      const r = await api.call("POST", "/v1/topics/orders/subscriptions/s1/receive", {
        token: bob,
        body: { max: 1 },
      });
      assert.equal(r.body.messages.length, 1);
      const denied = await api.call("DELETE", "/v1/topics/orders", { token: bob });
      assert.equal(denied.status, 403);
      assert.match(denied.body.detail, /manage/);
      assert.ok((await api.local.keys("momd:t:{orders}*")).length > 0);
      const res = await api.call("DELETE", "/v1/topics/orders", { token: alice });
      assert.equal(res.status, 204);
      assert.deepEqual(await api.local.keys("momd:t:{orders}*"), []);
      assert.equal((await api.call("GET", "/v1/topics/orders", { token: alice })).status, 404);
      const list = await api.call("GET", "/v1/topics", { token: alice });
      assert.ok(!list.body.topics.some((x: { name: string }) => x.name === "orders"));
      const again = await api.call("DELETE", "/v1/topics/orders", { token: alice });
      assert.equal(again.status, 404);
    });
  } finally {
    await api.close();
  }
});

Deno.test("topics: bad input is a 400 problem and changes nothing", async (t) => {
  const api = await startTestApi({ maxBodyBytes: 64 * 1024 });
  const token = api.adminToken;
  try {
    await api.call("PUT", "/v1/topics/t1", { token, body: { maxMessageBytes: 1000 } });
    await api.call("PUT", "/v1/topics/t1/subscriptions/s", { token, body: { start: "earliest" } });
    await api.call("POST", "/v1/topics/t1/messages", {
      token,
      body: { messages: [{ body: "a" }] },
    });
    const before = await api.call("GET", "/v1/topics/t1", { token });
    const subBefore = await api.call("GET", "/v1/topics/t1/subscriptions/s", { token });

    const assertUnchanged = async () => {
      assert.deepEqual((await api.call("GET", "/v1/topics/t1", { token })).body, before.body);
      assert.deepEqual(
        (await api.call("GET", "/v1/topics/t1/subscriptions/s", { token })).body,
        subBefore.body,
      );
    };

    await t.step("a bad topic or subscription name", async () => {
      const bad = await api.call("PUT", "/v1/topics/no.dots", { token, body: {} });
      assert.equal(bad.status, 400);
      isProblem(bad);
      const badSub = await api.call("PUT", "/v1/topics/t1/subscriptions/a%20b", {
        token,
        body: {},
      });
      assert.equal(badSub.status, 400);
      assert.deepEqual(await api.local.keys("momd:t:{no.dots}*"), []);
      await assertUnchanged();
    });

    await t.step("unknown fields and malformed JSON", async () => {
      const unknown = await api.call("PUT", "/v1/topics/t2", { token, body: { retention: 5 } });
      assert.equal(unknown.status, 400);
      isProblem(unknown);
      const malformed = await api.call("POST", "/v1/topics/t1/messages", {
        token,
        rawBody: '{"messages": [',
      });
      assert.equal(malformed.status, 400);
      isProblem(malformed);
      const extra = await api.call("POST", "/v1/topics/t1/messages", {
        token,
        body: { messages: [{ body: "x", priority: 1 }] },
      });
      assert.equal(extra.status, 400);
      assert.equal((await api.call("GET", "/v1/topics/t2", { token })).status, 404);
      await assertUnchanged();
    });

    await t.step("values out of range, and rules across fields", async () => {
      for (
        const body of [
          { maxDeliveries: 0 },
          { retentionSeconds: -1 },
          { maxMessageBytes: 2 * 1024 * 1024 },
          { visibilityTimeoutSeconds: 1.5 },
          { access: { senders: ["x"] } },
        ]
      ) {
        const res = await api.call("PUT", "/v1/topics/t3", { token, body });
        assert.equal(res.status, 400, JSON.stringify(body));
        isProblem(res);
      }
      const cross = await api.call("PUT", "/v1/topics/t3", {
        token,
        body: { maxMessageBytes: 1000, retentionMaxBytes: 500 },
      });
      assert.equal(cross.status, 400);
      assert.equal(cross.body.code, "invalid");
      assert.match(cross.body.detail, /retentionMaxBytes/);
      assert.equal((await api.call("GET", "/v1/topics/t3", { token })).status, 404);
      const patch = await api.call("PATCH", "/v1/topics/t1", {
        token,
        body: { retentionMaxBytes: 10 },
      });
      assert.equal(patch.status, 400);
      await assertUnchanged();
    });

    await t.step("an empty batch, a batch above the limit, an empty receipt list", async () => {
      const empty = await api.call("POST", "/v1/topics/t1/messages", {
        token,
        body: { messages: [] },
      });
      assert.equal(empty.status, 400);
      const tooMany = await api.call("POST", "/v1/topics/t1/messages", {
        token,
        body: { messages: Array.from({ length: 101 }, () => ({ body: "x" })) },
      });
      assert.equal(tooMany.status, 400);
      const noReceipts = await api.call("POST", "/v1/topics/t1/subscriptions/s/ack", {
        token,
        body: { receipts: [] },
      });
      assert.equal(noReceipts.status, 400);
      const badSeek = await api.call("POST", "/v1/topics/t1/subscriptions/s/seek", {
        token,
        body: { offset: 1, time: "2026-01-01T00:00:00Z" },
      });
      assert.equal(badSeek.status, 400);
      const badStart = await api.call("PUT", "/v1/topics/t1/subscriptions/s2", {
        token,
        body: { start: "yesterday" },
      });
      assert.equal(badStart.status, 400);
      await assertUnchanged();
    });

    await t.step(
      "a message above the topic's size limit is a 413; none of the batch is kept",
      async () => {
        const res = await api.call("POST", "/v1/topics/t1/messages", {
          token,
          body: { messages: [{ body: "fine" }, { body: "x".repeat(1001) }] },
        });
        assert.equal(res.status, 413);
        isProblem(res);
        assert.equal(res.body.code, "too_large");
        assert.match(res.body.detail, /message 2/);
        await assertUnchanged();
      },
    );

    await t.step("a request body above the node's limit is a 413", async () => {
      const body = JSON.stringify({ messages: [{ body: "x".repeat(70 * 1024) }] });
      const res = await api.call("POST", "/v1/topics/t1/messages", { token, rawBody: body });
      assert.equal(res.status, 413);
      isProblem(res);
      // The same with its length declared (as HTTP clients send it): judged from the header.
      const declared = await api.call("POST", "/v1/topics/t1/messages", {
        token,
        rawBody: body,
        headers: { "content-length": String(body.length) },
      });
      assert.equal(declared.status, 413);
      isProblem(declared);
      await assertUnchanged();
    });

    await t.step("a receipt that is not one of ours is a 400", async () => {
      const res = await api.call("POST", "/v1/topics/t1/subscriptions/s/ack", {
        token,
        body: { receipts: ["not-a-receipt"] },
      });
      assert.equal(res.status, 400);
      assert.equal(res.body.code, "invalid");
      await assertUnchanged();
    });

    await t.step("missing topic or subscription is a 404", async () => {
      const pub = await api.call("POST", "/v1/topics/nope/messages", {
        token,
        body: { messages: [{ body: "x" }] },
      });
      assert.equal(pub.status, 404);
      isProblem(pub);
      const recv = await api.call("POST", "/v1/topics/t1/subscriptions/nope/receive", {
        token,
        body: {},
      });
      assert.equal(recv.status, 404);
      assert.match(recv.body.detail, /subscription 'nope'/);
      await assertUnchanged();
    });
  } finally {
    await api.close();
  }
});
