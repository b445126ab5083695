import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { startTestApi } from "./support/node.ts";
import { freePort, startRedis } from "./support/services.ts";
import { RedisRateLimiter, slidingWindow, WINDOW_MS } from "../src/auth/redis_rate_limiter.ts";
import { userKeys } from "../src/broker/keys.ts";

/** A clock at the start of a window plus `offsetMs`, far from any real window. */
function clockAt(offsetMs: number) {
  const clock = { now: 1_000 * WINDOW_MS + offsetMs };
  return { clock, now: () => clock.now };
}

Deno.test("rate limit: the sliding-window estimate and its wait", () => {
  // Empty: allowed.
  assert.deepEqual(slidingWindow({ previous: 0, current: 0, elapsed: 0 }, 3), {
    allowed: true,
    retryAfterMs: 0,
  });
  // The limit is reached within the window: wait for the next window, then until this window's
  // weight leaves room (prev 3 weighs 2 once a third of the next window has passed).
  const full = slidingWindow({ previous: 0, current: 3, elapsed: 0.5 }, 3);
  assert.equal(full.allowed, false);
  assert.equal(full.retryAfterMs, 30_000 + 20_000);
  assert.ok(slidingWindow({ previous: 3, current: 0, elapsed: 1 / 3 + 1e-9 }, 3).allowed);
  // One below the limit, kept over it by the previous window: allowed right at the next window.
  assert.equal(slidingWindow({ previous: 1, current: 1, elapsed: 0.75 }, 2).retryAfterMs, 15_000);
  assert.equal(slidingWindow({ previous: 0, current: 2, elapsed: 0.75 }, 2).retryAfterMs, 45_000);
  // The previous window's share keeps the budget spent until enough of it has slid out.
  const prev = slidingWindow({ previous: 10, current: 0, elapsed: 0.05 }, 10);
  assert.equal(prev.allowed, false);
  assert.equal(prev.retryAfterMs, Math.ceil((0.1 - 0.05) * WINDOW_MS)); // 10 * 0.9 + 1 <= 10
  assert.ok(slidingWindow({ previous: 10, current: 0, elapsed: 0.1 }, 10).allowed);
  // A limit of 1 with one call made: two window edges away at most.
  assert.equal(slidingWindow({ previous: 0, current: 1, elapsed: 0 }, 1).retryAfterMs, 120_000);
});

Deno.test("rate limit: one node counts locally and refuses with Retry-After", async (t) => {
  const redis = await startRedis();
  const client = new Redis(redis.url);
  const { clock, now } = clockAt(1_000);
  const limiter = new RedisRateLimiter(client, {
    perMinute: 3,
    loginFailuresPerMinute: 3,
    syncIntervalMs: 60_000, // syncs only when the test flushes
    now,
  });
  try {
    await t.step("the budget is per user, exact on one node", () => {
      for (let i = 0; i < 3; i++) assert.equal(limiter.take("u1").allowed, true);
      const refused = limiter.take("u1");
      assert.equal(refused.allowed, false);
      // 59 s to the next window, then 20 s until the 3 calls weigh 2.
      assert.equal(refused.retryAfterSeconds, 79);
      assert.equal(limiter.take("u2").allowed, true);
    });

    await t.step("refused calls do not count; the window slides", () => {
      clock.now += 59_000 + 20_000 - 1;
      assert.equal(limiter.take("u1").allowed, false);
      clock.now += 1;
      assert.equal(limiter.take("u1").allowed, true);
      assert.equal(limiter.take("u1").allowed, false);
    });

    await t.step("counts reach Redis in one sync, with an expiry", async () => {
      await limiter.flush();
      const w = Math.floor(clock.now / WINDOW_MS);
      assert.equal(await client.get(userKeys.rate("u1", w - 1)), "3");
      assert.equal(await client.get(userKeys.rate("u1", w)), "1");
      const ttl = await client.pttl(userKeys.rate("u1", w));
      assert.ok(ttl > WINDOW_MS && ttl <= 2 * WINDOW_MS + 10_000, `ttl ${ttl}`);
    });
  } finally {
    await limiter.close();
    client.disconnect();
    await redis.stop();
  }
});

Deno.test("rate limit: two nodes on one Redis share each user's budget", async (t) => {
  const redis = await startRedis();
  const ca = new Redis(redis.url);
  const cb = new Redis(redis.url);
  const { now } = clockAt(5_000);
  const opts = { perMinute: 5, loginFailuresPerMinute: 5, syncIntervalMs: 60_000, now };
  const a = new RedisRateLimiter(ca, opts);
  const b = new RedisRateLimiter(cb, opts);
  try {
    await t.step("calls on node A count on node B after a sync", async () => {
      for (let i = 0; i < 3; i++) assert.ok(a.take("shared").allowed);
      await a.flush();
      assert.ok(b.take("shared").allowed); // B: 0 known + 1 local
      await b.flush(); // pushes 1, reads the total 4
      assert.ok(b.take("shared").allowed); // 5th call
      assert.equal(b.take("shared").allowed, false);
      await b.flush();
      await a.flush(); // A learns the total of 5
      const refused = a.take("shared");
      assert.equal(refused.allowed, false);
      assert.ok(refused.retryAfterSeconds > 55, `retry after ${refused.retryAfterSeconds}`);
    });

    await t.step("the overshoot is bounded by what one sync interval hides", async () => {
      // Both nodes spend a fresh user's budget before either syncs: each sees only itself.
      let admitted = 0;
      for (let i = 0; i < 5; i++) admitted += Number(a.take("burst").allowed);
      for (let i = 0; i < 5; i++) admitted += Number(b.take("burst").allowed);
      assert.equal(admitted, 10); // at most nodes x perMinute
      await a.flush();
      await b.flush();
      await a.flush();
      assert.equal(a.take("burst").allowed, false);
      assert.equal(b.take("burst").allowed, false);
      const w = Math.floor(now() / WINDOW_MS);
      assert.equal(await ca.get(userKeys.rate("burst", w)), "10");
    });
  } finally {
    await a.close();
    await b.close();
    ca.disconnect();
    cb.disconnect();
    await redis.stop();
  }
});

Deno.test("rate limit: the periodic sync runs on its own", async () => {
  const redis = await startRedis();
  const client = new Redis(redis.url);
  const limiter = new RedisRateLimiter(client, {
    perMinute: 100,
    loginFailuresPerMinute: 5,
    syncIntervalMs: 20,
  });
  try {
    limiter.take("ticker");
    const w = Math.floor(Date.now() / WINDOW_MS);
    const until = Date.now() + 5_000;
    let value: string | null = null;
    while (Date.now() < until) {
      // Accept either window in case the minute rolls over during the test.
      value = (await client.get(userKeys.rate("ticker", w))) ??
        (await client.get(userKeys.rate("ticker", w + 1)));
      if (value === "1") break;
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(value, "1");
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
  const warn = console.warn;
  const warnings: string[] = [];
  console.warn = (msg: string) => warnings.push(msg);
  const limiter = new RedisRateLimiter(client, {
    perMinute: 2,
    loginFailuresPerMinute: 5,
    syncIntervalMs: 60_000,
  });
  try {
    assert.ok(limiter.take("offline").allowed);
    await limiter.flush(); // fails quietly; the count stays local
    await limiter.flush();
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.ok(limiter.take("offline").allowed);
    assert.equal(limiter.take("offline").allowed, false);
  } finally {
    console.warn = warn;
    await limiter.close();
    client.disconnect();
  }
});

Deno.test("rate limit: failed logins per username and client", async (t) => {
  const redis = await startRedis();
  const client = new Redis(redis.url);
  const { clock, now } = clockAt(0);
  const limiter = new RedisRateLimiter(client, {
    perMinute: 100,
    loginFailuresPerMinute: 3,
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
      assert.equal(refused.retryAfterSeconds, 57); // the first failure is 3 s old
      const ttl = await client.pttl(userKeys.loginFailures("victim", "10.0.0.1"));
      assert.ok(ttl > 0 && ttl <= WINDOW_MS);
    });

    await t.step("other clients and other usernames are not affected", async () => {
      assert.ok((await limiter.loginAttempt("victim", "10.0.0.2")).allowed);
      assert.ok((await limiter.loginAttempt("other", "10.0.0.1")).allowed);
    });

    await t.step("the oldest failure ageing out frees one attempt", async () => {
      clock.now += 57_000;
      assert.ok((await limiter.loginAttempt("victim", "10.0.0.1")).allowed);
      assert.equal((await limiter.loginAttempt("victim", "10.0.0.1")).allowed, false);
    });

    await t.step("a success takes its own attempt back out of the count", async () => {
      for (let i = 0; i < 10; i++) {
        const attempt = await limiter.loginAttempt("regular", "10.0.0.3");
        assert.ok(attempt.allowed, `attempt ${i}`);
        await attempt.succeeded();
      }
    });

    await t.step("parallel attempts cannot exceed the limit", async () => {
      const attempts = await Promise.all(
        Array.from({ length: 10 }, () => limiter.loginAttempt("racer", "10.0.0.4")),
      );
      assert.equal(attempts.filter((a) => a.allowed).length, 3);
    });
  } finally {
    await limiter.close();
    client.disconnect();
    await redis.stop();
  }
});

Deno.test("rate limit: through the API", async (t) => {
  const api = await startTestApi({ rateLimitPerMinute: 5, loginFailuresPerMinute: 2 });
  try {
    await t.step("a user's calls beyond the limit are 429 with Retry-After", async () => {
      // Logging in is not an API call of the user: a fresh budget.
      const token = await api.userToken("busy");
      for (let i = 0; i < 5; i++) {
        assert.equal((await api.call("GET", "/v1/auth/me", { token })).status, 200);
      }
      const res = await api.call("GET", "/v1/auth/me", { token });
      assert.equal(res.status, 429);
      assert.equal(res.headers.get("content-type"), "application/problem+json");
      assert.equal(res.body.code, "rate_limited");
      const retry = Number(res.headers.get("retry-after"));
      assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 120, `retry-after ${retry}`);
    });

    await t.step("another user keeps its own budget", async () => {
      const token = await api.userToken("calm");
      assert.equal((await api.call("GET", "/v1/auth/me", { token })).status, 200);
    });

    await t.step("failed logins are throttled per client, even the right password", async () => {
      await api.userToken("target", "target-password");
      const login = (password: string, peer: string) =>
        api.call("POST", "/v1/auth/token", {
          body: { username: "target", password },
          peer,
        });
      assert.equal((await login("guess-1", "192.0.2.7")).status, 401);
      assert.equal((await login("guess-2", "192.0.2.7")).status, 401);
      const res = await login("target-password", "192.0.2.7");
      assert.equal(res.status, 429);
      assert.equal(res.body.code, "rate_limited");
      assert.ok(Number(res.headers.get("retry-after")) >= 1);
      // The same user from another address still logs in.
      assert.equal((await login("target-password", "192.0.2.8")).status, 200);
    });

    await t.step("unknown usernames are throttled the same way", async () => {
      const attempt = () =>
        api.call("POST", "/v1/auth/token", {
          body: { username: "ghost", password: "whatever" },
          peer: "192.0.2.9",
        });
      assert.equal((await attempt()).status, 401);
      assert.equal((await attempt()).status, 401);
      assert.equal((await attempt()).status, 429);
    });
  } finally {
    await api.close();
  }
});
