/**
 * Operations features under faults, found by an adversarial review (metrics, data format guards,
 * cluster status): each test was a bug, fixed since; the comment above it says what it was.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { freePort, type RedisServer, startRedis } from "./support/services.ts";
import { type NodeProcess, startNodeProcess } from "./support/process.ts";
import { startTestApi } from "./support/node.ts";
import { withCluster } from "./support/cluster.ts";
import { clusterProblems } from "../src/cli/commands/cluster.ts";
import { DATA_FORMAT } from "../src/version.ts";

const ADMIN = { username: "ops-admin", password: "ops-admin-password" };

function nodeEnv(
  id: string,
  urls: { local: string; users: string; backup: string },
): Record<string, string> {
  return {
    MOMD_NODE_ID: id,
    MOMD_LOCAL_REDIS_URL: urls.local,
    MOMD_USERS_REDIS_URL: urls.users,
    MOMD_BACKUP_REDIS_URL: urls.backup,
    MOMD_JWT_SECRET: "ops-faults-test-secret-0123456789abcdef",
    MOMD_ADMIN_USERNAME: ADMIN.username,
    MOMD_ADMIN_PASSWORD: ADMIN.password,
    MOMD_PASSWORD_HASH_COST: "10",
    MOMD_LOG_LEVEL: "info",
  };
}

async function call(
  url: string,
  method: string,
  path: string,
  opts: { token?: string; body?: unknown } = {},
): Promise<{ status: number; body: string }> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: {
      ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
      ...(opts.body !== undefined ? { "content-type": "application/json" } : {}),
    },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    signal: AbortSignal.timeout(20_000),
  });
  return { status: res.status, body: await res.text() };
}

async function adminToken(url: string): Promise<string> {
  const login = await call(url, "POST", "/v1/auth/token", { body: ADMIN });
  assert.equal(login.status, 200, login.body);
  return JSON.parse(login.body).token as string;
}

// Was a bug. A single node reads its entity list from the local Redis outside the per-entity
// try/catch (src/metrics/sources.ts ownedRefs -> registeredEntities), so with the store down
// every gauge's collect rejects and the whole scrape answers 500: Prometheus loses every
// metric of the node (process, Redis memory, counters) exactly while the store is down.
Deno.test("operations: a single node's /metrics still answers while its local Redis is down", async () => {
  const redis = await Promise.all([startRedis(), startRedis(), startRedis()]);
  const [local, users, backup] = redis;
  let node: NodeProcess | undefined;
  let localStopped = false;
  try {
    node = await startNodeProcess({
      env: nodeEnv("rev1", {
        local: `${local.url}/0`,
        users: `${users.url}/0`,
        backup: `${backup.url}/0`,
      }),
    });
    const token = await adminToken(node.url);
    assert.equal(
      (await call(node.url, "PUT", "/v1/queues/scraped", { token, body: {} })).status,
      201,
    );
    assert.equal((await call(node.url, "GET", "/metrics")).status, 200);

    await local.stop();
    localStopped = true;
    const ready = await call(node.url, "GET", "/readyz");
    assert.equal(ready.status, 503, "the node knows its store is down");
    const scrape = await call(node.url, "GET", "/metrics");
    assert.equal(
      scrape.status,
      200,
      `a scrape must not fail because one source is down: ${scrape.body.slice(0, 300)}`,
    );
    assert.match(scrape.body, /momd_process_resident_memory_bytes/);
  } finally {
    await node?.stop("SIGTERM");
    await Promise.all(redis.filter((r) => !(localStopped && r === local)).map((r) => r.stop()));
  }
});

/** A Redis on `port` whose data says it holds a later data format (loaded from its AOF). */
async function laterFormatRedisDir(): Promise<string> {
  const seed = await startRedis();
  const client = new Redis(seed.url);
  try {
    await client.set("momd:format", String(DATA_FORMAT + 1));
  } finally {
    client.disconnect();
  }
  await seed.stop(); // SIGTERM: Redis writes the AOF out before it exits
  return seed.dir;
}

// Was a bug. main.ts claims the backup Redis's data format once at start-up and ignores any
// error but DataFormatError: a backup Redis that is unreachable then is never checked again.
// When it comes up holding a later format, the node writes its backups into it (and would
// restore from it after a store loss) without ever reading its format.
Deno.test("operations: a backup Redis that comes up later with a later data format is not written", async () => {
  const [local, users] = await Promise.all([startRedis(), startRedis()]);
  const backupPort = freePort();
  const backupDir = await laterFormatRedisDir();
  let backup: RedisServer | undefined;
  let node: NodeProcess | undefined;
  try {
    node = await startNodeProcess({
      env: {
        ...nodeEnv("rev2", {
          local: `${local.url}/0`,
          users: `${users.url}/0`,
          backup: `redis://127.0.0.1:${backupPort}/0`,
        }),
        MOMD_BACKUP_INTERVAL_MS: "200",
      },
    });
    const token = await adminToken(node.url);
    assert.equal(
      (await call(node.url, "PUT", "/v1/queues/precious", { token, body: {} })).status,
      201,
    );
    const sent = await call(node.url, "POST", "/v1/queues/precious/messages", {
      token,
      body: { messages: [{ body: "keep me" }] },
    });
    assert.equal(sent.status, 201, sent.body);

    backup = await startRedis({ port: backupPort, dir: backupDir });
    const client = new Redis(backup.url);
    try {
      assert.equal(await client.get("momd:format"), String(DATA_FORMAT + 1));
      // ioredis reconnects within 2 s; backup passes run every 200 ms.
      await new Promise((r) => setTimeout(r, 5_000));
      const keys = (await client.keys("*")).filter((k) => k !== "momd:format").sort();
      assert.deepEqual(
        keys,
        [],
        `the node wrote into a Redis of data format ${DATA_FORMAT + 1}: ${keys.join(", ")}`,
      );
      assert.equal(await client.get("momd:format"), String(DATA_FORMAT + 1));
    } finally {
      client.disconnect();
    }
  } finally {
    await node?.stop("SIGTERM");
    await Promise.all([local.stop(), users.stop(), backup?.stop()]);
  }
});

// Was a bug. GET /v1/cluster on a single node (src/api/routes/cluster.ts singleNodeStatus)
// lists queues and topics with `limit: 1000` and never follows `next`: past 1000 entities the
// status silently drops some and the node's `owned` count is wrong.
Deno.test("operations: a single node's cluster status lists every queue past the first 1000", async () => {
  const api = await startTestApi();
  try {
    const total = 1005;
    for (let i = 0; i < total; i++) {
      const res = await api.call("PUT", `/v1/queues/q${String(i).padStart(5, "0")}`, {
        token: api.adminToken,
        body: {},
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
    }
    const status = await api.call("GET", "/v1/cluster", { token: api.adminToken });
    assert.equal(status.status, 200, JSON.stringify(status.body));
    assert.equal(status.body.mode, "single");
    assert.equal(status.body.entities.length, total, "every queue is in the status");
    assert.equal(status.body.nodes[0].owned, total);
  } finally {
    await api.close();
  }
});

// Was a bug. GET /v1/cluster asks each live peer for its readiness with a 2 s deadline and
// leaves `ready: null` when it does not answer (src/cluster/node.ts status); clusterProblems
// (src/cli/commands/cluster.ts) only counts `ready === false`, so `momd cluster status` exits
// 0 ("healthy") while a node is hung, until its ZooKeeper session expires.
Deno.test("operations: cluster status counts a live node that does not answer as a problem", async () => {
  await withCluster({ nodes: 3, tickTime: 500, sessionTimeoutMs: 10_000 }, async (cluster) => {
    const [first, hung] = cluster.nodeIds;
    await cluster.kill(hung, "SIGSTOP");
    try {
      const status = await cluster.cluster({ via: cluster.nodeUrl(first), timeoutMs: 8_000 });
      const row = status.nodes.find((n) => n.id === hung);
      assert.ok(row, "the hung node is listed");
      assert.equal(row.alive, true, "its ZooKeeper session has not expired yet");
      assert.ok(
        clusterProblems(status).length > 0,
        `a node that does not answer is not a healthy one: ${JSON.stringify(row)}`,
      );
    } finally {
      await cluster.kill(hung, "SIGCONT");
    }
  });
});
