/**
 * Rate limits in a real three-node cluster behind NGINX: consumers of one user under the default
 * limits drain a large queue with no 429 and no duplicate, and a per-user limit set through the
 * CLI holds on every node while acks are never refused.
 */
import assert from "node:assert/strict";
import { type Cluster, withCluster } from "./support/cluster.ts";
import { cliUser } from "./support/cli.ts";
import { MomdClient } from "../src/client/mod.ts";
import { ConfigSchema } from "../src/config/schema.ts";

/** The shipped default, so the test follows it if it changes. */
const DEFAULT_RATE = ConfigSchema.shape.rateLimitPerSecond.parse(undefined);

/** Answers counted by the kind of call (`ack`, `receive`, ...) and status. */
class Tally {
  readonly counts = new Map<string, number>();

  /** A fetch that counts every answer it gets. */
  fetch: typeof fetch = async (input, init) => {
    const res = await fetch(input, init);
    const url = new URL(input instanceof Request ? input.url : String(input));
    const kind = /\/(ack|nack|visibility|receive|messages)$/.exec(url.pathname)?.[1] ?? "other";
    const key = `${kind} ${res.status}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    return res;
  };

  of(kind: string, status: number): number {
    return this.counts.get(`${kind} ${status}`) ?? 0;
  }

  status(status: number): number {
    let n = 0;
    for (const [key, count] of this.counts) if (key.endsWith(` ${status}`)) n += count;
    return n;
  }

  toString(): string {
    return JSON.stringify(Object.fromEntries(this.counts));
  }
}

async function createUser(cluster: Cluster, username: string): Promise<string> {
  const password = `${username}-password`;
  const res = await cluster.call("POST", "/v1/users", { body: { username, password } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return password;
}

/** Sends `count` messages `m-0` ... in batches of 100, eight batches at once. */
async function fill(cluster: Cluster, token: string, queue: string, count: number): Promise<void> {
  let next = 0;
  async function sender() {
    while (next < count) {
      const from = next;
      next = Math.min(count, next + 100);
      const messages = [];
      for (let i = from; i < next; i++) messages.push({ body: `m-${i}`, dedupId: `m-${i}` });
      const res = await cluster.call("POST", `/v1/queues/${queue}/messages`, {
        token,
        body: { messages },
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
    }
  }
  await Promise.all(Array.from({ length: 8 }, sender));
}

/**
 * Drains `count` messages with `workers` clients of one user, each a `consume()` with eight
 * handlers; returns how often each body was handed to a handler and the answers seen.
 */
async function drain(
  cluster: Cluster,
  opts: { username: string; password: string; queue: string; count: number; workers: number },
): Promise<{ deliveries: Map<string, number>; acked: number; tally: Tally }> {
  const tally = new Tally();
  const deliveries = new Map<string, number>();
  const errors: unknown[] = [];
  const consumers = Array.from({ length: opts.workers }, () => {
    const client = new MomdClient({
      url: cluster.url,
      username: opts.username,
      password: opts.password,
      fetch: tally.fetch,
    });
    return client.consume(opts.queue, (m) => {
      deliveries.set(String(m.body), (deliveries.get(String(m.body)) ?? 0) + 1);
    }, { concurrency: 8, waitSeconds: 1, onError: (err) => errors.push(err) });
  });
  const acked = () => consumers.reduce((n, c) => n + c.stats.acked, 0);
  try {
    await cluster.waitFor(`${opts.count} messages acked`, () => acked() >= opts.count, {
      timeoutMs: 240_000,
      intervalMs: 200,
      describe: () => `acked ${acked()}, answers ${tally}, errors ${errors.slice(0, 3)}`,
    });
  } finally {
    for (const c of consumers) c.stop();
    await Promise.all(consumers.map((c) => c.done.catch(() => {})));
  }
  return { deliveries, acked: acked(), tally };
}

function assertEachOnce(deliveries: Map<string, number>, count: number): void {
  const duplicates = [...deliveries].filter(([, n]) => n > 1);
  assert.deepEqual(duplicates.slice(0, 5), [], `${duplicates.length} bodies delivered twice`);
  for (let i = 0; i < count; i++) assert.equal(deliveries.get(`m-${i}`), 1, `m-${i}`);
  assert.equal(deliveries.size, count);
}

async function assertEmpty(cluster: Cluster, token: string, queue: string, count: number) {
  const res = await cluster.call("GET", `/v1/queues/${queue}`, { token });
  assert.equal(res.status, 200);
  const stats = (res.body as { stats: Record<string, unknown> }).stats;
  assert.equal(stats.depth, 0);
  assert.equal(stats.inFlight, 0);
  assert.equal((stats.totals as Record<string, number>).acked, count);
}

Deno.test({
  name: "rate limit in a cluster: default limits never slow a normal consumer; a per-user " +
    "limit set through the CLI holds on every node and never refuses an ack",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withCluster({
      env: { MOMD_RATE_LIMIT_PER_SECOND: String(DEFAULT_RATE) },
      deadlineMs: 420_000,
    }, async (cluster) => {
      // 10,000 in the suite; MOMD_DRAIN_MESSAGES=100000 for the full run (about 4 minutes here).
      const count = Number(Deno.env.get("MOMD_DRAIN_MESSAGES") ?? 10_000);
      const appPassword = await createUser(cluster, "app");
      const app = await cluster.login("app", appPassword);
      assert.equal((await cluster.call("PUT", "/v1/queues/jobs", { token: app })).status, 201);
      await fill(cluster, app, "jobs", count);

      // Four workers of one user, 32 handlers: every message once, not one 429 anywhere.
      const started = Date.now();
      const normal = await drain(cluster, {
        username: "app",
        password: appPassword,
        queue: "jobs",
        count,
        workers: 4,
      });
      assert.equal(normal.acked, count);
      assertEachOnce(normal.deliveries, count);
      assert.equal(normal.tally.status(429), 0, `answers ${normal.tally}`);
      await assertEmpty(cluster, app, "jobs", count);
      console.log(`drained ${count} messages in ${Date.now() - started} ms: ${normal.tally}`);

      // A tight limit of the user's own, set through the CLI, applies on every node.
      const tightPassword = await createUser(cluster, "tight");
      const cli = await cliUser();
      try {
        const env = { MOMD_URL: cluster.url, MOMD_TOKEN: cluster.token };
        const set = await cli.run(["user", "limit", "tight", "--rate", "10", "--burst", "10"], {
          env,
        });
        assert.equal(set.code, 0, set.stderr);
        assert.equal(set.stdout, "tight: 10 calls/s, burst 10 (its own)\n");
        const shown = await cli.run(["user", "limit", "tight", "--json"], { env });
        assert.deepEqual(JSON.parse(shown.stdout), {
          username: "tight",
          limit: { requestsPerSecond: 10, burst: 10 },
          source: "user",
        });
        const bad = await cli.run(["user", "limit", "tight", "--rate", "fast"], { env });
        assert.equal(bad.code, 2, bad.stderr);

        const tight = await cluster.login("tight", tightPassword);
        const small = 150;
        assert.equal((await cluster.call("PUT", "/v1/queues/slow", { token: tight })).status, 201);
        await fill(cluster, app, "slow", small); // sent by another user: only draining is limited

        // Other calls of the same user keep its bucket empty while its consumers drain.
        const noise = new Tally();
        let draining = true;
        const wrong: string[] = [];
        const loops = Array.from({ length: 6 }, async () => {
          const deadline = Date.now() + 120_000;
          while ((draining || noise.status(429) === 0) && Date.now() < deadline) {
            const res = await noise.fetch(`${cluster.url}/v1/queues/slow`, {
              headers: { authorization: `Bearer ${tight}` },
            });
            const limit = res.headers.get("ratelimit-limit");
            await res.body?.cancel();
            if (res.status === 200 && limit !== "10") wrong.push([...res.headers].join(" "));
            if (res.status === 429) await new Promise((r) => setTimeout(r, 200));
          }
        });
        const limited = await drain(cluster, {
          username: "tight",
          password: tightPassword,
          queue: "slow",
          count: small,
          workers: 2,
        }).finally(() => draining = false);
        await Promise.all(loops);
        console.log(
          `drained ${small} messages under 10 calls/s: ${limited.tally}; others ${noise}`,
        );
        assert.deepEqual(wrong.slice(0, 3), [], "the user's own limit, on every node");
        assert.ok(noise.status(429) > 0, `the limit refused some calls: ${noise}`);
        assert.equal(limited.tally.of("ack", 429), 0, `answers ${limited.tally}`);
        assert.equal(limited.acked, small);
        assertEachOnce(limited.deliveries, small);
        await assertEmpty(cluster, tight, "slow", small);

        // Back to the default.
        const reset = await cli.run(["user", "limit", "tight", "--default"], { env });
        assert.equal(reset.code, 0, reset.stderr);
        assert.match(reset.stdout, /\(the cluster default\)/);
      } finally {
        await cli.close();
      }
    }),
});
