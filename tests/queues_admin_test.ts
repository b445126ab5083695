import assert from "node:assert/strict";
import { startTestApi, type TestApi } from "./support/node.ts";

/** A clock the test moves by hand. */
function manualClock() {
  const clock = { ms: Date.parse("2026-01-01T00:00:00Z"), now: () => clock.ms };
  return clock;
}

// deno-lint-ignore no-explicit-any
type Body = any;

function send(api: TestApi, name: string, bodies: string[], token = api.adminToken) {
  return api.call("POST", `/v1/queues/${name}/messages`, {
    token,
    body: { messages: bodies.map((body) => ({ body })) },
  });
}

function bodiesOf(res: { body: Body }): string[] {
  return res.body.messages.map((m: { body: string }) => m.body);
}

Deno.test("queues: create, get, list, configure, purge, delete", async (t) => {
  const clock = manualClock();
  const api = await startTestApi({ now: clock.now });
  const admin = api.adminToken;
  try {
    const alice = await api.userToken("alice");
    const bob = await api.userToken("bob");

    await t.step("create answers 201, then 200 for the same config, 409 for another", async () => {
      const first = await api.call("PUT", "/v1/queues/jobs", {
        token: alice,
        body: { visibilityTimeoutSeconds: 60 },
      });
      assert.equal(first.status, 201);
      assert.equal(first.body.created, true);
      assert.equal(first.body.owner, "alice");
      assert.equal(first.body.createdAt, new Date(clock.ms).toISOString());
      assert.deepEqual(first.body.config, {
        visibilityTimeoutSeconds: 60,
        maxDeliveries: 5,
        retentionSeconds: 345_600,
        maxLength: 1_000_000,
        overflow: "reject",
        delaySeconds: 0,
        maxMessageBytes: 262_144,
        dedupWindowSeconds: 300,
        access: { restricted: false, senders: [], receivers: [] },
      });
      const again = await api.call("PUT", "/v1/queues/jobs", {
        token: bob,
        body: { visibilityTimeoutSeconds: 60 },
      });
      assert.equal(again.status, 200);
      assert.equal(again.body.created, false);
      assert.equal(again.body.owner, "alice", "the first creator stays the owner");
      const other = await api.call("PUT", "/v1/queues/jobs", { token: alice, body: {} });
      assert.equal(other.status, 409);
      assert.equal(other.headers.get("content-type"), "application/problem+json");
      assert.equal(other.body.code, "already_exists");
      const noBody = await api.call("PUT", "/v1/queues/plain", { token: alice });
      assert.equal(noBody.status, 201);
      assert.equal(noBody.body.config.visibilityTimeoutSeconds, 30);
    });

    await t.step("get shows configuration, owner and counts", async () => {
      await api.call("PUT", "/v1/queues/counted", {
        token: admin,
        body: { maxDeliveries: 1, visibilityTimeoutSeconds: 10 },
      });
      const empty = await api.call("GET", "/v1/queues/counted", { token: bob });
      assert.equal(empty.status, 200);
      assert.equal(empty.body.stats.oldestMessageAgeSeconds, null);
      await send(api, "counted", ["a", "b", "c", "d"]);
      await api.call("POST", "/v1/queues/counted/messages", {
        token: admin,
        body: { messages: [{ body: "later", delaySeconds: 60 }] },
      });
      clock.ms += 7_000;
      const got = await api.call("POST", "/v1/queues/counted/receive", {
        token: admin,
        body: { max: 2 },
      });
      assert.equal(got.body.messages.length, 2);
      const res = await api.call("GET", "/v1/queues/counted", { token: bob });
      assert.equal(res.body.name, "counted");
      assert.equal(res.body.owner, "admin");
      assert.equal(res.body.config.maxDeliveries, 1);
      assert.deepEqual(
        { ...res.body.stats, totals: undefined },
        {
          depth: 2,
          inFlight: 2,
          delayed: 1,
          deadLettered: 0,
          oldestMessageAgeSeconds: 7,
          totals: undefined,
        },
      );
      clock.ms += 10_000; // the deliveries time out: with maxDeliveries 1 they are dead letters
      await api.call("POST", "/v1/queues/counted/receive", { token: admin, body: { max: 10 } });
      const after = (await api.call("GET", "/v1/queues/counted", { token: bob })).body.stats;
      assert.equal(after.deadLettered, 2);
      assert.equal(after.inFlight, 2);
      assert.equal(after.depth, 0);
      assert.deepEqual(after.totals, {
        sent: 5,
        delivered: 4,
        acked: 0,
        deadLettered: 2,
        expired: 0,
        dropped: 0,
        purged: 0,
      });
      const missing = await api.call("GET", "/v1/queues/nope", { token: bob });
      assert.equal(missing.status, 404);
      assert.equal(missing.body.code, "not_found");
    });

    await t.step("list pages through names with a prefix filter", async () => {
      for (const n of ["list-a", "list-b", "list-c", "list-d", "other"]) {
        await api.call("PUT", `/v1/queues/${n}`, { token: bob });
      }
      const page1 = await api.call("GET", "/v1/queues?prefix=list-&limit=3", { token: alice });
      assert.equal(page1.status, 200);
      assert.deepEqual(page1.body.queues.map((q: { name: string }) => q.name), [
        "list-a",
        "list-b",
        "list-c",
      ]);
      assert.equal(page1.body.queues[0].owner, "bob");
      assert.equal(page1.body.next, "list-c");
      const page2 = await api.call("GET", `/v1/queues?prefix=list-&limit=3&after=list-c`, {
        token: alice,
      });
      assert.deepEqual(page2.body.queues.map((q: { name: string }) => q.name), ["list-d"]);
      assert.equal(page2.body.next, null);
      const all = await api.call("GET", "/v1/queues", { token: alice });
      assert.ok(all.body.queues.some((q: { name: string }) => q.name === "other"));
      const bad = await api.call("GET", "/v1/queues?limit=0", { token: alice });
      assert.equal(bad.status, 400);
    });

    await t.step("the owner or an admin changes the configuration; others get 403", async () => {
      const res = await api.call("PATCH", "/v1/queues/jobs", {
        token: alice,
        body: { maxDeliveries: 9, access: { restricted: true, senders: ["bob"] } },
      });
      assert.equal(res.status, 200);
      assert.equal(res.body.config.maxDeliveries, 9);
      assert.equal(res.body.config.visibilityTimeoutSeconds, 60, "other fields unchanged");
      assert.deepEqual(res.body.config.access, {
        restricted: true,
        senders: ["bob"],
        receivers: [],
      });
      const byAdmin = await api.call("PATCH", "/v1/queues/jobs", {
        token: admin,
        body: { access: { restricted: false } },
      });
      assert.equal(byAdmin.status, 200);
      assert.deepEqual(byAdmin.body.config.access.senders, ["bob"]);
      const byBob = await api.call("PATCH", "/v1/queues/jobs", {
        token: bob,
        body: { maxDeliveries: 1 },
      });
      assert.equal(byBob.status, 403);
      assert.match(byBob.body.detail, /owner or an admin/);
      const state = await api.call("GET", "/v1/queues/jobs", { token: alice });
      assert.equal(state.body.config.maxDeliveries, 9);
      // The same config as stored now makes a create idempotent again.
      const recreate = await api.call("PUT", "/v1/queues/jobs", {
        token: alice,
        body: { ...state.body.config },
      });
      assert.equal(recreate.status, 200);
    });

    await t.step("max length with reject refuses the whole batch and stores nothing", async () => {
      await api.call("PUT", "/v1/queues/small", { token: admin, body: { maxLength: 3 } });
      assert.equal((await send(api, "small", ["1", "2"])).status, 201);
      const full = await send(api, "small", ["3", "4"]);
      assert.equal(full.status, 409);
      assert.equal(full.body.code, "queue_full");
      const stats = (await api.call("GET", "/v1/queues/small", { token: admin })).body.stats;
      assert.equal(stats.depth, 2);
      assert.equal((await send(api, "small", ["3"])).status, 201);
    });

    await t.step("max length with dropHead drops the oldest ready messages", async () => {
      await api.call("PUT", "/v1/queues/rolling", {
        token: admin,
        body: { maxLength: 3, overflow: "dropHead" },
      });
      await send(api, "rolling", ["1", "2", "3"]);
      assert.equal((await send(api, "rolling", ["4", "5"])).status, 201);
      const peek = await api.call("GET", "/v1/queues/rolling/messages?limit=10", { token: admin });
      assert.deepEqual(bodiesOf(peek), ["3", "4", "5"]);
      const stats = (await api.call("GET", "/v1/queues/rolling", { token: admin })).body.stats;
      assert.equal(stats.totals.dropped, 2);
    });

    await t.step("peek lists each state without consuming", async () => {
      await api.call("PUT", "/v1/queues/peeked", { token: admin });
      await send(api, "peeked", ["r1", "r2", "r3"]);
      await api.call("POST", "/v1/queues/peeked/messages", {
        token: admin,
        body: { messages: [{ body: "d1", delaySeconds: 30, attributes: { k: "v" } }] },
      });
      await api.call("POST", "/v1/queues/peeked/receive", { token: admin });
      const path = "/v1/queues/peeked/messages";
      assert.deepEqual(bodiesOf(await api.call("GET", path, { token: admin })), ["r2", "r3"]);
      assert.deepEqual(
        bodiesOf(await api.call("GET", `${path}?offset=1&limit=1`, { token: admin })),
        ["r3"],
      );
      const delayed = await api.call("GET", `${path}?state=delayed`, { token: admin });
      assert.equal(delayed.body.messages[0].state, "delayed");
      assert.deepEqual(delayed.body.messages[0].attributes, { k: "v" });
      const inflight = await api.call("GET", `${path}?state=inflight`, { token: admin });
      assert.deepEqual(bodiesOf(inflight), ["r1"]);
      assert.equal(inflight.body.messages[0].deliveryCount, 1);
      assert.equal("receipt" in inflight.body.messages[0], false, "peek hands out no receipt");
      const stats = (await api.call("GET", "/v1/queues/peeked", { token: admin })).body.stats;
      assert.deepEqual([stats.depth, stats.inFlight, stats.delayed], [2, 1, 1], "nothing consumed");
    });

    await t.step(
      "purge drops ready, delayed and in-flight messages but keeps dead letters",
      async () => {
        await api.call("PUT", "/v1/queues/purged", { token: alice, body: { maxDeliveries: 1 } });
        await send(api, "purged", ["dead", "inflight", "ready"], alice);
        await api.call("POST", "/v1/queues/purged/messages", {
          token: alice,
          body: { messages: [{ body: "delayed", delaySeconds: 900 }] },
        });
        const dead = await api.call("POST", "/v1/queues/purged/receive", { token: alice });
        await api.call("POST", "/v1/queues/purged/nack", {
          token: alice,
          body: { receipts: [dead.body.messages[0].receipt] },
        });
        const inflight = await api.call("POST", "/v1/queues/purged/receive", { token: alice });
        assert.equal(inflight.body.messages[0].body, "inflight");

        const refused = await api.call("POST", "/v1/queues/purged/purge", { token: bob });
        assert.equal(refused.status, 403);
        const res = await api.call("POST", "/v1/queues/purged/purge", { token: alice });
        assert.equal(res.status, 200);
        assert.deepEqual(res.body, { purged: 3 });
        const stats = (await api.call("GET", "/v1/queues/purged", { token: alice })).body;
        assert.deepEqual(
          [stats.stats.depth, stats.stats.inFlight, stats.stats.delayed, stats.stats.deadLettered],
          [0, 0, 0, 1],
        );
        assert.equal(stats.config.maxDeliveries, 1, "configuration kept");
        const ack = await api.call("POST", "/v1/queues/purged/ack", {
          token: alice,
          body: { receipts: [inflight.body.messages[0].receipt] },
        });
        assert.equal(ack.body.results[0].ok, false, "a purged delivery cannot be acked");
        const deadPeek = await api.call("GET", "/v1/queues/purged/messages?state=dead", {
          token: alice,
        });
        assert.deepEqual(bodiesOf(deadPeek), ["dead"]);
        const all = await api.call("POST", "/v1/queues/purged/purge", {
          token: admin,
          body: { deadLetters: true },
        });
        assert.deepEqual(all.body, { purged: 1 });
        const keys = await api.local.keys("momd:q:{purged}:*");
        assert.deepEqual(keys, ["momd:q:{purged}:meta"]);
      },
    );

    await t.step("delete removes the queue and every key; only owner or admin", async () => {
      await api.call("PUT", "/v1/queues/doomed", { token: alice });
      await send(api, "doomed", ["x", "y"], alice);
      await api.call("POST", "/v1/queues/doomed/messages", {
        token: alice,
        body: { messages: [{ body: "z", dedupId: "z", delaySeconds: 5 }] },
      });
      await api.call("POST", "/v1/queues/doomed/receive", { token: alice });
      const refused = await api.call("DELETE", "/v1/queues/doomed", { token: bob });
      assert.equal(refused.status, 403);
      assert.equal((await api.call("GET", "/v1/queues/doomed", { token: bob })).status, 200);
      const res = await api.call("DELETE", "/v1/queues/doomed", { token: alice });
      assert.equal(res.status, 204);
      assert.equal((await api.call("GET", "/v1/queues/doomed", { token: alice })).status, 404);
      assert.deepEqual(await api.local.keys("momd:q:{doomed}:*"), []);
      const listed = await api.call("GET", "/v1/queues?prefix=doomed", { token: alice });
      assert.deepEqual(listed.body.queues, []);
      assert.equal((await api.call("DELETE", "/v1/queues/doomed", { token: alice })).status, 404);
      assert.equal((await send(api, "doomed", ["again"], alice)).status, 404);
    });
  } finally {
    await api.close();
  }
});

Deno.test("queues: access control", async (t) => {
  const api = await startTestApi();
  const admin = api.adminToken;
  try {
    const owner = await api.userToken("owner");
    const sender = await api.userToken("sender");
    const receiver = await api.userToken("receiver");
    const stranger = await api.userToken("stranger");
    const q = "/v1/queues/private";
    await api.call("PUT", q, {
      token: owner,
      body: { access: { restricted: true, senders: ["sender"], receivers: ["receiver"] } },
    });

    await t.step("anyone may use an unrestricted queue", async () => {
      await api.call("PUT", "/v1/queues/public", { token: owner });
      assert.equal((await send(api, "public", ["hi"], stranger)).status, 201);
      const got = await api.call("POST", "/v1/queues/public/receive", { token: stranger });
      assert.deepEqual(bodiesOf(got), ["hi"]);
    });

    await t.step("a restricted queue refuses with 403 naming the missing right", async () => {
      const noSend = await send(api, "private", ["x"], receiver);
      assert.equal(noSend.status, 403);
      assert.equal(noSend.body.code, "forbidden");
      assert.match(noSend.body.detail, /'send' right/);
      const noReceive = await api.call("POST", `${q}/receive`, { token: sender });
      assert.equal(noReceive.status, 403);
      assert.match(noReceive.body.detail, /'receive' right/);
      const noPeek = await api.call("GET", `${q}/messages`, { token: stranger });
      assert.equal(noPeek.status, 403);
      assert.match(noPeek.body.detail, /'receive' right/);
      const stats = (await api.call("GET", q, { token: stranger })).body.stats;
      assert.equal(stats.depth, 0, "refused sends stored nothing");
    });

    await t.step("listed users, the owner and admins are allowed", async () => {
      assert.equal((await send(api, "private", ["from sender"], sender)).status, 201);
      assert.equal((await send(api, "private", ["from owner"], owner)).status, 201);
      assert.equal((await send(api, "private", ["from admin"], admin)).status, 201);
      const got = await api.call("POST", `${q}/receive`, { token: receiver, body: { max: 1 } });
      assert.deepEqual(bodiesOf(got), ["from sender"]);
      const ackBySender = await api.call("POST", `${q}/ack`, {
        token: sender,
        body: { receipts: [got.body.messages[0].receipt] },
      });
      assert.equal(ackBySender.status, 403, "acking needs the receive right");
      const ack = await api.call("POST", `${q}/ack`, {
        token: receiver,
        body: { receipts: [got.body.messages[0].receipt] },
      });
      assert.equal(ack.body.results[0].ok, true);
      assert.deepEqual(bodiesOf(await api.call("POST", `${q}/receive`, { token: owner })), [
        "from owner",
      ]);
      assert.deepEqual(bodiesOf(await api.call("POST", `${q}/receive`, { token: admin })), [
        "from admin",
      ]);
    });

    await t.step("only the owner or an admin manages the queue", async () => {
      for (const token of [sender, receiver, stranger]) {
        const attempts = [
          await api.call("PATCH", q, { token, body: { maxDeliveries: 2 } }),
          await api.call("POST", `${q}/purge`, { token }),
          await api.call("POST", `${q}/redrive`, { token }),
          await api.call("DELETE", q, { token }),
        ];
        for (const res of attempts) {
          assert.equal(res.status, 403);
          assert.match(res.body.detail, /missing the 'manage' right on queue 'private'/);
        }
      }
      assert.equal((await api.call("POST", `${q}/redrive`, { token: owner })).status, 200);
      assert.equal((await api.call("POST", `${q}/purge`, { token: admin })).status, 200);
      assert.equal((await api.call("GET", q, { token: owner })).status, 200, "still there");
    });

    await t.step("the access lists are shown to the owner and admins only", async () => {
      const full = { restricted: true, senders: ["sender"], receivers: ["receiver"] };
      for (const token of [owner, admin]) {
        const res = await api.call("GET", q, { token });
        assert.deepEqual(res.body.config.access, full);
      }
      for (const token of [sender, receiver, stranger]) {
        const res = await api.call("GET", q, { token });
        assert.equal(res.status, 200);
        assert.deepEqual(res.body.config.access, { restricted: true }, "no lists");
        assert.equal(res.body.owner, "owner");
      }
      // A create of the same queue by someone else answers the queue the same way.
      const again = await api.call("PUT", q, { token: stranger, body: { access: full } });
      assert.equal(again.status, 200, JSON.stringify(again.body));
      assert.deepEqual(again.body.config.access, { restricted: true });
    });

    await t.step("no token is a 401", async () => {
      assert.equal((await api.call("GET", q)).status, 401);
      assert.equal((await api.call("POST", `${q}/receive`)).status, 401);
    });
  } finally {
    await api.close();
  }
});

Deno.test("queues: bad input is a 4xx problem and changes nothing", async (t) => {
  const api = await startTestApi();
  const token = api.adminToken;
  const depth = async (name: string) =>
    (await api.call("GET", `/v1/queues/${name}`, { token })).body.stats.depth;
  try {
    await api.call("PUT", "/v1/queues/strict", { token, body: { maxMessageBytes: 1024 } });
    await send(api, "strict", ["kept"]);

    const expect400 = (res: { status: number; headers: Headers; body: Body }, what: string) => {
      assert.equal(res.status, 400, `${what}: ${JSON.stringify(res.body)}`);
      assert.equal(res.headers.get("content-type"), "application/problem+json", what);
      assert.equal(res.body.status, 400, what);
    };

    await t.step("unknown fields and out-of-range values in a create", async () => {
      expect400(
        await api.call("PUT", "/v1/queues/fresh", { token, body: { visibility: 10 } }),
        "unknown field",
      );
      expect400(
        await api.call("PUT", "/v1/queues/fresh", { token, body: { maxDeliveries: 0 } }),
        "maxDeliveries 0",
      );
      expect400(
        await api.call("PUT", "/v1/queues/fresh", {
          token,
          body: { access: { restricted: true, senders: ["no way!"] } },
        }),
        "bad username",
      );
      expect400(
        await api.call("PUT", "/v1/queues/fresh", { token, body: { overflow: "dropTail" } }),
        "bad overflow",
      );
      expect400(await api.call("PUT", "/v1/queues/fresh", { token, rawBody: "{nope" }), "bad JSON");
      assert.equal((await api.call("GET", "/v1/queues/fresh", { token })).status, 404);
    });

    await t.step("bad queue names", async () => {
      for (const name of ["bad%20name!", "a.b", "x".repeat(129)]) {
        expect400(await api.call("PUT", `/v1/queues/${name}`, { token }), name);
      }
      expect400(await api.call("GET", "/v1/queues/bad%20name!", { token }), "get bad name");
      const list = await api.call("GET", "/v1/queues", { token });
      assert.deepEqual(list.body.queues.map((q: { name: string }) => q.name), ["strict"]);
    });

    await t.step("bad sends", async () => {
      const path = "/v1/queues/strict/messages";
      const tooMany = Array.from({ length: 101 }, (_, i) => ({ body: String(i) }));
      expect400(await api.call("POST", path, { token, body: { messages: tooMany } }), "101");
      expect400(await api.call("POST", path, { token, body: { messages: [] } }), "empty batch");
      expect400(
        await api.call("POST", path, { token, body: { messages: [{ body: "x", color: "red" }] } }),
        "unknown message field",
      );
      expect400(
        await api.call("POST", path, { token, body: { messages: [{ body: 42 }] } }),
        "non-string body",
      );
      expect400(
        await api.call("POST", path, {
          token,
          body: { messages: [{ body: "x", delaySeconds: 901 }] },
        }),
        "delay above the limit",
      );
      const big = await api.call("POST", path, {
        token,
        body: { messages: [{ body: "small" }, { body: "é".repeat(600) }] },
      });
      assert.equal(big.status, 413);
      assert.equal(big.body.code, "too_large");
      assert.match(big.body.detail, /message 2 has 1200 bytes/);
      const huge = await api.call("POST", path, {
        token,
        body: { messages: [{ body: "x".repeat(1_048_577) }] },
      });
      assert.equal(huge.status, 413);
      assert.equal(await depth("strict"), 1, "nothing of a refused batch is stored");
    });

    await t.step("bad receives and receipts", async () => {
      const q = "/v1/queues/strict";
      expect400(await api.call("POST", `${q}/receive`, { token, body: { max: 101 } }), "max");
      expect400(
        await api.call("POST", `${q}/receive`, { token, body: { waitSeconds: 21 } }),
        "waitSeconds",
      );
      expect400(
        await api.call("POST", `${q}/ack`, { token, body: { receipts: ["garbage!"] } }),
        "garbage receipt",
      );
      expect400(
        await api.call("POST", `${q}/ack`, { token, body: { receipts: [btoa("hello.world")] } }),
        "well-encoded nonsense",
      );
      expect400(await api.call("POST", `${q}/ack`, { token, body: { receipts: [] } }), "none");
      expect400(
        await api.call("POST", `${q}/visibility`, {
          token,
          body: { receipts: ["x"], visibilitySeconds: 10 },
        }),
        "visibility with a bad receipt",
      );
      expect400(
        await api.call("GET", `${q}/messages?state=gone`, { token }),
        "unknown peek state",
      );
      expect400(await api.call("GET", `${q}/messages?color=red`, { token }), "unknown query");
      assert.equal(await depth("strict"), 1, "nothing consumed");
    });

    await t.step("a valid receipt for a queue that does not exist is a 404", async () => {
      await api.call("PUT", "/v1/queues/source", { token });
      await send(api, "source", ["m"]);
      const got = await api.call("POST", "/v1/queues/source/receive", { token });
      const res = await api.call("POST", "/v1/queues/nothing/ack", {
        token,
        body: { receipts: [got.body.messages[0].receipt] },
      });
      assert.equal(res.status, 404);
      const wrongQueue = await api.call("POST", "/v1/queues/strict/ack", {
        token,
        body: { receipts: [got.body.messages[0].receipt] },
      });
      assert.deepEqual(wrongQueue.body.results[0].ok, false, "a receipt works on its own queue");
    });
  } finally {
    await api.close();
  }
});

Deno.test("queues: the OpenAPI document describes the queue routes", async () => {
  const api = await startTestApi();
  try {
    const doc = (await api.call("GET", "/openapi.json")).body;
    for (
      const [path, method] of [
        ["/v1/queues", "get"],
        ["/v1/queues/{name}", "put"],
        ["/v1/queues/{name}", "patch"],
        ["/v1/queues/{name}", "get"],
        ["/v1/queues/{name}", "delete"],
        ["/v1/queues/{name}/messages", "post"],
        ["/v1/queues/{name}/messages", "get"],
        ["/v1/queues/{name}/receive", "post"],
        ["/v1/queues/{name}/ack", "post"],
        ["/v1/queues/{name}/nack", "post"],
        ["/v1/queues/{name}/visibility", "post"],
        ["/v1/queues/{name}/purge", "post"],
        ["/v1/queues/{name}/redrive", "post"],
      ]
    ) {
      assert.ok(doc.paths[path]?.[method], `${method} ${path} is documented`);
    }
    const config = doc.components.schemas.QueueConfigInput;
    assert.match(config.properties.visibilityTimeoutSeconds.description, /default 30/);
    assert.equal(doc.components.schemas.SendRequest.properties.messages.maxItems, 100);
  } finally {
    await api.close();
  }
});
