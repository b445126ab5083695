/**
 * What an operator sees of one node run as its own process: `--version`, version and build in
 * /healthz, the data format stored in each Redis (and the refusal to start on a later one), JSON
 * log lines with request ids, and the Prometheus metrics of its queues and requests.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { freePort, type RedisServer, startRedis } from "./support/services.ts";
import { type NodeProcess, runMomd, startNodeProcess } from "./support/process.ts";
import { DATA_FORMAT, VERSION } from "../src/version.ts";
import { STORE_KEY } from "../src/broker/keys.ts";
import { sample } from "./support/metrics.ts";

const ADMIN = { username: "ops-admin", password: "ops-admin-password" };

async function services(): Promise<{
  env: Record<string, string>;
  redis: RedisServer[];
  stop(): Promise<void>;
}> {
  const redis = await Promise.all([startRedis(), startRedis(), startRedis()]);
  const [local, users, backup] = redis;
  return {
    redis,
    env: {
      MOMD_NODE_ID: "ops1",
      MOMD_LOCAL_REDIS_URL: `${local.url}/0`,
      MOMD_USERS_REDIS_URL: `${users.url}/0`,
      MOMD_BACKUP_REDIS_URL: `${backup.url}/0`,
      MOMD_JWT_SECRET: "operations-test-secret-0123456789abcdef",
      MOMD_ADMIN_USERNAME: ADMIN.username,
      MOMD_ADMIN_PASSWORD: ADMIN.password,
      MOMD_PASSWORD_HASH_COST: "10",
      MOMD_LOG_LEVEL: "info",
    },
    async stop() {
      await Promise.all(redis.map((r) => r.stop()));
    },
  };
}

async function call(
  url: string,
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Headers; body: string }> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: {
      ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
      ...(opts.body !== undefined ? { "content-type": "application/json" } : {}),
      ...opts.headers,
    },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

/** Every line the node printed, parsed; fails on a line that is not a JSON object. */
function logLines(output: string): Record<string, unknown>[] {
  return output.split("\n").filter((l) => l.trim() !== "").map((line) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      assert.fail(`a log line is not JSON: ${line}`);
    }
    assert.equal(typeof parsed, "object", line);
    return parsed as Record<string, unknown>;
  });
}

Deno.test("operations: --version names the version, build and data format", async () => {
  const res = await runMomd(["--version"]);
  assert.equal(res.code, 0, res.stderr);
  assert.equal(res.stdout, `momd ${VERSION} (build source, data format ${DATA_FORMAT})\n`);
});

Deno.test("operations: a node logs JSON lines, returns request ids and serves its metrics", async (t) => {
  const svc = await services();
  let node: NodeProcess | undefined;
  try {
    node = await startNodeProcess({ env: svc.env });
    const url = node.url;

    await t.step("healthz names the version, build and data format", async () => {
      const res = await call(url, "GET", "/healthz");
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(res.body), {
        status: "ok",
        node: "ops1",
        version: VERSION,
        build: { commit: "source", builtAt: null },
        dataFormat: DATA_FORMAT,
      });
    });

    await t.step("every Redis holds the data format", async () => {
      const [local, users, backup] = svc.redis.map((r) => new Redis(r.url));
      try {
        assert.equal(await local.hget(STORE_KEY, "format"), String(DATA_FORMAT));
        assert.equal(await users.get("momd:format"), String(DATA_FORMAT));
        assert.equal(await backup.get("momd:format"), String(DATA_FORMAT));
      } finally {
        for (const r of [local, users, backup]) r.disconnect();
      }
    });

    const login = await call(url, "POST", "/v1/auth/token", { body: ADMIN });
    assert.equal(login.status, 200, login.body);
    const token = JSON.parse(login.body).token as string;

    await t.step("a request's id comes back: the caller's when sane, else a new one", async () => {
      const given = await call(url, "GET", "/healthz", {
        headers: { "x-request-id": "ops-req-1" },
      });
      assert.equal(given.headers.get("x-request-id"), "ops-req-1");
      const made = await call(url, "GET", "/healthz");
      assert.match(made.headers.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/);
      const insane = await call(url, "GET", "/healthz", {
        headers: { "x-request-id": "has spaces and {braces}" },
      });
      assert.match(insane.headers.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/);
    });

    await t.step("refused requests are logged with their id, user and status", async () => {
      const bad = await call(url, "PUT", "/v1/queues/bad%20name", {
        token,
        body: {},
        headers: { "x-request-id": "ops-bad-1" },
      });
      assert.equal(bad.status, 400);
      const anon = await call(url, "GET", "/v1/queues", {
        headers: { "x-request-id": "ops-anon" },
      });
      assert.equal(anon.status, 401);
      await new Promise((r) => setTimeout(r, 100));
      const lines = logLines(node!.output());
      for (const line of lines) {
        assert.equal(typeof line.time, "string", JSON.stringify(line));
        assert.ok(!Number.isNaN(Date.parse(line.time as string)), JSON.stringify(line));
        assert.ok(["debug", "info", "warn", "error"].includes(line.level as string));
        assert.equal(line.node, "ops1");
      }
      const badLine = lines.find((l) => l.reqId === "ops-bad-1");
      assert.ok(badLine, "the 400 is in the access log");
      assert.equal(badLine.status, 400);
      assert.equal(badLine.user, ADMIN.username);
      assert.equal(badLine.method, "PUT");
      const anonLine = lines.find((l) => l.reqId === "ops-anon");
      assert.equal(anonLine?.status, 401);
      // Successful requests are counted, not logged; tokens never reach the log.
      assert.ok(!lines.some((l) => l.status === 200));
      assert.ok(!node!.output().includes(token));
    });

    await t.step("metrics count messages, requests and queue depth", async () => {
      const created = await call(url, "PUT", "/v1/queues/metered", {
        token,
        body: { maxDeliveries: 1, visibilityTimeoutSeconds: 30 },
      });
      assert.equal(created.status, 201, created.body);
      const sent = await call(url, "POST", "/v1/queues/metered/messages", {
        token,
        body: { messages: [{ body: "a" }, { body: "b" }, { body: "c" }, { body: "d" }] },
      });
      assert.equal(sent.status, 201, sent.body);
      const got = await call(url, "POST", "/v1/queues/metered/receive", {
        token,
        body: { max: 2 },
      });
      assert.equal(got.status, 200, got.body);
      const receipts = JSON.parse(got.body).messages.map((m: { receipt: string }) => m.receipt);
      assert.equal(receipts.length, 2);
      const acked = await call(url, "POST", "/v1/queues/metered/ack", {
        token,
        body: { receipts: [receipts[0]] },
      });
      assert.equal(acked.status, 200, acked.body);
      // maxDeliveries 1: a nacked message goes to the dead letters.
      const nacked = await call(url, "POST", "/v1/queues/metered/nack", {
        token,
        body: { receipts: [receipts[1]] },
      });
      assert.equal(nacked.status, 200, nacked.body);

      const res = await call(url, "GET", "/metrics");
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
      const m = res.body;
      const q = (event: string) =>
        sample(m, "momd_queue_messages_total", { queue: "metered", event });
      assert.equal(q("sent"), 4);
      assert.equal(q("received"), 2);
      assert.equal(q("acked"), 1);
      assert.equal(q("nacked"), 1);
      const depth = (state: string) =>
        sample(m, "momd_queue_messages", { queue: "metered", state });
      assert.equal(depth("ready"), 2);
      assert.equal(depth("inflight"), 0);
      assert.equal(depth("dead"), 1);
      assert.equal(sample(m, "momd_queue_dead_lettered_total", { queue: "metered" }), 1);
      assert.equal(
        sample(m, "momd_http_requests_total", {
          method: "POST",
          route: "/v1/queues/:name/messages",
          status: "201",
          node: "ops1",
        }),
        1,
      );
      assert.ok(
        (sample(m, "momd_http_request_duration_seconds_count", {
          method: "POST",
          route: "/v1/queues/:name/messages",
        }) ?? 0) >= 1,
      );
      assert.equal(
        sample(m, "momd_build_info", { version: VERSION, data_format: String(DATA_FORMAT) }),
        1,
      );
      assert.ok((sample(m, "momd_redis_used_memory_bytes") ?? 0) > 0);
      assert.ok((sample(m, "momd_process_resident_memory_bytes") ?? 0) > 0);
      // A single node has no ZooKeeper session and no replication to report.
      assert.equal(sample(m, "momd_zookeeper_session_up"), undefined);
    });

    await t.step("a deleted queue's counters are dropped", async () => {
      const gone = await call(url, "DELETE", "/v1/queues/metered", { token });
      assert.equal(gone.status, 204, gone.body);
      const m = (await call(url, "GET", "/metrics")).body;
      assert.equal(sample(m, "momd_queue_messages_total", { queue: "metered" }), undefined);
      assert.equal(sample(m, "momd_queue_messages", { queue: "metered" }), undefined);
    });

    await t.step("a redelivery is counted as such", async () => {
      const again = await call(url, "PUT", "/v1/queues/again", { token, body: {} });
      assert.equal(again.status, 201);
      await call(url, "POST", "/v1/queues/again/messages", {
        token,
        body: { messages: [{ body: "x" }] },
      });
      for (let i = 0; i < 2; i++) {
        const got = await call(url, "POST", "/v1/queues/again/receive", { token, body: {} });
        const [msg] = JSON.parse(got.body).messages;
        await call(url, "POST", "/v1/queues/again/nack", {
          token,
          body: { receipts: [msg.receipt] },
        });
      }
      const m = (await call(url, "GET", "/metrics")).body;
      assert.equal(
        sample(m, "momd_queue_messages_total", { queue: "again", event: "received" }),
        2,
      );
      assert.equal(
        sample(m, "momd_queue_messages_total", { queue: "again", event: "redelivered" }),
        1,
      );
    });

    await t.step("rate-limit refusals of logins are counted", async () => {
      let refused = 0;
      for (let i = 0; i < 30 && refused === 0; i++) {
        const res = await call(url, "POST", "/v1/auth/token", {
          body: { username: ADMIN.username, password: "wrong-password" },
        });
        if (res.status === 429) refused++;
      }
      assert.ok(refused > 0, "repeated login failures are refused with 429");
      const m = (await call(url, "GET", "/metrics")).body;
      assert.ok((sample(m, "momd_rate_limited_total", { kind: "login" }) ?? 0) >= 1);
    });
  } finally {
    await node?.stop("SIGTERM");
    await svc.stop();
  }
});

Deno.test("operations: a node refuses to start on a Redis of a later data format", async (t) => {
  const svc = await services();
  try {
    const [local, users] = svc.redis.map((r) => new Redis(r.url));
    try {
      await t.step("the local store", async () => {
        await local.hset(STORE_KEY, "id", "from-the-future", "format", String(DATA_FORMAT + 1));
        const res = await runMomd(["serve"], {
          ...svc.env,
          MOMD_HTTP_LISTEN: `127.0.0.1:${freePort()}`,
        });
        assert.equal(res.code, 2, res.stdout + res.stderr);
        assert.match(res.stderr, /MOMD_LOCAL_REDIS_URL/);
        assert.match(res.stderr, new RegExp(`data format ${DATA_FORMAT + 1}`));
        // Nothing was changed: the store keeps its format and identity.
        assert.deepEqual(await local.hgetall(STORE_KEY), {
          id: "from-the-future",
          format: String(DATA_FORMAT + 1),
        });
        await local.del(STORE_KEY);
      });

      await t.step("the users' Redis", async () => {
        await users.set("momd:format", String(DATA_FORMAT + 1));
        const res = await runMomd(["serve"], {
          ...svc.env,
          MOMD_HTTP_LISTEN: `127.0.0.1:${freePort()}`,
        });
        assert.equal(res.code, 2, res.stdout + res.stderr);
        assert.match(res.stderr, /MOMD_USERS_REDIS_URL/);
        assert.equal(await users.get("momd:format"), String(DATA_FORMAT + 1));
        assert.equal(await users.exists("momd:user:ops-admin"), 0, "no admin was created");
      });

      await t.step("a store from before formats were recorded is format 1", async () => {
        await users.set("momd:format", String(DATA_FORMAT));
        await local.hset(STORE_KEY, "id", "old-store", "createdAt", "1");
        const node = await startNodeProcess({ env: svc.env });
        try {
          assert.equal(await local.hget(STORE_KEY, "id"), "old-store");
          assert.equal(await local.hget(STORE_KEY, "format"), "1");
        } finally {
          await node.stop("SIGTERM");
        }
      });
    } finally {
      local.disconnect();
      users.disconnect();
    }
  } finally {
    await svc.stop();
  }
});
