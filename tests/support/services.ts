/**
 * Starts real services for tests as child processes on free loopback ports, with data in a
 * temporary directory. Each test file starts what it needs and stops it at the end.
 */

/** A free TCP port on the given loopback address. */
export function freePort(hostname = "127.0.0.1"): number {
  const listener = Deno.listen({ hostname, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** A running redis-server. */
export interface RedisServer {
  port: number;
  url: string;
  dir: string;
  stop(): Promise<void>;
}

async function waitForTcp(hostname: string, port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      const conn = await Deno.connect({ hostname, port });
      conn.close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  throw new Error(`nothing listens on ${hostname}:${port} after ${timeoutMs} ms`);
}

/** Starts redis-server (from PATH) with append-only persistence in a fresh directory. */
export async function startRedis(opts: { port?: number; dir?: string } = {}): Promise<RedisServer> {
  const port = opts.port ?? freePort();
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "momd-redis-" });
  const child = new Deno.Command("redis-server", {
    args: [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--appendonly",
      "yes",
      "--save",
      "",
      "--daemonize",
      "no",
      "--loglevel",
      "warning",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await waitForTcp("127.0.0.1", port, 10_000);
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
