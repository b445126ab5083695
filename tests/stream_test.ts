/**
 * WebSocket streams (docs/streaming.md) against real node processes and Redis, with a plain
 * WebSocket: producers answered once per send in order, refusals before the upgrade, consumers
 * held to their credits, settling with REST's rules (dead letters included), deliveries released
 * when a socket closes or its node drains, tokens revoked mid-stream, rate limits, and a socket
 * that lands on a node not owning its queue, through NGINX in front of a three-node cluster.
 */
import assert from "node:assert/strict";
import { type RedisServer, startRedis } from "./support/services.ts";
import { type NodeProcess, startNodeProcess } from "./support/process.ts";
import { freePort } from "../scripts/processes.ts";
import { withCluster } from "./support/cluster.ts";

const ADMIN_PASSWORD = "stream-test-admin-password";

// deno-lint-ignore no-explicit-any
type Json = any;

/** A node process with its own Redis. */
interface TestNode {
  url: string;
  admin: string;
  proc: NodeProcess;
  call(
    method: string,
    path: string,
    body?: unknown,
    token?: string,
  ): Promise<{ status: number; body: Json }>;
  /** Creates a plain user (if needed) and returns its token. */
  user(name: string): Promise<string>;
  stop(): Promise<void>;
}

/** Starts a node on its own Redis, or on `redis` (left running when the node stops). */
async function startNode(shared?: RedisServer): Promise<TestNode> {
  const redis: RedisServer = shared ?? await startRedis();
  const proc = await startNodeProcess({
    env: {
      MOMD_NODE_ID: "stream1",
      MOMD_LOCAL_REDIS_URL: `${redis.url}/0`,
      MOMD_USERS_REDIS_URL: `${redis.url}/1`,
      MOMD_BACKUP_REDIS_URL: `${redis.url}/2`,
      MOMD_GRPC_LISTEN: `127.0.0.1:${freePort()}`,
      MOMD_JWT_SECRET: "stream-test-secret-0123456789abcdef",
      MOMD_ADMIN_PASSWORD: ADMIN_PASSWORD,
      MOMD_PASSWORD_HASH_COST: "10",
    },
  });
  const call = async (method: string, path: string, body?: unknown, token?: string) => {
    const res = await fetch(`${proc.url}${path}`, {
      method,
      headers: {
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
  const login = async (username: string, password: string) => {
    const res = await call("POST", "/v1/auth/token", { username, password });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body.token as string;
  };
  const admin = await login("admin", ADMIN_PASSWORD);
  return {
    url: proc.url,
    admin,
    proc,
    call: (method, path, body, token = admin) => call(method, path, body, token),
    async user(name: string) {
      await call("POST", "/v1/users", { username: name, password: `${name}-password` }, admin);
      return await login(name, `${name}-password`);
    },
    async stop() {
      await proc.stop();
      if (!shared) await redis.stop();
    },
  };
}

/** A WebSocket that keeps every frame it got, read in order with `next`. */
class TestSocket {
  readonly frames: Json[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  #read = 0;
  #wake?: () => void;

  private constructor(readonly ws: WebSocket) {
    ws.onmessage = (e) => {
      this.frames.push(JSON.parse(e.data));
      this.#wake?.();
    };
    this.closed = new Promise((resolve) => {
      ws.onclose = (e) => {
        resolve({ code: e.code, reason: e.reason });
        this.#wake?.();
      };
    });
  }

  /**
   * Opens a stream: the token as the subprotocol `bearer.<token>` (as browsers must), or with
   * `header` in Authorization (Deno's WebSocket takes headers).
   */
  static async open(
    base: string,
    path: string,
    token: string,
    opts: { header?: boolean; headers?: Record<string, string> } = {},
  ): Promise<TestSocket> {
    const url = base.replace(/^http/, "ws") + path;
    const ws = opts.header || opts.headers
      ? new WebSocket(url, {
        protocols: opts.header ? ["momd.v1"] : ["momd.v1", `bearer.${token}`],
        headers: { ...(opts.header ? { authorization: `Bearer ${token}` } : {}), ...opts.headers },
      } as unknown as string[])
      : new WebSocket(url, ["momd.v1", `bearer.${token}`]);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`cannot open ${url}`));
    });
    assert.equal(ws.protocol, "momd.v1");
    return new TestSocket(ws);
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** The next frame not read yet (waits up to `timeoutMs`). */
  async next(timeoutMs = 10_000): Promise<Json> {
    const until = Date.now() + timeoutMs;
    while (this.#read >= this.frames.length) {
      const left = until - Date.now();
      if (left <= 0 || this.ws.readyState === WebSocket.CLOSED) {
        throw new Error(`no frame within ${timeoutMs} ms (got ${this.frames.length})`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
    return this.frames[this.#read++];
  }

  /** The next `n` frames. */
  async take(n: number, timeoutMs = 10_000): Promise<Json[]> {
    const out: Json[] = [];
    for (let i = 0; i < n; i++) out.push(await this.next(timeoutMs));
    return out;
  }

  /** Fails if a frame arrives within `ms`. */
  async nothingFor(ms: number): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    assert.equal(
      this.frames.length,
      this.#read,
      `no frame expected: ${JSON.stringify(this.frames.slice(this.#read))}`,
    );
  }

  async close(): Promise<void> {
    this.ws.close();
    await this.closed;
  }
}

/** An upgrade request written by hand: what the node answers before (or instead of) a 101. */
async function rawUpgrade(
  base: string,
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: Headers; body: Json }> {
  const url = new URL(base);
  const conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
  try {
    const lines = [
      `GET ${path} HTTP/1.1`,
      `Host: ${url.host}`,
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13",
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ];
    await conn.write(new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n"));
    let text = "";
    const buf = new Uint8Array(16 * 1024);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) {
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(text)?.[1] ?? 0);
        if (text.startsWith("HTTP/1.1 101") || text.length >= end + 4 + length) break;
      }
      if (Date.now() > deadline) throw new Error(`no complete answer: ${text}`);
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    const [head, ...rest] = text.split("\r\n\r\n");
    const [status, ...fields] = head.split("\r\n");
    const out = new Headers();
    for (const f of fields) {
      const i = f.indexOf(":");
      out.append(f.slice(0, i).trim(), f.slice(i + 1).trim());
    }
    const body = rest.join("\r\n\r\n");
    return {
      status: Number(status.split(" ")[1]),
      headers: out,
      body: body ? JSON.parse(body) : null,
    };
  } finally {
    conn.close();
  }
}

/** Every message of a queue, received (and acked) over REST, in delivery order. */
async function drain(node: TestNode, queue: string): Promise<Json[]> {
  const out: Json[] = [];
  for (;;) {
    const res = await node.call("POST", `/v1/queues/${queue}/receive`, { max: 100 });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    if (res.body.messages.length === 0) return out;
    out.push(...res.body.messages);
    const receipts = res.body.messages.map((m: Json) => m.receipt);
    assert.equal((await node.call("POST", `/v1/queues/${queue}/ack`, { receipts })).status, 200);
  }
}

Deno.test({
  name: "stream: producers, consumers and their refusals on one node",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const node = await startNode();
    try {
      await t.step("1,000 pipelined sends: one 'sent' each, in order, stored once", async () => {
        assert.equal((await node.call("PUT", "/v1/queues/bulk")).status, 201);
        const p = await TestSocket.open(node.url, "/v1/queues/bulk/producer", node.admin);
        for (let i = 0; i < 1000; i++) p.send({ type: "send", context: `c${i}`, body: `m${i}` });
        const answers = await p.take(1000, 30_000);
        assert.deepEqual(answers.map((a) => a.context), answers.map((_, i) => `c${i}`));
        assert.ok(answers.every((a) => a.type === "sent" && a.duplicate === false));
        assert.equal(new Set(answers.map((a) => a.id)).size, 1000);
        await p.nothingFor(200);
        await p.close();
        const stored = await drain(node, "bulk");
        assert.deepEqual(stored.map((m) => m.body), answers.map((_, i) => `m${i}`));
        assert.deepEqual(stored.map((m) => m.id), answers.map((a) => a.id));
        const q = await node.call("GET", "/v1/queues/bulk");
        assert.equal(q.body.stats.totals.sent, 1000);
      });

      await t.step("bad frames are answered 400 and the socket stays open", async () => {
        const p = await TestSocket.open(node.url, "/v1/queues/bulk/producer", node.admin, {
          header: true,
        });
        p.send("not json");
        p.send([1, 2]);
        p.send({ type: "bogus", context: "b" });
        p.send({ type: "send", context: "c", body: 1 });
        p.send({ type: "send", context: "d", body: "x", extra: true });
        p.send({ type: "send", context: "e", body: "x", delaySeconds: -1 });
        p.send({ type: "send", body: "no context" });
        p.ws.send(new Uint8Array([1, 2, 3]));
        p.send({ type: "send", context: "ok", body: "fine" });
        const answers = await p.take(9);
        for (const a of answers.slice(0, 8)) {
          assert.equal(a.type, "error", JSON.stringify(a));
          assert.equal(a.status, 400);
          assert.equal(a.code, "invalid");
          assert.equal(typeof a.detail, "string");
        }
        assert.deepEqual(answers.map((a) => a.context), [
          undefined,
          undefined,
          "b",
          "c",
          "d",
          "e",
          undefined,
          undefined,
          "ok",
        ]);
        assert.equal(answers[8].type, "sent");
        // A frame over 1 MiB ends the socket (1009); nothing of it is stored.
        p.send({ type: "send", context: "big", body: "x".repeat(1024 * 1024) });
        assert.equal((await p.closed).code, 1009);
        const stored = await drain(node, "bulk");
        assert.deepEqual(stored.map((m) => m.body), ["fine"]);

        const c = await TestSocket.open(node.url, "/v1/queues/bulk/consumer", node.admin);
        c.send({ type: "permit", n: 0 });
        c.send({ type: "permit", n: 1001 });
        c.send({ type: "ack", receipts: ["not-a-receipt"], context: "a" });
        c.send({ type: "ack", receipts: [], context: "b" });
        c.send({ type: "nack", receipts: ["x"], delaySeconds: 1, context: "n", more: 1 });
        c.send({ type: "send", context: "s", body: "x" });
        // The ack of a thing that is no receipt is refused by its REST call, the rest at once.
        const refusals = await c.take(6);
        assert.ok(refusals.every((a) => a.type === "error" && a.status === 400));
        assert.deepEqual(refusals.map((a) => a.context ?? "-").sort(), [
          "-",
          "-",
          "a",
          "b",
          "n",
          "s",
        ]);
        // Still open: a permit works.
        assert.equal(
          (await node.call("POST", "/v1/queues/bulk/messages", { messages: [{ body: "after" }] }))
            .status,
          201,
        );
        c.send({ type: "permit", n: 1 });
        const m = await c.next();
        assert.equal(m.type, "message");
        assert.equal(m.body, "after");
        c.send({ type: "ack", receipts: [m.receipt] });
        assert.deepEqual((await c.next()).results, [{ receipt: m.receipt, ok: true }]);
        await c.close();
      });

      await t.step("a too-large message in a pipelined burst: only it is refused", async () => {
        await node.call("PUT", "/v1/queues/small", { maxMessageBytes: 100 });
        const p = await TestSocket.open(node.url, "/v1/queues/small/producer", node.admin);
        for (let i = 0; i < 40; i++) {
          p.send({ type: "send", context: `${i}`, body: i === 17 ? "y".repeat(101) : `m${i}` });
        }
        const answers = await p.take(40);
        assert.deepEqual(answers.map((a) => a.context), answers.map((_, i) => `${i}`));
        answers.forEach((a, i) => {
          if (i === 17) {
            assert.equal(a.type, "error", JSON.stringify(a));
            assert.equal(a.status, 413);
            assert.equal(a.code, "too_large");
          } else {
            assert.equal(a.type, "sent", JSON.stringify(a));
          }
        });
        await p.close();
        const stored = await drain(node, "small");
        const expected = Array.from({ length: 40 }, (_, i) => `m${i}`).filter((b) => b !== "m17");
        assert.deepEqual(stored.map((m) => m.body), expected);
      });

      await t.step("refused before the upgrade: token, right, existence, query", async () => {
        const bob = await node.user("bob");
        const carol = await node.user("carol");
        await node.call("PUT", "/v1/queues/locked", {
          access: { restricted: true, senders: ["bob"], receivers: [] },
        });
        await node.call("PUT", "/v1/topics/news");
        const up = (path: string, headers: Record<string, string>) =>
          rawUpgrade(node.url, path, headers);
        const cases: [string, Record<string, string>, number, string][] = [
          ["/v1/queues/bulk/producer", {}, 401, "unauthenticated"],
          [
            "/v1/queues/bulk/producer",
            { "sec-websocket-protocol": "momd.v1, bearer.nope" },
            401,
            "token_invalid",
          ],
          ["/v1/queues/bulk/producer", { authorization: "Bearer x.y.z" }, 401, "token_invalid"],
          ["/v1/queues/missing/producer", { authorization: `Bearer ${bob}` }, 404, "not_found"],
          ["/v1/queues/missing/consumer", { authorization: `Bearer ${bob}` }, 404, "not_found"],
          ["/v1/queues/locked/producer", { authorization: `Bearer ${carol}` }, 403, "forbidden"],
          ["/v1/queues/locked/consumer", { authorization: `Bearer ${bob}` }, 403, "forbidden"],
          [
            "/v1/queues/bulk/consumer?prefetch=1001",
            { authorization: `Bearer ${bob}` },
            400,
            "invalid",
          ],
          [
            "/v1/queues/bulk/consumer?visibilitySeconds=0",
            { authorization: `Bearer ${bob}` },
            400,
            "invalid",
          ],
          ["/v1/queues/bulk/consumer?other=1", { authorization: `Bearer ${bob}` }, 400, "invalid"],
          ["/v1/queues/bad%20name/producer", { authorization: `Bearer ${bob}` }, 400, "invalid"],
          ["/v1/topics/missing/producer", { authorization: `Bearer ${bob}` }, 404, "not_found"],
          [
            "/v1/topics/news/subscriptions/none/consumer",
            { authorization: `Bearer ${bob}` },
            404,
            "not_found",
          ],
        ];
        for (const [path, headers, status, code] of cases) {
          const res = await up(path, headers);
          assert.equal(res.status, status, `${path} ${JSON.stringify(res.body)}`);
          assert.equal(res.headers.get("content-type"), "application/problem+json");
          assert.equal(res.body.code, code, path);
        }
        // Accepted: 101 and the subprotocol momd.v1 (never the token).
        const ok = await up("/v1/queues/locked/producer", {
          "sec-websocket-protocol": `momd.v1, bearer.${bob}`,
        });
        assert.equal(ok.status, 101);
        assert.equal(ok.headers.get("sec-websocket-protocol"), "momd.v1");
        // A plain GET says the same, or 426 when the upgrade would be accepted.
        const plain = await fetch(`${node.url}/v1/queues/locked/producer`, {
          headers: { authorization: `Bearer ${bob}` },
        });
        assert.equal(plain.status, 426);
        assert.equal((await plain.json()).code, "upgrade_required");
        const forbidden = await fetch(`${node.url}/v1/queues/locked/producer`, {
          headers: { authorization: `Bearer ${carol}` },
        });
        assert.equal(forbidden.status, 403);
        await forbidden.body?.cancel();
      });

      await t.step("credits: grant 5, get exactly 5, no more until more permits", async () => {
        await node.call("PUT", "/v1/queues/credits");
        await node.call("POST", "/v1/queues/credits/messages", {
          messages: Array.from({ length: 20 }, (_, i) => ({ body: `m${i}` })),
        });
        const c = await TestSocket.open(
          node.url,
          "/v1/queues/credits/consumer?prefetch=5",
          node.admin,
        );
        const first = await c.take(5);
        assert.deepEqual(first.map((m) => m.body), ["m0", "m1", "m2", "m3", "m4"]);
        assert.ok(first.every((m) => m.type === "message" && m.deliveryCount === 1 && m.receipt));
        // Acks do not grant credits.
        c.send({ type: "ack", receipts: first.map((m) => m.receipt), context: "a" });
        assert.equal((await c.next()).type, "acked");
        await c.nothingFor(1_000);
        c.send({ type: "permit", n: 3 });
        assert.deepEqual((await c.take(3)).map((m) => m.body), ["m5", "m6", "m7"]);
        await c.nothingFor(1_000);
        const q = await node.call("GET", "/v1/queues/credits");
        assert.equal(q.body.stats.inFlight, 3);
        assert.equal(q.body.stats.depth, 12);
        // A permit while the queue is empty is used when a message comes (long poll).
        await node.call("POST", "/v1/queues/credits/purge");
        c.send({ type: "permit", n: 1 });
        await c.nothingFor(300);
        await node.call("POST", "/v1/queues/credits/messages", { messages: [{ body: "late" }] });
        assert.equal((await c.next()).body, "late");
        await c.close();
      });

      await t.step("ack, nack and visibility frames follow REST's rules", async () => {
        await node.call("PUT", "/v1/queues/settle", { visibilityTimeoutSeconds: 60 });
        await node.call("POST", "/v1/queues/settle/messages", {
          messages: [{ body: "a" }, { body: "b" }, { body: "c" }],
        });
        const c = await TestSocket.open(
          node.url,
          "/v1/queues/settle/consumer?prefetch=3",
          node.admin,
        );
        const [a, b, cc] = await c.take(3);
        c.send({ type: "ack", receipts: [a.receipt], context: "ack1" });
        c.send({ type: "ack", receipts: [a.receipt], context: "ack2" });
        c.send({ type: "visibility", receipts: [b.receipt], visibilitySeconds: 600, context: "v" });
        c.send({ type: "nack", receipts: [cc.receipt], context: "n" });
        const answers = await c.take(4);
        assert.deepEqual(answers, [
          { type: "acked", context: "ack1", results: [{ receipt: a.receipt, ok: true }] },
          {
            type: "acked",
            context: "ack2",
            results: [{ receipt: a.receipt, ok: false, error: "stale_receipt" }],
          },
          { type: "visibility", context: "v", results: [{ receipt: b.receipt, ok: true }] },
          { type: "nacked", context: "n", results: [{ receipt: cc.receipt, ok: true }] },
        ]);
        // The nacked one comes back at once with a new receipt, once there is a credit.
        c.send({ type: "permit", n: 1 });
        const again = await c.next();
        assert.equal(again.body, "c");
        assert.equal(again.deliveryCount, 2);
        assert.notEqual(again.receipt, cc.receipt);
        const peek = await node.call("GET", "/v1/queues/settle/messages?state=inflight");
        const bDeadline = peek.body.messages.find((m: Json) => m.body === "b").visibleAt;
        assert.ok(Date.parse(bDeadline) - Date.now() > 300_000, bDeadline);
        // Visibility 0 releases.
        c.send({ type: "visibility", receipts: [b.receipt], visibilitySeconds: 0 });
        assert.deepEqual(await c.next(), {
          type: "visibility",
          results: [{ receipt: b.receipt, ok: true }],
        });
        c.send({ type: "permit", n: 1 });
        const b2 = await c.next();
        assert.equal(b2.body, "b");
        assert.equal(b2.deliveryCount, 2);
        c.send({ type: "ack", receipts: [again.receipt, b2.receipt] });
        assert.equal((await c.next()).results.filter((r: Json) => r.ok).length, 2);
        await c.close();
        assert.equal((await node.call("GET", "/v1/queues/settle")).body.stats.depth, 0);
      });

      await t.step(
        "nacks count toward maxDeliveries: the message goes to dead letters",
        async () => {
          await node.call("PUT", "/v1/queues/dlq", { maxDeliveries: 2 });
          await node.call("POST", "/v1/queues/dlq/messages", { messages: [{ body: "poison" }] });
          const c = await TestSocket.open(
            node.url,
            "/v1/queues/dlq/consumer?prefetch=10",
            node.admin,
          );
          for (let attempt = 1; attempt <= 2; attempt++) {
            const m = await c.next();
            assert.equal(m.deliveryCount, attempt);
            c.send({ type: "nack", receipts: [m.receipt], context: `n${attempt}` });
            assert.equal((await c.next()).type, "nacked");
          }
          await c.nothingFor(1_000);
          const q = await node.call("GET", "/v1/queues/dlq");
          assert.equal(q.body.stats.deadLettered, 1);
          assert.equal(q.body.stats.depth, 0);
          await c.close();
        },
      );

      await t.step("a closed socket's deliveries go to another consumer at once", async () => {
        await node.call("PUT", "/v1/queues/handover", { visibilityTimeoutSeconds: 120 });
        await node.call("POST", "/v1/queues/handover/messages", {
          messages: [{ body: "x1" }, { body: "x2" }, { body: "x3" }],
        });
        const a = await TestSocket.open(
          node.url,
          "/v1/queues/handover/consumer?prefetch=3",
          node.admin,
        );
        const held = await a.take(3);
        const other = await TestSocket.open(
          node.url,
          "/v1/queues/handover/consumer?prefetch=10",
          node.admin,
        );
        await other.nothingFor(300);
        // The ack written just before the close is honoured; the other two are released.
        a.send({ type: "ack", receipts: [held[0].receipt] });
        a.ws.close();
        // Within 10 s, where the visibility timeout would take 120 s.
        const got = await other.take(2, 10_000);
        assert.deepEqual(got.map((m) => m.body).sort(), ["x2", "x3"]);
        assert.ok(got.every((m) => m.deliveryCount === 2));
        await other.nothingFor(500);
        await other.close();
        const q = await node.call("GET", "/v1/queues/handover");
        assert.equal(q.body.stats.totals.acked, 1);
        assert.equal(q.body.stats.depth, 2);
        assert.equal(q.body.stats.inFlight, 0);
      });

      await t.step(
        "a topic: a producer publishes, a subscription's consumer receives",
        async () => {
          await node.call("PUT", "/v1/topics/events");
          await node.call("PUT", "/v1/topics/events/subscriptions/audit", { start: "earliest" });
          const p = await TestSocket.open(node.url, "/v1/topics/events/producer", node.admin);
          for (let i = 0; i < 10; i++) {
            p.send({ type: "send", context: `p${i}`, body: `e${i}`, key: `k${i % 2}` });
          }
          const sent = await p.take(10);
          assert.deepEqual(
            sent.map((s) => [s.type, s.context, s.offset]),
            sent.map((_, i) => [
              "sent",
              `p${i}`,
              i,
            ]),
          );
          assert.ok(sent.every((s) => typeof s.id === "string"));
          p.send({ type: "send", context: "bad", body: "x", dedupId: "queues only" });
          assert.equal((await p.next()).status, 400);
          await p.close();
          const c = await TestSocket.open(
            node.url,
            "/v1/topics/events/subscriptions/audit/consumer?prefetch=4&visibilitySeconds=60",
            node.admin,
          );
          const got = await c.take(4);
          assert.deepEqual(got.map((m) => [m.offset, m.body, m.key]), [
            [0, "e0", "k0"],
            [1, "e1", "k1"],
            [2, "e2", "k0"],
            [3, "e3", "k1"],
          ]);
          await c.nothingFor(500);
          c.send({ type: "ack", receipts: got.map((m) => m.receipt), context: "a" });
          c.send({ type: "permit", n: 100 });
          const answers = await c.take(7);
          assert.equal(answers[0].type, "acked");
          assert.ok(answers[0].results.every((r: Json) => r.ok));
          assert.deepEqual(answers.slice(1).map((m) => m.offset), [4, 5, 6, 7, 8, 9]);
          await c.close();
          const sub = await node.call("GET", "/v1/topics/events/subscriptions/audit");
          assert.equal(sub.body.stats.inFlight, 0);
          assert.equal(sub.body.stats.pendingRedelivery, 6);
        },
      );

      await t.step("a user deleted while streaming: error 401, then close 4401", async () => {
        const dave = await node.user("dave");
        await node.call("PUT", "/v1/queues/daves");
        const c = await TestSocket.open(node.url, "/v1/queues/daves/consumer?prefetch=1", dave);
        const p = await TestSocket.open(node.url, "/v1/queues/daves/producer", dave);
        assert.equal((await node.call("DELETE", "/v1/users/dave")).status, 204);
        for (const s of [c, p]) {
          const frame = await s.next();
          assert.equal(frame.type, "error");
          assert.equal(frame.status, 401);
          assert.equal(frame.code, "token_revoked");
          assert.equal((await s.closed).code, 4401);
        }
      });

      await t.step(
        "the right withdrawn (4403) or the queue deleted (4404) mid-stream",
        async () => {
          const frank = await node.user("frank");
          await node.call("PUT", "/v1/queues/shared");
          const p = await TestSocket.open(node.url, "/v1/queues/shared/producer", frank);
          p.send({ type: "send", context: "1", body: "allowed" });
          assert.equal((await p.next()).type, "sent");
          const patched = await node.call("PATCH", "/v1/queues/shared", {
            access: { restricted: true, senders: [], receivers: [] },
          });
          assert.equal(patched.status, 200, JSON.stringify(patched.body));
          p.send({ type: "send", context: "2", body: "refused" });
          p.send({ type: "send", context: "3", body: "refused too" });
          assert.equal((await p.closed).code, 4403);
          // "2" is refused; "3" too, unless it came after the close began (then nothing
          // answers it); the last error, naming no frame, says why the socket closes.
          const [two, ...rest] = p.frames.slice(1);
          assert.deepEqual([two.context, two.status, two.code], ["2", 403, "forbidden"]);
          assert.ok(rest.length >= 1 && rest.every((f) => f.type === "error" && f.status === 403));
          assert.equal(rest[rest.length - 1].context, undefined);

          // A consumer waiting in a long poll hears of the delete at once; so does a producer.
          const c = await TestSocket.open(
            node.url,
            "/v1/queues/shared/consumer?prefetch=1",
            node.admin,
          );
          const q = await TestSocket.open(node.url, "/v1/queues/shared/producer", node.admin);
          assert.equal((await c.next()).body, "allowed");
          c.send({ type: "permit", n: 1 });
          await c.nothingFor(300);
          assert.equal((await node.call("DELETE", "/v1/queues/shared")).status, 204);
          const gone = await c.next();
          assert.deepEqual([gone.type, gone.status, gone.code], ["error", 404, "not_found"]);
          assert.equal((await c.closed).code, 4404);
          q.send({ type: "send", context: "late", body: "x" });
          const late = await q.next();
          assert.deepEqual([late.context, late.status], ["late", 404]);
          assert.equal((await q.closed).code, 4404);
        },
      );

      await t.step(
        "a rate limit: sends over it are answered 429 with retryAfterSeconds",
        async () => {
          const erin = await node.user("erin");
          const set = await node.call("PUT", "/v1/users/erin/rate-limit", {
            requestsPerSecond: 1,
            burst: 5,
          });
          assert.equal(set.status, 200, JSON.stringify(set.body));
          await node.call("PUT", "/v1/queues/limited");
          await new Promise((r) => setTimeout(r, 500));
          const p = await TestSocket.open(node.url, "/v1/queues/limited/producer", erin);
          for (let i = 0; i < 20; i++) p.send({ type: "send", context: `${i}`, body: `m${i}` });
          const answers = await p.take(20);
          assert.deepEqual(answers.map((a) => a.context), answers.map((_, i) => `${i}`));
          const sent = answers.filter((a) => a.type === "sent");
          const refused = answers.filter((a) => a.type === "error");
          // The upgrade took one call of the burst of 5: at most 4 sends (and a refill) pass.
          assert.ok(sent.length >= 1 && sent.length <= 6, `${sent.length} sent`);
          assert.equal(sent.length + refused.length, 20);
          for (const r of refused) {
            assert.equal(r.status, 429);
            assert.equal(r.code, "rate_limited");
            assert.ok(r.retryAfterSeconds >= 1, JSON.stringify(r));
          }
          await p.close();
          const stored = await drain(node, "limited");
          assert.deepEqual(stored.map((m) => m.body), sent.map((s) => `m${s.context}`));
        },
      );
    } finally {
      await node.stop();
    }
  },
});

Deno.test({
  name: "stream: a draining node closes its streams (1001) and releases their deliveries",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const redis = await startRedis();
    try {
      const node = await startNode(redis);
      try {
        await node.call("PUT", "/v1/queues/drain", { visibilityTimeoutSeconds: 300 });
        await node.call("POST", "/v1/queues/drain/messages", {
          messages: [{ body: "d1" }, { body: "d2" }],
        });
        const c = await TestSocket.open(
          node.url,
          "/v1/queues/drain/consumer?prefetch=2",
          node.admin,
        );
        assert.equal((await c.take(2)).length, 2);
        const stopped = node.proc.stop("SIGTERM");
        assert.equal((await c.closed).code, 1001);
        assert.equal((await stopped).code, 0);
      } finally {
        await node.stop();
      }
      // The next node on the same store delivers them at once: released, not waiting 300 s.
      const again = await startNode(redis);
      try {
        const q = await again.call("GET", "/v1/queues/drain");
        assert.equal(q.body.stats.inFlight, 0, JSON.stringify(q.body.stats));
        assert.equal(q.body.stats.depth, 2);
      } finally {
        await again.stop();
      }
    } finally {
      await redis.stop();
    }
  },
});

Deno.test({
  name: "stream: through NGINX to a node that does not own the queue (three-node cluster)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withCluster({}, async (c) => {
      assert.equal((await c.call("PUT", "/v1/queues/far")).status, 201);
      const status = await c.cluster();
      const owner = status.entities.find((e) => e.type === "queue" && e.name === "far")!.owner;
      const other = c.nodeIds.find((id) => id !== owner)!;
      const hint = { "momd-route": other };

      // The hint takes the upgrade to a node that does not own the queue: it checks the
      // request on the owner, answers 101 and names the owner.
      const raw = await rawUpgrade(c.url, "/v1/queues/far/producer", {
        authorization: `Bearer ${c.token}`,
        ...hint,
      });
      assert.equal(raw.status, 101);
      assert.equal(raw.headers.get("momd-owner"), owner);
      const missing = await rawUpgrade(c.url, "/v1/queues/nowhere/consumer", {
        authorization: `Bearer ${c.token}`,
        ...hint,
      });
      assert.equal(missing.status, 404);
      assert.equal(missing.body.code, "not_found");

      // A consumer waiting on an empty queue (its long polls forwarded to the owner), then a
      // producer: everything arrives, in order, and is acked.
      const consumer = await TestSocket.open(
        c.url,
        "/v1/queues/far/consumer?prefetch=50",
        c.token,
        {
          headers: hint,
        },
      );
      await consumer.nothingFor(300);
      const producer = await TestSocket.open(c.url, "/v1/queues/far/producer", c.token, {
        headers: hint,
      });
      for (let i = 0; i < 200; i++) producer.send({ type: "send", context: `${i}`, body: `m${i}` });
      const sent = await producer.take(200, 30_000);
      assert.deepEqual(sent.map((s) => [s.type, s.context]), sent.map((_, i) => ["sent", `${i}`]));
      const bodies: string[] = [];
      while (bodies.length < 200) {
        const m = await consumer.next(30_000);
        if (m.type !== "message") {
          assert.equal(m.type, "acked", JSON.stringify(m));
          continue;
        }
        bodies.push(m.body);
        consumer.send({ type: "ack", receipts: [m.receipt] });
        consumer.send({ type: "permit", n: 1 });
      }
      assert.deepEqual(bodies, sent.map((_, i) => `m${i}`));
      await producer.close();
      await consumer.close();
      await c.waitFor("every message acked", async () => {
        const q = await c.call("GET", "/v1/queues/far");
        return q.body.stats.totals.acked === 200 && q.body.stats.inFlight === 0;
      });

      // NGINX passed the upgrades to the node the hint named.
      const address = new URL(c.nodeUrl(other)).host;
      await c.waitFor("the streams in NGINX's log", async () => {
        const log = await Deno.readTextFile(`${c.dir}/logs/nginx.log`);
        const lines = log.split("\n").filter((l) =>
          / "GET \/v1\/queues\/far\/(producer|consumer)[^"]*" 101 /.test(l)
        );
        return lines.length >= 3 && lines.every((l) => l.includes(`upstream=${address}`));
      });
    });
  },
});
