/**
 * The local broker's port layout (scripts/local_cluster.ts) and its readiness check: copies at
 * different offsets never share a port, offsets that could are refused, and a service on a port
 * `fetch` refuses is still found ready.
 */
import assert from "node:assert/strict";
import { localLayout, PORT_OFFSET_STEP, PORTS, type Secrets } from "../scripts/local_cluster.ts";
import { httpRequest, ROOT } from "../scripts/processes.ts";

const SECRETS: Secrets = {
  jwtSecret: "j".repeat(48),
  clusterSecret: "c".repeat(48),
  adminUsername: "admin",
  adminPassword: "admin-password",
};

/** Every port a copy listens on. */
function portsOf(nodes: number, portOffset: number): number[] {
  const layout = localLayout("/nonexistent", { nodes, portOffset }, SECRETS);
  return layout.services.flatMap((s) => s.listens.map((l) => l.port));
}

Deno.test("local broker: copies at different offsets never share a port", () => {
  for (const nodes of [1, 3, 9]) {
    const own = portsOf(nodes, 0);
    assert.equal(new Set(own).size, own.length, `${nodes} node(s): no port twice in one copy`);
    for (const p of own) {
      assert.ok(p >= PORTS.nodeRedis(0) && p <= PORTS.nodeGrpc(8), `port ${p} in the block`);
    }
  }
  // The README's example (1000) and every other multiple of the step, against the default copy
  // and against each other, with the most nodes.
  const offsets = Array.from({ length: 40 }, (_, i) => i * PORT_OFFSET_STEP);
  const seen = new Map<number, number>();
  for (const offset of offsets) {
    for (const p of portsOf(9, offset)) {
      assert.ok(!seen.has(p), `port ${p} of offset ${offset} is used at offset ${seen.get(p)}`);
      seen.set(p, offset);
    }
  }
  const single = localLayout("/x", { nodes: 1, portOffset: 1000 }, SECRETS);
  assert.equal(single.entry, "http://127.0.0.1:9080");
  const cluster = localLayout("/x", { nodes: 3, portOffset: 1000 }, SECRETS);
  assert.equal(cluster.entry, "http://127.0.0.1:9080");
  const redis = cluster.services.find((s) => s.name === "redis-node1")!;
  assert.ok(redis.command.join(" ").includes("--maxmemory 512mb --maxmemory-policy noeviction"));
  const users = cluster.services.find((s) => s.name === "redis-users")!;
  assert.ok(!users.command.includes("--maxmemory"), "the users Redis is not bounded");
});

Deno.test("local broker: an offset that is not a multiple of 100 is refused", async () => {
  const stateDir = await Deno.makeTempDir({ prefix: "momd-local-" });
  try {
    const run = async (offset: string) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", `${ROOT}/scripts/local_cluster.ts`, "status"],
        env: { MOMD_DEV_STATE_DIR: stateDir, MOMD_DEV_PORT_OFFSET: offset, NO_COLOR: "1" },
        stdin: "null",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      return { code: out.code, text };
    };
    const bad = await run("1050");
    assert.equal(bad.code, 2, bad.text);
    assert.match(bad.text, /MOMD_DEV_PORT_OFFSET: must be a multiple of 100 .*e\.g\. 1000 or 1100/);
    const good = await run("2000");
    assert.equal(good.code, 0, good.text);
    assert.match(good.text, /entry point: http:\/\/127\.0\.0\.1:10080/);
  } finally {
    await Deno.remove(stateDir, { recursive: true });
  }
});

Deno.test("local broker: readiness reaches a port that fetch refuses", async () => {
  // Ports the Fetch standard blocks; the first free one is used.
  const blocked = [10080, 6000, 6665, 6666, 6667, 6668, 6669, 6697, 4190, 5060, 5061];
  let server: Deno.HttpServer | undefined;
  let port = 0;
  for (const p of blocked) {
    try {
      server = Deno.serve(
        { hostname: "127.0.0.1", port: p, onListen: () => {} },
        (req) => new Response(`ok ${new URL(req.url).pathname}`, { status: 200 }),
      );
      port = p;
      break;
    } catch {
      // taken: try the next
    }
  }
  assert.ok(server, "one of the blocked ports is free");
  try {
    await assert.rejects(() => fetch(`http://127.0.0.1:${port}/healthz`), "fetch refuses it");
    const res = await httpRequest(port, "/healthz");
    assert.equal(res.status, 200);
    assert.equal(res.body, "ok /healthz");
    const post = await httpRequest(port, "/v1/auth/token", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(post.status, 200);
  } finally {
    await server!.shutdown();
  }
});
