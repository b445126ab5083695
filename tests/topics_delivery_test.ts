import assert from "node:assert/strict";
import { startTestApi, type TestApi } from "./support/node.ts";

interface Delivered {
  offset: number;
  body: string;
  receipt: string;
  deliveryCount: number;
}

/** A topic with one subscription from the earliest message, on an API with a test clock. */
async function setup(opts: { subscription?: Record<string, unknown> } = {}) {
  let clock = Date.parse("2026-02-01T00:00:00Z");
  const api = await startTestApi({ now: () => clock });
  const token = api.adminToken;
  await api.call("PUT", "/v1/topics/work", { token, body: {} });
  const sub = await api.call("PUT", "/v1/topics/work/subscriptions/s", {
    token,
    body: { start: "earliest", ...opts.subscription },
  });
  assert.equal(sub.status, 201);
  const path = "/v1/topics/work/subscriptions/s";
  return {
    api,
    path,
    advance(ms: number) {
      clock += ms;
    },
    async publish(...bodies: string[]) {
      const res = await api.call("POST", "/v1/topics/work/messages", {
        token,
        body: { messages: bodies.map((body) => ({ body })) },
      });
      assert.equal(res.status, 201);
    },
    async receive(body: Record<string, unknown> = {}): Promise<Delivered[]> {
      const res = await api.call("POST", `${path}/receive`, { token, body });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.messages;
    },
    async post(action: string, body: unknown) {
      return await api.call("POST", `${path}/${action}`, { token, body });
    },
    async stats() {
      return (await api.call("GET", path, { token })).body.stats;
    },
  };
}

async function closing(api: TestApi, fn: () => Promise<void>) {
  try {
    await fn();
  } finally {
    await api.close();
  }
}

Deno.test("topics: an acked message is not delivered again", async () => {
  const s = await setup();
  await closing(s.api, async () => {
    await s.publish("a", "b");
    const got = await s.receive({ max: 2 });
    assert.deepEqual(got.map((m) => m.deliveryCount), [1, 1]);
    const ack = await s.post("ack", { receipts: got.map((m) => m.receipt) });
    assert.equal(ack.status, 200);
    assert.deepEqual(ack.body.results.map((r: { ok: boolean }) => r.ok), [true, true]);
    s.advance(3_600_000);
    assert.deepEqual(await s.receive({ max: 10 }), []);
    assert.deepEqual(await s.stats(), {
      position: 2,
      lag: 0,
      inFlight: 0,
      pendingRedelivery: 0,
      deadLettered: 0,
      skipped: 0,
    });
  });
});

Deno.test("topics: an unacked message is delivered again after its visibility timeout", async () => {
  const s = await setup({ subscription: { visibilityTimeoutSeconds: 10 } });
  await closing(s.api, async () => {
    await s.publish("a");
    const [first] = await s.receive();
    assert.equal(first.body, "a");
    s.advance(9_999);
    assert.deepEqual(await s.receive(), [], "still invisible before the deadline");
    assert.equal((await s.stats()).inFlight, 1);
    s.advance(1);
    assert.equal((await s.stats()).pendingRedelivery, 1);
    const [again] = await s.receive();
    assert.equal(again.offset, first.offset);
    assert.equal(again.deliveryCount, 2);
    assert.notEqual(again.receipt, first.receipt);
    // The visibility of one receive can be chosen per call.
    s.advance(10_000);
    const [third] = await s.receive({ visibilitySeconds: 100 });
    assert.equal(third.deliveryCount, 3);
    s.advance(50_000);
    assert.deepEqual(await s.receive(), []);
  });
});

Deno.test("topics: a stale receipt is refused and does not settle the redelivered message", async () => {
  const s = await setup({ subscription: { visibilityTimeoutSeconds: 5 } });
  await closing(s.api, async () => {
    await s.publish("a");
    const [first] = await s.receive();
    s.advance(5_000);
    const [second] = await s.receive();
    assert.equal(second.deliveryCount, 2);

    const stale = await s.post("ack", { receipts: [first.receipt] });
    assert.equal(stale.status, 200);
    assert.deepEqual(stale.body.results, [
      { receipt: first.receipt, ok: false, error: "stale_receipt" },
    ]);
    assert.equal((await s.stats()).inFlight, 1, "the redelivered message is still in flight");
    const staleNack = await s.post("nack", { receipts: [first.receipt] });
    assert.equal(staleNack.body.results[0].ok, false);
    const staleVisibility = await s.post("visibility", {
      receipts: [first.receipt],
      visibilitySeconds: 0,
    });
    assert.equal(staleVisibility.body.results[0].ok, false);
    assert.deepEqual(await s.receive(), [], "nothing was released by the stale receipt");

    // A batch answers per receipt: the current one is acked, the stale one refused.
    const batch = await s.post("ack", { receipts: [first.receipt, second.receipt] });
    assert.deepEqual(batch.body.results.map((r: { ok: boolean }) => r.ok), [false, true]);
    const twice = await s.post("ack", { receipts: [second.receipt] });
    assert.equal(twice.body.results[0].ok, false, "a settled message's receipt is stale");
    s.advance(60_000);
    assert.deepEqual(await s.receive(), []);
    assert.equal((await s.stats()).inFlight, 0);
  });
});

Deno.test("topics: nack releases at once or after a delay; redeliveries come first, lowest offset first", async () => {
  const s = await setup();
  await closing(s.api, async () => {
    await s.publish("m0", "m1", "m2", "m3");
    const got = await s.receive({ max: 3 });
    assert.deepEqual(got.map((m) => m.offset), [0, 1, 2]);
    // Release 2 then 0: redelivery order is by offset, not by release order.
    const nack = await s.post("nack", { receipts: [got[2].receipt, got[0].receipt] });
    assert.deepEqual(nack.body.results.map((r: { ok: boolean }) => r.ok), [true, true]);
    const delayed = await s.post("nack", { receipts: [got[1].receipt], delaySeconds: 60 });
    assert.equal(delayed.body.results[0].ok, true);
    assert.equal((await s.stats()).pendingRedelivery, 3);
    const again = await s.receive({ max: 10 });
    assert.deepEqual(again.map((m) => [m.offset, m.deliveryCount]), [[0, 2], [2, 2], [3, 1]]);
    await s.post("ack", { receipts: again.map((m) => m.receipt) });
    s.advance(59_999);
    assert.deepEqual(await s.receive(), []);
    s.advance(1);
    const late = await s.receive();
    assert.deepEqual(late.map((m) => [m.offset, m.deliveryCount]), [[1, 2]]);
  });
});

Deno.test("topics: changing visibility extends or ends a delivery attempt", async () => {
  const s = await setup({ subscription: { visibilityTimeoutSeconds: 10 } });
  await closing(s.api, async () => {
    await s.publish("a", "b");
    const [a, b] = await s.receive({ max: 2 });
    const res = await s.post("visibility", { receipts: [a.receipt], visibilitySeconds: 60 });
    assert.equal(res.body.results[0].ok, true);
    const release = await s.post("visibility", { receipts: [b.receipt], visibilitySeconds: 0 });
    assert.equal(release.body.results[0].ok, true);
    const [b2] = await s.receive();
    assert.equal(b2.offset, b.offset);
    await s.post("ack", { receipts: [b2.receipt] });
    s.advance(30_000);
    assert.deepEqual(await s.receive(), [], "the extended attempt is still running");
    assert.equal((await s.post("ack", { receipts: [a.receipt] })).body.results[0].ok, true);
  });
});

Deno.test("topics: after maxDeliveries a message goes to the dead letters; redrive brings it back", async () => {
  const s = await setup({ subscription: { visibilityTimeoutSeconds: 10, maxDeliveries: 2 } });
  await closing(s.api, async () => {
    await s.publish("poison", "fine");
    const first = await s.receive({ max: 2 });
    await s.post("ack", { receipts: [first[1].receipt] });
    s.advance(10_000);
    const [second] = await s.receive();
    assert.equal(second.deliveryCount, 2);
    s.advance(10_000);
    assert.equal((await s.stats()).deadLettered, 1, "the view counts it before maintenance");
    assert.deepEqual(await s.receive(), [], "not delivered a third time");
    assert.equal((await s.stats()).deadLettered, 1);

    const dead = await s.api.call("GET", `${s.path}/messages?state=dead`, {
      token: s.api.adminToken,
    });
    assert.equal(dead.status, 200);
    assert.equal(dead.body.total, 1);
    assert.equal(dead.body.messages[0].body, "poison");
    assert.equal(dead.body.messages[0].offset, 0);
    assert.equal(dead.body.messages[0].deliveryCount, 2);
    assert.equal(dead.body.messages[0].publisher, "admin");

    // A nack of the last allowed attempt dead-letters at once.
    await s.publish("poison-2");
    const [p2] = await s.receive();
    s.advance(10_000);
    const [p2again] = await s.receive();
    assert.equal(p2again.deliveryCount, 2);
    await s.post("nack", { receipts: [p2again.receipt] });
    assert.equal(p2.offset, p2again.offset);
    assert.equal((await s.stats()).deadLettered, 2);

    const redrive = await s.post("redrive", {});
    assert.equal(redrive.status, 200);
    assert.deepEqual(redrive.body, { moved: 2, expired: 0, remaining: 0 });
    const back = await s.receive({ max: 10 });
    assert.deepEqual(back.map((m) => [m.body, m.deliveryCount]), [["poison", 1], ["poison-2", 1]]);
    assert.equal((await s.stats()).deadLettered, 0);
  });
});

Deno.test("topics: seek moves the position to an offset or a time and drops in-flight deliveries", async () => {
  const s = await setup();
  await closing(s.api, async () => {
    await s.publish("m0", "m1");
    s.advance(60_000);
    await s.publish("m2", "m3");
    const got = await s.receive({ max: 4 });
    assert.equal(got.length, 4);

    const back = await s.post("seek", { offset: 1 });
    assert.equal(back.status, 200);
    assert.deepEqual(back.body, { position: 1, dropped: 4, requestedOffset: 1, clamped: false });
    const ack = await s.post("ack", { receipts: [got[1].receipt] });
    assert.equal(ack.body.results[0].ok, false, "receipts from before the seek are stale");
    const again = await s.receive({ max: 10 });
    assert.deepEqual(again.map((m) => [m.body, m.deliveryCount]), [
      ["m1", 1],
      ["m2", 1],
      ["m3", 1],
    ]);

    const byTime = await s.post("seek", { time: "2026-02-01T00:00:30Z" });
    assert.equal(byTime.body.position, 2);
    assert.equal(byTime.body.requestedOffset, null);
    assert.equal(byTime.body.clamped, false);
    assert.deepEqual((await s.receive({ max: 10 })).map((m) => m.body), ["m2", "m3"]);

    const forward = await s.post("seek", { offset: 1000 });
    assert.deepEqual(
      forward.body,
      { position: 4, dropped: 2, requestedOffset: 1000, clamped: true },
      "clamped to nextOffset, and the answer says so",
    );
    const past = await s.post("seek", { time: "2026-01-01T00:00:00Z" });
    assert.equal(past.body.position, 0);
    const stats = await s.stats();
    assert.equal(stats.position, 0);
    assert.equal(stats.lag, 4);
    assert.equal(stats.inFlight, 0);
  });
});
