/**
 * NGINX in front of nodes that fail (issue 11): the deployed nginx/nginx.conf, rendered for
 * loopback, in front of stand-in nodes that answer, stop answering, or are gone. A node that stops
 * answering holds a client for the read timeout, not a minute; NGINX's own errors say whether the
 * request reached a node (504 "outcome unknown") or not (503 "not applied"); a GET goes on to
 * another node; a long poll is not cut short.
 */
import assert from "node:assert/strict";
import { renderLocalNginxConf } from "../scripts/nginx_conf.ts";
import { freePort, nginxBinary, stopChild, waitForTcp } from "../scripts/processes.ts";

const NGINX_CONF = new URL("../nginx/nginx.conf", import.meta.url);

/** A stand-in node: answers every request with `answer` (which may take its time). */
function standIn(answer: (req: Request) => Promise<Response>) {
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, answer);
  return { address: `127.0.0.1:${server.addr.port}`, stop: () => server.shutdown() };
}

async function startNginx(servers: string[], nodeIds: string[]) {
  const prefix = await Deno.makeTempDir({ prefix: "momd-nginx-" });
  await Deno.mkdir(`${prefix}/temp`);
  const port = freePort();
  const conf = renderLocalNginxConf(await Deno.readTextFile(NGINX_CONF), {
    listen: `127.0.0.1:${port}`,
    servers,
    nodeIds,
    runAsRoot: Deno.uid() === 0,
  });
  await Deno.writeTextFile(`${prefix}/nginx.conf`, conf);
  const child = new Deno.Command(nginxBinary() ?? "nginx", {
    args: ["-p", `${prefix}/`, "-c", "nginx.conf", "-e", "stderr", "-g", "daemon off;"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitForTcp(port, 10_000);
  return {
    url: `http://127.0.0.1:${port}`,
    async stop() {
      await stopChild(child, { signal: "SIGTERM", timeoutMs: 5_000 });
      await Deno.remove(prefix, { recursive: true }).catch(() => {});
    },
  };
}

Deno.test({
  name: "nginx: a node that stops answering gives 504 outcome unknown; none reached gives 503; " +
    "GETs go on to another node; long polls are not cut",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const frozen = new Set<() => void>();
    // node1 takes requests and never answers (a SIGSTOPped node: its socket still accepts).
    const node1 = standIn(() =>
      new Promise((resolve) => {
        frozen.add(() => resolve(new Response("late")));
      })
    );
    // node2 answers at once, or after 12 s for a long poll.
    const node2 = standIn(async (req) => {
      const url = new URL(req.url);
      if (url.pathname.endsWith("/receive")) await new Promise((r) => setTimeout(r, 12_000));
      return Response.json({ served: "node2", path: url.pathname });
    });
    const gone = `127.0.0.1:${freePort()}`;
    const nginx = await startNginx([node1.address, node2.address], ["node1", "node2"]);
    const onlyGone = await startNginx([gone], ["node3"]);
    try {
      const timed = async (url: string, init: RequestInit) => {
        const t0 = Date.now();
        const res = await fetch(url, { ...init, signal: AbortSignal.timeout(60_000) });
        const text = await res.text();
        return { res, text, ms: Date.now() - t0 };
      };
      const send = {
        method: "POST",
        headers: { "content-type": "application/json", "momd-route": "node1" },
        body: JSON.stringify({ messages: [{ body: "x", dedupId: "x" }] }),
      };
      const [post, get, poll, none] = await Promise.all([
        // A send to the frozen node: NGINX must not repeat it elsewhere (it reached a node).
        timed(`${nginx.url}/v1/queues/q/messages`, send),
        // A GET to the frozen node goes on to the other one after the read timeout.
        timed(`${nginx.url}/v1/queues/q`, { headers: { "momd-route": "node1" } }),
        // A long poll of 12 s on a healthy node is answered, not cut at the read timeout.
        timed(`${nginx.url}/v1/queues/q/receive`, {
          method: "POST",
          headers: { "momd-route": "node2" },
          body: "{}",
        }),
        // No node at all: nothing reached one.
        timed(`${onlyGone.url}/v1/queues/q/messages`, send),
      ]);

      assert.equal(post.res.status, 504, post.text);
      assert.equal(post.res.headers.get("content-type"), "application/problem+json");
      const unknown = JSON.parse(post.text);
      assert.equal(unknown.type, "urn:momd:problem:outcome_unknown");
      assert.equal(unknown.code, "outcome_unknown");
      // Another node can take the retry at once.
      assert.equal(post.res.headers.get("retry-after"), "0");
      // The read timeout (7 s), not NGINX's default minute; generous bounds on a busy machine.
      assert.ok(post.ms >= 6_000 && post.ms < 30_000, `answered after ${post.ms} ms`);

      assert.equal(get.res.status, 200, get.text);
      assert.equal(JSON.parse(get.text).served, "node2");

      assert.equal(poll.res.status, 200, poll.text);
      assert.equal(JSON.parse(poll.text).served, "node2");

      assert.equal(none.res.status, 503, none.text);
      const refused = JSON.parse(none.text);
      assert.equal(refused.type, "urn:momd:problem:unavailable");
      assert.equal(refused.code, "unavailable");
      assert.equal(none.res.headers.get("retry-after"), "1");
    } finally {
      for (const done of frozen) done();
      await nginx.stop();
      await onlyGone.stop();
      await node1.stop();
      await node2.stop();
    }
  },
});

/** Sends raw bytes to `port` and returns what came back until the server closed (or 10 s). */
async function rawExchange(port: number, request: string | Uint8Array): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const bytes = typeof request === "string" ? new TextEncoder().encode(request) : request;
  let out = "";
  try {
    await conn.write(bytes).catch(() => 0);
    await conn.closeWrite().catch(() => {});
    const buf = new Uint8Array(64 * 1024);
    const deadline = setTimeout(() => conn.close(), 10_000);
    try {
      for (;;) {
        const n = await conn.read(buf).catch(() => null);
        if (!n) break;
        out += new TextDecoder().decode(buf.subarray(0, n));
      }
    } finally {
      clearTimeout(deadline);
    }
  } finally {
    try {
      conn.close();
    } catch {
      // closed by the deadline
    }
  }
  return out;
}

/** Status, headers (lower-case names) and body of a raw HTTP/1.1 answer. */
function parseRaw(text: string): { status: number; headers: Map<string, string>; body: string } {
  const end = text.indexOf("\r\n\r\n");
  const head = text.slice(0, end < 0 ? text.length : end).split("\r\n");
  const status = Number(head[0]?.split(" ")[1]);
  const headers = new Map<string, string>();
  for (const line of head.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) {
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
  }
  return { status, headers, body: end < 0 ? "" : text.slice(end + 4) };
}

Deno.test({
  name: "nginx: its own 400, 405, 413, 414 and 503 answer problem+json with momd's types; " +
    "a node's own errors pass unchanged",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    let reached = 0;
    const node = standIn((req) => {
      reached++;
      const url = new URL(req.url);
      if (url.pathname === "/v1/own-error") {
        return Promise.resolve(
          new Response('{"detail":"a node\'s own"}', {
            status: 409,
            headers: { "content-type": "application/json" },
          }),
        );
      }
      return Promise.resolve(Response.json({ served: url.pathname }));
    });
    const nginx = await startNginx([node.address], ["node1"]);
    const gone = await startNginx([`127.0.0.1:${freePort()}`], ["node9"]);
    const port = Number(new URL(nginx.url).port);
    try {
      const expectProblem = (
        what: string,
        res: { status: number; contentType: string | null; body: string },
        status: number,
        type: string,
      ) => {
        assert.equal(res.status, status, `${what}: ${res.body}`);
        assert.equal(res.contentType, "application/problem+json", what);
        const p = JSON.parse(res.body);
        assert.equal(p.status, status, what);
        assert.equal(p.type, `urn:momd:problem:${type}`, what);
        assert.equal(typeof p.title, "string", what);
        assert.equal(typeof p.detail, "string", what);
        assert.doesNotMatch(res.body, /nginx|127\.0\.0\.1|<html/i, what);
      };
      const viaFetch = async (path: string, init: RequestInit = {}) => {
        const r = await fetch(`${nginx.url}${path}`, init);
        return {
          status: r.status,
          contentType: r.headers.get("content-type"),
          body: await r.text(),
        };
      };
      const viaRaw = async (request: string) => {
        const r = parseRaw(await rawExchange(port, request));
        return {
          status: r.status,
          contentType: r.headers.get("content-type") ?? null,
          body: r.body,
        };
      };

      // TRACE: refused by NGINX itself (405), with the methods that are served.
      expectProblem(
        "TRACE",
        await viaRaw("TRACE /v1/queues/q HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        405,
        "405",
      );
      // A request line NGINX cannot parse.
      expectProblem("garbage", await viaRaw("GARBAGE\r\n\r\n"), 400, "invalid");
      // An HTTP version NGINX does not speak (its own 505): the request's fault, 400.
      expectProblem(
        "HTTP/9.9",
        await viaRaw("GET /v1/queues/q HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n"),
        400,
        "invalid",
      );
      // A chunked body with a broken chunk size.
      expectProblem(
        "bad chunk",
        await viaRaw(
          "POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" +
            "Connection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        ),
        400,
        "invalid",
      );
      // A transfer coding NGINX does not know (its own 501): the request's fault, 400.
      expectProblem(
        "unknown transfer coding",
        await viaRaw(
          "POST /v1/queues/q/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n" +
            "Connection: close\r\n\r\nabc",
        ),
        400,
        "invalid",
      );
      // A URI longer than NGINX's header buffers.
      expectProblem("long URI", await viaFetch(`/v1/queues/${"x".repeat(10_000)}`), 414, "414");
      // A body over NGINX's outer limit.
      expectProblem(
        "huge body",
        await viaFetch("/v1/queues/q/messages", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: "x".repeat(17 * 1024 * 1024),
        }),
        413,
        "too_large",
      );
      assert.equal(reached, 0, "none of these reached a node");

      // No node reachable: 503 not applied, as before.
      const none = await fetch(`${gone.url}/v1/queues/q`);
      expectProblem(
        "no node",
        {
          status: none.status,
          contentType: none.headers.get("content-type"),
          body: await none.text(),
        },
        503,
        "unavailable",
      );

      // A node's own answers, errors included, are not rewritten.
      const own = await viaFetch("/v1/own-error");
      assert.equal(own.status, 409);
      assert.equal(own.contentType, "application/json");
      assert.equal(JSON.parse(own.body).detail, "a node's own");
      const ok = await viaFetch("/v1/queues/q");
      assert.equal(ok.status, 200);
      assert.equal(JSON.parse(ok.body).served, "/v1/queues/q");
    } finally {
      await nginx.stop();
      await gone.stop();
      await node.stop();
    }
  },
});
