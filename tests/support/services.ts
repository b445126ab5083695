/**
 * Starts real services for tests as child processes on free loopback ports, with data in a
 * temporary directory. Each test file starts what it needs and stops it at the end.
 */
import { freePort, redisServerArgs, waitForTcp } from "../../scripts/processes.ts";

/** Re-exported: the tests take their free ports from here. */
export { freePort };

/** A running redis-server. */
export interface RedisServer {
  port: number;
  url: string;
  dir: string;
  stop(): Promise<void>;
}

/**
 * Starts redis-server (from PATH) with append-only persistence in a fresh directory; with
 * `maxmemory` ("64mb"), bounded as a node's own store is (noeviction).
 */
export async function startRedis(
  opts: { port?: number; dir?: string; maxmemory?: string } = {},
): Promise<RedisServer> {
  const port = opts.port ?? freePort();
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "momd-redis-" });
  const child = new Deno.Command("redis-server", {
    args: [...redisServerArgs(port, dir, { maxmemory: opts.maxmemory }), "--loglevel", "warning"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitForTcp(port, 10_000);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
    },
  };
}
