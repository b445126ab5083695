/**
 * Starts a real ZooKeeper (standalone, from the Debian package) for tests, on a free loopback port
 * with its data in a temporary directory, and a TCP proxy to cut a client off from it.
 */
import { freePort, zooKeeperConfig } from "../../scripts/processes.ts";

/** A running ZooKeeper server. */
export interface ZooKeeperServer {
  port: number;
  /** Connect string for clients: `127.0.0.1:<port>`. */
  connect: string;
  dir: string;
  tickTime: number;
  stop(): Promise<void>;
}

const JAR = "/usr/share/java/zookeeper.jar";

/** Sends a four-letter word and reads the answer; a server that stays silent fails after 2 s. */
async function fourLetter(port: number, word: string, timeoutMs = 2000): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let timedOut = false;
  // Closing the connection ends a pending read, so a half-started server cannot hang the caller.
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn.close();
    } catch {
      // already closed
    }
  }, timeoutMs);
  try {
    await conn.write(new TextEncoder().encode(word));
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(4096);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    return new TextDecoder().decode(
      chunks.reduce((a, b) => new Uint8Array([...a, ...b]), new Uint8Array()),
    );
  } catch (err) {
    if (timedOut) {
      throw new Error(`ZooKeeper on port ${port}: no answer to ${word} in ${timeoutMs} ms`);
    }
    throw err;
  } finally {
    clearTimeout(timer);
    if (!timedOut) {
      try {
        conn.close();
      } catch {
        // closed by the server
      }
    }
  }
}

/**
 * Starts ZooKeeper with a small tickTime (default 200 ms), so session timeouts (bounded by the
 * server to 2..20 ticks) are short. Resolves once it answers `ruok` with `imok`.
 */
export async function startZooKeeper(
  opts: { tickTime?: number; port?: number; dir?: string } = {},
): Promise<ZooKeeperServer> {
  const tickTime = opts.tickTime ?? 200;
  const port = opts.port ?? freePort();
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "momd-zk-" });
  const conf = `${dir}/conf`;
  await Deno.mkdir(`${dir}/data`, { recursive: true });
  await Deno.mkdir(conf, { recursive: true });
  await Deno.writeTextFile(
    `${conf}/zoo.cfg`,
    zooKeeperConfig({ tickTime, dataDir: `${dir}/data`, port }),
  );
  // Quiet logging: the jar's default log4j/logback setup prints to stdout.
  const child = new Deno.Command("java", {
    args: [
      "-Xmx256m",
      "-cp",
      `${conf}:${JAR}`,
      "org.apache.zookeeper.server.ZooKeeperServerMain",
      `${conf}/zoo.cfg`,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const until = Date.now() + 30_000;
  let ready = false;
  while (Date.now() < until) {
    try {
      if ((await fourLetter(port, "ruok")) === "imok") {
        ready = true;
        break;
      }
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  // If the test process ends without stop() (an uncaught error), do not leave ZooKeeper behind.
  const onUnload = () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  };
  globalThis.addEventListener("unload", onUnload);
  const stop = async () => {
    globalThis.removeEventListener("unload", onUnload);
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    await child.status;
    if (!opts.dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  if (!ready) {
    await stop();
    throw new Error(`ZooKeeper on port ${port} did not answer ruok within 30 s`);
  }
  return { port, connect: `127.0.0.1:${port}`, dir, tickTime, stop };
}

/** How a TcpProxy treats traffic. */
export type ProxyMode =
  /** Forward bytes both ways. */
  | "pass"
  /** Keep connections open but drop every byte (a silent partition). */
  | "drop"
  /** Close every connection and refuse new ones (the peer sees the connection fail). */
  | "reset";

/** A TCP proxy on a free loopback port in front of another address. */
export interface TcpProxy {
  port: number;
  address: string;
  setMode(mode: ProxyMode): void;
  close(): Promise<void>;
}

/** Starts a TCP proxy to `127.0.0.1:<targetPort>` whose traffic can be cut on purpose. */
export function startTcpProxy(targetPort: number): TcpProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  let mode: ProxyMode = "pass";
  const open = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();

  function closeQuietly(conn: Deno.Conn) {
    open.delete(conn);
    try {
      conn.close();
    } catch {
      // already closed
    }
  }

  async function pump(from: Deno.Conn, to: Deno.Conn) {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buf);
        if (n === null) break;
        if (mode !== "pass") continue;
        let off = 0;
        while (off < n) off += await to.write(buf.subarray(off, n));
      }
    } catch {
      // either side closed
    } finally {
      closeQuietly(from);
      closeQuietly(to);
    }
  }

  async function serve(client: Deno.Conn) {
    if (mode === "reset") {
      closeQuietly(client);
      return;
    }
    let upstream: Deno.Conn;
    try {
      upstream = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
    } catch {
      closeQuietly(client);
      return;
    }
    open.add(client);
    open.add(upstream);
    await Promise.all([pump(client, upstream), pump(upstream, client)]);
  }

  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        const task = serve(conn);
        tasks.add(task);
        task.finally(() => tasks.delete(task));
      }
    } catch {
      // listener closed
    }
  })();

  return {
    port,
    address: `127.0.0.1:${port}`,
    setMode(next: ProxyMode) {
      mode = next;
      if (next === "reset") { for (const c of [...open]) closeQuietly(c); }
    },
    async close() {
      try {
        listener.close();
      } catch {
        // already closed
      }
      for (const c of [...open]) closeQuietly(c);
      await accepting;
      await Promise.allSettled([...tasks]);
    },
  };
}

/** Polls `check` until it returns a truthy value (returned) or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 15_000,
): Promise<NonNullable<T>> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}`);
}
