import assert from "node:assert/strict";
import { startTestApi, type TestApi } from "./support/node.ts";
import { topicKeys } from "../src/broker/keys.ts";

/** A topic with the given configuration and a subscription from the earliest message. */
async function topic(api: TestApi, name: string, config: Record<string, unknown>) {
  const token = api.adminToken;
  assert.equal((await api.call("PUT", `/v1/topics/${name}`, { token, body: config })).status, 201);
  await api.call("PUT", `/v1/topics/${name}/subscriptions/s`, {
    token,
    body: { start: "earliest" },
  });
  const path = `/v1/topics/${name}/subscriptions/s`;
  return {
    async publish(...bodies: string[]) {
      for (const body of bodies) {
        const res = await api.call("POST", `/v1/topics/${name}/messages`, {
          token,
          body: { messages: [{ body }] },
        });
        assert.equal(res.status, 201);
      }
    },
    async stats() {
      return (await api.call("GET", `/v1/topics/${name}`, { token })).body.stats;
    },
    async subStats() {
      return (await api.call("GET", path, { token })).body.stats;
    },
    async receive(body: Record<string, unknown> = { max: 10 }) {
      const res = await api.call("POST", `${path}/receive`, { token, body });
      assert.equal(res.status, 200);
      return res.body.messages as { offset: number; body: string; receipt: string }[];
    },
    async logLength() {
      return await api.local.xlen(topicKeys(name).log);
    },
  };
}

Deno.test("topics: retention by count keeps the newest messages; a subscription skips forward", async () => {
  const api = await startTestApi();
  try {
    const t = await topic(api, "by-count", { retentionMaxMessages: 3 });
    await t.publish("m0", "m1", "m2", "m3", "m4");
    assert.deepEqual(await t.stats(), {
      firstOffset: 2,
      nextOffset: 5,
      messages: 3,
      bytes: 6,
      subscriptions: 1,
    });
    assert.equal(await t.logLength(), 3, "the log itself is trimmed");
    const before = await t.subStats();
    assert.equal(before.position, 2);
    assert.equal(before.skipped, 2);
    const got = await t.receive();
    assert.deepEqual(got.map((m) => [m.offset, m.body]), [[2, "m2"], [3, "m3"], [4, "m4"]]);
    const after = await t.subStats();
    assert.equal(after.skipped, 2);
    assert.equal(after.position, 5);
  } finally {
    await api.close();
  }
});

Deno.test("topics: retention by bytes keeps the newest messages within the limit", async () => {
  const api = await startTestApi();
  try {
    const t = await topic(api, "by-bytes", { maxMessageBytes: 10, retentionMaxBytes: 25 });
    await t.publish("0123456789", "0123456789", "0123456789", "0123456789", "0123456789");
    const stats = await t.stats();
    assert.equal(stats.firstOffset, 3);
    assert.equal(stats.messages, 2);
    assert.equal(stats.bytes, 20);
    await t.publish("01234");
    const more = await t.stats();
    assert.deepEqual([more.firstOffset, more.messages, more.bytes], [3, 3, 25]);
    assert.equal(await t.logLength(), 3);
    const got = await t.receive();
    assert.deepEqual(got.map((m) => m.offset), [3, 4, 5]);
    assert.equal((await t.subStats()).skipped, 3);
  } finally {
    await api.close();
  }
});

Deno.test("topics: retention by age drops old messages, even without new publishes", async () => {
  let clock = Date.parse("2026-04-01T00:00:00Z");
  const api = await startTestApi({ now: () => clock });
  try {
    const t = await topic(api, "by-age", { retentionSeconds: 60 });
    await t.publish("old-1", "old-2");
    clock += 30_000;
    await t.publish("young");
    clock += 30_000; // the first two are now 60 s old
    const stats = await t.stats();
    assert.deepEqual([stats.firstOffset, stats.messages], [2, 1]);
    const sub = await t.subStats();
    assert.deepEqual([sub.position, sub.skipped, sub.lag], [2, 2, 1]);
    assert.equal(await t.logLength(), 3, "a GET changes nothing");
    const got = await t.receive();
    assert.deepEqual(got.map((m) => m.body), ["young"]);
    assert.equal(await t.logLength(), 1, "the receive applied retention");
    const peek = await api.call("GET", "/v1/topics/by-age/messages", { token: api.adminToken });
    assert.deepEqual(peek.body.messages.map((m: { body: string }) => m.body), ["young"]);
  } finally {
    await api.close();
  }
});

Deno.test("topics: a delivery lost to retention before its ack counts as skipped", async () => {
  let clock = Date.parse("2026-04-01T00:00:00Z");
  const api = await startTestApi({ now: () => clock });
  try {
    const t = await topic(api, "lossy", { retentionMaxMessages: 2 });
    await t.publish("m0");
    const [first] = await t.receive({ max: 1, visibilitySeconds: 10 });
    assert.equal(first.offset, 0);
    await t.publish("m1", "m2", "m3"); // keeps 2 and 3
    clock += 10_000; // the delivery of 0 times out; retention took it
    const got = await t.receive();
    assert.deepEqual(got.map((m) => m.offset), [2, 3]);
    const stats = await t.subStats();
    assert.equal(stats.skipped, 2, "offset 0 (in flight) and offset 1 (never delivered)");
    assert.equal(stats.pendingRedelivery, 0);
    assert.equal(stats.deadLettered, 0);
  } finally {
    await api.close();
  }
});
