/**
 * A few-seconds run of the benchmark (`--quick`), so that it cannot rot. No timing is asserted:
 * only that every workload produced a row that moved messages, that the ceilings ran, and that
 * the results were written.
 */
import assert from "node:assert/strict";
import { freePort, type RedisServer, startRedis } from "./support/services.ts";
import { type NodeProcess, startNodeProcess } from "./support/process.ts";
import { runBench } from "../bench/main.ts";
import { parseOptions, WORKLOADS } from "../bench/options.ts";
import type { BenchReport } from "../bench/report.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const ADMIN = { username: "bench-admin", password: "bench-admin-password" };

Deno.test({
  name: "bench: a quick run against a node process measures every workload and both ceilings",
  // ioredis closes its sockets after the last await of the test.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const redis: RedisServer = await startRedis();
    let node: NodeProcess | undefined;
    const out = await Deno.makeTempDir({ prefix: "momd-bench-results-" });
    try {
      node = await startNodeProcess({
        env: {
          MOMD_NODE_ID: "bench1",
          MOMD_LOCAL_REDIS_URL: `${redis.url}/0`,
          MOMD_USERS_REDIS_URL: `${redis.url}/1`,
          MOMD_BACKUP_REDIS_URL: `${redis.url}/2`,
          MOMD_GRPC_LISTEN: `127.0.0.1:${freePort()}`,
          MOMD_JWT_SECRET: "bench-smoke-secret-0123456789abcdef",
          MOMD_ADMIN_USERNAME: ADMIN.username,
          MOMD_ADMIN_PASSWORD: ADMIN.password,
          MOMD_PASSWORD_HASH_COST: "10",
          MOMD_RATE_LIMIT_PER_SECOND: "1000000",
        },
      });
      const opts = parseOptions([
        "--quick",
        "--duration",
        "0.3",
        "--memory-messages",
        "2000",
        "--preload",
        "1000",
        "--url",
        node.url,
        "--user",
        ADMIN.username,
        "--password",
        ADMIN.password,
        "--redis-url",
        redis.url,
        "--node-pid",
        String(node.pid),
        "--nginx",
        "off",
        "--out",
        out,
      ]);
      assert.notEqual(opts, "help");
      if (opts === "help") return;
      const lines: string[] = [];
      const run = await runBench(opts, (line) => lines.push(line));
      const rows = run.report.rows;

      for (const workload of WORKLOADS) {
        const row = rows.find((r) => r.workload === workload && r.target === "momd");
        assert.ok(row, `no momd row for ${workload}; log:\n${lines.join("\n")}`);
        assert.ok(row.messages > 0, `${workload} moved no message: ${JSON.stringify(row)}`);
        assert.equal(row.errors, 0, `${workload} had errors: ${row.errorSamples?.join("; ")}`);
      }
      for (const workload of ["send", "send-batch", "drain-10", "drain-100"] as const) {
        for (const target of ["http-ceiling", "store-ceiling"] as const) {
          const row = rows.find((r) => r.workload === workload && r.target === target);
          assert.ok(row && row.messages > 0, `no ${target} row with messages for ${workload}`);
        }
      }
      const memory = rows.find((r) => r.workload === "memory")!;
      assert.ok(Number(memory.extra?.redisBytesPerMessage) > 0, JSON.stringify(memory.extra));
      assert.ok(Number(memory.extra?.node1RssMB) > 0, JSON.stringify(memory.extra));
      const latency = rows.find((r) => r.workload === "latency")!;
      assert.equal(latency.extra?.lost, 0, JSON.stringify(latency.extra));

      const saved = JSON.parse(await Deno.readTextFile(`${out}/latest.json`)) as BenchReport;
      assert.equal(saved.rows.length, rows.length);
      assert.match(await Deno.readTextFile(`${out}/latest.svg`), /^<svg /);
      assert.match(run.markdown, /\| send \| [\d,]+ \|/);
      assert.match(run.markdown, /## Targets \(issue 5\)/);
      assert.match(run.markdown, /## Targets \(issue 13\)/);
      assert.match(run.markdown, /\| stream-send \| [\d,]+ \|/);
      assert.match(run.markdown, /\| stream-drain \| [\d,]+ \|/);
      // The streaming rows moved messages over their streams: sends answered, acks answered.
      const streamSend = rows.find((r) => r.workload === "stream-send")!;
      assert.ok(Number(streamSend.extra?.sockets) >= 1, JSON.stringify(streamSend));
      const streamDrain = rows.find((r) => r.workload === "stream-drain")!;
      assert.ok(streamDrain.requests > 0, "acks went as frames");
      assert.ok(streamDrain.messages <= 1000, "no more than the preload");
    } finally {
      await node?.stop("SIGTERM");
      await redis.stop();
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name: "bench: `bench/main.ts --quick` brings momd up behind NGINX, measures, and takes it down",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const out = await Deno.makeTempDir({ prefix: "momd-bench-results-" });
    try {
      const res = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-all",
          `${ROOT}bench/main.ts`,
          "--quick",
          "--duration",
          "0.3",
          "--only",
          "send,memory",
          "--memory-messages",
          "1000",
          "--no-ceilings",
          "--out",
          out,
        ],
        stdin: "null",
        env: { NO_COLOR: "1" },
      }).output();
      const text = new TextDecoder().decode(res.stdout) + new TextDecoder().decode(res.stderr);
      assert.equal(res.code, 0, text);
      assert.match(text, /NGINX in front: yes/);
      const report = JSON.parse(await Deno.readTextFile(`${out}/latest.json`)) as BenchReport;
      const send = report.rows.find((r) => r.workload === "send" && r.target === "momd");
      assert.ok(send && send.messages > 0, text);
      const memory = report.rows.find((r) => r.workload === "memory" && r.target === "momd");
      assert.ok(Number(memory?.extra?.redisBytesPerMessage) > 0, text);
      // Everything it started is gone: its temporary state directory was removed.
      const state = text.match(/state (\/\S+)\/momd\)/)?.[1];
      assert.ok(state, text);
      await assert.rejects(Deno.stat(state));
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});
