import assert from "node:assert/strict";
import { type ApiDeps, createApp } from "../src/api/app.ts";
import { registerRequestRoutes } from "../src/api/routes/requests.ts";
import { Notifier } from "../src/broker/notifier.ts";
import { QueueService } from "../src/broker/queues.ts";
import { RequestService } from "../src/broker/requests.ts";
import { TopicService } from "../src/broker/topics.ts";
import { createGateway, ensureQueues } from "../examples/calculator/gateway.ts";
import { MomdClient } from "../examples/calculator/momd.ts";
import { findService } from "../examples/calculator/services.ts";
import { startWorker, work, type Worker } from "../examples/calculator/worker.ts";
import { startTestApi } from "./support/node.ts";

/**
 * A momd API served on a free port (the test API plus the request/reply routes, over one
 * store and one notifier, as a node wires them).
 */
async function serveMomd() {
  const api = await startTestApi();
  const notifier = new Notifier();
  const deps: ApiDeps & { requests: RequestService } = {
    config: {
      maxBodyBytes: 1024 * 1024,
      trustedProxies: [],
      loginFailuresPerMinute: 1000,
      nodeId: "t",
      rateLimitPerSecond: 0,
    },
    users: api.users,
    tokens: api.tokens,
    limiter: api.limiter,
    queues: new QueueService(api.store, notifier),
    topics: new TopicService(api.store, notifier),
    requests: new RequestService(api.store, notifier),
    readiness: () => Promise.resolve({}),
  };
  const app = createApp(deps);
  if (!app.routes.some((r) => r.path === "/v1/tasks/:taskId")) registerRequestRoutes(app, deps);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, app.fetch);
  return {
    api,
    url: `http://127.0.0.1:${server.addr.port}`,
    async close() {
      await server.shutdown();
      await api.close();
    },
  };
}

async function call(
  app: ReturnType<typeof createGateway>,
  method: string,
  path: string,
  body?: unknown,
) {
  const res = await app.request(path, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

Deno.test("calculator: requests queued while the workers are down are answered once they start", async (t) => {
  const momd = await serveMomd();
  await momd.api.users.create("gateway", "gateway-password", "user");
  await momd.api.users.create("worker", "worker-password", "user");
  const asGateway = new MomdClient({
    url: momd.url,
    username: "gateway",
    password: "gateway-password",
  });
  const asWorker = new MomdClient({
    url: momd.url,
    username: "worker",
    password: "worker-password",
  });
  await ensureQueues(asGateway);
  // Two gateways over the same secret: one answers "queued" quickly, one waits long enough for
  // running workers (the demo's default is 2 s).
  const gateway = createGateway({ momd: asGateway, secret: "s3cret", immediateWaitSeconds: 0.5 });
  const patient = createGateway({ momd: asGateway, secret: "s3cret", immediateWaitSeconds: 15 });
  let workers: Worker[] = [];
  try {
    await t.step("health and services", async () => {
      assert.deepEqual((await call(gateway, "GET", "/health")).body, { status: "healthy" });
      const services = (await call(gateway, "GET", "/services")).body.services;
      assert.deepEqual(services.map((s: { name: string }) => s.name), [
        "sum",
        "subtraction",
        "multiplication",
      ]);
      assert.deepEqual(Object.keys(services[0].methods[0].parameters), [
        "parameter_a",
        "parameter_b",
      ]);
    });

    await t.step("bad requests are refused", async () => {
      const ok = {
        client_id: "c1",
        service_name: "sum",
        payload: { parameter_a: 1, parameter_b: 2 },
        time_to_live_seconds: 60,
      };
      assert.equal(
        (await call(gateway, "POST", "/request", { ...ok, service_name: "division" })).status,
        404,
      );
      assert.equal((await call(gateway, "POST", "/request", { ...ok, client_id: "" })).status, 400);
      assert.equal(
        (await call(gateway, "POST", "/request", { ...ok, payload: { parameter_a: "1" } })).status,
        400,
      );
      assert.equal(
        (await call(gateway, "POST", "/request", { ...ok, time_to_live_seconds: 0 })).status,
        400,
      );
      assert.equal((await call(gateway, "GET", "/task/whatever")).status, 400, "no client_id");
    });

    const cases = [
      { service: "sum", a: 2, b: 3, expected: 5 },
      { service: "subtraction", a: 10, b: 4, expected: 6 },
      { service: "multiplication", a: 6, b: 7, expected: 42 },
      { service: "sum", a: 0.5, b: -1.5, expected: -1 },
    ];
    const queued: { taskId: string; deadline: string; expected: number }[] = [];
    let expiring = "";

    await t.step("with the workers down, requests come back queued and pending", async () => {
      const answers = await Promise.all(cases.map((c) =>
        call(gateway, "POST", "/request", {
          client_id: "alice",
          service_name: c.service,
          payload: { parameter_a: c.a, parameter_b: c.b },
          time_to_live_seconds: 120,
        })
      ));
      answers.forEach((res, i) => {
        assert.equal(res.status, 202);
        assert.equal(res.body.status, "queued");
        assert.equal(res.body.processed_immediately, false);
        queued.push({
          taskId: res.body.task_id,
          deadline: res.body.deadline,
          expected: cases[i].expected,
        });
      });
      const short = await call(gateway, "POST", "/request", {
        client_id: "alice",
        service_name: "multiplication",
        payload: { parameter_a: 1, parameter_b: 1 },
        time_to_live_seconds: 2,
      });
      assert.equal(short.body.status, "queued");
      expiring = short.body.task_id;

      // A gateway whose wait reaches the deadline: the request expired, it was not processed.
      const expired = await call(patient, "POST", "/request", {
        client_id: "alice",
        service_name: "sum",
        payload: { parameter_a: 1, parameter_b: 1 },
        time_to_live_seconds: 1,
      });
      assert.equal(expired.status, 200, JSON.stringify(expired.body));
      assert.equal(expired.body.status, "expired", JSON.stringify(expired.body));
      assert.equal(expired.body.processed_immediately, false);
      assert.equal(expired.body.response, null);
      assert.match(expired.body.error, /time_to_live_seconds/);
      const read = await call(gateway, "GET", `/task/${expired.body.task_id}?client_id=alice`);
      assert.equal(read.body.status, "expired");

      const pending = await call(gateway, "GET", `/task/${queued[0].taskId}?client_id=alice`);
      assert.equal(pending.status, 200);
      assert.equal(pending.body.status, "pending");
      assert.equal(pending.body.response, null);
      assert.equal(typeof pending.body.timestamp, "string");
    });

    await t.step("a task is unknown to another client id, and garbage is unknown", async () => {
      const other = await call(gateway, "GET", `/task/${queued[0].taskId}?client_id=mallory`);
      assert.equal(other.status, 404);
      assert.equal(other.body.status, "unknown");
      const garbage = await call(gateway, "GET", "/task/nonsense?client_id=alice");
      assert.equal(garbage.body.status, "unknown");
    });

    await t.step(
      "a request whose deadline passes before the workers start is expired",
      async () => {
        const res = await call(gateway, "GET", `/task/${expiring}?client_id=alice&wait_seconds=10`);
        assert.equal(res.status, 200);
        assert.equal(res.body.status, "expired");
        assert.equal(res.body.response, null);
      },
    );

    await t.step(
      "once the workers start, every queued request gets its result in time",
      async () => {
        workers = ["sum", "subtraction", "multiplication"].map((name) =>
          startWorker({ momd: asWorker, service: findService(name)!, log: () => {} })
        );
        for (const q of queued) {
          const res = await call(
            gateway,
            "GET",
            `/task/${q.taskId}?client_id=alice&wait_seconds=20`,
          );
          assert.equal(res.status, 200);
          assert.equal(res.body.status, "completed", JSON.stringify(res.body));
          assert.deepEqual(res.body.response, { result: q.expected });
          assert.ok(Date.parse(res.body.timestamp) < Date.parse(q.deadline), "before its deadline");
          const again = await call(gateway, "GET", `/task/${q.taskId}?client_id=alice`);
          assert.deepEqual(again.body.response, { result: q.expected }, "readable again");
        }
        const still = await call(gateway, "GET", `/task/${expiring}?client_id=alice`);
        assert.equal(still.body.status, "expired", "the expired request was never served");
      },
    );

    await t.step("with the workers up, a request is processed immediately", async () => {
      const res = await call(patient, "POST", "/request", {
        client_id: "bob",
        service_name: "multiplication",
        payload: { parameter_a: 3, parameter_b: 4 },
        time_to_live_seconds: 60,
      });
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, {
        status: "success",
        task_id: res.body.task_id,
        response: { result: 12 },
        processed_immediately: true,
      });
      const read = await call(gateway, "GET", `/task/${res.body.task_id}?client_id=bob`);
      assert.equal(read.body.status, "completed");
    });

    await t.step(
      "a result JSON cannot hold (an overflow to Infinity) is a failed task",
      async () => {
        for (const [service, a, b] of [["multiplication", 1e308, 10], ["sum", 1e308, 1e308]]) {
          const res = await call(patient, "POST", "/request", {
            client_id: "bob",
            service_name: service,
            payload: { parameter_a: a, parameter_b: b },
            time_to_live_seconds: 60,
          });
          assert.equal(res.status, 200);
          assert.equal(res.body.status, "failed", JSON.stringify(res.body));
          assert.equal(res.body.response, null);
          assert.match(res.body.error, /not a finite number/);
          assert.equal(res.body.processed_immediately, true);
          const read = await call(gateway, "GET", `/task/${res.body.task_id}?client_id=bob`);
          assert.equal(read.body.status, "failed");
          assert.match(read.body.error, /not a finite number/);
        }
      },
    );
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await momd.close();
  }
});

Deno.test("calculator: a worker reports a result that is not a finite number as an error", () => {
  const sum = findService("sum")!;
  assert.deepEqual(work(sum, JSON.stringify({ parameter_a: 2, parameter_b: 3 })), {
    result: '{"result":5}',
  });
  const overflow = work(
    findService("multiplication")!,
    '{"parameter_a":1e300,"parameter_b":1e300}',
  );
  assert.ok("error" in overflow && /Infinity/.test(overflow.error), JSON.stringify(overflow));
  const nan = work({ ...sum, compute: () => NaN }, '{"parameter_a":1,"parameter_b":1}');
  assert.ok("error" in nan && /NaN/.test(nan.error), JSON.stringify(nan));
});
