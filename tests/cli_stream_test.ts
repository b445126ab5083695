/**
 * The command line over streams, run in-process with `runCli` against a real node (the real API
 * over a real Redis): `send`/`publish` from standard input over a producer stream, `receive
 * --follow` over a consumer stream, and the same commands against a server without streams (a
 * proxy answering the stream endpoints as an older momd does), which fall back to REST.
 */
import assert from "node:assert/strict";
import { serveNode } from "./support/node.ts";
import { runMomd, type RunOptions, type RunResult } from "./support/cli.ts";

function jsonLines(text: string): Record<string, unknown>[] {
  return text.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

/** Counts the REST requests a command makes, by "METHOD /path". */
class Requests {
  readonly counts = new Map<string, number>();
  readonly fetch: typeof fetch = (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const key = `${init?.method ?? "GET"} ${url.pathname}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    return fetch(input, init);
  };
  count(key: string): number {
    return this.counts.get(key) ?? 0;
  }
}

/** Runs one command as a user whose token is in MOMD_TOKEN. */
function momd(
  url: string,
  token: string,
  args: string[],
  opts: RunOptions & { requests?: Requests } = {},
): Promise<RunResult> {
  const env = { MOMD_URL: url, MOMD_TOKEN: token, HOME: "/nonexistent" };
  return runMomd(args, env, { ...opts, fetch: opts.requests?.fetch });
}

/** A proxy that answers stream endpoints as a momd without streams (404, no code). */
function noStreamsProxy(target: string) {
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    const url = new URL(req.url);
    if (/\/(producer|consumer)$/.test(url.pathname)) {
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
  return { url: `http://127.0.0.1:${server.addr.port}`, close: () => server.shutdown() };
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("cli streams: send and publish read standard input over a producer stream", async (t) => {
  const node = await serveNode();
  const token = node.api.adminToken;
  const run = (args: string[], opts = {}) => momd(node.url, token, args, opts);
  try {
    await run(["queue", "create", "jobs"]);

    await t.step("one message a line, no REST send; --json lines in input order", async () => {
      const requests = new Requests();
      const input = Array.from({ length: 1500 }, (_, i) => `line ${i + 1}`);
      input.splice(10, 0, "", "   "); // blank lines: skipped, not renumbered
      const res = await run(["queue", "send", "jobs", "--json"], {
        stdin: input.join("\n") + "\n",
        requests,
      });
      assert.equal(res.code, 0, res.stderr);
      const lines = jsonLines(res.stdout);
      assert.equal(lines.length, 1500);
      assert.deepEqual(lines.slice(9, 12).map((l) => l.line), [10, 13, 14]);
      assert.equal(lines.at(-1)!.line, 1502);
      assert.ok(lines.every((l) => typeof l.id === "string" && l.duplicate === false));
      assert.equal(requests.count("POST /v1/queues/jobs/messages"), 0, "no REST send");
      const peek = await node.api.call("GET", "/v1/queues/jobs/messages?limit=3", {
        token,
      });
      assert.deepEqual(peek.body.messages.map((m: { body: string }) => m.body), [
        "line 1",
        "line 2",
        "line 3",
      ]);
      const summary = await run(["queue", "send", "jobs"], { stdin: "a\nb\n" });
      assert.equal(summary.stdout, "sent 2 messages to queue 'jobs'\n");
      const one = await run(["queue", "send", "jobs"], { stdin: "only\n" });
      assert.match(one.stdout, /^sent 1 message to queue 'jobs': [0-9A-Z]{26}\n$/);
      const none = await run(["queue", "send", "jobs"], { stdin: "\n\n" });
      assert.equal(none.stdout, "nothing sent: the input has no messages\n");
      await run(["queue", "purge", "jobs"]);
    });

    await t.step("--dedup-prefix over the stream: a repeated input is stored once", async () => {
      const args = ["queue", "send", "jobs", "--dedup-prefix", "run-1", "--attr", "k=v"];
      assert.equal((await run(args, { stdin: "a\nb\nc\n" })).code, 0);
      const again = await run(args, { stdin: "a\nb\nc\n" });
      assert.equal(again.stdout, "sent 3 messages to queue 'jobs' (3 duplicates)\n");
      const peek = await node.api.call("GET", "/v1/queues/jobs/messages", { token });
      assert.equal(peek.body.messages.length, 3);
      assert.deepEqual(peek.body.messages[0].attributes, { k: "v" });
      await run(["queue", "purge", "jobs"]);
    });

    await t.step("a refused line stops the input; the command says how far it got", async () => {
      await run(["queue", "create", "small", "--max-message-bytes", "8"]);
      const res = await run(["queue", "send", "small", "--json"], {
        stdin: "ok-1\nok-2\nmuch too long\nok-4\n",
      });
      assert.equal(res.code, 3, res.stderr);
      // Lines written before the refusal came back were stored; each one printed.
      assert.deepEqual(jsonLines(res.stdout).map((l) => l.line), [1, 2, 4]);
      assert.match(
        res.stderr,
        /3 message\(s\) sent to queue 'small'; input line 3 failed; nothing after input line 4/,
      );
      assert.match(res.stderr, /413 too_large/);
    });

    await t.step("topic publish over the stream: offsets in input order", async () => {
      await run(["topic", "create", "events"]);
      await run(["topic", "subscribe", "events", "audit", "--start", "earliest"]);
      const requests = new Requests();
      const res = await run(["topic", "publish", "events", "--key", "u1", "--json"], {
        stdin: "signed up\nlogged in\npaid\n",
        requests,
      });
      assert.equal(res.code, 0, res.stderr);
      assert.deepEqual(jsonLines(res.stdout).map((l) => [l.line, l.offset]), [
        [1, 0],
        [2, 1],
        [3, 2],
      ]);
      assert.equal(requests.count("POST /v1/topics/events/messages"), 0);
      // Arguments keep going as one REST batch.
      const args = await run(["topic", "publish", "events", "x", "y"], { requests });
      assert.equal(args.stdout, "sent 2 messages to topic 'events'\n");
      assert.equal(requests.count("POST /v1/topics/events/messages"), 1);
    });

    await t.step("a missing queue is refused before any input is read: exit 3", async () => {
      const res = await run(["queue", "send", "missing"], { stdin: "a\n" });
      assert.equal(res.code, 3);
      assert.match(res.stderr, /404 not_found/);
    });
  } finally {
    await node.close();
  }
});

Deno.test("cli streams: receive --follow over a consumer stream", async (t) => {
  const node = await serveNode();
  const token = node.api.adminToken;
  const run = (args: string[], opts = {}) => momd(node.url, token, args, opts);
  const stats = async (queue: string) =>
    (await node.api.call("GET", `/v1/queues/${queue}`, { token })).body.stats;
  try {
    await run(["queue", "create", "jobs", "--visibility-timeout", "600"]);

    await t.step("prints as messages come, acks each, stops cleanly on Ctrl-C", async () => {
      const interrupt = new AbortController();
      const requests = new Requests();
      let seen = "";
      const following = run(["queue", "receive", "jobs", "--follow"], {
        interrupt: interrupt.signal,
        onStdout: (all: string) => seen = all,
        requests,
      });
      await run(["queue", "send", "jobs", "first"]);
      await until(() => seen.includes("first"), "the first message");
      await run(["queue", "send", "jobs", "second", "third"]);
      await until(() => seen.includes("third"), "the others");
      interrupt.abort();
      const res = await following;
      assert.equal(res.code, 0, res.stderr);
      const rows = res.stdout.trimEnd().split("\n");
      assert.match(rows[0], /^ID +DELIVERY +BODY$/);
      assert.deepEqual(rows.slice(1).map((r) => r.split(/\s+/).at(-1)), [
        "first",
        "second",
        "third",
      ]);
      assert.equal(requests.count("POST /v1/queues/jobs/receive"), 0, "no long polls");
      assert.equal(requests.count("POST /v1/queues/jobs/ack"), 0, "acks went over the stream");
      const s = await stats("jobs");
      assert.equal(s.depth + s.inFlight, 0);
      assert.equal(s.totals.acked, 3);
    });

    await t.step("--no-ack leaves them in flight; Ctrl-C hands them back", async () => {
      await run(["queue", "send", "jobs", "k1", "k2"]);
      const interrupt = new AbortController();
      let seen = "";
      const following = run(["queue", "receive", "jobs", "--follow", "--no-ack", "--json"], {
        interrupt: interrupt.signal,
        onStdout: (all: string) => seen = all,
      });
      await until(() => seen.includes("k2"), "both messages");
      assert.equal((await stats("jobs")).inFlight, 2);
      interrupt.abort();
      const res = await following;
      assert.equal(res.code, 0, res.stderr);
      const got = jsonLines(res.stdout);
      assert.deepEqual(got.map((m) => m.body), ["k1", "k2"]);
      assert.equal(typeof got[0].receipt, "string");
      // Released when the stream closed: ready again at once, not after 600 s.
      let s = await stats("jobs");
      for (let i = 0; i < 100 && s.depth !== 2; i++) {
        await new Promise((r) => setTimeout(r, 20));
        s = await stats("jobs");
      }
      assert.equal(s.depth, 2);
      assert.equal(s.inFlight, 0);
    });

    await t.step("--max ends it by itself; --ack with --no-ack is a usage error", async () => {
      const res = await run(["queue", "receive", "jobs", "--follow", "--max", "2", "--json"]);
      assert.equal(res.code, 0, res.stderr);
      assert.deepEqual(jsonLines(res.stdout).map((m) => m.deliveryCount), [2, 2]);
      const s = await stats("jobs");
      assert.equal(s.depth + s.inFlight, 0);
      const both = await run(["queue", "receive", "jobs", "--ack", "--no-ack"]);
      assert.equal(both.code, 2);
      assert.match(both.stderr, /--ack or --no-ack, not both/);
    });

    await t.step("topic subscriptions follow the same way", async () => {
      await run(["topic", "create", "events"]);
      await run(["topic", "subscribe", "events", "audit", "--start", "earliest"]);
      await run(["topic", "publish", "events", "e1", "e2", "--key", "k"]);
      const res = await run(["topic", "receive", "events", "audit", "--follow", "--max", "2"]);
      assert.equal(res.code, 0, res.stderr);
      const rows = res.stdout.trimEnd().split("\n");
      assert.match(rows[0], /^OFFSET +DELIVERY +KEY +BODY$/);
      assert.match(rows[1], /^0 +1 +k +e1$/);
      assert.match(rows[2], /^1 +1 +k +e2$/);
      const sub = await node.api.call("GET", "/v1/topics/events/subscriptions/audit", { token });
      assert.equal(sub.body.stats.position, 2);
      assert.equal(sub.body.stats.inFlight, 0);
    });

    await t.step("a queue deleted under --follow ends it: exit 3", async () => {
      await run(["queue", "create", "doomed"]);
      const following = run(["queue", "receive", "doomed", "--follow"]);
      await new Promise((r) => setTimeout(r, 100));
      await run(["queue", "delete", "doomed"]);
      const res = await following;
      assert.equal(res.code, 3, res.stderr);
      assert.match(res.stderr, /404/);
    });
  } finally {
    await node.close();
  }
});

Deno.test("cli streams: a server without streams gets batches and long polls", async () => {
  const node = await serveNode();
  const proxy = noStreamsProxy(node.url);
  const token = node.api.adminToken;
  const run = (args: string[], opts = {}) => momd(proxy.url, token, args, opts);
  try {
    await run(["queue", "create", "jobs"]);
    const requests = new Requests();
    const lines = Array.from({ length: 250 }, (_, i) => `m${i}`).join("\n");
    const sent = await run(["queue", "send", "jobs"], { stdin: lines, requests });
    assert.equal(sent.code, 0, sent.stderr);
    assert.equal(sent.stdout, "sent 250 messages to queue 'jobs'\n");
    assert.equal(requests.count("POST /v1/queues/jobs/messages"), 3, "batches of 100");

    const got = await run(["queue", "receive", "jobs", "--follow", "--max", "250", "--json"], {
      requests,
    });
    assert.equal(got.code, 0, got.stderr);
    assert.equal(jsonLines(got.stdout).length, 250);
    assert.ok(requests.count("POST /v1/queues/jobs/receive") >= 3, "long polls");
    const q = (await node.api.call("GET", "/v1/queues/jobs", { token })).body.stats;
    assert.equal(q.depth + q.inFlight, 0);
  } finally {
    await proxy.close();
    await node.close();
  }
});
