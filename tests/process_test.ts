import assert from "node:assert/strict";
import { freePort, type RedisServer, startRedis } from "./support/services.ts";
import { type NodeProcess, startNodeProcess } from "./support/process.ts";
import { renderLocalNginxConf } from "../scripts/nginx_conf.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const NGINX_CONF = new URL("../nginx/nginx.conf", import.meta.url);
const ADMIN = { username: "ops-admin", password: "ops-admin-password" };
const PROXY_ADDRESS = "127.0.0.10";

/** The three Redis servers of a node and the settings that name them. */
async function nodeServices(): Promise<{ env: Record<string, string>; stop(): Promise<void> }> {
  const redis: RedisServer[] = await Promise.all([startRedis(), startRedis(), startRedis()]);
  const [local, users, backup] = redis;
  return {
    env: {
      MOMD_NODE_ID: "proc1",
      MOMD_LOCAL_REDIS_URL: `${local.url}/0`,
      MOMD_USERS_REDIS_URL: `${users.url}/0`,
      MOMD_BACKUP_REDIS_URL: `${backup.url}/0`,
      MOMD_JWT_SECRET: "process-test-secret-0123456789abcdef",
      MOMD_ADMIN_USERNAME: ADMIN.username,
      MOMD_ADMIN_PASSWORD: ADMIN.password,
      MOMD_PASSWORD_HASH_COST: "10",
      MOMD_TRUSTED_PROXIES: PROXY_ADDRESS,
    },
    async stop() {
      await Promise.all(redis.map((r) => r.stop()));
    },
  };
}

// deno-lint-ignore no-explicit-any
async function json(res: Response): Promise<any> {
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

async function login(base: string): Promise<string> {
  const res = await fetch(`${base}/v1/auth/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(ADMIN),
  });
  const body = await json(res);
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(typeof body.token, "string");
  assert.ok(Date.parse(body.expiresAt) > Date.now());
  return body.token;
}

Deno.test("process: a node serves, logs in its configured admin, and stops on SIGTERM", async (t) => {
  const services = await nodeServices();
  let node: NodeProcess | undefined;
  try {
    node = await startNodeProcess({ env: services.env });
    const url = node.url;

    await t.step("readyz reports its Redis servers reachable", async () => {
      const res = await fetch(`${url}/readyz`);
      const body = await json(res);
      assert.equal(res.status, 200);
      assert.equal(body.node, "proc1");
      assert.ok(Object.values(body.checks).every(Boolean), JSON.stringify(body.checks));
    });

    await t.step("the admin from the settings logs in over HTTP and is an admin", async () => {
      const token = await login(url);
      const res = await fetch(`${url}/v1/auth/me`, {
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(res.status, 200);
      assert.deepEqual(await json(res), { username: ADMIN.username, role: "admin" });
    });

    await t.step("SIGTERM drains and exits 0 promptly", async () => {
      const started = Date.now();
      const status = await node!.stop("SIGTERM");
      const ms = Date.now() - started;
      assert.equal(status.code, 0, node!.output());
      assert.ok(ms < 5_000, `stopped after ${ms} ms`);
      assert.match(node!.output(), /created admin 'ops-admin'/);
      node = undefined;
    });
  } finally {
    await node?.stop("SIGKILL");
    await services.stop();
  }
});

/** Starts NGINX with a local rendering of nginx/nginx.conf in front of the given nodes. */
async function startNginx(servers: string[]): Promise<{ url: string; stop(): Promise<void> }> {
  const prefix = await Deno.makeTempDir({ prefix: "momd-nginx-" });
  await Deno.mkdir(`${prefix}/temp`);
  const port = freePort();
  await Deno.writeTextFile(
    `${prefix}/nginx.conf`,
    renderLocalNginxConf(await Deno.readTextFile(NGINX_CONF), {
      listen: `127.0.0.1:${port}`,
      servers,
      proxyBind: PROXY_ADDRESS,
      runAsRoot: Deno.uid() === 0,
    }),
  );
  const nginx = (args: string[]) =>
    new Deno.Command("nginx", {
      args: ["-p", `${prefix}/`, "-c", "nginx.conf", "-e", "stderr", ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    });
  const test = await nginx(["-t"]).output();
  assert.equal(test.code, 0, new TextDecoder().decode(test.stderr));
  const child = nginx(["-g", "daemon off;"]).spawn();
  const drained = Promise.all([child.stdout.cancel(), child.stderr.cancel()]);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  return {
    url,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await drained;
      await Deno.remove(prefix, { recursive: true });
    },
  };
}

Deno.test("process: NGINX with nginx/nginx.conf proxies to a node and answers 503 without one", async (t) => {
  const services = await nodeServices();
  let node: NodeProcess | undefined;
  let proxy: Awaited<ReturnType<typeof startNginx>> | undefined;
  try {
    node = await startNodeProcess({ env: services.env });
    // The node's port twice: both upstream entries lead to it, as three nodes would in a cluster.
    const address = node.url.replace("http://", "");
    proxy = await startNginx([address, address]);
    const base = proxy.url;

    await t.step("requests pass through, logins included", async () => {
      const res = await fetch(`${base}/healthz`);
      assert.equal(res.status, 200);
      assert.equal((await json(res)).node, "proc1");
      const token = await login(base);
      const me = await fetch(`${base}/v1/auth/me`, {
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(me.status, 200);
      await me.body?.cancel();
    });

    await t.step("with no node left, a 503 problem document with Retry-After", async () => {
      await node!.stop("SIGKILL");
      node = undefined;
      const res = await fetch(`${base}/v1/queues`);
      const body = await json(res);
      assert.equal(res.status, 503);
      assert.equal(res.headers.get("content-type"), "application/problem+json");
      assert.equal(res.headers.get("retry-after"), "1");
      assert.equal(body.status, 503);
      assert.equal(body.code, "unavailable");
    });
  } finally {
    await proxy?.stop();
    await node?.stop("SIGKILL");
    await services.stop();
  }
});

/** Runs scripts/local_cluster.ts on its own state directory and shifted ports. */
async function localBroker(nodes?: number) {
  const stateDir = await Deno.makeTempDir({ prefix: "momd-local-" });
  // Ports 8061+offset ... 8099+offset, below the ephemeral range where free ports come from;
  // offsets are multiples of 100 (scripts/local_cluster.ts).
  const offset = 100 * (200 + Math.floor(Math.random() * 40));
  const env: Record<string, string> = {
    MOMD_DEV_STATE_DIR: stateDir,
    MOMD_DEV_PORT_OFFSET: String(offset),
    MOMD_ADMIN_USERNAME: ADMIN.username,
    MOMD_ADMIN_PASSWORD: ADMIN.password,
    MOMD_PASSWORD_HASH_COST: "10",
    NO_COLOR: "1",
  };
  if (nodes) env.MOMD_DEV_NODES = String(nodes);
  const run = async (...args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", `${ROOT}scripts/local_cluster.ts`, ...args],
      env,
      stdin: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    return text;
  };
  return {
    stateDir,
    entry: `http://127.0.0.1:${8080 + offset}`,
    run,
    async close() {
      await run("down").catch(() => {});
      await Deno.remove(stateDir, { recursive: true });
    },
  };
}

Deno.test("process: the local broker script brings a node up, reports it, and takes it down", async () => {
  const { stateDir, entry, run, close } = await localBroker(1);
  try {
    const first = await run("up");
    assert.match(first, /node1: started/);
    assert.ok(first.includes(`curl -s -X POST ${entry}/v1/auth/token`), first);
    assert.doesNotMatch(first, /warning/);
    const secrets = await Deno.stat(`${stateDir}/secrets.env`);
    assert.equal(secrets.mode! & 0o777, 0o600);
    assert.match(await Deno.readTextFile(`${stateDir}/secrets.env`), /^MOMD_JWT_SECRET=\S{32,}$/m);
    await login(entry);

    assert.match(await run("up"), /node1: already running/);
    assert.match(await run("status"), /node1\s+running/);

    await run("node", "kill", "node1");
    assert.match(await run("status"), /node1\s+stopped/);
    assert.match(await run("node", "start", "node1"), /node1: started/);
    await login(entry);

    assert.match(await run("down"), /momd is down/);
    assert.deepEqual([...Deno.readDirSync(`${stateDir}/pids`)], []);
    await assert.rejects(fetch(`${entry}/healthz`));
  } finally {
    await close();
  }
});

Deno.test("process: the local broker's cluster layout puts NGINX in front of three nodes", async () => {
  const { entry, run, close } = await localBroker(3);
  try {
    const first = await run("up");
    for (const name of ["zookeeper", "node1", "node2", "node3", "nginx"]) {
      assert.match(first, new RegExp(`${name}: started`));
    }
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${entry}/healthz`);
      assert.equal(res.status, 200);
      seen.add((await json(res)).node);
    }
    assert.ok(seen.size >= 2, `requests reached ${[...seen]}`);
    await login(entry);

    // A GET is safe to repeat: NGINX tries another node when one is gone.
    await run("node", "kill", "node2");
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${entry}/healthz`);
      assert.equal(res.status, 200);
      assert.notEqual((await json(res)).node, "node2");
    }
    assert.match(await run("down"), /nginx: stopped[\s\S]*zookeeper: stopped/);
  } finally {
    await close();
  }
});
