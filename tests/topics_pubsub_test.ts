import assert from "node:assert/strict";
import { startTestApi, type TestApi } from "./support/node.ts";

function publisher(api: TestApi, token: string, topic: string) {
  return async (...bodies: string[]): Promise<number[]> => {
    const res = await api.call("POST", `/v1/topics/${topic}/messages`, {
      token,
      body: { messages: bodies.map((body) => ({ body })) },
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return res.body.messages.map((m: { offset: number }) => m.offset);
  };
}

interface Delivered {
  offset: number;
  body: string;
  receipt: string;
}

async function receive(
  api: TestApi,
  token: string,
  path: string,
  body: Record<string, unknown> = {},
): Promise<Delivered[]> {
  const res = await api.call("POST", `${path}/receive`, { token, body });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.messages;
}

async function ackAll(api: TestApi, token: string, path: string, messages: Delivered[]) {
  if (messages.length === 0) return;
  const res = await api.call("POST", `${path}/ack`, {
    token,
    body: { receipts: messages.map((m) => m.receipt) },
  });
  assert.equal(res.status, 200);
  assert.ok(res.body.results.every((r: { ok: boolean }) => r.ok));
}

Deno.test("topics: publishing assigns increasing integer offsets from 0", async () => {
  const api = await startTestApi();
  const token = api.adminToken;
  try {
    await api.call("PUT", "/v1/topics/events", { token, body: {} });
    const publish = publisher(api, token, "events");
    assert.deepEqual(await publish("a"), [0]);
    assert.deepEqual(await publish("b", "c", "d"), [1, 2, 3]);
    assert.deepEqual(await publish("e"), [4]);
    const res = await api.call("POST", "/v1/topics/events/messages", {
      token,
      body: { messages: [{ body: "f", key: "user-1", attributes: { type: "signup" } }] },
    });
    assert.equal(res.body.messages[0].offset, 5);
    assert.equal(typeof res.body.messages[0].id, "string");
    assert.ok(!Number.isNaN(Date.parse(res.body.messages[0].publishedAt)));

    const peek = await api.call("GET", "/v1/topics/events/messages?from=4&limit=5", { token });
    assert.equal(peek.status, 200);
    assert.equal(peek.body.firstOffset, 0);
    assert.equal(peek.body.nextOffset, 6);
    assert.deepEqual(peek.body.messages.map((m: Delivered) => [m.offset, m.body]), [
      [4, "e"],
      [5, "f"],
    ]);
    const last = peek.body.messages[1];
    assert.equal(last.key, "user-1");
    assert.deepEqual(last.attributes, { type: "signup" });
    assert.equal(last.publisher, "admin");
    assert.equal(last.id, res.body.messages[0].id);
    assert.equal(peek.body.messages[0].key, null);
  } finally {
    await api.close();
  }
});

Deno.test("topics: a subscription starts at the earliest, the latest or a time", async (t) => {
  let clock = Date.parse("2026-03-01T12:00:00Z");
  const api = await startTestApi({ now: () => clock });
  const token = api.adminToken;
  const base = "/v1/topics/clicks";
  try {
    await api.call("PUT", base, { token, body: {} });
    const publish = publisher(api, token, "clicks");
    await publish("m0", "m1"); // at 12:00:00
    clock += 60_000;
    await publish("m2"); // at 12:01:00
    clock += 60_000;
    await publish("m3"); // at 12:02:00

    await t.step("earliest: from the first retained message", async () => {
      const res = await api.call("PUT", `${base}/subscriptions/from-start`, {
        token,
        body: { start: "earliest" },
      });
      assert.equal(res.status, 201);
      assert.equal(res.body.stats.position, 0);
      assert.equal(res.body.stats.lag, 4);
      const got = await receive(api, token, `${base}/subscriptions/from-start`, { max: 10 });
      assert.deepEqual(got.map((m) => m.body), ["m0", "m1", "m2", "m3"]);
    });

    await t.step("latest: only messages published afterwards", async () => {
      const res = await api.call("PUT", `${base}/subscriptions/from-now`, {
        token,
        body: { start: "latest" },
      });
      assert.equal(res.body.stats.position, 4);
      assert.deepEqual(await receive(api, token, `${base}/subscriptions/from-now`), []);
      await publish("m4");
      const got = await receive(api, token, `${base}/subscriptions/from-now`, { max: 10 });
      assert.deepEqual(got.map((m) => m.body), ["m4"]);
    });

    await t.step("a time: from the first message published at or after it", async () => {
      const res = await api.call("PUT", `${base}/subscriptions/from-time`, {
        token,
        body: { start: "2026-03-01T12:00:30Z" },
      });
      assert.equal(res.status, 201);
      assert.equal(res.body.config.start, "2026-03-01T12:00:30.000Z");
      assert.equal(res.body.stats.position, 2);
      const got = await receive(api, token, `${base}/subscriptions/from-time`, { max: 10 });
      assert.deepEqual(got.map((m) => m.body), ["m2", "m3", "m4"]);
      const exact = await api.call("PUT", `${base}/subscriptions/exact`, {
        token,
        body: { start: "2026-03-01T13:01:00+01:00" }, // 12:01:00 UTC
      });
      assert.equal(exact.body.stats.position, 2);
      const future = await api.call("PUT", `${base}/subscriptions/future`, {
        token,
        body: { start: "2030-01-01T00:00:00Z" },
      });
      assert.equal(future.body.stats.position, 5);
    });

    await t.step(
      "subscribing again with the same options is a 200; other options a 409",
      async () => {
        const same = await api.call("PUT", `${base}/subscriptions/from-start`, {
          token,
          body: { start: "earliest", visibilityTimeoutSeconds: 30 },
        });
        assert.equal(same.status, 200);
        assert.equal(same.body.created, false);
        assert.equal(same.body.stats.position, 4, "the position is not reset");
        const other = await api.call("PUT", `${base}/subscriptions/from-start`, {
          token,
          body: { start: "latest" },
        });
        assert.equal(other.status, 409);
        assert.equal(other.body.code, "already_exists");
      },
    );

    await t.step("the subscriptions are listed by name with their counts", async () => {
      const res = await api.call("GET", `${base}/subscriptions`, { token });
      assert.equal(res.status, 200);
      assert.deepEqual(res.body.subscriptions.map((s: { name: string }) => s.name), [
        "exact",
        "from-now",
        "from-start",
        "from-time",
        "future",
      ]);
      const fromStart = res.body.subscriptions[2];
      assert.equal(fromStart.creator, "admin");
      assert.equal(fromStart.stats.inFlight, 4);
      assert.equal(fromStart.stats.lag, 1);
    });
  } finally {
    await api.close();
  }
});

Deno.test("topics: every subscription sees every message", async () => {
  const api = await startTestApi();
  const token = api.adminToken;
  try {
    await api.call("PUT", "/v1/topics/fanout", { token, body: {} });
    const subs = ["audit", "billing", "search"];
    for (const s of subs) {
      await api.call("PUT", `/v1/topics/fanout/subscriptions/${s}`, { token, body: {} });
    }
    const publish = publisher(api, token, "fanout");
    await publish("one", "two");
    await publish("three");
    for (const s of subs) {
      const path = `/v1/topics/fanout/subscriptions/${s}`;
      const got = await receive(api, token, path, { max: 10 });
      assert.deepEqual(got.map((m) => [m.offset, m.body]), [[0, "one"], [1, "two"], [2, "three"]]);
      await ackAll(api, token, path, got);
    }
    // Acknowledging on one subscription takes nothing from another.
    await api.call("PUT", "/v1/topics/fanout/subscriptions/late", {
      token,
      body: { start: "earliest" },
    });
    const late = await receive(api, token, "/v1/topics/fanout/subscriptions/late", { max: 10 });
    assert.equal(late.length, 3);
  } finally {
    await api.close();
  }
});

Deno.test("topics: consumers of one subscription share its messages without duplicates", async () => {
  const api = await startTestApi();
  const token = api.adminToken;
  try {
    const ann = await api.userToken("ann");
    const ben = await api.userToken("ben");
    await api.call("PUT", "/v1/topics/jobs", { token, body: {} });
    await api.call("PUT", "/v1/topics/jobs/subscriptions/workers", {
      token,
      body: { start: "earliest" },
    });
    const publish = publisher(api, token, "jobs");
    const bodies = Array.from({ length: 40 }, (_, i) => `job-${i}`);
    await publish(...bodies);

    const path = "/v1/topics/jobs/subscriptions/workers";
    const seen: Record<string, string[]> = { ann: [], ben: [] };
    while (seen.ann.length + seen.ben.length < bodies.length) {
      const [a, b] = await Promise.all([
        receive(api, ann, path, { max: 3 }),
        receive(api, ben, path, { max: 3 }),
      ]);
      seen.ann.push(...a.map((m) => m.body));
      seen.ben.push(...b.map((m) => m.body));
      await Promise.all([ackAll(api, ann, path, a), ackAll(api, ben, path, b)]);
      assert.ok(a.length + b.length > 0, "each round delivers something");
    }
    const all = [...seen.ann, ...seen.ben];
    assert.equal(new Set(all).size, all.length, "no message was delivered twice");
    assert.deepEqual([...all].sort(), [...bodies].sort());
    assert.ok(seen.ann.length > 0 && seen.ben.length > 0, "both consumers got messages");
    assert.deepEqual(await receive(api, ann, path, { max: 10 }), []);
    const stats = await api.call("GET", path, { token });
    assert.deepEqual(stats.body.stats, {
      position: 40,
      lag: 0,
      inFlight: 0,
      pendingRedelivery: 0,
      deadLettered: 0,
      skipped: 0,
    });
  } finally {
    await api.close();
  }
});

Deno.test("topics: peeking lists messages without consuming them", async () => {
  const api = await startTestApi();
  const token = api.adminToken;
  try {
    await api.call("PUT", "/v1/topics/peeked", { token, body: {} });
    await api.call("PUT", "/v1/topics/peeked/subscriptions/s", { token, body: {} });
    await publisher(api, token, "peeked")("a", "b", "c");
    const page = await api.call("GET", "/v1/topics/peeked/messages?limit=2", { token });
    assert.deepEqual(page.body.messages.map((m: Delivered) => m.body), ["a", "b"]);
    const next = await api.call("GET", "/v1/topics/peeked/messages?from=2", { token });
    assert.deepEqual(next.body.messages.map((m: Delivered) => m.body), ["c"]);
    const sub = await api.call("GET", "/v1/topics/peeked/subscriptions/s", { token });
    assert.equal(sub.body.stats.position, 0);
    assert.equal(sub.body.stats.lag, 3);
    const got = await receive(api, token, "/v1/topics/peeked/subscriptions/s", { max: 5 });
    assert.equal(got.length, 3);
  } finally {
    await api.close();
  }
});
