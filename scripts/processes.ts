/**
 * What the local broker (local_cluster.ts), the benchmark (bench/) and the tests share about the
 * processes they start on this machine: free ports, waiting for a port, the settings of
 * redis-server and ZooKeeper, stopping a child, finding NGINX, the end of a log. Imports nothing
 * of the repository, so any of them may use it.
 */

/** The repository root, without a trailing slash. */
export const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");

/** A free TCP port on the given loopback address. */
export function freePort(hostname = "127.0.0.1"): number {
  const listener = Deno.listen({ hostname, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits until something accepts TCP connections on 127.0.0.1:port. */
export async function waitForTcp(port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await sleep(25);
    }
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

/**
 * Arguments of a redis-server on 127.0.0.1:port with its data in `dir`, as momd's deployments run
 * it: append-only persistence, no snapshots, in the foreground.
 */
export function redisServerArgs(port: number, dir: string): string[] {
  return [
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
  ];
}

/** zoo.cfg of a standalone ZooKeeper on 127.0.0.1:port (no admin server; ruok, stat, mntr). */
export function zooKeeperConfig(opts: { tickTime: number; dataDir: string; port: number }): string {
  return [
    `tickTime=${opts.tickTime}`,
    `dataDir=${opts.dataDir}`,
    `clientPort=${opts.port}`,
    "clientPortAddress=127.0.0.1",
    "admin.enableServer=false",
    "4lw.commands.whitelist=ruok,stat,mntr",
    "",
  ].join("\n");
}

/** Sends `signal` (default SIGTERM) to a child and waits for its exit; SIGKILL after `timeoutMs`. */
export async function stopChild(
  child: Deno.ChildProcess,
  opts: { signal?: Deno.Signal; timeoutMs: number },
): Promise<Deno.CommandStatus> {
  const kill = (s: Deno.Signal) => {
    try {
      child.kill(s);
    } catch {
      // already gone
    }
  };
  kill(opts.signal ?? "SIGTERM");
  const timer = setTimeout(() => kill("SIGKILL"), opts.timeoutMs);
  try {
    return await child.status;
  } finally {
    clearTimeout(timer);
  }
}

/** Finds the nginx program (it lives in /usr/sbin, which is not on every PATH). */
export function nginxBinary(): string | undefined {
  const dirs = (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/sbin", "/sbin"]);
  for (const dir of dirs) {
    try {
      if (dir && Deno.statSync(`${dir}/nginx`).isFile) return `${dir}/nginx`;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The last `n` lines of a log file, for error messages. */
export async function lastLines(path: string, n: number): Promise<string> {
  try {
    return (await Deno.readTextFile(path)).trimEnd().split("\n").slice(-n).join("\n");
  } catch {
    return "(no log)";
  }
}
