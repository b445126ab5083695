/**
 * The TypeScript client against a running node: real HTTP (Deno.serve on a free port) to the
 * real API over a real Redis. Where a test needs the network to misbehave (503s, resets), a tiny
 * proxy or fetch wrapper sits in front of the real node and the assertions still read the node.
 */
import assert from "node:assert/strict";
import { serveNode } from "./support/node.ts";
import {
  type Delivery,
  MomdClient,
  MomdConnectionError,
  MomdError,
  MomdPartialSendError,
  type TopicDelivery,
} from "../src/client/mod.ts";
import { BATCH_MAX, WAIT_SECONDS_MAX } from "../src/client/caller.ts";
import { Transport } from "../src/client/http.ts";
import { QUEUE_LIMITS } from "../src/broker/queues.ts";
import { TOPIC_LIMITS } from "../src/broker/topics.ts";

/** A fetch that counts calls per "METHOD /path" and can fail the first ones like a reset. */
function countingFetch(opts: { failFirst?: number } = {}) {
  const counts = new Map<string, number>();
  let calls = 0;
  const f: typeof fetch = (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const key = `${init?.method ?? "GET"} ${url.pathname}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    if (calls++ < (opts.failFirst ?? 0)) {
      return Promise.reject(new TypeError("connection reset by peer (test double)"));
    }
    return fetch(input, init);
  };
  return { fetch: f, count: (key: string) => counts.get(key) ?? 0 };
}

/**
 * A proxy in front of the real node that answers 503 "unavailable" (not applied), or with
 * `outcomeUnknown` 504 "outcome_unknown", with Retry-After, to the first `failures` requests of
 * each "METHOD /path", then passes requests through. Counts what it saw.
 */
function flakyProxy(target: string, failures: number, retryAfter = "1", outcomeUnknown = false) {
  const seen = new Map<string, number[]>();
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    const url = new URL(req.url);
    const key = `${req.method} ${url.pathname}`;
    const times = seen.get(key) ?? [];
    times.push(Date.now());
    seen.set(key, times);
    if (times.length <= failures) {
      await req.body?.cancel();
      const status = outcomeUnknown ? 504 : 503;
      const code = outcomeUnknown ? "outcome_unknown" : "unavailable";
      return new Response(
        JSON.stringify({
          type: `urn:momd:problem:${code}`,
          title: "test double",
          status,
          detail: "test double: not now",
          code,
        }),
        {
          status,
          headers: { "content-type": "application/problem+json", "retry-after": retryAfter },
        },
      );
    }
    const headers = new Headers(req.headers);
    headers.delete("host");
    const res = await fetch(target + url.pathname + url.search, {
      method: req.method,
      headers,
      body: req.body ? await req.arrayBuffer() : undefined,
    });
    return new Response(res.body, { status: res.status, headers: res.headers });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    times: (key: string) => seen.get(key) ?? [],
    close: () => server.shutdown(),
  };
}

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => resolve = r);
  return { promise, resolve };
}

Deno.test("client: its limits match the server's", () => {
  assert.equal(BATCH_MAX, QUEUE_LIMITS.sendBatchMax);
  assert.equal(BATCH_MAX, TOPIC_LIMITS.publishBatchMax);
  assert.equal(BATCH_MAX, QUEUE_LIMITS.receiptsMax);
  assert.equal(WAIT_SECONDS_MAX, QUEUE_LIMITS.waitSecondsMax);
  assert.equal(WAIT_SECONDS_MAX, TOPIC_LIMITS.waitSecondsMax);
});

Deno.test("client: src/client uses no Deno API and imports server code for types only", async () => {
  const dir = new URL("../src/client/", import.meta.url);
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.name.endsWith(".ts")) continue;
    const text = await Deno.readTextFile(new URL(entry.name, dir));
    assert.doesNotMatch(text, /\bDeno\./, `${entry.name} uses Deno.*`);
    for (const m of text.matchAll(/^import\s+(type\s+)?[^;]*?from\s+"([^"]+)"/gms)) {
      const [, typeOnly, spec] = m;
      if (spec.startsWith("./")) continue;
      assert.ok(typeOnly, `${entry.name}: '${spec}' must be an 'import type' (no server code)`);
    }
  }
});

Deno.test("client: login, token renewal and the problem+json errors", async (t) => {
  let serverSkewMs = 0;
  const node = await serveNode({ tokenTtlSeconds: 600, tokenNow: () => Date.now() + serverSkewMs });
  try {
    await node.api.users.create("alice", "alice-password", "user");

    await t.step("login returns a token; calls carry it", async () => {
      const momd = new MomdClient({ url: node.url });
      const info = await momd.login("alice", "alice-password");
      assert.equal(typeof info.token, "string");
      assert.ok(Date.parse(info.expiresAt) > Date.now() + 500_000);
      assert.equal(momd.token, info.token);
      assert.deepEqual(await momd.me(), { username: "alice", role: "user" });
    });

    await t.step("a wrong password is a MomdError with the problem fields", async () => {
      const momd = new MomdClient({ url: node.url });
      const err = await momd.login("alice", "wrong-password").catch((e) => e);
      assert.ok(err instanceof MomdError);
      assert.equal(err.status, 401);
      assert.equal(err.code, "bad_credentials");
      assert.equal(err.title, "Unauthorized");
      assert.equal(typeof err.detail, "string");
      assert.equal(err.problem.status, 401);
      assert.equal(err.request, "POST /v1/auth/token");
    });

    await t.step("the token is renewed before it expires (client clock)", async () => {
      let clientMs = Date.now();
      const net = countingFetch();
      const momd = new MomdClient({ url: node.url, fetch: net.fetch, now: () => clientMs });
      await momd.login("alice", "alice-password");
      await momd.me();
      assert.equal(net.count("POST /v1/auth/token"), 1);
      clientMs += 500_000; // 100 s left: not yet within the renewal margin (60 s)
      await momd.me();
      assert.equal(net.count("POST /v1/auth/token"), 1);
      clientMs += 50_000; // 50 s left
      await momd.me();
      assert.equal(net.count("POST /v1/auth/token"), 2, "renewed before expiry");
      assert.equal(net.count("GET /v1/auth/me"), 3, "no request was refused");
    });

    await t.step("a 401 token_expired logs in again once and repeats the call", async () => {
      const net = countingFetch();
      const momd = new MomdClient({ url: node.url, fetch: net.fetch });
      await momd.login("alice", "alice-password");
      serverSkewMs = 700_000; // the server's clock passes the token's expiry, the client's not
      await momd.queues.create("renewed");
      assert.equal(net.count("POST /v1/auth/token"), 2);
      assert.equal(net.count("PUT /v1/queues/renewed"), 2);
      assert.equal((await momd.queues.get("renewed")).owner, "alice");
      serverSkewMs = 0;
    });

    await t.step("credentials in the options log in on the first call", async () => {
      const momd = new MomdClient({ url: node.url, username: "alice", password: "alice-password" });
      assert.equal(momd.token, undefined);
      assert.equal((await momd.me()).username, "alice");
      assert.ok(momd.token);
    });

    await t.step("without a token: 401 unauthenticated", async () => {
      const err = await new MomdClient({ url: node.url }).me().catch((e) => e);
      assert.ok(err instanceof MomdError);
      assert.equal(err.status, 401);
      assert.equal(err.code, "unauthenticated");
    });

    await t.step("404 and 403 carry their codes", async () => {
      const alice = new MomdClient({
        url: node.url,
        username: "alice",
        password: "alice-password",
      });
      const missing = await alice.queues.get("nope").catch((e) => e);
      assert.ok(missing instanceof MomdError);
      assert.equal(missing.status, 404);
      assert.equal(missing.code, "not_found");
      const forbidden = await alice.users.list().catch((e) => e);
      assert.ok(forbidden instanceof MomdError);
      assert.equal(forbidden.status, 403);
      assert.equal(forbidden.code, "forbidden");
    });

    await t.step("a changed password is used for the next renewal", async () => {
      const momd = new MomdClient({ url: node.url, username: "alice", password: "alice-password" });
      await momd.users.setPassword("alice", {
        password: "alice-password-2",
        currentPassword: "alice-password",
      });
      assert.equal((await momd.me()).username, "alice", "logged in again with the new password");
    });
  } finally {
    await node.close();
  }
});

Deno.test("client: queues — create, send, receive, ack, batch, nack, peek, purge", async (t) => {
  const node = await serveNode();
  const momd = new MomdClient({ url: node.url, username: "admin", password: "admin-password" });
  try {
    await t.step("create is idempotent; get shows counts", async () => {
      const created = await momd.queues.create("jobs", { visibilityTimeoutSeconds: 45 });
      assert.equal(created.created, true);
      assert.equal(created.config.visibilityTimeoutSeconds, 45);
      assert.equal(
        (await momd.queues.create("jobs", { visibilityTimeoutSeconds: 45 })).created,
        false,
      );
      const conflict = await momd.queues.create("jobs").catch((e) => e);
      assert.ok(conflict instanceof MomdError && conflict.status === 409);
      const detail = await momd.queues.get("jobs");
      assert.equal(detail.stats.depth, 0);
      assert.equal(detail.owner, "admin");
    });

    await t.step("send one, receive it with its attributes, ack it", async () => {
      const sent = await momd.queues.send("jobs", {
        body: "hello",
        attributes: { kind: "greeting" },
      });
      assert.equal(sent.duplicate, false);
      const [m] = await momd.queues.receive("jobs", { waitSeconds: 1 });
      assert.equal(m.id, sent.id);
      assert.equal(m.body, "hello");
      assert.deepEqual(m.attributes, { kind: "greeting" });
      assert.equal(m.deliveryCount, 1);
      assert.deepEqual(await momd.queues.ack("jobs", [m]), [{ receipt: m.receipt, ok: true }]);
      const stale = await momd.queues.ack("jobs", [m.receipt]);
      assert.equal(stale[0].ok, false);
      assert.equal(stale[0].error, "stale_receipt");
      assert.equal((await momd.queues.get("jobs")).stats.depth, 0);
    });

    await t.step("a batch is stored in order; receive takes up to max", async () => {
      const bodies = Array.from({ length: 100 }, (_, i) => `m${i}`);
      const sent = await momd.queues.sendBatch("jobs", bodies);
      assert.equal(sent.length, 100);
      const got: Delivery[] = [];
      while (got.length < 100) got.push(...await momd.queues.receive("jobs", { max: 40 }));
      assert.deepEqual(got.map((m) => m.body), bodies);
      const results = await momd.queues.ack("jobs", got);
      assert.ok(results.every((r) => r.ok));
    });

    await t.step("more than 100 messages: requests of 100, in order, one result", async () => {
      const counting = countingFetch();
      const split = new MomdClient({ url: node.url, token: momd.token, fetch: counting.fetch });
      await split.queues.create("big");
      const bodies = Array.from({ length: 250 }, (_, i) => `b${i}`);
      const sent = await split.queues.sendBatch("big", bodies);
      assert.equal(sent.length, 250);
      assert.equal(new Set(sent.map((m) => m.id)).size, 250);
      assert.equal(counting.count("POST /v1/queues/big/messages"), 3, "100 + 100 + 50");
      const peek = await split.queues.peek("big", { limit: 100 });
      assert.deepEqual(peek.map((m) => m.id), sent.slice(0, 100).map((m) => m.id));
      const got: Delivery[] = [];
      while (got.length < 250) got.push(...await split.queues.receive("big", { max: 100 }));
      assert.deepEqual(got.map((m) => m.body), bodies, "stored in input order");
      assert.deepEqual(got.map((m) => m.id), sent.map((m) => m.id), "outcomes in input order");
      await split.queues.delete("big");
    });

    await t.step("a split send that fails part way says what was stored", async () => {
      await momd.queues.create("small", { maxLength: 150 });
      const bodies = Array.from({ length: 250 }, (_, i) => `s${i}`);
      const err = await momd.queues.sendBatch("small", bodies).catch((e) => e);
      assert.ok(err instanceof MomdPartialSendError, String(err));
      assert.equal(err.sent.length, 100, "the first request was stored");
      assert.ok(err.cause instanceof MomdError);
      assert.equal(err.cause.code, "queue_full");
      assert.equal((await momd.queues.get("small")).stats.depth, 100);
      // A failure of the first request is that failure itself (nothing was stored).
      const first = await momd.queues.sendBatch("no-such-queue", bodies).catch((e) => e);
      assert.ok(first instanceof MomdError && first.status === 404, String(first));
      await momd.queues.delete("small");
    });

    await t.step("dedupId: the same id is stored once", async () => {
      const a = await momd.queues.send("jobs", { body: "once", dedupId: "d-1" });
      const b = await momd.queues.send("jobs", { body: "once", dedupId: "d-1" });
      assert.equal(b.id, a.id);
      assert.equal(b.duplicate, true);
      assert.equal((await momd.queues.get("jobs")).stats.depth, 1);
    });

    await t.step("nack with a delay, visibility, peek, purge", async () => {
      const [m] = await momd.queues.receive("jobs");
      assert.ok(
        (await momd.queues.changeVisibility("jobs", { receipts: [m], visibilitySeconds: 60 }))[0]
          .ok,
      );
      const inflight = await momd.queues.peek("jobs", { state: "inflight" });
      assert.deepEqual(inflight.map((p) => p.id), [m.id]);
      assert.ok((await momd.queues.nack("jobs", [m], { delaySeconds: 30 }))[0].ok);
      assert.equal((await momd.queues.get("jobs")).stats.delayed, 1);
      assert.deepEqual(await momd.queues.purge("jobs"), { purged: 1 });
    });

    await t.step("list pages through every queue", async () => {
      for (const name of ["a-1", "a-2", "a-3"]) await momd.queues.create(name);
      const page = await momd.queues.list({ prefix: "a-", limit: 2 });
      assert.equal(page.queues.length, 2);
      assert.equal(page.next, "a-2");
      const all: string[] = [];
      for await (const q of momd.queues.listAll({ prefix: "a-", limit: 2 })) all.push(q.name);
      assert.deepEqual(all, ["a-1", "a-2", "a-3"]);
    });

    await t.step("the cluster status of a single node lists what it owns", async () => {
      const status = await momd.cluster();
      assert.equal(status.mode, "single");
      assert.equal(status.nodes.length, 1);
      assert.deepEqual(
        status.entities.filter((e) => e.type === "queue").map((e) => e.name),
        ["a-1", "a-2", "a-3", "jobs"],
      );
    });

    await t.step("configure and delete", async () => {
      const info = await momd.queues.configure("a-1", { maxDeliveries: 2 });
      assert.equal(info.config.maxDeliveries, 2);
      await momd.queues.delete("a-1");
      const gone = await momd.queues.get("a-1").catch((e) => e);
      assert.ok(gone instanceof MomdError && gone.status === 404);
    });

    await t.step("dead letters are redriven", async () => {
      await momd.queues.create("dl", { maxDeliveries: 1 });
      await momd.queues.send("dl", "poison");
      const [m] = await momd.queues.receive("dl");
      await momd.queues.nack("dl", [m]);
      assert.equal((await momd.queues.get("dl")).stats.deadLettered, 1);
      const moved = await momd.queues.redrive("dl");
      assert.equal(moved.moved, 1);
      assert.equal((await momd.queues.get("dl")).stats.depth, 1);
    });
  } finally {
    await node.close();
  }
});

Deno.test("client: consume acks on success, nacks with backoff, extends, stops", async (t) => {
  const node = await serveNode();
  const momd = new MomdClient({ url: node.url, username: "admin", password: "admin-password" });
  const errors: unknown[] = [];
  const onError = (err: unknown) => errors.push(err);
  try {
    await t.step("every message handled once and acked; done resolves after max", async () => {
      await momd.queues.create("work");
      const bodies = Array.from({ length: 12 }, (_, i) => `job-${i}`);
      await momd.queues.sendBatch("work", bodies);
      const seen: string[] = [];
      let running = 0;
      let peak = 0;
      const consumer = momd.consume("work", async (m) => {
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 20));
        seen.push(m.body);
        running--;
      }, { concurrency: 4, max: 12, waitSeconds: 1, onError });
      const stats = await consumer.done;
      assert.deepEqual(stats, { received: 12, acked: 12, nacked: 0, settleErrors: 0 });
      assert.deepEqual([...seen].sort(), [...bodies].sort());
      assert.ok(peak > 1 && peak <= 4, `ran ${peak} at once`);
      const q = await momd.queues.get("work");
      assert.equal(q.stats.depth + q.stats.inFlight, 0);
      assert.equal(q.stats.totals.acked, 12);
    });

    await t.step("a failure is nacked with a backoff delay and redelivered", async () => {
      await momd.queues.send("work", "flaky");
      const deliveries: { count: number; at: number }[] = [];
      const consumer = momd.consume("work", (m) => {
        deliveries.push({ count: m.deliveryCount, at: Date.now() });
        if (m.deliveryCount === 1) throw new Error("first attempt fails");
      }, { max: 2, waitSeconds: 2, backoff: { baseSeconds: 1 }, onError });
      const stats = await consumer.done;
      assert.deepEqual(stats, { received: 2, acked: 1, nacked: 1, settleErrors: 0 });
      assert.deepEqual(deliveries.map((d) => d.count), [1, 2]);
      const gap = deliveries[1].at - deliveries[0].at;
      assert.ok(gap >= 900, `redelivered after ${gap} ms, not before the 1 s nack delay`);
      assert.match(String(errors.at(-1)), /first attempt fails/);
      const q = await momd.queues.get("work");
      assert.equal(q.stats.depth + q.stats.inFlight + q.stats.delayed, 0);
    });

    await t.step("visibility is extended while a long handler runs", async () => {
      await momd.queues.send("work", "slow");
      let stolen = 0;
      const consumer = momd.consume("work", async () => {
        // Meanwhile nobody else gets the message, though its visibility is 1 s.
        for (let i = 0; i < 5; i++) {
          await new Promise((r) => setTimeout(r, 500));
          stolen += (await momd.queues.receive("work")).length;
        }
      }, { max: 1, visibilitySeconds: 1, extendEvery: 0.3, waitSeconds: 1, onError });
      const stats = await consumer.done;
      assert.equal(stolen, 0);
      assert.deepEqual(stats, { received: 1, acked: 1, nacked: 0, settleErrors: 0 });
    });

    await t.step("stop() aborts the long poll and waits for running handlers", async () => {
      const gate = deferred();
      const started = deferred();
      let finished = false;
      const consumer = momd.consume("work", async () => {
        started.resolve();
        await gate.promise;
        finished = true;
      }, { waitSeconds: 20, concurrency: 2, onError });
      await momd.queues.send("work", "in flight at stop");
      await started.promise;
      let stopped = false;
      const stopping = consumer.stop().then((s) => {
        stopped = true;
        return s;
      });
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(stopped, false, "stop waits for the running handler");
      const t0 = Date.now();
      gate.resolve();
      const stats = await stopping;
      assert.ok(Date.now() - t0 < 2000, "the 20 s long poll did not hold up the stop");
      assert.equal(finished, true);
      assert.equal(stats.acked, 1);
      const q = await momd.queues.get("work");
      assert.equal(q.stats.depth + q.stats.inFlight, 0);
    });

    await t.step("an AbortSignal stops it too", async () => {
      const controller = new AbortController();
      const consumer = momd.consume("work", () => {}, {
        signal: controller.signal,
        waitSeconds: 20,
        onError,
      });
      await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      controller.abort();
      await consumer.done;
      assert.ok(Date.now() - t0 < 2000);
    });

    await t.step("a receive refused for good (404) rejects done", async () => {
      const consumer = momd.consume("missing-queue", () => {}, { visibilitySeconds: 5, onError });
      const err = await consumer.done.catch((e) => e);
      assert.ok(err instanceof MomdError);
      assert.equal(err.status, 404);
    });
  } finally {
    await node.close();
  }
});

Deno.test("client: retries 503 honouring Retry-After; a 504 only with a dedupId", async (t) => {
  const node = await serveNode();
  const admin = new MomdClient({ url: node.url, username: "admin", password: "admin-password" });
  await admin.queues.create("retry");
  await admin.topics.create("retry-topic");
  const token = (await admin.login("admin", "admin-password")).token;
  try {
    await t.step("a GET answered 503 twice is retried after Retry-After and succeeds", async () => {
      const proxy = flakyProxy(node.url, 2, "1");
      try {
        const momd = new MomdClient({ url: proxy.url, token });
        const q = await momd.queues.get("retry");
        assert.equal(q.name, "retry");
        const times = proxy.times("GET /v1/queues/retry");
        assert.equal(times.length, 3);
        assert.ok(times[1] - times[0] >= 950, `waited ${times[1] - times[0]} ms, Retry-After 1 s`);
        assert.ok(times[2] - times[1] >= 950);
      } finally {
        await proxy.close();
      }
    });

    await t.step("a send with dedupId is retried and stored once", async () => {
      const proxy = flakyProxy(node.url, 2, "0");
      try {
        const momd = new MomdClient({ url: proxy.url, token });
        await momd.queues.send("retry", { body: "safe", dedupId: "retry-1" });
        assert.equal(proxy.times("POST /v1/queues/retry/messages").length, 3);
        const peeked = await admin.queues.peek("retry");
        assert.deepEqual(peeked.map((m) => m.body), ["safe"]);
        await admin.queues.purge("retry");
      } finally {
        await proxy.close();
      }
    });

    await t.step(
      "a 503 (not applied) is retried for any request; sends get a dedupId",
      async () => {
        const proxy = flakyProxy(node.url, 2, "0");
        try {
          const momd = new MomdClient({ url: proxy.url, token });
          await momd.queues.sendBatch("retry", ["a", { body: "b", dedupId: "x" }]);
          assert.equal(proxy.times("POST /v1/queues/retry/messages").length, 3);
          await momd.topics.publish("retry-topic", "x");
          assert.equal(proxy.times("POST /v1/topics/retry-topic/messages").length, 3);
          assert.deepEqual((await admin.queues.peek("retry")).map((m) => m.body), ["a", "b"]);
          assert.equal((await admin.topics.get("retry-topic")).stats.nextOffset, 1);
          await admin.queues.purge("retry");
        } finally {
          await proxy.close();
        }
      },
    );

    await t.step("a 504 (outcome unknown) is retried only for de-duplicated sends", async () => {
      const proxy = flakyProxy(node.url, 1, "0", true);
      try {
        // The client's own dedupId makes the retry safe: stored once.
        const momd = new MomdClient({ url: proxy.url, token });
        await momd.queues.send("retry", "once");
        assert.equal(proxy.times("POST /v1/queues/retry/messages").length, 2);
        assert.deepEqual((await admin.queues.peek("retry")).map((m) => m.body), ["once"]);
        // Topics have no de-duplication: a publish whose outcome is unknown is not repeated.
        const perr = await momd.topics.publish("retry-topic", "y").catch((e) => e);
        assert.ok(perr instanceof MomdError && perr.status === 504);
        assert.equal(proxy.times("POST /v1/topics/retry-topic/messages").length, 1);
      } finally {
        await proxy.close();
      }
      // Without de-duplication a retry could store it twice: the 504 goes to the caller.
      const proxy2 = flakyProxy(node.url, 1, "0", true);
      try {
        const plain = new MomdClient({ url: proxy2.url, token, idempotentSends: false });
        const err = await plain.queues.send("retry", "maybe").catch((e) => e);
        assert.ok(err instanceof MomdError && err.status === 504, String(err));
        assert.equal(err.problem.code, "outcome_unknown");
        assert.equal(proxy2.times("POST /v1/queues/retry/messages").length, 1);
        await admin.queues.purge("retry");
      } finally {
        await proxy2.close();
      }
    });

    await t.step("network errors: GET retried, a send only with its dedupId", async () => {
      const retry = { baseDelayMs: 10 };
      const net = countingFetch({ failFirst: 1 });
      const reader = new MomdClient({ url: node.url, token, fetch: net.fetch, retry });
      assert.equal((await reader.queues.get("retry")).name, "retry");
      assert.equal(net.count("GET /v1/queues/retry"), 2);

      const net2 = countingFetch({ failFirst: 1 });
      const sender = new MomdClient({ url: node.url, token, fetch: net2.fetch, retry });
      await sender.queues.send("retry", "kept");
      assert.equal(net2.count("POST /v1/queues/retry/messages"), 2);
      assert.equal((await admin.queues.get("retry")).stats.depth, 1);

      const net3 = countingFetch({ failFirst: 1 });
      const plain = new MomdClient({
        url: node.url,
        token,
        fetch: net3.fetch,
        retry,
        idempotentSends: false,
      });
      const err = await plain.queues.send("retry", "lost?").catch((e) => e);
      assert.ok(err instanceof MomdConnectionError);
      assert.equal(net3.count("POST /v1/queues/retry/messages"), 1);
      assert.equal((await admin.queues.get("retry")).stats.depth, 1);
    });

    await t.step("an unreachable server is a MomdConnectionError after the retries", async () => {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (listener.addr as Deno.NetAddr).port;
      listener.close();
      const momd = new MomdClient({
        url: `http://127.0.0.1:${port}`,
        token,
        retry: { retries: 2, baseDelayMs: 10 },
      });
      const err = await momd.queues.get("retry").catch((e) => e);
      assert.ok(err instanceof MomdConnectionError, String(err));
      assert.match(err.message, /cannot reach/);
    });
  } finally {
    await node.close();
  }
});

Deno.test("client: topics — publish, subscribe, receive, ack, consume", async (t) => {
  const node = await serveNode();
  const momd = new MomdClient({ url: node.url, username: "admin", password: "admin-password" });
  const ref = { topic: "events", subscription: "audit" };
  try {
    await t.step("create, subscribe from earliest, publish a batch, receive and ack", async () => {
      assert.equal((await momd.topics.create("events")).created, true);
      const published = await momd.topics.publishBatch("events", [
        "e0",
        { body: "e1", key: "k", attributes: { a: "1" } },
      ]);
      assert.deepEqual(published.map((p) => p.offset), [0, 1]);
      const sub = await momd.topics.subscribe(ref, { start: "earliest" });
      assert.equal(sub.created, true);
      const got = await momd.topics.receive(ref, { max: 10, waitSeconds: 1 });
      assert.deepEqual(got.map((m) => [m.offset, m.body, m.key]), [[0, "e0", null], [
        1,
        "e1",
        "k",
      ]]);
      assert.deepEqual(got[1].attributes, { a: "1" });
      assert.ok((await momd.topics.ack(ref, got)).every((r) => r.ok));
      assert.equal((await momd.topics.getSubscription(ref)).stats.position, 2);
    });

    await t.step("a long poll returns when a message is published", async () => {
      const waiting = momd.topics.receive(ref, { waitSeconds: 10 });
      await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      await momd.topics.publish("events", "late");
      const [m] = await waiting;
      assert.equal(m.body, "late");
      assert.ok(Date.now() - t0 < 2000);
      await momd.topics.nack(ref, [m], { delaySeconds: 0 });
    });

    await t.step("consume a subscription", async () => {
      const seen: TopicDelivery[] = [];
      const consumer = momd.consume(ref, (m) => {
        seen.push(m);
      }, { max: 1, waitSeconds: 1 });
      await consumer.done;
      assert.deepEqual(seen.map((m) => [m.body, m.offset]), [["late", 2]]);
      assert.equal((await momd.topics.getSubscription(ref)).stats.inFlight, 0);
    });

    await t.step("peek, seek, list subscriptions, list topics, unsubscribe, delete", async () => {
      const peek = await momd.topics.peek("events", { from: 1, limit: 5 });
      assert.deepEqual(peek.messages.map((m) => m.offset), [1, 2]);
      assert.equal((await momd.topics.seek(ref, { offset: 0 })).position, 0);
      assert.deepEqual((await momd.topics.listSubscriptions("events")).map((s) => s.name), [
        "audit",
      ]);
      assert.deepEqual((await momd.topics.list()).topics.map((x) => x.name), ["events"]);
      await momd.topics.unsubscribe(ref);
      assert.deepEqual(await momd.topics.listSubscriptions("events"), []);
      await momd.topics.delete("events");
      const gone = await momd.topics.get("events").catch((e) => e);
      assert.ok(gone instanceof MomdError && gone.status === 404);
    });
  } finally {
    await node.close();
  }
});

Deno.test("client: users — create, list, get, delete", async () => {
  const node = await serveNode();
  const momd = new MomdClient({ url: node.url, username: "admin", password: "admin-password" });
  try {
    const bob = await momd.users.create({ username: "bob", password: "bob-password" });
    assert.equal(bob.role, "user");
    const names: string[] = [];
    for await (const u of momd.users.listAll()) names.push(u.username);
    assert.deepEqual(names, ["admin", "bob"]);
    assert.equal((await momd.users.get("bob")).username, "bob");
    await momd.users.delete("bob");
    const gone = await momd.users.get("bob").catch((e) => e);
    assert.ok(gone instanceof MomdError && gone.status === 404);
  } finally {
    await node.close();
  }
});

Deno.test("client: request/reply — request() waits for a worker's reply", async (t) => {
  const node = await serveNode();
  const requester = new MomdClient({
    url: node.url,
    username: "admin",
    password: "admin-password",
  });
  await node.api.users.create("worker", "worker-password", "user");
  const worker = new MomdClient({ url: node.url, username: "worker", password: "worker-password" });
  await requester.queues.create("sum");
  /** A sum service: replies a + b, or an error for bad input, then acks. */
  function startWorker() {
    return worker.consume("sum", async (m) => {
      const { a, b } = JSON.parse(m.body);
      if (typeof a !== "number" || typeof b !== "number") {
        await worker.tasks.reply(m, { error: "a and b must be numbers" });
      } else {
        await worker.tasks.reply(m, { result: String(a + b) });
      }
    }, { concurrency: 2, waitSeconds: 1 });
  }
  try {
    await t.step("with a worker running: completed, with the result", async () => {
      const consumer = startWorker();
      try {
        const task = await requester.request("sum", { a: 2, b: 3 }, { timeoutSeconds: 10 });
        assert.equal(task.status, "completed");
        assert.equal(task.result, "5");
        const failed = await requester.request("sum", { a: "x" }, { timeoutSeconds: 10 });
        assert.equal(failed.status, "failed");
        assert.equal(failed.error, "a and b must be numbers");
      } finally {
        await consumer.stop();
      }
    });

    await t.step("with the worker down: pending, then completed once it starts", async () => {
      const task = await requester.request("sum", { a: 40, b: 2 }, {
        timeoutSeconds: 30,
        waitSeconds: 0.5,
      });
      assert.equal(task.status, "pending");
      const consumer = startWorker();
      try {
        const done = await requester.tasks.get(task.taskId, { waitSeconds: 10 });
        assert.equal(done.status, "completed");
        assert.equal(done.result, "42");
        assert.equal((await requester.tasks.get(task.taskId)).result, "42", "read more than once");
      } finally {
        await consumer.stop();
      }
    });

    await t.step("nobody answers before the deadline: expired", async () => {
      const t0 = Date.now();
      const task = await requester.request("sum", { a: 1, b: 1 }, { timeoutSeconds: 1 });
      assert.ok(Date.now() - t0 >= 900, "waited until the deadline");
      const read = task.status === "expired" ? task : await requester.tasks.get(task.taskId);
      assert.equal(read.status, "expired");
    });

    await t.step("a request whose outcome is unknown is retried only with a dedupId", async () => {
      const token = (await requester.login("admin", "admin-password")).token;
      const proxy = flakyProxy(node.url, 1, "0", true);
      try {
        const momd = new MomdClient({ url: proxy.url, token });
        const err = await momd.request("sum", { a: 1, b: 2 }, { waitSeconds: 0 }).catch((e) => e);
        assert.ok(err instanceof MomdError && err.status === 504);
        assert.equal(proxy.times("POST /v1/queues/sum/requests").length, 1);
        await proxy.close();

        const proxy2 = flakyProxy(node.url, 1, "0", true);
        try {
          const safe = new MomdClient({ url: proxy2.url, token });
          const task = await safe.request("sum", { a: 1, b: 2 }, {
            waitSeconds: 0,
            dedupId: "r-1",
          });
          assert.equal(task.status, "pending");
          assert.equal(proxy2.times("POST /v1/queues/sum/requests").length, 2);
        } finally {
          await proxy2.close();
        }
      } finally {
        await proxy.close().catch(() => {});
      }
    });
  } finally {
    await node.close();
  }
});

Deno.test("client: owner hints follow the Momd-Owner of the last answer about each queue", async () => {
  const sent: (string | null)[] = [];
  const answers: { status: number; owner?: string }[] = [];
  const double: typeof fetch = (_input, init) => {
    sent.push(new Headers(init?.headers).get("momd-route"));
    const { status, owner } = answers.shift()!;
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (owner) headers["momd-owner"] = owner;
    return Promise.resolve(new Response("{}", { status, headers }));
  };
  const t = new Transport({ url: "http://momd.invalid", fetch: double, retry: { retries: 0 } });
  const call = (path: string) => t.call({ method: "POST", path, retry: false }).catch(() => {});
  answers.push(
    { status: 201, owner: "node2" }, // a: learned
    { status: 200, owner: "node2" }, // a/receive: hint sent
    { status: 200 }, // b: no hint yet, none learned
    { status: 201, owner: "node3" }, // a moved: the answer names the new owner
    { status: 201, owner: "node3" },
    { status: 404 }, // a deleted: forgotten
    { status: 201 },
  );
  await call("/v1/queues/a/messages");
  await call("/v1/queues/a/receive");
  await call("/v1/queues/b/messages");
  await call("/v1/queues/a/messages");
  await call("/v1/queues/a/ack");
  assert.equal(t.ownerHint("/v1/queues/a"), "node3");
  await call("/v1/queues/a");
  await call("/v1/queues/a/messages");
  assert.deepEqual(sent, [null, "node2", null, "node2", "node3", "node3", null]);
  assert.equal(t.ownerHint("/v1/queues/a"), undefined);

  // Turned off: never sent, never learned.
  const off = new Transport({ url: "http://momd.invalid", fetch: double, ownerHints: false });
  answers.push({ status: 201, owner: "node1" }, { status: 201, owner: "node1" });
  sent.length = 0;
  await off.call({ method: "POST", path: "/v1/topics/t/messages", retry: false });
  await off.call({ method: "POST", path: "/v1/topics/t/messages", retry: false });
  assert.deepEqual(sent, [null, null]);
  assert.equal(off.ownerHint("/v1/topics/t"), undefined);
});
