import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { type ApiDeps, createApp } from "../src/api/app.ts";
import { registerRequestRoutes } from "../src/api/routes/requests.ts";
import { queueKeys } from "../src/broker/keys.ts";
import { Notifier } from "../src/broker/notifier.ts";
import { QueueService } from "../src/broker/queues.ts";
import { decodeTaskId, encodeTaskId, RequestService } from "../src/broker/requests.ts";
import { Store } from "../src/broker/store.ts";
import { TopicService } from "../src/broker/topics.ts";
import { localOnlySink, type ReplicationRecord } from "../src/replication/record.ts";
import { startTestApi, type TestApiOptions } from "./support/node.ts";
import { startRedis } from "./support/services.ts";
import { dumpEntity } from "./support/state.ts";

// deno-lint-ignore no-explicit-any
type Reply = { status: number; body: any };

/**
 * The test API plus the request/reply routes, over the same store and users, with one notifier
 * shared by queues and requests (as a node wires them). Once createApp registers the routes
 * itself, this only builds the same app again.
 */
async function startRequestApi(opts: TestApiOptions = {}) {
  const api = await startTestApi(opts);
  const notifier = new Notifier();
  const requests = new RequestService(api.store, notifier);
  const deps: ApiDeps & { requests: RequestService } = {
    config: {
      maxBodyBytes: 2 * 1024 * 1024,
      trustedProxies: [],
      loginFailuresPerMinute: 1000,
      nodeId: "test",
      rateLimitPerSecond: 0,
    },
    users: api.users,
    tokens: api.tokens,
    limiter: api.limiter,
    queues: new QueueService(api.store, notifier),
    topics: new TopicService(api.store, notifier),
    requests,
    readiness: () => Promise.resolve({}),
  };
  const app = createApp(deps);
  if (!app.routes.some((r) => r.path === "/v1/tasks/:taskId")) registerRequestRoutes(app, deps);
  async function call(
    method: string,
    path: string,
    o: { token?: string; body?: unknown } = {},
  ): Promise<Reply> {
    const headers: Record<string, string> = {};
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    if (o.body !== undefined) headers["content-type"] = "application/json";
    const body = o.body === undefined ? undefined : JSON.stringify(o.body);
    const res = await app.request(path, { method, headers, body });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }
  return { ...api, app, requests, notifier, call };
}

type RequestApi = Awaited<ReturnType<typeof startRequestApi>>;

function manualClock() {
  const clock = { ms: Date.parse("2026-01-01T00:00:00Z"), now: () => clock.ms };
  return clock;
}

/** Shorthands over one service queue. */
function service(api: RequestApi, name: string) {
  const path = `/v1/queues/${name}`;
  return {
    // deno-lint-ignore no-explicit-any
    create: (config: any = {}, token = api.adminToken) =>
      api.call("PUT", path, { token, body: config }),
    // deno-lint-ignore no-explicit-any
    request: (token: string, body: any) => api.call("POST", `${path}/requests`, { token, body }),
    // deno-lint-ignore no-explicit-any
    receive: (token: string, opts: any = {}) =>
      api.call("POST", `${path}/receive`, { token, body: opts }),
    ack: (token: string, receipts: string[]) =>
      api.call("POST", `${path}/ack`, { token, body: { receipts } }),
    nack: (token: string, receipts: string[]) =>
      api.call("POST", `${path}/nack`, { token, body: { receipts } }),
    get: () => api.call("GET", path, { token: api.adminToken }),
  };
}

function task(api: RequestApi, token: string, taskId: string, waitSeconds?: number) {
  const q = waitSeconds === undefined ? "" : `?waitSeconds=${waitSeconds}`;
  return api.call("GET", `/v1/tasks/${taskId}${q}`, { token });
}

// deno-lint-ignore no-explicit-any
function reply(api: RequestApi, token: string, taskId: string, body: any) {
  return api.call("POST", `/v1/tasks/${taskId}/reply`, { token, body });
}

Deno.test("requests: task ids name their queue and nothing else decodes", () => {
  const id = "01JGZ6D8Z3P9RFWFSZW4CBT7ZN";
  const taskId = encodeTaskId("sum-service_2", id);
  assert.match(taskId, /^[A-Za-z0-9_-]+$/);
  assert.deepEqual(decodeTaskId(taskId), { queue: "sum-service_2", messageId: id });
  for (
    const bad of [
      "",
      "not base64!",
      btoa("noDot"),
      encodeTaskId("bad name", id).replace(/=+$/, ""),
      encodeTaskId("q", "lowercase-is-not-a-ulid0000"),
      `${taskId}=`,
      "x".repeat(400),
    ]
  ) {
    assert.equal(decodeTaskId(bad), null, bad);
  }
});

Deno.test("requests: request, work, reply, read", async (t) => {
  const clock = manualClock();
  const api = await startRequestApi({ now: clock.now });
  try {
    const alice = await api.userToken("alice");
    const worker = await api.userToken("worker");
    const sum = service(api, "sum");
    assert.equal((await sum.create()).status, 201);

    await t.step("a request without waiting is 202 pending, with the deadline", async () => {
      const res = await sum.request(alice, { body: '{"a":2,"b":3}', timeoutSeconds: 30 });
      assert.equal(res.status, 202);
      assert.equal(res.body.status, "pending");
      assert.equal(res.body.deadline, new Date(clock.ms + 30_000).toISOString());
      assert.equal(decodeTaskId(res.body.taskId)?.queue, "sum");
      const read = await task(api, alice, res.body.taskId);
      assert.equal(read.status, 200);
      assert.deepEqual(read.body, {
        taskId: res.body.taskId,
        status: "pending",
        deadline: res.body.deadline,
      });
    });

    await t.step("a worker sees the reserved attributes; the task is in progress", async () => {
      const got = await sum.receive(worker);
      assert.equal(got.status, 200);
      const m = got.body.messages[0];
      const taskId = m.attributes["momd-task-id"];
      assert.equal(decodeTaskId(taskId)?.messageId, m.id);
      assert.equal(m.attributes["momd-reply-to"], `/v1/tasks/${taskId}/reply`);
      assert.equal(
        m.attributes["momd-deadline"],
        m.expiresAt,
        "the message expires at the deadline",
      );
      assert.equal(m.body, '{"a":2,"b":3}');
      assert.equal((await task(api, alice, taskId)).body.status, "in_progress");

      clock.ms += 1_000;
      const replied = await reply(api, worker, taskId, { result: "5" });
      assert.equal(replied.status, 200);
      assert.deepEqual(replied.body, {
        taskId,
        status: "completed",
        completedAt: new Date(clock.ms).toISOString(),
      });
      assert.equal((await sum.ack(worker, [m.receipt])).body.results[0].ok, true);

      for (let i = 0; i < 2; i++) {
        const read = await task(api, alice, taskId);
        assert.equal(read.status, 200, "readable more than once");
        assert.equal(read.body.status, "completed");
        assert.equal(read.body.result, "5");
        assert.equal(read.body.completedAt, new Date(clock.ms).toISOString());
      }
      const admin = await task(api, api.adminToken, taskId);
      assert.equal(admin.body.result, "5", "an admin may read it");
      const other = await task(api, worker, taskId);
      assert.equal(other.status, 404, "anyone else: unknown");
      assert.equal(other.body.code, "not_found");
      assert.equal(JSON.stringify(other.body).includes('"5"'), false);

      const again = await reply(api, worker, taskId, { result: "6" });
      assert.equal(again.status, 409, "a second reply is refused");
      assert.match(again.body.detail, /already has a reply/);
      assert.equal((await task(api, alice, taskId)).body.result, "5");
    });

    await t.step("an error reply makes the task failed", async () => {
      const req = await sum.request(alice, { body: "oops" });
      const m = (await sum.receive(worker)).body.messages[0];
      const res = await reply(api, worker, req.body.taskId, { error: "not a pair of numbers" });
      assert.equal(res.body.status, "failed");
      await sum.ack(worker, [m.receipt]);
      const read = await task(api, alice, req.body.taskId);
      assert.equal(read.body.status, "failed");
      assert.equal(read.body.error, "not a pair of numbers");
      assert.equal(read.body.result, undefined);
    });

    await t.step("a reply is exactly one of result and error, and it may be empty", async () => {
      const req = await sum.request(alice, { body: "x" });
      const id = req.body.taskId;
      assert.equal((await reply(api, worker, id, {})).status, 400);
      assert.equal((await reply(api, worker, id, { result: "a", error: "b" })).status, 400);
      assert.equal((await reply(api, worker, id, { result: "a", extra: 1 })).status, 400);
      assert.equal((await reply(api, worker, id, { result: "" })).status, 200);
      const read = await task(api, alice, id);
      assert.equal(read.body.status, "completed");
      assert.equal(read.body.result, "");
      const m = (await sum.receive(worker)).body.messages[0];
      assert.equal((await sum.ack(worker, [m.receipt])).body.results[0].ok, true);
    });

    await t.step("a request waiting for its reply gets it as 200", async () => {
      const working = (async () => {
        const m = (await sum.receive(worker, { waitSeconds: 10 })).body.messages[0];
        await reply(api, worker, m.attributes["momd-task-id"], { result: `done:${m.body}` });
        await sum.ack(worker, [m.receipt]);
      })();
      const res = await sum.request(alice, { body: "job", waitSeconds: 10 });
      await working;
      assert.equal(res.status, 200);
      assert.equal(res.body.status, "completed");
      assert.equal(res.body.result, "done:job");
    });

    await t.step("a long poll on a task returns when the reply comes", async () => {
      const req = await sum.request(alice, { body: "later" });
      const waiting = task(api, alice, req.body.taskId, 10);
      const m = (await sum.receive(worker)).body.messages[0];
      await reply(api, worker, req.body.taskId, { result: "now" });
      const res = await waiting;
      assert.equal(res.body.status, "completed");
      assert.equal(res.body.result, "now");
      await sum.ack(worker, [m.receipt]);
    });

    await t.step("a long poll with nothing happening ends with the task as it is", async () => {
      const req = await sum.request(alice, { body: "idle" });
      const res = await task(api, alice, req.body.taskId, 0.3);
      assert.equal(res.status, 200);
      assert.equal(res.body.status, "pending");
      const m = (await sum.receive(worker)).body.messages[0];
      await reply(api, worker, req.body.taskId, { result: "ok" });
      await sum.ack(worker, [m.receipt]);
    });
  } finally {
    await api.close();
  }
});

Deno.test("requests: deadlines, redelivery and derived failures", async (t) => {
  const clock = manualClock();
  const api = await startRequestApi({ now: clock.now });
  try {
    const alice = await api.userToken("alice");
    const worker = await api.userToken("worker");
    const q = service(api, "svc");
    await q.create({ visibilityTimeoutSeconds: 5, maxDeliveries: 2 });

    await t.step("a reply after the deadline is refused; the task is expired", async () => {
      const req = await q.request(alice, { body: "slow", timeoutSeconds: 10 });
      const m = (await q.receive(worker, { visibilitySeconds: 60 })).body.messages[0];
      clock.ms += 10_000;
      const late = await reply(api, worker, req.body.taskId, { result: "too late" });
      assert.equal(late.status, 409);
      assert.equal(late.body.code, "conflict");
      assert.match(late.body.detail, /deadline .* has passed/);
      assert.equal((await q.ack(worker, [m.receipt])).body.results[0].ok, true);
      const read = await task(api, alice, req.body.taskId);
      assert.equal(read.status, 200);
      assert.equal(read.body.status, "expired");
      assert.equal(read.body.result, undefined);
    });

    await t.step("a request that expires in the queue is expired, never delivered", async () => {
      const req = await q.request(alice, { body: "nobody home", timeoutSeconds: 3 });
      clock.ms += 3_000;
      assert.equal((await q.receive(worker)).body.messages.length, 0);
      assert.equal((await task(api, alice, req.body.taskId)).body.status, "expired");
      const res = await reply(api, worker, req.body.taskId, { result: "x" });
      assert.equal(res.status, 409);
    });

    await t.step("a result is kept until the deadline only", async () => {
      const req = await q.request(alice, { body: "short", timeoutSeconds: 20 });
      const m = (await q.receive(worker)).body.messages[0];
      await reply(api, worker, req.body.taskId, { result: "r" });
      await q.ack(worker, [m.receipt]);
      clock.ms += 19_999;
      assert.equal((await task(api, alice, req.body.taskId)).body.result, "r");
      clock.ms += 1;
      const read = await task(api, alice, req.body.taskId);
      assert.equal(read.body.status, "expired");
      assert.equal(read.body.result, undefined);
    });

    await t.step(
      "a worker crash before the ack means redelivery; the late reply is refused",
      async () => {
        const req = await q.request(alice, { body: "crashy" });
        const first = (await q.receive(worker)).body.messages[0]; // this worker dies
        clock.ms += 5_000;
        assert.equal((await task(api, alice, req.body.taskId)).body.status, "pending");
        const second = (await q.receive(worker)).body.messages[0];
        assert.equal(second.id, first.id);
        assert.equal(second.deliveryCount, 2);
        assert.equal(second.attributes["momd-task-id"], req.body.taskId);
        assert.equal((await reply(api, worker, req.body.taskId, { result: "B" })).status, 200);
        assert.equal((await q.ack(worker, [second.receipt])).body.results[0].ok, true);
        // The first worker comes back to life and answers too: refused, harmless.
        const dup = await reply(api, worker, req.body.taskId, { result: "A" });
        assert.equal(dup.status, 409);
        assert.equal((await q.ack(worker, [first.receipt])).body.results[0].ok, false);
        assert.equal((await task(api, alice, req.body.taskId)).body.result, "B");
      },
    );

    await t.step("a request dead-lettered without a reply is failed, with the reason", async () => {
      const req = await q.request(alice, { body: "poison" });
      for (let i = 0; i < 2; i++) {
        const m = (await q.receive(worker)).body.messages[0];
        await q.nack(worker, [m.receipt]);
      }
      const read = await task(api, alice, req.body.taskId);
      assert.equal(read.body.status, "failed");
      assert.match(read.body.error, /dead-lettered after 2 deliveries/);
      assert.equal(read.body.completedAt, undefined);
      // Redriven, it is pending again and may still be answered before the deadline.
      await api.call("POST", "/v1/queues/svc/redrive", { token: api.adminToken, body: {} });
      assert.equal((await task(api, alice, req.body.taskId)).body.status, "pending");
      const m = (await q.receive(worker)).body.messages[0];
      assert.equal((await reply(api, worker, req.body.taskId, { result: "cured" })).status, 200);
      await q.ack(worker, [m.receipt]);
      assert.equal((await task(api, alice, req.body.taskId)).body.status, "completed");
    });

    await t.step(
      "a request acked without a reply is failed; a late reply still counts",
      async () => {
        const req = await q.request(alice, { body: "forgotten" });
        const m = (await q.receive(worker)).body.messages[0];
        await q.ack(worker, [m.receipt]);
        const read = await task(api, alice, req.body.taskId);
        assert.equal(read.body.status, "failed");
        assert.match(read.body.error, /left the queue without a reply/);
        assert.equal((await reply(api, worker, req.body.taskId, { result: "sorry" })).status, 200);
        assert.equal((await task(api, alice, req.body.taskId)).body.status, "completed");
      },
    );

    await t.step(
      "ended tasks are cleaned up lazily: expired for an hour, then unknown",
      async () => {
        const keys = queueKeys("svc");
        const req = await q.request(alice, { body: "old", timeoutSeconds: 5 });
        clock.ms += 5_000;
        await q.request(alice, { body: "trigger" }); // clean-up runs in the writing scripts
        const tomb = await api.local.hget(keys.tasks, decodeTaskId(req.body.taskId)!.messageId);
        assert.match(tomb!, /,x,alice\|$/, "a tombstone without its payload");
        assert.equal((await task(api, alice, req.body.taskId)).body.status, "expired");
        clock.ms += 3600_000;
        assert.equal((await task(api, alice, req.body.taskId)).body.status, "expired");
        await q.request(alice, { body: "trigger" });
        assert.equal((await task(api, alice, req.body.taskId)).status, 404);
        const id = decodeTaskId(req.body.taskId)!.messageId;
        assert.equal(await api.local.hexists(keys.tasks, id), 0, "the record is gone");
        assert.equal(await api.local.hlen(keys.tasks), await api.local.zcard(keys.taskExpiry));
      },
    );
  } finally {
    await api.close();
  }
});

Deno.test("requests: access, validation and limits", async (t) => {
  const api = await startRequestApi();
  try {
    const alice = await api.userToken("alice");
    const bob = await api.userToken("bob");
    const worker = await api.userToken("worker");
    const q = service(api, "guarded");
    await q.create({
      retentionSeconds: 120,
      maxMessageBytes: 64,
      access: { restricted: true, senders: ["alice"], receivers: ["worker"] },
    });
    const req = await q.request(alice, { body: "hi" });
    const taskId = req.body.taskId;

    await t.step("only senders may request; only receivers may reply", async () => {
      assert.equal((await q.request(bob, { body: "hi" })).status, 403);
      const res = await reply(api, bob, taskId, { result: "x" });
      assert.equal(res.status, 403);
      assert.equal(res.body.code, "forbidden");
      assert.equal((await task(api, bob, taskId)).status, 404, "bob does not see alice's task");
      assert.equal((await reply(api, worker, taskId, { result: "ok" })).status, 200);
    });

    await t.step("unknown queues and tasks are 404; garbage task ids are 400", async () => {
      assert.equal((await service(api, "nope").request(alice, { body: "x" })).status, 404);
      const ghost = encodeTaskId("guarded", "01JGZ6D8Z3P9RFWFSZW4CBT7ZN");
      assert.equal((await task(api, alice, ghost)).status, 404);
      assert.equal((await reply(api, worker, ghost, { result: "x" })).status, 404);
      const other = encodeTaskId("nope", "01JGZ6D8Z3P9RFWFSZW4CBT7ZN");
      assert.equal((await task(api, alice, other)).status, 404);
      for (const bad of ["garbage!", "Z2FyYmFnZQ", `${taskId}x`]) {
        const res = await task(api, alice, bad);
        assert.equal(res.status, 400, bad);
      }
      assert.equal((await reply(api, worker, "garbage", { result: "x" })).status, 400);
      assert.equal((await task(api, alice, taskId, 21)).status, 400, "waitSeconds above 20");
    });

    await t.step("the request body is checked", async () => {
      const bad = [
        {},
        { body: "x", timeoutSeconds: 0 },
        { body: "x", timeoutSeconds: 3601 },
        { body: "x", timeoutSeconds: 1.5 },
        { body: "x", waitSeconds: 21 },
        { body: "x", attributes: { "momd-task-id": "forged" } },
        { body: "x", unknown: true },
      ];
      for (const body of bad) {
        const res = await q.request(alice, body);
        assert.equal(res.status, 400, JSON.stringify(body));
      }
      const long = await q.request(alice, { body: "x", timeoutSeconds: 121 });
      assert.equal(long.status, 400, "longer than the queue's retention");
      assert.match(long.body.detail, /retention/);
      const big = await q.request(alice, { body: "x".repeat(200) });
      assert.equal(big.status, 413);
    });

    await t.step("a reply larger than the queue's message size is refused", async () => {
      const r = await q.request(alice, { body: "y" });
      const res = await reply(api, worker, r.body.taskId, { result: "z".repeat(65) });
      assert.equal(res.status, 413);
      assert.equal((await reply(api, worker, r.body.taskId, { result: "z" })).status, 200);
    });

    await t.step("a dedupId retried answers the same task and sends nothing", async () => {
      const d = service(api, "dedup");
      await d.create();
      const first = await d.request(alice, { body: "once", dedupId: "k1" });
      const second = await d.request(alice, { body: "once", dedupId: "k1" });
      assert.equal(second.body.taskId, first.body.taskId);
      assert.equal((await d.get()).body.stats.depth, 1);
      assert.equal((await d.request(bob, { body: "once", dedupId: "k1" })).status, 409);
      await api.call("POST", "/v1/queues/dedup/messages", {
        token: alice,
        body: { messages: [{ body: "plain", dedupId: "k2" }] },
      });
      assert.equal((await d.request(alice, { body: "x", dedupId: "k2" })).status, 409);
    });

    await t.step("a full queue refuses requests", async () => {
      const f = service(api, "full");
      await f.create({ maxLength: 1 });
      assert.equal((await f.request(alice, { body: "1" })).status, 202);
      const res = await f.request(alice, { body: "2" });
      assert.equal(res.status, 409);
      assert.equal(res.body.code, "queue_full");
    });

    await t.step("deleting a queue deletes its tasks", async () => {
      const keys = queueKeys("guarded");
      assert.equal(await api.local.exists(keys.tasks, keys.taskExpiry), 2);
      await api.call("DELETE", "/v1/queues/guarded", { token: api.adminToken });
      assert.equal(await api.local.exists(keys.tasks, keys.taskExpiry), 0);
      assert.equal((await task(api, alice, taskId)).status, 404);
    });

    await t.step("the routes are in the OpenAPI document", async () => {
      const doc = await api.call("GET", "/openapi.json");
      assert.ok(doc.body.paths["/v1/queues/{name}/requests"].post);
      assert.ok(doc.body.paths["/v1/tasks/{taskId}"].get);
      assert.ok(doc.body.paths["/v1/tasks/{taskId}/reply"].post);
    });
  } finally {
    await api.close();
  }
});

Deno.test("requests: request and reply records replay on a replica to the same state", async () => {
  const clock = { ms: Date.parse("2026-01-01T00:00:00Z") };
  const records: ReplicationRecord[] = [];
  const sink = { ship: (r: ReplicationRecord) => (records.push(r), Promise.resolve()) };
  const api = await startRequestApi({ sink, now: () => clock.ms });
  const replicaRedis = await startRedis();
  const replicaConn = new Redis(replicaRedis.url);
  try {
    const replica = await Store.open(replicaConn, { sink: localOnlySink });
    const entity = { type: "queue" as const, name: "mirrored" };
    const q = service(api, "mirrored");
    const worker = await api.userToken("worker");
    await q.create({ visibilityTimeoutSeconds: 5, maxLength: 3, overflow: "dropHead" });
    const a = await q.request(worker, { body: "a", timeoutSeconds: 10, dedupId: "d" });
    await q.request(worker, { body: "a", timeoutSeconds: 10, dedupId: "d" });
    await q.request(worker, { body: "b", attributes: { k: "ü" } });
    const m = (await q.receive(worker)).body.messages[0];
    await reply(api, worker, a.body.taskId, { result: "A" });
    await q.ack(worker, [m.receipt]);
    await q.request(worker, { body: "c" });
    await q.request(worker, { body: "d" });
    await q.request(worker, { body: "e" }); // drops the oldest ready
    clock.ms += 10_000; // a's deadline: the next writes clean up
    await q.request(worker, { body: "f" });
    const n = (await q.receive(worker)).body.messages[0];
    await reply(api, worker, n.attributes["momd-task-id"], { error: "E" });
    clock.ms += 3600_000;
    await q.request(worker, { body: "g" });
    for (const r of records) assert.equal(await replica.apply(r), "applied");
    assert.deepEqual(await dumpEntity(replicaConn, entity), await dumpEntity(api.local, entity));
    const tasks = await api.local.hlen(queueKeys("mirrored").tasks);
    assert.ok(tasks > 0);
  } finally {
    replicaConn.disconnect();
    await replicaRedis.stop();
    await api.close();
  }
});
