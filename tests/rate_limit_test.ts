import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { startTestApi } from "./support/node.ts";
import { freePort, startRedis } from "./support/services.ts";
import {
  bucketDecision,
  LOGIN_WINDOW_MS,
  RedisRateLimiter,
} from "../src/auth/redis_rate_limiter.ts";
import { UserStore } from "../src/auth/users.ts";
import { userKeys } from "../src/broker/keys.ts";
import { settlesDeliveredWork } from "../src/api/middleware/rate_limit.ts";
import { createLogger } from "../src/log/logger.ts";

/** A clock the test moves instead of sleeping. */
function testClock(start = 1_000_000) {
  const clock = { now: start };
  return { clock, now: () => clock.now };
}

/** A limit so slow that Redis's own clock adds nothing measurable between two syncs. */
const SLOW = { requestsPerSecond: 0.01, burst: 5 };

Deno.test("rate limit: one call against a token bucket", () => {
  const limit = { requestsPerSecond: 10, burst: 20 };
  // Tokens left: allowed at once, the rest reported.
  assert.deepEqual(bucketDecision(20, limit, 0), {
    allowed: true,
    retryAfterSeconds: 0,
    delayMs: 0,
    limit,
    remaining: 19,
    resetSeconds: 1, // one token back in 0.1 s
  });
  // Empty, no credit allowed: refused until one whole token is back (0.1 s -> 1 s at least).
  const refused = bucketDecision(0, limit, 0);
  assert.equal(refused.allowed, false);
  assert.equal(refused.retryAfterSeconds, 1);
  assert.equal(refused.resetSeconds, 2);
  // Empty with credit: held until refill covers it (0.1 s at 10/s).
  const held = bucketDecision(0, limit, 500);
  assert.equal(held.allowed, true);
  assert.equal(held.delayMs, 100);
  assert.equal(held.remaining, 0);
  // Deeper in debt than the delay allows: refused, and told how long until a token.
  const deep = bucketDecision(-10, limit, 500);
  assert.equal(deep.allowed, false);
  assert.equal(deep.retryAfterSeconds, 2); // 11 tokens at 10/s
  // A slow limit gives waits in whole seconds, never 0.
  assert.equal(bucketDecision(0.5, { requestsPerSecond: 0.1, burst: 1 }, 0).retryAfterSeconds, 5);
});

Deno.test("rate limit: settling calls are told apart from the others", () => {
  for (const path of ["/v1/queues/q/ack", "/v1/queues/q/nack", "/v1/queues/q/visibility"]) {
    assert.ok(settlesDeliveredWork("POST", path), path);
  }
  assert.ok(settlesDeliveredWork("POST", "/v1/topics/t/subscriptions/s/ack"));
  assert.ok(settlesDeliveredWork("POST", "/v1/topics/t/subscriptions/s/visibility"));
  assert.ok(settlesDeliveredWork("POST", "/v1/tasks/abc/reply"));
  for (
    const path of [
      "/v1/queues/q/receive",
      "/v1/queues/q/messages",
      "/v1/queues/ack",
      "/v1/topics/t/subscriptions/s/receive",
      "/v1/queues/q/ack/extra",
    ]
  ) {
    assert.equal(settlesDeliveredWork("POST", path), false, path);
  }
  assert.equal(settlesDeliveredWork("GET", "/v1/queues/q/ack"), false);
});

Deno.test("rate limit: one node decides locally and syncs the bucket through Redis", async (t) => {
  const redis = await startRedis();
  const client = new Redis(redis.url);
  const { clock, now } = testClock();
  const limiter = new RedisRateLimiter(client, {
    defaultLimit: { requestsPerSecond: 2, burst: 3 },
    loginFailuresPerMinute: 3,
    syncIntervalMs: 60_000, // syncs only when the test flushes
    now,
  });
  try {
    await t.step("a full bucket admits a burst, then refuses with Retry-After", async () => {
      const remaining = [];
      for (let i = 0; i < 3; i++) remaining.push((await limiter.take("u1")).remaining);
      assert.deepEqual(remaining, [2, 1, 0]);
      const refused = await limiter.take("u1");
      assert.equal(refused.allowed, false);
      assert.equal(refused.retryAfterSeconds, 1);
      assert.deepEqual(refused.limit, { requestsPerSecond: 2, burst: 3 });
      assert.equal((await limiter.take("u2")).allowed, true, "each user has its own bucket");
    });

    await t.step("refill brings calls back at the rate; refused calls take nothing", async () => {
      clock.now += 499;
      assert.equal((await limiter.take("u1")).allowed, false);
      clock.now += 1;
      assert.equal((await limiter.take("u1")).allowed, true);
      assert.equal((await limiter.take("u1")).allowed, false);
    });

    await t.step("a sync stores the bucket with an expiry and keeps the count", async () => {
      await limiter.flush();
      const [tokens, at] = await client.hmget(userKeys.bucket("u1"), "t", "at");
      assert.ok(Number(tokens) < 0.1, `tokens ${tokens}`); // 4 calls from 3 + 1 refilled
      assert.ok(Number(at) > 0);
      const ttl = await client.pttl(userKeys.bucket("u1"));
      assert.ok(ttl > 1000 && ttl <= 3_000, `ttl ${ttl}`); // until full again, plus a second
      assert.equal((await limiter.take("u1")).allowed, false, "the synced bucket is still empty");
    });
  } finally {
    await limiter.close();
    client.disconnect();
    await redis.stop();
  }
});

Deno.test("rate limit: two nodes on one Redis share each user's bucket", async (t) => {
  const redis = await startRedis();
  const ca = new Redis(redis.url);
  const cb = new Redis(redis.url);
  const { now } = testClock();
  const opts = { defaultLimit: SLOW, loginFailuresPerMinute: 5, syncIntervalMs: 60_000, now };
  const a = new RedisRateLimiter(ca, opts);
  const b = new RedisRateLimiter(cb, opts);
  try {
    await t.step("calls on node A count on node B after a sync", async () => {
      for (let i = 0; i < 3; i++) assert.ok((await a.take("shared")).allowed);
      await a.flush();
      assert.ok((await b.take("shared")).allowed); // B's first call reads the bucket: 2 left
      await b.flush(); // pushes its call: 1 left
      assert.ok((await b.take("shared")).allowed);
      assert.equal((await b.take("shared")).allowed, false);
      await b.flush();
      await a.flush(); // A learns it is empty
      assert.equal((await a.take("shared")).allowed, false);
    });

    await t.step("the overshoot is bounded by what one sync interval hides", async () => {
      // Both nodes spend a fresh user's bucket before either pushes its calls.
      let admitted = 0;
      for (let i = 0; i < 5; i++) admitted += Number((await a.take("burst")).allowed);
      for (let i = 0; i < 5; i++) admitted += Number((await b.take("burst")).allowed);
      assert.equal(admitted, 10); // at most nodes x burst
      await a.flush();
      await b.flush();
      await a.flush();
      // Both now know of the debt, which refill must pay back before anything is admitted.
      assert.equal((await a.take("burst")).allowed, false);
      assert.equal((await b.take("burst")).allowed, false);
      const tokens = Number(await ca.hget(userKeys.bucket("burst"), "t"));
      assert.ok(tokens <= -4.9 && tokens >= -5, `tokens ${tokens}`); // 5 - 10, bounded by -burst
    });
  } finally {
    await a.close();
    await b.close();
    ca.disconnect();
    cb.disconnect();
    await redis.stop();
  }
});

Deno.test("rate limit: a user's own limit, none, or the default again", async (t) => {
  const redis = await startRedis();
  const client = new Redis(redis.url);
  const users = new UserStore(client, { hashCost: 10 });
  const { now } = testClock();
  const limiter = new RedisRateLimiter(client, {
    defaultLimit: SLOW,
    loginFailuresPerMinute: 5,
    syncIntervalMs: 60_000,
    now,
  });
  try {
    await users.create("tenant", "tenant-password", "user");
    const admitted = async (n: number) => {
      let ok = 0;
      for (let i = 0; i < n; i++) ok += Number((await limiter.take("tenant")).allowed);
      return ok;
    };

    await t.step("an own limit holds from the user's first call on a node", async () => {
      await users.setRateLimit("tenant", { requestsPerSecond: 0.01, burst: 50 });
      assert.deepEqual(await users.rateLimit("tenant"), { requestsPerSecond: 0.01, burst: 50 });
      assert.deepEqual((await limiter.take("tenant")).limit, {
        requestsPerSecond: 0.01,
        burst: 50,
      });
      await limiter.flush();
      assert.equal(await admitted(60), 49); // the call before the sync came off the 50
    });

    await t.step("so does a user's own limit when another user came first", async () => {
      await users.create("second", "second-password", "user");
      await users.setRateLimit("second", { requestsPerSecond: 3, burst: 7 });
      assert.deepEqual((await limiter.take("second")).limit, { requestsPerSecond: 3, burst: 7 });
      await users.create("third", "third-password", "user");
      await users.setRateLimit("third", null);
      assert.equal((await limiter.take("third")).limit, null);
    });

    await t.step("no limit: every call admitted, no bucket kept", async () => {
      await users.setRateLimit("tenant", null);
      assert.equal(await users.rateLimit("tenant"), null);
      await limiter.flush();
      assert.equal(await admitted(500), 500);
      assert.equal((await limiter.take("tenant")).limit, null);
      await limiter.flush();
      assert.equal(await client.exists(userKeys.bucket("tenant")), 0);
    });

    await t.step("cleared: the default again, a fresh bucket", async () => {
      await users.setRateLimit("tenant", undefined);
      assert.equal(await users.rateLimit("tenant"), undefined);
      await limiter.flush();
      assert.equal(await admitted(10), 5);
    });

    await t.step("a missing user cannot be given a limit (no half-made user)", async () => {
      await assert.rejects(users.setRateLimit("nobody", null), /does not exist/);
      assert.equal(await client.exists(userKeys.user("nobody")), 0);
    });
  } finally {
    await limiter.close();
    client.disconnect();
    await redis.stop();
  }
});

Deno.test("rate limit: the periodic sync runs on its own", async () => {
  const redis = await startRedis();
  const client = new Redis(redis.url);
  const limiter = new RedisRateLimiter(client, {
    defaultLimit: SLOW,
    loginFailuresPerMinute: 5,
    syncIntervalMs: 20,
  });
  try {
    await limiter.take("ticker");
    const until = Date.now() + 5_000;
    let tokens: string | null = null;
    while (Date.now() < until) {
      tokens = await client.hget(userKeys.bucket("ticker"), "t");
      if (tokens !== null && Number(tokens) < 4.1) break; // the call was pushed
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(tokens !== null && Number(tokens) < 4.1, `tokens ${tokens}`);
  } finally {
    await limiter.close();
    client.disconnect();
    await redis.stop();
  }
});

Deno.test("rate limit: without Redis the node still limits its own calls", async () => {
  const client = new Redis(`redis://127.0.0.1:${freePort()}`, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  client.on("error", () => {});
  const warnings: string[] = [];
  const log = createLogger({
    nodeId: "t",
    level: "warn",
    destination: { write: (line: string) => void warnings.push(line) },
  });
  const limiter = new RedisRateLimiter(client, {
    log,
    defaultLimit: { requestsPerSecond: 0.01, burst: 2 },
    loginFailuresPerMinute: 5,
    syncIntervalMs: 60_000,
  });
  try {
    assert.ok((await limiter.take("offline")).allowed);
    await limiter.flush(); // fails quietly; the count stays local
    await limiter.flush();
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.match(JSON.parse(warnings[0]).msg, /cannot sync with the users Redis/);
    assert.ok((await limiter.take("offline")).allowed);
    assert.equal((await limiter.take("offline")).allowed, false);
  } finally {
    await limiter.close();
    client.disconnect();
  }
});

Deno.test("rate limit: failed logins per pair, per address and over the cluster", async (t) => {
  const redis = await startRedis();
  const client = new Redis(redis.url);
  const { clock, now } = testClock();
  const limiter = new RedisRateLimiter(client, {
    defaultLimit: null,
    loginFailuresPerMinute: 3,
    loginFailuresPerAddressPerMinute: 5,
    loginFailuresClusterPerMinute: 8,
    syncIntervalMs: 60_000,
    now,
  });
  try {
    await t.step("after the limit of failures the pair is refused", async () => {
      for (let i = 0; i < 3; i++) {
        assert.ok((await limiter.loginAttempt("victim", "10.0.0.1")).allowed);
        clock.now += 1_000;
      }
      const refused = await limiter.loginAttempt("victim", "10.0.0.1");
      assert.equal(refused.allowed, false);
      assert.equal(refused.refusedBy, "pair");
      assert.equal(refused.retryAfterSeconds, 57); // the first failure is 3 s old
      const ttl = await client.pttl(userKeys.loginFailures("victim", "10.0.0.1"));
      assert.ok(ttl > 0 && ttl <= LOGIN_WINDOW_MS);
    });

    await t.step("random usernames from one address meet the address bound", async () => {
      assert.ok((await limiter.loginAttempt("random-1", "10.0.0.1")).allowed);
      assert.ok((await limiter.loginAttempt("random-2", "10.0.0.1")).allowed);
      const refused = await limiter.loginAttempt("random-3", "10.0.0.1");
      assert.equal(refused.allowed, false);
      assert.equal(refused.refusedBy, "address");
      assert.ok((await limiter.loginAttempt("victim", "10.0.0.2")).allowed, "other address");
    });

    await t.step("past the cluster bound only addresses without failures may try", async () => {
      // 6 failures so far (5 from .1, 1 from .2); two more reach the bound of 8.
      assert.ok((await limiter.loginAttempt("x", "10.0.0.3")).allowed);
      assert.ok((await limiter.loginAttempt("y", "10.0.0.4")).allowed);
      const again = await limiter.loginAttempt("x", "10.0.0.3");
      assert.equal(again.allowed, false);
      assert.equal(again.refusedBy, "cluster");
      const fresh = await limiter.loginAttempt("regular", "10.0.0.99");
      assert.ok(fresh.allowed, "an address that has not failed still gets in");
      await fresh.succeeded();
    });

    await t.step("a success takes its attempt out of every count", async () => {
      clock.now += LOGIN_WINDOW_MS; // everything above ages out
      for (let i = 0; i < 20; i++) {
        const attempt = await limiter.loginAttempt("regular", "10.0.0.5");
        assert.ok(attempt.allowed, `attempt ${i}`);
        await attempt.succeeded();
      }
      assert.equal(await client.zcard(userKeys.addressLoginFailures("10.0.0.5")), 0);
      assert.equal(await client.zcard(userKeys.clusterLoginFailures), 0);
    });

    await t.step("parallel attempts cannot exceed a bound", async () => {
      const attempts = await Promise.all(
        Array.from({ length: 10 }, (_, i) => limiter.loginAttempt(`racer-${i}`, "10.0.0.6")),
      );
      assert.equal(attempts.filter((a) => a.allowed).length, 5);
    });
  } finally {
    await limiter.close();
    client.disconnect();
    await redis.stop();
  }
});

Deno.test("rate limit: through the API", async (t) => {
  const api = await startTestApi({
    rateLimit: { requestsPerSecond: 0.01, burst: 5 },
    loginFailuresPerMinute: 2,
    loginFailuresPerAddressPerMinute: 4,
  });
  try {
    await api.users.setRateLimit("admin", null); // the admin's calls below are not the subject
    const token = await api.userToken("busy");

    await t.step(
      "calls carry the RateLimit fields; past the bucket 429 states the limit",
      async () => {
        const first = await api.call("GET", "/v1/auth/me", { token });
        assert.equal(first.status, 200);
        assert.equal(first.headers.get("ratelimit-limit"), "5");
        assert.equal(first.headers.get("ratelimit-remaining"), "4");
        assert.ok(Number(first.headers.get("ratelimit-reset")) >= 100);
        for (let i = 0; i < 4; i++) {
          assert.equal((await api.call("GET", "/v1/auth/me", { token })).status, 200);
        }
        const res = await api.call("GET", "/v1/auth/me", { token });
        assert.equal(res.status, 429);
        assert.equal(res.headers.get("content-type"), "application/problem+json");
        assert.equal(res.body.code, "rate_limited");
        assert.match(res.body.detail, /0\.01 requests\/s \(burst 5\) for user 'busy'/);
        assert.equal(res.headers.get("ratelimit-remaining"), "0");
        assert.ok(Number(res.headers.get("retry-after")) >= 1);
      },
    );

    await t.step("acks, nacks and visibility changes are never refused", async () => {
      const owner = await api.userToken("owner");
      assert.equal((await api.call("PUT", "/v1/queues/work", { token: owner })).status, 201);
      const send = await api.call("POST", "/v1/queues/work/messages", {
        token: owner,
        body: { messages: [{ body: "a" }, { body: "b" }, { body: "c" }] },
      });
      assert.equal(send.status, 201);
      const worker = await api.userToken("worker");
      const got = await api.call("POST", "/v1/queues/work/receive", {
        token: worker,
        body: { max: 3 },
      });
      assert.equal(got.status, 200);
      const receipts: string[] = got.body.messages.map((m: { receipt: string }) => m.receipt);
      assert.equal(receipts.length, 3);
      // Spend the worker's bucket on other calls.
      let status = 200;
      while (status === 200) {
        status = (await api.call("GET", "/v1/auth/me", { token: worker })).status;
      }
      assert.equal(status, 429);
      const settle = (action: string, body: unknown) =>
        api.call("POST", `/v1/queues/work/${action}`, { token: worker, body });
      assert.equal((await settle("visibility", { receipts, visibilitySeconds: 60 })).status, 200);
      assert.equal((await settle("nack", { receipts: [receipts[0]] })).status, 200);
      assert.equal((await settle("ack", { receipts: receipts.slice(1) })).status, 200);
      // Receiving again is a counted call: still refused.
      assert.equal(
        (await api.call("POST", "/v1/queues/work/receive", { token: worker })).status,
        429,
      );
    });

    await t.step("an admin gives a user its own limit, or none; the user can read it", async () => {
      const admin = api.adminToken;
      const token = await api.userToken("tenant");
      const path = "/v1/users/tenant/rate-limit";
      const own = await api.call("GET", path, { token });
      assert.equal(own.status, 200);
      assert.deepEqual(own.body, {
        limit: { requestsPerSecond: 0.01, burst: 5 },
        source: "default",
      });
      assert.equal((await api.call("PUT", path, { token, body: { unlimited: true } })).status, 403);
      const set = await api.call("PUT", path, { token: admin, body: { unlimited: true } });
      assert.equal(set.status, 200);
      assert.deepEqual(set.body, { limit: null, source: "user" });
      await api.limiter.flush();
      for (let i = 0; i < 20; i++) {
        const res = await api.call("GET", "/v1/auth/me", { token });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("ratelimit-limit"), null);
      }
      const rate = await api.call("PUT", path, {
        token: admin,
        body: { requestsPerSecond: 0.01, burst: 2 },
      });
      assert.deepEqual(rate.body, { limit: { requestsPerSecond: 0.01, burst: 2 }, source: "user" });
      await api.limiter.flush();
      assert.equal(
        (await api.call("GET", "/v1/auth/me", { token })).headers.get("ratelimit-limit"),
        "2",
      );
      const cleared = await api.call("DELETE", path, { token: admin });
      assert.deepEqual(cleared.body, {
        limit: { requestsPerSecond: 0.01, burst: 5 },
        source: "default",
      });
    });

    await t.step("bad limits are 400, unknown users 404, other users' limits 403", async () => {
      const admin = api.adminToken;
      for (
        const body of [
          {},
          { requestsPerSecond: 0 },
          { requestsPerSecond: -1 },
          { requestsPerSecond: "fast" },
          { requestsPerSecond: 10, burst: 0.5 },
          { unlimited: false },
          { unlimited: true, requestsPerSecond: 5 },
        ]
      ) {
        const res = await api.call("PUT", "/v1/users/busy/rate-limit", { token: admin, body });
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.equal(res.body.code, "invalid");
      }
      const missing = await api.call("PUT", "/v1/users/nobody/rate-limit", {
        token: admin,
        body: { unlimited: true },
      });
      assert.equal(missing.status, 404);
      const other = await api.userToken("other");
      assert.equal(
        (await api.call("GET", "/v1/users/busy/rate-limit", { token: other })).status,
        403,
      );
    });

    await t.step("failed logins are throttled per client, even the right password", async () => {
      await api.userToken("target", "target-password");
      const login = (password: string, peer: string) =>
        api.call("POST", "/v1/auth/token", { body: { username: "target", password }, peer });
      assert.equal((await login("guess-1", "192.0.2.7")).status, 401);
      assert.equal((await login("guess-2", "192.0.2.7")).status, 401);
      const res = await login("target-password", "192.0.2.7");
      assert.equal(res.status, 429);
      assert.equal(res.body.code, "rate_limited");
      assert.ok(Number(res.headers.get("retry-after")) >= 1);
      // The same user from another address still logs in.
      assert.equal((await login("target-password", "192.0.2.8")).status, 200);
    });

    await t.step("random usernames from one address are throttled by address", async () => {
      const attempt = (username: string) =>
        api.call("POST", "/v1/auth/token", {
          body: { username, password: "whatever" },
          peer: "192.0.2.9",
        });
      const statuses = [];
      for (let i = 0; i < 6; i++) statuses.push((await attempt(`ghost-${i}`)).status);
      assert.deepEqual(statuses, [401, 401, 401, 401, 429, 429]);
      const refused = await attempt("target");
      assert.match(refused.body.detail, /this client address/);
    });
  } finally {
    await api.close();
  }
});

Deno.test("rate limit: calls a little over the rate are held, not refused", async () => {
  const api = await startTestApi({
    rateLimit: { requestsPerSecond: 20, burst: 1 },
    rateLimitMaxDelayMs: 2_000,
  });
  try {
    const token = await api.userToken("steady");
    // 10 calls at once against a bucket of 1 at 20/s: all served, the later ones held.
    const statuses = await Promise.all(
      Array.from({ length: 10 }, () => api.call("GET", "/v1/auth/me", { token })),
    );
    assert.deepEqual(statuses.map((r) => r.status), Array(10).fill(200));
  } finally {
    await api.close();
  }
});

Deno.test("rate limit: password checks queue per node and refuse past the queue", async () => {
  const api = await startTestApi({ hashConcurrency: 1, hashQueue: 2 });
  try {
    await api.userToken("crowd", "crowd-password");
    const logins = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        api.call("POST", "/v1/auth/token", {
          body: { username: "crowd", password: "crowd-password" },
          peer: `198.51.100.${i + 1}`,
        })),
    );
    const statuses = logins.map((r) => r.status);
    // One hashing and two waiting at any moment: the rest are refused as not applied.
    assert.ok(statuses.filter((s) => s === 200).length >= 3, statuses.join(","));
    assert.ok(statuses.every((s) => s === 200 || s === 503), statuses.join(","));
    for (const res of logins.filter((r) => r.status === 503)) {
      assert.equal(res.body.code, "unavailable");
      assert.ok(Number(res.headers.get("retry-after")) >= 1);
    }
    assert.ok(statuses.includes(503), statuses.join(","));
    // A refused login did not count as a failure: the same address logs in afterwards.
    const refusedAt = logins.findIndex((r) => r.status === 503);
    const again = await api.call("POST", "/v1/auth/token", {
      body: { username: "crowd", password: "crowd-password" },
      peer: `198.51.100.${refusedAt + 1}`,
    });
    assert.equal(again.status, 200);
  } finally {
    await api.close();
  }
});
