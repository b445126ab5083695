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
 * it: append-only persistence, no snapshots, in the foreground. A node's own store gets a
 * `maxmemory` (e.g. "512mb") with `noeviction`: full, it refuses writes rather than dropping
 * messages, and the node refuses sends before that (MOMD_MEMORY_HIGH_WATERMARK).
 */
export function redisServerArgs(
  port: number,
  dir: string,
  opts: { maxmemory?: string } = {},
): string[] {
  const memory = opts.maxmemory
    ? ["--maxmemory", opts.maxmemory, "--maxmemory-policy", "noeviction"]
    : [];
  return [
    ...memory,
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

/** What `maxmemory` the local broker and the test clusters give each node's own Redis. */
export const NODE_REDIS_MAXMEMORY = "512mb";

/** An HTTP answer read by httpGet: the status and the body as text. */
export interface RawHttpAnswer {
  status: number;
  body: string;
}

/**
 * One HTTP/1.1 request over a plain TCP connection to 127.0.0.1:port. Unlike `fetch`, it reaches
 * any port: fetch refuses the Fetch standard's "bad ports" (10080, 6000, ...), which a port offset
 * can land on. The answer is read to the end (`connection: close`).
 */
export async function httpRequest(
  port: number,
  path: string,
  opts: { method?: string; body?: string; headers?: Record<string, string>; timeoutMs?: number } =
    {},
): Promise<RawHttpAnswer> {
  const body = new TextEncoder().encode(opts.body ?? "");
  const head = [
    `${opts.method ?? "GET"} ${path} HTTP/1.1`,
    `host: 127.0.0.1:${port}`,
    "connection: close",
    ...Object.entries(opts.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
    ...(opts.body === undefined ? [] : [`content-length: ${body.length}`]),
    "",
    "",
  ].join("\r\n");
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), opts.timeoutMs ?? 2_000);
  try {
    const request = concat([new TextEncoder().encode(head), body]);
    for (let sent = 0; sent < request.length;) sent += await conn.write(request.subarray(sent));
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(16 * 1024);
    for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
      chunks.push(buf.slice(0, n));
    }
    const bytes = concat(chunks);
    const split = indexOfCrlfCrlf(bytes, 0);
    const header = new TextDecoder().decode(split < 0 ? bytes : bytes.subarray(0, split));
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(header);
    if (!status) throw new Error(`no HTTP answer from 127.0.0.1:${port}`);
    let rest = split < 0 ? new Uint8Array() : bytes.subarray(split + 4);
    if (/^transfer-encoding: *chunked/im.test(header)) rest = unchunk(rest);
    return { status: Number(status[1]), body: new TextDecoder().decode(rest) };
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // closed by the timer
    }
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function indexOfCrlfCrlf(bytes: Uint8Array, from: number): number {
  for (let i = from; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return i;
    }
  }
  return -1;
}

/** The payload of a chunked body (the trailer, if any, is dropped). */
function unchunk(bytes: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    let eol = at;
    while (eol + 1 < bytes.length && !(bytes[eol] === 13 && bytes[eol + 1] === 10)) eol++;
    const size = parseInt(new TextDecoder().decode(bytes.subarray(at, eol)), 16);
    if (!(size > 0)) break;
    parts.push(bytes.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return concat(parts);
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
