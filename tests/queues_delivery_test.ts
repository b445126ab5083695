import assert from "node:assert/strict";
import { startTestApi, type TestApi } from "./support/node.ts";

/** A clock the test moves by hand, so timeouts, delays and TTLs need no sleeping. */
function manualClock() {
  const clock = { ms: Date.parse("2026-01-01T00:00:00Z"), now: () => clock.ms };
  return clock;
}

/** Shorthands for one queue over the test API. */
function queue(api: TestApi, name: string, token = api.adminToken) {
  const path = `/v1/queues/${name}`;
  // deno-lint-ignore no-explicit-any
  const post = (sub: string, body?: any, as = token) =>
    api.call("POST", `${path}/${sub}`, { token: as, body });
  return {
    path,
    // deno-lint-ignore no-explicit-any
    create: (config: any = {}) => api.call("PUT", path, { token, body: config }),
    get: () => api.call("GET", path, { token }),
    send: (...bodies: (string | Record<string, unknown>)[]) =>
      post("messages", {
        messages: bodies.map((b) => typeof b === "string" ? { body: b } : b),
      }),
    // deno-lint-ignore no-explicit-any
    receive: (opts: any = {}, as = token) => post("receive", opts, as),
    ack: (receipts: string[]) => post("ack", { receipts }),
    nack: (receipts: string[], delaySeconds?: number) => post("nack", { receipts, delaySeconds }),
    visibility: (receipts: string[], visibilitySeconds: number) =>
      post("visibility", { receipts, visibilitySeconds }),
    redrive: (max?: number) => post("redrive", max === undefined ? {} : { max }),
    peek: (state: string) => api.call("GET", `${path}/messages?state=${state}`, { token }),
  };
}

Deno.test("queues: delivery, acks and redelivery", async (t) => {
  const clock = manualClock();
  const api = await startTestApi({ now: clock.now });
  try {
    await t.step("first deliveries come in send order, with their attributes", async () => {
      const q = queue(api, "order");
      assert.equal((await q.create()).status, 201);
      const first = await q.send(
        "a",
        { body: "b", attributes: { kind: "x", "trace-id": "7" } },
        "c",
      );
      assert.equal(first.status, 201);
      assert.equal(first.body.messages.length, 3);
      assert.ok(first.body.messages.every((m: { duplicate: boolean }) => m.duplicate === false));
      await q.send("d", "e");
      const got = await q.receive({ max: 10 });
      assert.equal(got.status, 200);
      assert.deepEqual(got.body.messages.map((m: { body: string }) => m.body), [
        "a",
        "b",
        "c",
        "d",
        "e",
      ]);
      const b = got.body.messages[1];
      assert.deepEqual(b.attributes, { kind: "x", "trace-id": "7" });
      assert.equal(b.id, first.body.messages[1].id);
      assert.equal(b.deliveryCount, 1);
      assert.equal(b.enqueuedAt, new Date(clock.ms).toISOString());
      assert.equal(b.visibleAt, new Date(clock.ms + 30_000).toISOString());
      assert.equal(typeof b.receipt, "string");
      const ids = got.body.messages.map((m: { id: string }) => m.id);
      assert.deepEqual([...ids].sort(), ids, "ids sort in send order");
    });

    await t.step("bodies and attributes survive unchanged (unicode, JSON, slashes)", async () => {
      const q = queue(api, "fidelity");
      await q.create();
      const body = '{"a":"b/c\\\\d"} — ünïcödé ✓ 🚀\n\ttab';
      const sent = await q.send({ body, attributes: { lang: "ü/ö", plain: "" } }, { body: "" });
      assert.equal(sent.status, 201);
      const got = await q.receive({ max: 2 });
      assert.equal(got.body.messages[0].body, body);
      assert.deepEqual(got.body.messages[0].attributes, { lang: "ü/ö", plain: "" });
      assert.equal(got.body.messages[1].body, "");
      assert.deepEqual(got.body.messages[1].attributes, {});
    });

    await t.step("an unacked message is delivered again after its visibility timeout", async () => {
      const q = queue(api, "redeliver");
      await q.create();
      await q.send("only");
      const first = await q.receive({ visibilitySeconds: 5 });
      assert.equal(first.body.messages[0].deliveryCount, 1);
      assert.equal((await q.receive()).body.messages.length, 0, "invisible while in flight");
      clock.ms += 5_000;
      const second = await q.receive();
      assert.equal(second.body.messages.length, 1);
      assert.equal(second.body.messages[0].id, first.body.messages[0].id);
      assert.equal(second.body.messages[0].deliveryCount, 2);
      assert.notEqual(second.body.messages[0].receipt, first.body.messages[0].receipt);
    });

    await t.step("a stale receipt is refused and the redelivered message survives", async () => {
      const q = queue(api, "stale");
      await q.create();
      await q.send("m");
      const first = (await q.receive({ visibilitySeconds: 5 })).body.messages[0];
      clock.ms += 6_000;
      const second = (await q.receive()).body.messages[0];
      assert.equal(second.id, first.id);
      const stale = await q.ack([first.receipt]);
      assert.equal(stale.status, 200);
      assert.deepEqual(stale.body.results, [
        { receipt: first.receipt, ok: false, error: "stale_receipt" },
      ]);
      const inflight = await q.peek("inflight");
      assert.deepEqual(inflight.body.messages.map((m: { id: string }) => m.id), [first.id]);
      const fresh = await q.ack([second.receipt]);
      assert.deepEqual(fresh.body.results, [{ receipt: second.receipt, ok: true }]);
      const again = await q.ack([second.receipt]);
      assert.equal(again.body.results[0].ok, false, "an acked receipt is spent");
      const stats = (await q.get()).body.stats;
      assert.equal(stats.depth + stats.inFlight + stats.delayed, 0);
      assert.equal(stats.totals.acked, 1);
    });

    await t.step("a receipt past its visibility deadline is stale", async () => {
      const q = queue(api, "late");
      await q.create();
      await q.send("m");
      const m = (await q.receive({ visibilitySeconds: 5 })).body.messages[0];
      clock.ms += 5_000;
      assert.equal((await q.ack([m.receipt])).body.results[0].ok, false);
      assert.equal((await q.receive()).body.messages[0].id, m.id, "still delivered again");
    });

    await t.step("a batch ack answers per receipt", async () => {
      const q = queue(api, "batch-ack");
      await q.create();
      await q.send("x", "y");
      const [x, y] = (await q.receive({ max: 2 })).body.messages;
      const res = await q.ack([x.receipt, x.receipt, y.receipt]);
      assert.deepEqual(res.body.results.map((r: { ok: boolean }) => r.ok), [true, false, true]);
      assert.equal((await q.get()).body.stats.inFlight, 0);
    });

    await t.step(
      "after max deliveries a message is dead-lettered; redrive brings it back",
      async () => {
        const q = queue(api, "dlq");
        await q.create({ maxDeliveries: 2, visibilityTimeoutSeconds: 5 });
        await q.send("poison", "fine");
        for (let i = 1; i <= 2; i++) {
          const got = await q.receive({ max: 2 });
          const poison = got.body.messages.find((m: { body: string }) => m.body === "poison");
          assert.equal(poison.deliveryCount, i);
          const fine = got.body.messages.find((m: { body: string }) => m.body === "fine");
          if (fine) await q.ack([fine.receipt]);
          clock.ms += 5_000;
        }
        assert.equal((await q.receive()).body.messages.length, 0, "not delivered a third time");
        const stats = (await q.get()).body.stats;
        assert.equal(stats.deadLettered, 1);
        assert.equal(stats.depth, 0);
        assert.equal(stats.totals.deadLettered, 1);
        const dead = await q.peek("dead");
        assert.deepEqual(dead.body.messages.map((m: { body: string }) => m.body), ["poison"]);
        assert.equal(dead.body.messages[0].deliveryCount, 2);

        const redriven = await q.redrive();
        assert.equal(redriven.status, 200);
        assert.deepEqual(redriven.body, { moved: 1, expired: 0, remaining: 0 });
        const back = (await q.receive()).body.messages[0];
        assert.equal(back.body, "poison");
        assert.equal(back.deliveryCount, 1, "delivery count reset");
        assert.equal((await q.get()).body.stats.deadLettered, 0);
      },
    );

    await t.step("a nack after max deliveries dead-letters at once", async () => {
      const q = queue(api, "nack-dlq");
      await q.create({ maxDeliveries: 1 });
      await q.send("once");
      const m = (await q.receive()).body.messages[0];
      assert.equal((await q.nack([m.receipt])).body.results[0].ok, true);
      assert.equal((await q.receive()).body.messages.length, 0);
      assert.equal((await q.get()).body.stats.deadLettered, 1);
    });

    await t.step("a delayed message is delivered only once its delay ends", async () => {
      const q = queue(api, "delay");
      await q.create({ delaySeconds: 20 });
      await q.send({ body: "later", delaySeconds: 10 }, "queue-default", {
        body: "now",
        delaySeconds: 0,
      });
      assert.deepEqual(
        (await q.receive({ max: 10 })).body.messages.map((m: { body: string }) => m.body),
        ["now"],
      );
      const stats = (await q.get()).body.stats;
      assert.equal(stats.delayed, 2);
      const delayed = await q.peek("delayed");
      assert.equal(delayed.body.messages[0].body, "later");
      assert.equal(delayed.body.messages[0].visibleAt, new Date(clock.ms + 10_000).toISOString());
      clock.ms += 10_000;
      assert.deepEqual(
        (await q.receive({ max: 10 })).body.messages.map((m: { body: string }) => m.body),
        ["later"],
      );
      clock.ms += 10_000;
      assert.deepEqual(
        (await q.receive({ max: 10 })).body.messages.map((m: { body: string }) => m.body),
        ["queue-default"],
      );
    });

    await t.step("a message past its TTL is never delivered", async () => {
      const q = queue(api, "ttl");
      await q.create({ retentionSeconds: 60 });
      await q.send({ body: "short", ttlSeconds: 5 }, { body: "capped", ttlSeconds: 3600 }, "kept");
      clock.ms += 5_000;
      const got = await q.receive({ max: 10, visibilitySeconds: 1 });
      assert.deepEqual(got.body.messages.map((m: { body: string }) => m.body), ["capped", "kept"]);
      assert.equal(
        got.body.messages[0].expiresAt,
        new Date(clock.ms - 5_000 + 60_000).toISOString(),
        "a TTL never exceeds the queue's retention",
      );
      clock.ms += 60_000; // the in-flight ones expire too
      assert.equal((await q.receive({ max: 10 })).body.messages.length, 0);
      const stats = (await q.get()).body.stats;
      assert.equal(stats.totals.expired, 3);
      assert.equal(stats.depth + stats.inFlight + stats.delayed, 0);
    });

    await t.step("the same dedupId within the window is stored once", async () => {
      const q = queue(api, "dedup");
      await q.create({ dedupWindowSeconds: 60 });
      const a = await q.send({ body: "one", dedupId: "order-1" }, {
        body: "two",
        dedupId: "order-2",
      });
      const b = await q.send({ body: "one again", dedupId: "order-1" }, {
        body: "twice in a batch",
        dedupId: "order-3",
      }, { body: "twice in a batch", dedupId: "order-3" });
      assert.deepEqual(b.body.messages[0], { id: a.body.messages[0].id, duplicate: true });
      assert.equal(b.body.messages[1].duplicate, false);
      assert.deepEqual(b.body.messages[2], { id: b.body.messages[1].id, duplicate: true });
      assert.equal((await q.get()).body.stats.depth, 3);
      // Consumed or not, the window holds; after it, the id is new again.
      const all = (await q.receive({ max: 10 })).body.messages;
      await q.ack(all.map((m: { receipt: string }) => m.receipt));
      const c = await q.send({ body: "one more", dedupId: "order-1" });
      assert.deepEqual(c.body.messages[0], { id: a.body.messages[0].id, duplicate: true });
      clock.ms += 60_000;
      const d = await q.send({ body: "one, later", dedupId: "order-1" });
      assert.equal(d.body.messages[0].duplicate, false);
      assert.notEqual(d.body.messages[0].id, a.body.messages[0].id);
    });

    await t.step("a nack releases at once to the front, or after a delay", async () => {
      const q = queue(api, "nack");
      await q.create();
      await q.send("first", "second");
      const first = (await q.receive()).body.messages[0];
      assert.equal(first.body, "first");
      assert.deepEqual((await q.nack([first.receipt])).body.results, [
        { receipt: first.receipt, ok: true },
      ]);
      const again = (await q.receive()).body.messages[0];
      assert.equal(again.body, "first", "a released message is first in line");
      assert.equal(again.deliveryCount, 2);

      assert.equal((await q.nack([again.receipt], 30)).body.results[0].ok, true);
      assert.equal((await q.nack([again.receipt])).body.results[0].ok, false, "spent receipt");
      const second = (await q.receive({ max: 10 })).body.messages;
      assert.deepEqual(second.map((m: { body: string }) => m.body), ["second"]);
      await q.ack([second[0].receipt]);
      assert.equal((await q.get()).body.stats.delayed, 1);
      clock.ms += 30_000;
      const later = (await q.receive()).body.messages[0];
      assert.equal(later.body, "first");
      assert.equal(later.deliveryCount, 3);
    });

    await t.step("a visibility change moves the deadline of the current attempt", async () => {
      const q = queue(api, "visibility");
      await q.create({ visibilityTimeoutSeconds: 5 });
      await q.send("slow");
      const m = (await q.receive()).body.messages[0];
      const res = await q.visibility([m.receipt], 60);
      assert.deepEqual(res.body.results, [{ receipt: m.receipt, ok: true }]);
      clock.ms += 30_000;
      assert.equal((await q.receive()).body.messages.length, 0, "still invisible");
      assert.equal((await q.ack([m.receipt])).body.results[0].ok, true);

      await q.send("release");
      const r = (await q.receive()).body.messages[0];
      await q.visibility([r.receipt], 0);
      const back = (await q.receive()).body.messages[0];
      assert.equal(back.id, r.id);
      assert.equal(back.deliveryCount, 2);
    });
  } finally {
    await api.close();
  }
});

Deno.test("queues: long polling", async (t) => {
  const api = await startTestApi(); // the wall clock: these steps wait for real
  try {
    const q = queue(api, "poll");
    await q.create();

    await t.step("a long poll returns as soon as a message is sent", async () => {
      const started = Date.now();
      const pending = q.receive({ waitSeconds: 10 });
      await new Promise((r) => setTimeout(r, 100));
      await q.send("wake up");
      const got = await pending;
      assert.equal(got.status, 200);
      assert.deepEqual(got.body.messages.map((m: { body: string }) => m.body), ["wake up"]);
      assert.ok(Date.now() - started < 10_000, "returned before the wait ended");
      await q.ack([got.body.messages[0].receipt]);
    });

    await t.step("a long poll wakes when a delayed message comes due", async () => {
      await q.send({ body: "soon", delaySeconds: 1 });
      const started = Date.now();
      const got = await q.receive({ waitSeconds: 10 });
      assert.deepEqual(got.body.messages.map((m: { body: string }) => m.body), ["soon"]);
      assert.ok(Date.now() - started < 10_000, "returned before the wait ended");
      await q.ack([got.body.messages[0].receipt]);
    });

    await t.step("a long poll wakes when an unacked delivery times out", async () => {
      await q.send("retry me");
      const first = (await q.receive({ visibilitySeconds: 1 })).body.messages[0];
      const started = Date.now();
      const got = await q.receive({ waitSeconds: 10 });
      assert.equal(got.body.messages[0]?.id, first.id);
      assert.equal(got.body.messages[0].deliveryCount, 2);
      assert.ok(Date.now() - started < 10_000, "returned before the wait ended");
      await q.ack([got.body.messages[0].receipt]);
    });

    await t.step(
      "of several waiting polls, one gets the message; the others keep waiting",
      async () => {
        const polls = [1, 2, 3].map(() => q.receive({ waitSeconds: 1 }));
        await new Promise((r) => setTimeout(r, 100));
        await q.send("just one");
        const results = await Promise.all(polls);
        const counts = results.map((r) => r.body.messages.length).sort();
        assert.deepEqual(counts, [0, 0, 1]);
        const winner = results.find((r) => r.body.messages.length === 1)!;
        await q.ack([winner.body.messages[0].receipt]);
      },
    );

    await t.step(
      "a long poll with nothing to deliver returns empty when the wait ends",
      async () => {
        const got = await q.receive({ waitSeconds: 0.2 });
        assert.equal(got.status, 200);
        assert.deepEqual(got.body.messages, []);
      },
    );

    await t.step("a long poll stops when the client goes away", async () => {
      const stop = new AbortController();
      const started = Date.now();
      const res = Promise.resolve(api.app.request(`${q.path}/receive`, {
        method: "POST",
        headers: { authorization: `Bearer ${api.adminToken}`, "content-type": "application/json" },
        body: JSON.stringify({ waitSeconds: 10 }),
        signal: stop.signal,
      }));
      await new Promise((r) => setTimeout(r, 100));
      stop.abort();
      const answer = await res.then((r: Response) => r.json(), () => null);
      assert.ok(Date.now() - started < 10_000, "stopped before the wait ended");
      if (answer) assert.deepEqual(answer.messages, []);
      await q.send("for someone else");
      const stats = (await q.get()).body.stats;
      assert.equal(stats.depth, 1, "the abandoned poll took nothing");
      assert.equal(stats.inFlight, 0);
    });
  } finally {
    await api.close();
  }
});
