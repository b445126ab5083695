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
