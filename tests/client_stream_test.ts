/**
 * The client's streams (producers, stream consumers, `consume()` over a stream): first against
 * a real node (the real API over a real Redis, served on a free port), then against a small
 * stand-in server that speaks the streaming protocol from an in-memory queue, with a TCP proxy
 * in front that can cut every connection (the client then sees 1006, as after a network loss).
 * The stand-in lets a test make the server misbehave on purpose: answer nothing, store without
 * answering, close with a given code, refuse the upgrade.
 */
import assert from "node:assert/strict";
import { serveNode } from "./support/node.ts";
import {
  type Delivery,
  MomdClient,
  MomdError,
  MomdStreamUnsupportedError,
  type TopicDelivery,
} from "../src/client/mod.ts";

// ---- against a real node ----------------------------------------------------------------------

/** A client of a served node, logged in as the bootstrap admin. */
function adminOf(url: string): MomdClient {
  return new MomdClient({ url, username: "admin", password: "admin-password" });
}

/**
 * A proxy in front of a node that answers every request to a stream endpoint as a momd without
 * streams does (404 without a code), and passes everything else on.
 */
function noStreamsProxy(target: string) {
  let refused = 0;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    const url = new URL(req.url);
    if (/\/(producer|consumer)$/.test(url.pathname)) {
      refused++;
      return Response.json(
        { type: "urn:momd:problem:404", title: "Not Found", status: 404, detail: "no route" },
        { status: 404 },
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
    refused: () => refused,
    close: () => server.shutdown(),
  };
}

/** n stored messages, ids q0.. and bodies b0.., never delivered. */
function storedJobs(n: number): Stored[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `q${i}`,
    body: `b${i}`,
    attributes: {},
    deliveries: 0,
  }));
}

Deno.test("client streams, real node: a producer and consume() move a queue's messages", async () => {
  const node = await serveNode();
  const momd = adminOf(node.url);
  try {
    await momd.queues.create("jobs", { visibilityTimeoutSeconds: 30 });
    const producer = momd.queues.producer("jobs");
    const sent = await Promise.all(Array.from({ length: 300 }, (_, i) => producer.send(`m${i}`)));
    assert.equal(new Set(sent.map((s) => s.id)).size, 300);
    await producer.close();
    assert.deepEqual(
      (await momd.queues.peek("jobs", { limit: 3 })).map((m) => m.body),
      ["m0", "m1", "m2"],
      "stored in the order sent",
    );

    const bodies: string[] = [];
    const consumer = momd.consume("jobs", (m) => {
      bodies.push(m.body);
    }, { concurrency: 8, max: 300, onError: (err) => assert.fail(String(err)) });
    const stats = await consumer.done;
    assert.deepEqual(stats, { received: 300, acked: 300, nacked: 0, settleErrors: 0 });
    assert.equal(new Set(bodies).size, 300);
    await until(async () => {
      const q = (await momd.queues.get("jobs")).stats;
      return q.depth + q.inFlight === 0;
    }, "the queue to be empty");
  } finally {
    await node.close();
  }
});

Deno.test("client streams, real node: topics stream too; refusals come before the upgrade", async () => {
  const node = await serveNode();
  const momd = adminOf(node.url);
  try {
    await momd.topics.create("events");
    const audit = { topic: "events", subscription: "audit" };
    await momd.topics.subscribe(audit, { start: "earliest" });
    const producer = momd.topics.producer("events");
    const published = await Promise.all(
      ["a", "b", "c"].map((body, i) => producer.send({ body, key: `k${i}` })),
    );
    assert.deepEqual(published.map((p) => p.offset), [0, 1, 2]);
    await producer.close();

    const stream = momd.topics.stream(audit, { prefetch: 2 });
    const got: TopicDelivery[] = [];
    for (let i = 0; i < 3; i++) {
      const m = (await stream.next())!;
      got.push(m);
      assert.equal((await stream.ack(m)).ok, true);
    }
    assert.deepEqual(got.map((m) => [m.offset, m.key, m.body]), [
      [0, "k0", "a"],
      [1, "k1", "b"],
      [2, "k2", "c"],
    ]);
    await stream.close();

    // Refused before any upgrade, with the REST problem: a missing queue, a restricted one.
    await assert.rejects(momd.queues.producer("missing").connect(), (err) => {
      assert.ok(err instanceof MomdError, String(err));
      assert.equal(err.status, 404);
      assert.equal(err.code, "not_found");
      return true;
    });
    await momd.queues.create("private", { access: { restricted: true } });
    await momd.users.create({ username: "bob", password: "bob-password" });
    const bob = new MomdClient({ url: node.url, username: "bob", password: "bob-password" });
    await assert.rejects(bob.queues.stream("private").connect(), (err) => {
      assert.ok(err instanceof MomdError, String(err));
      assert.equal(err.status, 403);
      return true;
    });
    const anonymous = new MomdClient({ url: node.url, retry: { retries: 0 } });
    await assert.rejects(anonymous.queues.producer("private").send("x"), (err) => {
      assert.ok(err instanceof MomdError && err.status === 401, String(err));
      return true;
    });
  } finally {
    await node.close();
  }
});

Deno.test("client streams, real node: consume() long-polls where streams are refused", async () => {
  const node = await serveNode();
  const proxy = noStreamsProxy(node.url);
  const momd = adminOf(proxy.url);
  try {
    await momd.queues.create("jobs");
    await momd.queues.sendBatch("jobs", ["a", "b", "c"]);
    const seen: string[] = [];
    const stats = await momd.consume("jobs", (m) => {
      seen.push(m.body);
    }, { max: 3, waitSeconds: 1 }).done;
    assert.deepEqual(stats, { received: 3, acked: 3, nacked: 0, settleErrors: 0 });
    assert.deepEqual(seen.sort(), ["a", "b", "c"]);
    assert.equal(proxy.refused(), 2, "one refused upgrade, one plain GET asking why");
    // A producer says so, for its caller to fall back to REST sends.
    await assert.rejects(momd.queues.producer("jobs").connect(), MomdStreamUnsupportedError);
    // `stream: false` never tries.
    await momd.queues.send("jobs", "d");
    await momd.consume("jobs", () => {}, { max: 1, stream: false, waitSeconds: 1 }).done;
    assert.equal(proxy.refused(), 4);
  } finally {
    await proxy.close();
    await node.close();
  }
});

Deno.test("client streams, real node: a queue deleted under consume() ends it with 404", async () => {
  const node = await serveNode();
  const momd = adminOf(node.url);
  try {
    await momd.queues.create("doomed");
    await momd.queues.send("doomed", "one");
    let handled = 0;
    const consumer = momd.consume("doomed", () => {
      handled++;
    }, { onError: () => {} });
    await until(() => handled === 1, "the first message");
    await momd.queues.delete("doomed");
    await assert.rejects(consumer.done, (err) => {
      assert.ok(err instanceof MomdError, String(err));
      assert.equal(err.status, 404);
      return true;
    });
  } finally {
    await node.close();
  }
});

// ---- against a stand-in that misbehaves on purpose ---------------------------------------------

const TOKEN = "test-token.abc_DEF-123";
/** The token the stand-in's login hands out after the first one expired. */
const RENEWED = "renewed-token.xyz";

interface Stored {
  id: string;
  body: string;
  attributes: Record<string, string>;
  deliveries: number;
  receipt?: string;
  /** Socket holding it in flight. */
  holder?: object;
}

/** What a test can make the stand-in do. */
interface Behaviour {
  /** Answer no send whose body starts with this (the client then waits). */
  silentPrefix?: string;
  /** Store, but do not answer, a send whose body starts with this (the answer is "lost"). */
  storeSilentlyPrefix?: string;
  /** Answer a send whose body starts with "slow" this many ms late. */
  slowMs?: number;
  /** Answer a send whose body is this with an error frame of this status and code. */
  refuse?: Record<string, { status: number; code: string; retryAfterSeconds?: number }>;
  /** Refuse every upgrade with this status (404 without a code: an older momd). */
  upgradeStatus?: number;
  /** Count of 503 error frames still to answer sends with (then normal). */
  unavailable?: number;
}

function problem(status: number, detail: string, code?: string): Response {
  return new Response(
    JSON.stringify({
      type: `urn:momd:problem:${code ?? status}`,
      title: "x",
      status,
      detail,
      code,
    }),
    { status, headers: { "content-type": "application/problem+json" } },
  );
}

/** A stand-in momd with streams over in-memory queues and topics. */
function standIn() {
  const queues = new Map<string, Stored[]>();
  const topics = new Map<string, Stored[]>();
  const dedup = new Map<string, string>();
  const behaviour: Behaviour = {};
  const sockets = new Set<WebSocket>();
  const seen = {
    sends: 0,
    upgrades: 0,
    probes: 0,
    permits: [] as number[],
    frames: [] as string[],
    /** The Momd-Route header of each upgrade (the owner hint), "" when absent. */
    routes: [] as string[],
    /** The token of each upgrade. */
    tokens: [] as string[],
    /** Body of each send, with the number of the upgrade whose socket carried it. */
    sendsBySocket: [] as [string, number][],
  };
  let ids = 0;
  let receipts = 0;
  const consumers = new Set<{ ws: WebSocket; queue: string; credit: number; pump(): void }>();
  const pumpAll = () => consumers.forEach((c) => c.pump());

  const tokens = new Set([TOKEN]);
  let logins = 0;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/v1/auth/token") {
      // The first login gets TOKEN, later ones RENEWED.
      const token = logins++ === 0 ? TOKEN : RENEWED;
      tokens.add(token);
      return Response.json({ token, expiresAt: new Date(Date.now() + 3_600_000).toISOString() });
    }
    const entity = /^\/v1\/queues\/([^/]+)$/.exec(url.pathname);
    if (entity) {
      // A REST answer naming the owner: the client sends it back as an owner hint.
      return Response.json({ name: entity[1] }, { headers: { "momd-owner": "node7" } });
    }
    const m = /^\/v1\/(queues|topics)\/([^/]+)\/(producer|consumer)$/.exec(url.pathname);
    const upgrade = req.headers.get("upgrade")?.toLowerCase() === "websocket";
    if (!upgrade) seen.probes++;
    else {
      seen.upgrades++;
      seen.routes.push(req.headers.get("momd-route") ?? "");
    }
    if (behaviour.upgradeStatus) {
      return behaviour.upgradeStatus === 404
        ? problem(404, `no route for GET ${url.pathname}`)
        : problem(behaviour.upgradeStatus, "refused");
    }
    if (!m) return problem(404, `no route for GET ${url.pathname}`);
    const offered = (req.headers.get("sec-websocket-protocol") ?? "").split(",").map((s) =>
      s.trim()
    );
    const bearer = req.headers.get("authorization")?.replace(/^Bearer /, "") ??
      offered.find((p) => p.startsWith("bearer."))?.slice(7);
    if (upgrade) seen.tokens.push(bearer ?? "");
    if (!bearer || !tokens.has(bearer)) {
      return problem(401, "no valid token", bearer ? "token_expired" : "unauthenticated");
    }
    const [, kind, name, role] = m;
    const store = kind === "queues" ? queues : topics;
    const messages = store.get(decodeURIComponent(name));
    if (!messages) return problem(404, `no ${kind} ${name}`, "not_found");
    if (!upgrade) return problem(426, "upgrade to a WebSocket", "upgrade_required");
    const { socket: ws, response } = Deno.upgradeWebSocket(req, { protocol: "momd.v1" });
    sockets.add(ws);
    const send = (frame: unknown) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
    };
    const socketNumber = seen.upgrades;
    if (role === "producer") {
      ws.onmessage = async (e) => {
        seen.frames.push(e.data);
        const f = JSON.parse(e.data);
        if (f.type === "send") seen.sendsBySocket.push([f.body, socketNumber]);
        if (behaviour.slowMs && f.body.startsWith("slow")) {
          await new Promise((r) => setTimeout(r, behaviour.slowMs));
        }
        if (f.type !== "send") return send({ type: "error", status: 400, detail: "bad frame" });
        seen.sends++;
        if (behaviour.silentPrefix && f.body.startsWith(behaviour.silentPrefix)) return;
        const refusal = behaviour.refuse?.[f.body];
        if (refusal) return send({ type: "error", context: f.context, detail: "no", ...refusal });
        if (behaviour.unavailable && behaviour.unavailable > 0) {
          behaviour.unavailable--;
          return send({
            type: "error",
            context: f.context,
            status: 503,
            code: "unavailable",
            detail: "not now",
          });
        }
        if (f.dedupId && dedup.has(f.dedupId)) {
          return send({
            type: "sent",
            context: f.context,
            id: dedup.get(f.dedupId),
            duplicate: true,
          });
        }
        const id = `m${++ids}`;
        if (f.dedupId) dedup.set(f.dedupId, id);
        messages.push({ id, body: f.body, attributes: f.attributes ?? {}, deliveries: 0 });
        pumpAll();
        if (behaviour.storeSilentlyPrefix && f.body.startsWith(behaviour.storeSilentlyPrefix)) {
          return;
        }
        if (kind === "queues") send({ type: "sent", context: f.context, id, duplicate: false });
        else send({ type: "sent", context: f.context, id, offset: messages.length - 1 });
        pumpAll();
      };
    } else {
      const consumer = {
        ws,
        queue: name,
        credit: Number(url.searchParams.get("prefetch") ?? 0),
        pump() {
          for (const msg of messages) {
            if (this.credit <= 0) return;
            if (msg.holder) continue;
            msg.holder = ws;
            msg.deliveries++;
            msg.receipt = `r${++receipts}`;
            this.credit--;
            send({
              type: "message",
              id: msg.id,
              body: msg.body,
              attributes: msg.attributes,
              receipt: msg.receipt,
              deliveryCount: msg.deliveries,
              enqueuedAt: new Date().toISOString(),
              expiresAt: new Date().toISOString(),
              visibleAt: new Date().toISOString(),
            });
          }
        },
      };
      consumers.add(consumer);
      const settle = (receipts: string[], fn: (msg: Stored) => void) =>
        receipts.map((receipt) => {
          const msg = messages.find((x) => x.receipt === receipt);
          if (!msg) return { receipt, ok: false, error: "stale_receipt" };
          fn(msg);
          return { receipt, ok: true };
        });
      ws.onopen = () => consumer.pump();
      ws.onmessage = (e) => {
        seen.frames.push(e.data);
        const f = JSON.parse(e.data);
        if (f.type === "permit") {
          seen.permits.push(f.n);
          consumer.credit += f.n;
          consumer.pump();
        } else if (f.type === "ack") {
          const results = settle(f.receipts, (msg) => messages.splice(messages.indexOf(msg), 1));
          send({ type: "acked", context: f.context, results });
        } else if (f.type === "nack") {
          const results = settle(f.receipts, (msg) => {
            msg.holder = undefined;
            msg.receipt = undefined;
          });
          send({ type: "nacked", context: f.context, results });
          pumpAll();
        } else if (f.type === "visibility") {
          send({ type: "visibility", context: f.context, results: settle(f.receipts, () => {}) });
        } else {
          send({ type: "error", status: 400, detail: `unknown frame ${f.type}` });
        }
      };
      ws.onclose = () => {
        consumers.delete(consumer);
        // What the socket held goes back at once.
        for (const msg of messages) {
          if (msg.holder === ws) {
            msg.holder = undefined;
            msg.receipt = undefined;
          }
        }
        pumpAll();
      };
    }
    ws.addEventListener("close", () => sockets.delete(ws));
    return response;
  });

  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    port: server.addr.port,
    queues,
    topics,
    behaviour,
    seen,
    /** Ends every token: sockets get a 401 error frame, then 4401 (as the protocol says). */
    expireTokens() {
      tokens.clear();
      for (const ws of sockets) {
        ws.send(JSON.stringify({
          type: "error",
          status: 401,
          code: "token_expired",
          detail: "the token expired",
        }));
        ws.close(4401, "token expired");
      }
    },
    /** Closes every stream socket from the server's side with `code`. */
    closeAll(code: number, reason = "") {
      for (const ws of sockets) ws.close(code, reason);
    },
    async stop() {
      for (const ws of sockets) ws.close(1001);
      await server.shutdown();
    },
  };
}

/** A TCP proxy that can cut every connection at once (a network loss: the client sees 1006). */
function cuttingProxy(targetPort: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  (async () => {
    for await (const inbound of listener) {
      conns.add(inbound);
      Deno.connect({ hostname: "127.0.0.1", port: targetPort }).then((outbound) => {
        conns.add(outbound);
        const pipe = (from: Deno.Conn, to: Deno.Conn) =>
          from.readable.pipeTo(to.writable).catch(() => {}).finally(() => {
            conns.delete(from);
            try {
              to.close();
            } catch {
              // closed
            }
          });
        pipe(inbound, outbound);
        pipe(outbound, inbound);
      }, () => inbound.close());
    }
  })().catch(() => {});
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    cut() {
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // closed
        }
      }
      conns.clear();
    },
    close() {
      this.cut();
      listener.close();
    },
  };
}

function client(url: string, extra: Partial<ConstructorParameters<typeof MomdClient>[0]> = {}) {
  return new MomdClient({
    url,
    token: TOKEN,
    retry: { retries: 3, baseDelayMs: 10, maxDelayMs: 50 },
    ...extra,
  });
}

async function until(
  cond: () => boolean | Promise<boolean>,
  what: string,
  ms = 5000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

Deno.test("client streams: a queue producer pipelines sends and answers each in order", async () => {
  const server = standIn();
  server.queues.set("jobs", []);
  const momd = client(server.url);
  try {
    const producer = momd.queues.producer("jobs", { maxInFlight: 8 });
    const sends = Array.from({ length: 50 }, (_, i) => producer.send(`m${i}`));
    const sent = await Promise.all(sends);
    assert.equal(new Set(sent.map((s) => s.id)).size, 50);
    assert.ok(sent.every((s) => s.duplicate === false));
    assert.deepEqual(server.queues.get("jobs")!.map((m) => m.body), sends.map((_, i) => `m${i}`));
    // Every message carried a dedupId of its own (idempotentSends).
    const ids = server.seen.frames.map((f) => JSON.parse(f).dedupId);
    assert.equal(new Set(ids).size, 50);
    // One socket for all of them, with the token as a subprotocol and no owner hint yet.
    assert.equal(server.seen.upgrades, 1);
    assert.deepEqual(server.seen.routes, [""]);
    await producer.close();
    await assert.rejects(producer.send("late"), /closed/);
    // A REST answer named the owner: the next socket goes there (Deno sends headers).
    await momd.queues.get("jobs").catch(() => {});
    await momd.queues.producer("jobs").send("routed");
    assert.deepEqual(server.seen.routes, ["", "node7"]);
  } finally {
    await server.stop();
  }
});

Deno.test("client streams: an error frame fails its own send only; 503s are sent again", async () => {
  const server = standIn();
  server.queues.set("jobs", []);
  server.behaviour.refuse = {
    huge: { status: 413, code: "too_large" },
    limited: { status: 429, code: "rate_limited", retryAfterSeconds: 1 },
  };
  const momd = client(server.url);
  try {
    const producer = momd.queues.producer("jobs");
    const results = await Promise.allSettled(
      ["a", "huge", "b", "limited", "c"].map((b) => producer.send(b)),
    );
    assert.deepEqual(results.map((r) => r.status), [
      "fulfilled",
      "rejected",
      "fulfilled",
      "rejected",
      "fulfilled",
    ]);
    const huge = (results[1] as PromiseRejectedResult).reason;
    assert.ok(huge instanceof MomdError);
    assert.equal(huge.status, 413);
    assert.equal(huge.code, "too_large");
    const limited = (results[3] as PromiseRejectedResult).reason as MomdError;
    assert.equal(limited.status, 429);
    assert.equal(limited.retryAfterSeconds, 1);
    assert.deepEqual(server.queues.get("jobs")!.map((m) => m.body), ["a", "b", "c"]);

    // "Not applied" is sent again after a backoff, and then stored.
    server.behaviour.unavailable = 2;
    const [d, e] = await Promise.all([producer.send("d"), producer.send("e")]);
    assert.ok(d.id && e.id);
    assert.deepEqual(server.queues.get("jobs")!.map((m) => m.body).slice(3).sort(), ["d", "e"]);

    // A message too large for one frame is refused by the client: the socket stays up.
    const before = server.seen.upgrades;
    await assert.rejects(producer.send("x".repeat(1024 * 1024 + 1)), (err) => {
      assert.ok(err instanceof MomdError);
      assert.equal(err.status, 413);
      return true;
    });
    await producer.send("after");
    assert.equal(server.seen.upgrades, before);
    await producer.close();
  } finally {
    await server.stop();
  }
});

Deno.test("client streams: a refused upgrade says why; an older server is 'unsupported'", async () => {
  const server = standIn();
  server.queues.set("jobs", []);
  try {
    const anonymous = new MomdClient({ url: server.url, retry: { retries: 0 } });
    await assert.rejects(anonymous.queues.producer("jobs").connect(), (err) => {
      assert.ok(err instanceof MomdError, String(err));
      assert.equal(err.status, 401);
      return true;
    });
    const momd = client(server.url);
    await assert.rejects(momd.queues.producer("nope").send("x"), (err) => {
      assert.ok(err instanceof MomdError, String(err));
      assert.equal(err.status, 404);
      assert.equal(err.code, "not_found");
      return true;
    });
    await assert.rejects(momd.queues.stream("nope").next(), (err) => {
      assert.ok(err instanceof MomdError && err.code === "not_found", String(err));
      return true;
    });
    server.behaviour.upgradeStatus = 404;
    await assert.rejects(momd.queues.producer("jobs").connect(), MomdStreamUnsupportedError);
    server.behaviour.upgradeStatus = 405;
    await assert.rejects(momd.queues.stream("jobs").connect(), MomdStreamUnsupportedError);
    server.behaviour.upgradeStatus = undefined;
    // Nothing answering at all: a connection error after the retries.
    const dead = client("http://127.0.0.1:9", { retry: { retries: 1, baseDelayMs: 1 } });
    await assert.rejects(dead.queues.producer("jobs").connect(), /cannot reach/);
  } finally {
    await server.stop();
  }
});

Deno.test("client streams: after a network loss queue sends go again and are stored once", async () => {
  const server = standIn();
  server.queues.set("jobs", []);
  const proxy = cuttingProxy(server.port);
  const momd = client(proxy.url);
  try {
    const producer = momd.queues.producer("jobs");
    await producer.send("warm-up");
    // These are written and never answered: the connection goes down under them.
    server.behaviour.silentPrefix = "lost-";
    const inFlight = [producer.send("lost-1"), producer.send("lost-2")];
    await until(() => server.seen.sends >= 3, "the sends to reach the server");
    // The stand-in stored nothing of them; it forgets to be silent, then the network goes.
    server.behaviour.silentPrefix = undefined;
    proxy.cut();
    const [one, two] = await Promise.all(inFlight);
    assert.notEqual(one.id, two.id);
    assert.deepEqual(server.queues.get("jobs")!.map((m) => m.body), [
      "warm-up",
      "lost-1",
      "lost-2",
    ]);
    assert.ok(server.seen.upgrades >= 2, "it reconnected");
    // The same dedupId went twice for each: the second copy was the one answered.
    const frames = server.seen.frames.map((f) => JSON.parse(f));
    const lost1 = frames.filter((f) => f.body === "lost-1");
    assert.equal(lost1.length, 2);
    assert.equal(lost1[0].dedupId, lost1[1].dedupId);

    // Stored by the server but its answer lost on the way back: the resend is a duplicate.
    server.behaviour.storeSilentlyPrefix = "once";
    const once = producer.send("once");
    await until(() => server.queues.get("jobs")!.length === 4, "the message to be stored");
    server.behaviour.storeSilentlyPrefix = undefined;
    proxy.cut();
    assert.equal((await once).duplicate, true);
    assert.deepEqual(
      server.queues.get("jobs")!.map((m) => m.body),
      ["warm-up", "lost-1", "lost-2", "once"],
    );
    await producer.close();
  } finally {
    proxy.close();
    await server.stop();
  }
});

Deno.test("client streams: a topic publish in flight at a network loss is 'outcome unknown'", async () => {
  const server = standIn();
  server.topics.set("events", []);
  const proxy = cuttingProxy(server.port);
  const momd = client(proxy.url);
  try {
    const producer = momd.topics.producer("events");
    const first = await producer.send({ body: "first", key: "k" });
    assert.equal(first.offset, 0);
    server.behaviour.silentPrefix = "lost";
    const lost = producer.send("lost");
    await until(() => server.seen.sends >= 2, "the publish to reach the server");
    server.behaviour.silentPrefix = undefined;
    proxy.cut();
    await assert.rejects(lost, (err) => {
      assert.ok(err instanceof MomdError, String(err));
      assert.equal(err.status, 504);
      assert.equal(err.code, "outcome_unknown");
      return true;
    });
    // Not published again by the client; the next publish reconnects.
    const next = await producer.send("next");
    assert.equal(next.offset, 1);
    assert.equal(server.seen.frames.filter((f) => JSON.parse(f).body === "lost").length, 1);
    await producer.close();
  } finally {
    proxy.close();
    await server.stop();
  }
});

Deno.test("client streams: close codes: 1001 reconnects, 4404 fails what waits", async () => {
  const server = standIn();
  server.queues.set("jobs", []);
  const momd = client(server.url);
  try {
    const producer = momd.queues.producer("jobs");
    await producer.send("one");
    server.closeAll(1001, "shutting down");
    assert.ok((await producer.send("two")).id);
    assert.equal(server.seen.upgrades, 2);

    server.behaviour.silentPrefix = "held";
    const held = producer.send("held");
    await until(() => server.seen.sends >= 3, "the send to reach the server");
    server.queues.delete("jobs");
    server.closeAll(4404, "queue deleted");
    await assert.rejects(held, (err) => {
      assert.ok(err instanceof MomdError, String(err));
      assert.equal(err.status, 404);
      return true;
    });
    await producer.close();
  } finally {
    await server.stop();
  }
});

Deno.test("client streams: a stream consumer holds at most its prefetch and batches its acks", async () => {
  const server = standIn();
  const jobs: Stored[] = storedJobs(20);
  server.queues.set("jobs", jobs);
  const momd = client(server.url);
  try {
    const stream = momd.queues.stream("jobs", { prefetch: 5, ackBatch: 5, ackDelayMs: 100 });
    const taken: Delivery[] = [];
    for (let i = 0; i < 5; i++) taken.push((await stream.next())!);
    await new Promise((r) => setTimeout(r, 50));
    // Nothing settled: the server was given 5 credits and pushed no more.
    assert.equal(stream.buffered, 0);
    assert.equal(jobs.filter((m) => m.holder).length, 5);
    assert.deepEqual(server.seen.permits, []);
    // Five acks go as one frame (the batch is full), then one permit gives the credits back.
    const results = await Promise.all(taken.map((m) => stream.ack(m)));
    assert.ok(results.every((r) => r.ok), JSON.stringify(results));
    const acks = server.seen.frames.map((f) => JSON.parse(f)).filter((f) => f.type === "ack");
    assert.equal(acks.length, 1);
    assert.equal(acks[0].receipts.length, 5);
    assert.deepEqual(server.seen.permits, [5]);
    const next = (await stream.next())!;
    assert.equal(next.body, "b5");
    // A nack gives its credit back at once; a stale receipt is a result, not an error.
    const nacked = await stream.nack(next, 0);
    assert.equal(nacked.ok, true);
    const stale = await stream.ack("no-such-receipt");
    assert.deepEqual(stale, { receipt: "no-such-receipt", ok: false, error: "stale_receipt" });
    const extended = await stream.changeVisibility((await stream.next())!, 60);
    assert.equal(extended.ok, true);
    // Closing hands back what the socket held: nothing stays in flight.
    await stream.close();
    await until(() => jobs.every((m) => !m.holder), "the release of held deliveries");
    assert.equal(jobs.length, 15);
    assert.equal(await stream.next(), undefined);
  } finally {
    await server.stop();
  }
});

Deno.test("client streams: a stream consumer comes back after a network loss", async () => {
  const server = standIn();
  const jobs: Stored[] = storedJobs(6);
  server.queues.set("jobs", jobs);
  const proxy = cuttingProxy(server.port);
  const errors: unknown[] = [];
  const momd = client(proxy.url);
  try {
    const stream = momd.queues.stream("jobs", {
      prefetch: 3,
      onError: (err) => errors.push(err),
    });
    const held = (await stream.next())!;
    await until(() => stream.buffered === 2, "the rest of the prefetch");
    proxy.cut();
    await until(() => server.seen.upgrades === 2, "a reconnect");
    // The one still held counts against the prefetch on the new socket: 2 credits, not 3.
    const again = [(await stream.next())!, (await stream.next())!];
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(stream.buffered, 0);
    assert.ok(errors.length >= 1, "the loss was reported");
    // Its receipt went stale when the server released it, which the ack result says.
    const late = await stream.ack(held);
    assert.equal(late.ok, false);
    for (const m of again) assert.equal((await stream.ack(m)).ok, true);
    await stream.close();
  } finally {
    proxy.close();
    await server.stop();
  }
});

Deno.test("client streams: consume() takes deliveries over the stream, acks and nacks", async () => {
  const server = standIn();
  const jobs: Stored[] = ["ok-1", "fail", "ok-2", "ok-3"].map((body, i) => ({
    id: `q${i}`,
    body,
    attributes: {},
    deliveries: 0,
  }));
  server.queues.set("jobs", jobs);
  const momd = client(server.url);
  try {
    const seen: string[] = [];
    const errors: unknown[] = [];
    const consumer = momd.consume("jobs", (m) => {
      seen.push(`${m.body}#${m.deliveryCount}`);
      if (m.body === "fail" && m.deliveryCount === 1) throw new Error("not now");
    }, {
      concurrency: 2,
      visibilitySeconds: 30,
      backoff: { baseSeconds: 0 },
      max: 5,
      onError: (err) => errors.push(err),
    });
    const stats = await consumer.done;
    assert.deepEqual(stats, { received: 5, acked: 4, nacked: 1, settleErrors: 0 });
    assert.equal(jobs.length, 0);
    assert.ok(seen.includes("fail#2"), seen.join(","));
    assert.equal(errors.length, 1);
    const frames = server.seen.frames.map((f) => JSON.parse(f));
    assert.ok(frames.some((f) => f.type === "nack" && f.delaySeconds === 0));
    assert.ok(!frames.some((f) => f.type === "permit" && f.n > 2), "never more than 2 credits");
    assert.equal(server.seen.probes, 0, "no REST calls: the stream did it all");
  } finally {
    await server.stop();
  }
});

Deno.test("client streams: an expired token is renewed and the streams carry on", async () => {
  const server = standIn();
  server.queues.set("jobs", []);
  const momd = new MomdClient({
    url: server.url,
    username: "alice",
    password: "alice-password",
    retry: { retries: 2, baseDelayMs: 10, maxDelayMs: 20 },
  });
  const static_ = client(server.url);
  try {
    const producer = momd.queues.producer("jobs");
    await producer.send("before");
    const other = static_.queues.producer("jobs");
    await other.send("static");
    server.expireTokens();
    // With credentials: logs in again and goes on; with a token alone: refused for good.
    assert.ok((await producer.send("after")).id);
    assert.equal(momd.token, RENEWED);
    await assert.rejects(other.send("refused"), (err) => {
      assert.ok(err instanceof MomdError, String(err));
      assert.equal(err.status, 401);
      return true;
    });
    assert.equal(server.seen.frames.filter((f) => JSON.parse(f).body === "refused").length, 0);
    await producer.close();
    await other.close();
  } finally {
    await server.stop();
  }
});

Deno.test("client streams: consume() carries on over a network loss and empties the queue", async () => {
  const server = standIn();
  const jobs: Stored[] = storedJobs(40);
  server.queues.set("jobs", jobs);
  const proxy = cuttingProxy(server.port);
  const momd = client(proxy.url);
  try {
    let handled = 0;
    let cut = false;
    const errors: unknown[] = [];
    const consumer = momd.consume("jobs", async () => {
      if (++handled === 10 && !cut) {
        cut = true;
        proxy.cut(); // while this handler and others run
      }
      await new Promise((r) => setTimeout(r, 2));
    }, { concurrency: 4, visibilitySeconds: 30, onError: (err) => errors.push(err) });
    await until(() => jobs.length === 0, "the queue to be emptied", 10_000);
    const stats = await consumer.stop();
    // At least once: some acks of the lost socket's deliveries were refused as stale, and those
    // messages came again.
    assert.ok(stats.received >= 40, JSON.stringify(stats));
    assert.equal(stats.acked + stats.settleErrors, stats.received, JSON.stringify(stats));
    assert.ok(server.seen.upgrades >= 2, "it reconnected");
    assert.ok(errors.length >= 1, "the loss was reported");
  } finally {
    proxy.close();
    await server.stop();
  }
});

Deno.test("client streams: a producer moves to a new socket before its token expires", async () => {
  const server = standIn();
  server.queues.set("jobs", []);
  server.behaviour.slowMs = 3000;
  // Renewal due 0.5-1.5 s after the login (a 1-hour token, renewed 3598.5 s before it expires).
  const momd = new MomdClient({
    url: server.url,
    username: "alice",
    password: "alice-password",
    renewBeforeSeconds: 3598.5,
  });
  try {
    await momd.login("alice", "alice-password");
    const producer = momd.queues.producer("jobs");
    const slow = producer.send("slow-1"); // answered after the renewal came due
    await new Promise((r) => setTimeout(r, 2000));
    const after = producer.send("after"); // waits: the old socket takes no more
    assert.ok((await slow).id);
    assert.ok((await after).id);
    assert.deepEqual(server.seen.sendsBySocket, [["slow-1", 1], ["after", 2]]);
    assert.deepEqual(server.seen.tokens, [TOKEN, RENEWED], "the new socket has the new token");
    assert.deepEqual(server.queues.get("jobs")!.map((m) => m.body), ["slow-1", "after"]);
    await producer.close();
  } finally {
    await server.stop();
  }
});
