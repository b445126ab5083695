import assert from "node:assert/strict";
import { startTestApi, type TestApi } from "./support/node.ts";

async function setup(api: TestApi, subs: string[]) {
  const token = api.adminToken;
  await api.call("PUT", "/v1/topics/feed", { token, body: {} });
  for (const s of subs) {
    await api.call("PUT", `/v1/topics/feed/subscriptions/${s}`, {
      token,
      body: { start: "latest" },
    });
  }
  return {
    publish: async (body: string) => {
      const res = await api.call("POST", "/v1/topics/feed/messages", {
        token,
        body: { messages: [{ body }] },
      });
      assert.equal(res.status, 201);
    },
    receive: (sub: string, body: Record<string, unknown>) =>
      api.call("POST", `/v1/topics/feed/subscriptions/${sub}/receive`, { token, body }),
  };
}

/** Resolves after `ms`; used only to let a long poll start waiting. */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

Deno.test("topics: a long poll returns as soon as a message is published", async () => {
  const api = await startTestApi();
  try {
    const t = await setup(api, ["a", "b"]);
    const started = Date.now();
    let settled = false;
    const pollA = t.receive("a", { waitSeconds: 20 }).finally(() => settled = true);
    const pollB = t.receive("b", { waitSeconds: 20, max: 5 });
    await pause(200);
    assert.equal(settled, false, "the receive waits while there is nothing");
    await t.publish("hello");
    const [a, b] = await Promise.all([pollA, pollB]);
    assert.equal(a.status, 200);
    assert.deepEqual(a.body.messages.map((m: { body: string }) => m.body), ["hello"]);
    assert.deepEqual(b.body.messages.map((m: { body: string }) => m.body), ["hello"]);
    assert.ok(Date.now() - started < 20_000, "both returned before their wait ended");
  } finally {
    await api.close();
  }
});

Deno.test("topics: a long poll without messages returns empty when the wait ends", async () => {
  const api = await startTestApi();
  try {
    const t = await setup(api, ["a"]);
    const res = await t.receive("a", { waitSeconds: 1 });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.messages, []);
  } finally {
    await api.close();
  }
});

Deno.test("topics: a long poll returns a delivery that times out while it waits", async () => {
  const api = await startTestApi();
  try {
    const t = await setup(api, ["a"]);
    await t.publish("retry-me");
    const first = await t.receive("a", { visibilitySeconds: 1 });
    assert.equal(first.body.messages.length, 1);
    const started = Date.now();
    const again = await t.receive("a", { waitSeconds: 20 });
    assert.equal(again.body.messages[0].body, "retry-me");
    assert.equal(again.body.messages[0].deliveryCount, 2);
    assert.ok(Date.now() - started < 20_000, "woken at the deadline, before the wait ended");
  } finally {
    await api.close();
  }
});

Deno.test("topics: a long poll stops when the client goes away, and takes nothing", async () => {
  const api = await startTestApi();
  try {
    const t = await setup(api, ["a"]);
    const controller = new AbortController();
    const started = Date.now();
    const poll = api.app.request("/v1/topics/feed/subscriptions/a/receive", {
      method: "POST",
      headers: { authorization: `Bearer ${api.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ waitSeconds: 20 }),
      signal: controller.signal,
    });
    await pause(100);
    controller.abort();
    const res = await poll;
    await res.body?.cancel();
    assert.ok(Date.now() - started < 20_000, "the poll ended before its wait");
    await t.publish("after");
    const next = await t.receive("a", {});
    assert.deepEqual(next.body.messages.map((m: { body: string }) => m.body), ["after"]);
    assert.equal(next.body.messages[0].deliveryCount, 1);
  } finally {
    await api.close();
  }
});
