/**
 * The memory alarm (src/broker/memory.ts): a node whose own Redis nears its maxmemory refuses new
 * messages with 507 before Redis refuses writes, while receives, acks and deletes go on; once
 * consumers drained it, sends are taken again. Against a real node process and a real Redis
 * started with a small maxmemory.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { startRedis } from "./support/services.ts";
import { startNodeProcess } from "./support/process.ts";
import { withCluster } from "./support/cluster.ts";
import { MemoryWatch } from "../src/broker/memory.ts";
import { BrokerError } from "../src/broker/errors.ts";

const MAXMEMORY = 64 * 1024 * 1024;
const ADMIN_PASSWORD = "memory-test-admin-password";

/** A random secret of the kind the configuration accepts. */
function secret(): string {
  return btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(48))));
}

/** Redis's INFO memory fields as numbers. */
async function memoryInfo(redis: Redis): Promise<Record<string, number>> {
  const info = await redis.info("memory");
  const out: Record<string, number> = {};
  for (const m of info.matchAll(/^(\w+):(\d+)\r?$/gm)) out[m[1]] = Number(m[2]);
  return out;
}

Deno.test("memory: the watch refuses only new messages, counting what it admitted since its sample", async () => {
  const server = await startRedis({ maxmemory: "16mb" });
  const redis = new Redis(server.url, { lazyConnect: true });
  await redis.connect();
  const lines: string[] = [];
  const watch = new MemoryWatch(redis, { highWatermark: 0.5, log: (l) => lines.push(l) });
  try {
    await watch.sample();
    const before = watch.status()!;
    assert.equal(before.maxBytes, 16 * 1024 * 1024);
    assert.equal(before.highWatermarkBytes, 8 * 1024 * 1024);
    assert.equal(before.refusingNewMessages, false);
    // Without a new sample, admitted bytes add up: the burst is refused at the mark.
    const mb = "x".repeat(1024 * 1024);
    let admitted = 0;
    let refused: unknown;
    for (let i = 0; i < 20 && refused === undefined; i++) {
      try {
        watch.admit("queue_send", [mb]);
        admitted++;
      } catch (err) {
        refused = err;
      }
    }
    assert.ok(refused instanceof BrokerError, `refused with a BrokerError: ${refused}`);
    assert.equal(refused.code, "memory_full");
    assert.ok(refused.retryAfterSeconds! > 0);
    assert.ok(admitted >= 1 && admitted < 8, `admitted ${admitted} MiB below an 8 MiB mark`);
    assert.throws(() => watch.admit("topic_publish", [mb]), /memory_full/);
    assert.throws(() => watch.admit("queue_request", [mb]), /memory_full/);
    // What settles or removes work passes whatever the estimate says.
    for (const op of ["queue_ack", "queue_receive", "queue_delete", "queue_purge"] as const) {
      watch.admit(op, [mb]);
    }
    // Nothing was written: the next sample forgets the estimate and sends pass again.
    await watch.sample();
    watch.admit("queue_send", [mb]);
    // The refusals by estimate are logged once for the episode; the sample never saw it full.
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], /above the high watermark .*refusing new messages/);
  } finally {
    await watch.stop();
    redis.disconnect();
    await server.stop();
  }
});

Deno.test("memory: a store without maxmemory is never refused, and the node says so once", async () => {
  const server = await startRedis();
  const redis = new Redis(server.url, { lazyConnect: true });
  await redis.connect();
  const lines: string[] = [];
  const watch = new MemoryWatch(redis, { highWatermark: 0.8, log: (l) => lines.push(l) });
  try {
    await watch.sample();
    await watch.sample();
    watch.admit("queue_send", ["x".repeat(4 * 1024 * 1024)]);
    assert.equal(watch.status()!.maxBytes, null);
    assert.equal(watch.status()!.refusingNewMessages, false);
    assert.equal(lines.length, 1);
    assert.match(lines[0], /no maxmemory/);
  } finally {
    await watch.stop();
    redis.disconnect();
    await server.stop();
  }
});

Deno.test("memory: a full node answers sends 507, keeps serving consumers, and takes sends again once drained", async () => {
  const local = await startRedis({ maxmemory: String(MAXMEMORY) });
  const central = await startRedis();
  const localRedis = new Redis(local.url, { lazyConnect: true });
  await localRedis.connect();
  const node = await startNodeProcess({
    env: {
      MOMD_NODE_ID: "mem1",
      MOMD_LOCAL_REDIS_URL: `${local.url}/0`,
      MOMD_USERS_REDIS_URL: `${central.url}/1`,
      MOMD_BACKUP_REDIS_URL: `${central.url}/2`,
      MOMD_JWT_SECRET: secret(),
      MOMD_ADMIN_PASSWORD: ADMIN_PASSWORD,
      MOMD_PASSWORD_HASH_COST: "10",
      // The default watermark (0.8) is what is tested.
    },
  });
  const call = async (
    method: string,
    path: string,
    body?: unknown,
    token?: string,
    // deno-lint-ignore no-explicit-any
  ): Promise<any> => {
    const res = await fetch(`${node.url}${path}`, {
      method,
      headers: {
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return {
      status: res.status,
      type: res.headers.get("content-type"),
      retryAfter: res.headers.get("retry-after"),
      body: text ? JSON.parse(text) : null,
    };
  };
  try {
    const login = await call("POST", "/v1/auth/token", {
      username: "admin",
      password: ADMIN_PASSWORD,
    });
    assert.equal(login.status, 200, JSON.stringify(login.body));
    const token: string = login.body.token;
    const big = { maxMessageBytes: 1024 * 1024 };
    assert.equal((await call("PUT", "/v1/queues/big", big, token)).status, 201);
    assert.equal((await call("PUT", "/v1/topics/news", big, token)).status, 201);

    const ready = await call("GET", "/readyz");
    assert.equal(ready.status, 200);
    assert.equal(ready.body.memory.maxBytes, MAXMEMORY);
    assert.equal(ready.body.memory.highWatermarkBytes, Math.floor(MAXMEMORY * 0.8));
    assert.equal(ready.body.memory.refusingNewMessages, false);

    // 60 parallel sends of 4 MB each (four messages just under 1 MiB): 240 MB into 64 MB.
    const chunk = 1_000_000;
    const sends = await Promise.all(Array.from({ length: 60 }, (_, i) => {
      const messages = Array.from({ length: 4 }, (_, j) => ({
        body: `${i}.${j}:`.padEnd(chunk, String.fromCharCode(97 + ((i + j) % 26))),
      }));
      return call("POST", "/v1/queues/big/messages", { messages }, token);
    }));
    const statuses = sends.map((s) => s.status);
    const accepted = sends.filter((s) => s.status === 201);
    const refused = sends.filter((s) => s.status === 507);
    assert.equal(accepted.length + refused.length, 60, `only 201 and 507: ${statuses}`);
    assert.ok(accepted.length > 0, "some sends are taken");
    assert.ok(refused.length > 0, "the rest are refused");
    for (const r of refused) {
      assert.equal(r.type, "application/problem+json");
      assert.equal(r.body.code, "memory_full");
      assert.equal(r.body.status, 507);
      assert.match(r.body.detail, /full/);
      assert.ok(Number(r.retryAfter) > 0, "Retry-After is set");
    }
    const info = await memoryInfo(localRedis);
    assert.ok(
      info.used_memory_peak <= MAXMEMORY,
      `Redis never grew past its maxmemory: peak ${info.used_memory_peak} of ${MAXMEMORY}`,
    );

    // Something else fills the rest (here a key; in a cluster, the copies this node holds as a
    // replica): above the mark, even a small send is refused, /readyz says so and stays ready.
    // In pieces of 1 MB: a big SET's query buffer alone could take Redis past its maxmemory.
    // Redis's Lua heap shrinks when it collects garbage, so fill until the node sees the mark.
    const mark = Math.floor(MAXMEMORY * 0.8);
    let status = (await call("GET", "/readyz")).body;
    for (let k = 0; k < 200 && !status.memory.refusingNewMessages; k++) {
      if ((await memoryInfo(localRedis)).used_memory < mark + 2_000_000) {
        await localRedis.set(`memory-test-filler-${k}`, "z".repeat(1_000_000));
      }
      await new Promise((r) => setTimeout(r, 50));
      status = (await call("GET", "/readyz")).body;
    }
    assert.equal(status.status, "ready");
    assert.equal(status.memory.refusingNewMessages, true, JSON.stringify(status.memory));
    const small = await call(
      "POST",
      "/v1/queues/big/messages",
      { messages: [{ body: "s" }] },
      token,
    );
    assert.equal(small.status, 507, JSON.stringify(small.body));
    const publish = await call("POST", "/v1/topics/news/messages", {
      messages: [{ body: "p" }],
    }, token);
    assert.equal(publish.status, 507, JSON.stringify(publish.body));
    assert.equal(publish.body.code, "memory_full");

    // Consumers still work: receive everything, check it, ack it.
    const expected = accepted.reduce((n, s) => n + s.body.messages.length, 0);
    let received = 0;
    const seen = new Set<string>();
    for (let round = 0; round < 200 && received < expected; round++) {
      const got = await call("POST", "/v1/queues/big/receive", { max: 4 }, token);
      assert.equal(got.status, 200, JSON.stringify(got.body));
      if (got.body.messages.length === 0) break;
      for (const m of got.body.messages) {
        const [, i, j] = /^(\d+)\.(\d+):/.exec(m.body) ?? [];
        const fill = String.fromCharCode(97 + ((Number(i) + Number(j)) % 26));
        assert.equal(m.body, `${i}.${j}:`.padEnd(chunk, fill), "bodies come back whole");
        assert.ok(!seen.has(m.body.slice(0, 8)), "each message once");
        seen.add(m.body.slice(0, 8));
      }
      received += got.body.messages.length;
      const receipts = got.body.messages.map((m: { receipt: string }) => m.receipt);
      const ack = await call("POST", "/v1/queues/big/ack", { receipts }, token);
      assert.equal(ack.status, 200, JSON.stringify(ack.body));
    }
    assert.equal(received, expected, "every taken message is delivered");

    // Drained: once the next sample sees it, sends are taken again.
    let after = await call("POST", "/v1/queues/big/messages", {
      messages: [{ body: "again" }],
    }, token);
    for (let i = 0; i < 100 && after.status === 507; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await call(
        "POST",
        "/v1/queues/big/messages",
        { messages: [{ body: "again" }] },
        token,
      );
    }
    assert.equal(after.status, 201, JSON.stringify(after.body));
    assert.equal((await call("GET", "/readyz")).body.memory.refusingNewMessages, false);
    assert.equal((await call("DELETE", "/v1/queues/big", undefined, token)).status, 204);
    assert.match(node.output(), /above the high watermark/);
  } finally {
    await node.stop();
    localRedis.disconnect();
    await local.stop();
    await central.stop();
  }
});

Deno.test("memory: in a cluster the owner's store decides a forwarded send, and replicas always apply", async () => {
  await withCluster({}, async (c) => {
    for (let i = 1; i <= 6; i++) {
      const res = await c.call("PUT", `/v1/queues/m${i}`);
      assert.equal(res.status, 201, JSON.stringify(res.body));
    }
    const status = await c.cluster();
    const queues = status.entities.filter((e) => e.type === "queue");
    const ownedBy1 = queues.find((e) => e.owner === "node1")!;
    const ownedBy2 = queues.find((e) => e.owner === "node2" && e.replicas.includes("node1"))!;
    assert.ok(ownedBy1 && ownedBy2, JSON.stringify(queues));
    // node1's store is made nearly full: above its mark, below Redis's own refusal.
    const redis = new Redis(c.redisUrl("node1"), { lazyConnect: true });
    await redis.connect();
    try {
      const used = (await memoryInfo(redis)).used_memory;
      await redis.config("SET", "maxmemory", String(Math.floor(used * 1.1)));
      await c.waitFor("node1 refusing new messages", async () => {
        const res = await c.call("GET", "/readyz", { base: c.nodeUrl("node1"), token: null });
        return res.status === 200 && res.body.memory?.refusingNewMessages === true;
      });
      const send = (queue: string, via: string) =>
        c.call("POST", `/v1/queues/${queue}/messages`, {
          base: c.nodeUrl(via),
          body: { messages: [{ body: `to ${queue} via ${via}` }] },
        });
      // Through node2, to node1's queue: node1 decides, 507.
      const refused = await send(ownedBy1.name, "node2");
      assert.equal(refused.status, 507, JSON.stringify(refused.body));
      assert.equal(refused.body.code, "memory_full");
      // Through node1, to node2's queue: node2 decides; node1 applies it as a replica.
      const taken = await send(ownedBy2.name, "node1");
      assert.equal(taken.status, 201, JSON.stringify(taken.body));
      await c.waitFor(
        "node1 holds the replicated message",
        async () => await redis.hlen(`momd:q:{${ownedBy2.name}}:msgs`) === 1,
      );
      // Consumers of node1's queue are served.
      const got = await c.call("POST", `/v1/queues/${ownedBy1.name}/receive`, {
        base: c.nodeUrl("node3"),
        body: {},
      });
      assert.equal(got.status, 200, JSON.stringify(got.body));
    } finally {
      await redis.config("SET", "maxmemory", "512mb").catch(() => {});
      redis.disconnect();
    }
  });
});
