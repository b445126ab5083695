/**
 * The processes a benchmark run needs, each started on loopback with its state in the run's
 * temporary directory and stopped by its own pid: momd (through scripts/local_cluster.ts), NGINX
 * (rendered from the deployed nginx/nginx.conf), the HTTP ceiling server and a Redis for the
 * store ceiling. Also what /proc tells about them: CPU time and resident memory.
 */
import { renderLocalNginxConf } from "../scripts/nginx_conf.ts";
import {
  freePort,
  lastLines,
  nginxBinary,
  redisServerArgs,
  ROOT,
  sleep,
  stopChild,
  waitForTcp,
} from "../scripts/processes.ts";

/** A process this run started. */
export interface Service {
  name: string;
  pid: number;
  /** Where its output goes. */
  log: string;
  /** SIGTERM (or the given signal), then SIGKILL after `timeoutMs`. */
  stop(signal?: Deno.Signal, timeoutMs?: number): Promise<void>;
}

/** Waits until a GET of the URL answers 200. */
export async function waitHttp(url: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      await res.body?.cancel();
      if (res.status === 200) return;
    } catch {
      // not yet
    }
    await sleep(50);
  }
  throw new Error(`${url} does not answer 200 after ${timeoutMs} ms`);
}

/** Options of `spawnService`. */
export interface SpawnOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Where stdout and stderr go (appended); stdout may go to /dev/null instead. */
  log: string;
  discardStdout?: boolean;
}

/** Starts a process whose pid is the program's own (the shell execs it), output to a file. */
export function spawnService(name: string, command: string[], opts: SpawnOptions): Service {
  const out = opts.discardStdout ? "/dev/null" : '"$log"';
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      `log=$1; shift; exec "$@" >>${out} 2>>"$log" </dev/null`,
      "sh",
      opts.log,
      ...command,
    ],
    cwd: opts.cwd ?? ROOT,
    env: opts.env,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  return {
    name,
    pid: child.pid,
    log: opts.log,
    async stop(signal: Deno.Signal = "SIGTERM", timeoutMs = 10_000) {
      if (exited) return;
      await stopChild(child, { signal, timeoutMs });
      await status;
    },
  };
}

// ---- Redis ------------------------------------------------------------------------------------

/** A redis-server of this run. */
export interface RedisService extends Service {
  url: string;
}

/** Starts redis-server with the settings the local broker uses (append-only, no snapshots). */
export async function startRedisServer(dir: string, name: string): Promise<RedisService> {
  const port = freePort();
  const data = `${dir}/${name}`;
  await Deno.mkdir(data, { recursive: true });
  const service = spawnService(name, ["redis-server", ...redisServerArgs(port, data)], {
    log: `${dir}/${name}.log`,
  });
  try {
    await waitForTcp(port, 10_000);
  } catch (err) {
    await service.stop("SIGKILL");
    throw new Error(`${name}: ${(err as Error).message}\n${await lastLines(service.log, 15)}`);
  }
  return { ...service, url: `redis://127.0.0.1:${port}` };
}

// ---- NGINX ------------------------------------------------------------------------------------

/** An NGINX of this run in front of some servers. */
export interface NginxService extends Service {
  url: string;
}

/**
 * Starts NGINX with the deployed configuration (nginx/nginx.conf, rendered for local servers as
 * the local broker renders it), listening on a free port. Its output (the access log included)
 * goes to `<dir>/<name>.log`, as the local broker's NGINX writes to its log file.
 */
export async function startNginx(
  dir: string,
  name: string,
  servers: string[],
): Promise<NginxService> {
  const binary = nginxBinary();
  if (!binary) {
    throw new Error("nginx is not installed (apt-get install nginx), or use --nginx off");
  }
  const port = freePort();
  const prefix = `${dir}/${name}/`;
  await Deno.mkdir(`${prefix}temp`, { recursive: true });
  const template = await Deno.readTextFile(`${ROOT}/nginx/nginx.conf`);
  const conf = renderLocalNginxConf(template, {
    listen: `127.0.0.1:${port}`,
    servers,
    runAsRoot: Deno.uid() === 0,
  });
  await Deno.writeTextFile(`${prefix}nginx.conf`, conf);
  const service = spawnService(
    name,
    [binary, "-p", prefix, "-c", "nginx.conf", "-e", "stderr", "-g", "daemon off;"],
    { log: `${dir}/${name}.log` },
  );
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForTcp(port, 10_000);
  } catch (err) {
    await service.stop("SIGKILL");
    throw new Error(`${name}: ${(err as Error).message}\n${await lastLines(service.log, 15)}`);
  }
  // SIGQUIT is NGINX's graceful stop; SIGTERM its fast one.
  return { ...service, url, stop: (signal = "SIGTERM", ms = 10_000) => service.stop(signal, ms) };
}

// ---- the HTTP ceiling server --------------------------------------------------------------------

/** Starts bench/ceiling_server.ts as its own process on a free port. */
export async function startCeilingServer(
  dir: string,
  size: number,
): Promise<Service & { url: string }> {
  const port = freePort();
  const service = spawnService("ceiling", [
    Deno.execPath(),
    "run",
    "--allow-net",
    `${ROOT}/bench/ceiling_server.ts`,
    "--listen",
    `127.0.0.1:${port}`,
    "--size",
    String(size),
  ], { log: `${dir}/ceiling.log` });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitHttp(`${url}/healthz`, 60_000);
  } catch (err) {
    await service.stop("SIGKILL");
    throw new Error(
      `ceiling server: ${(err as Error).message}\n${await lastLines(service.log, 15)}`,
    );
  }
  return { ...service, url };
}

// ---- momd through scripts/local_cluster.ts --------------------------------------------------------

/** A momd brought up for this run. */
export interface MomdUnderTest {
  /** Its entry point (a node, or NGINX in front of the cluster). */
  entry: string;
  /** Each node's HTTP address (host:port). */
  nodeAddresses: string[];
  username: string;
  password: string;
  nodePids: number[];
  /** Each node's local Redis. */
  redisUrls: string[];
  redisPids: number[];
  /** The cluster's NGINX, when local_cluster started one. */
  nginxPid?: number;
  /** The other processes it started, by role: ZooKeeper, the users and backup Redis. */
  otherPids: Record<string, number[]>;
  /** Takes it down (and removes its state unless `keep`). */
  down(keep: boolean): Promise<void>;
}

function cmdline(pid: number): string[] {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
  } catch {
    return [];
  }
}

async function pidOf(stateDir: string, name: string): Promise<number | undefined> {
  try {
    const pid = Number((await Deno.readTextFile(`${stateDir}/pids/${name}.pid`)).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Brings momd up with scripts/local_cluster.ts on its own state directory and shifted ports
 * (another copy may run on the default ones), with a rate limit that lets the load through.
 */
export async function bringUpMomd(
  stateDir: string,
  nodes: number,
  log: (line: string) => void,
): Promise<MomdUnderTest> {
  const password = `bench-${crypto.randomUUID()}`;
  let lastError = "";
  for (let attempt = 0; attempt < 5; attempt++) {
    // Ports 8061+offset ... 8099+offset stay below the ephemeral range free ports come from;
    // offsets are multiples of 100 (scripts/local_cluster.ts).
    const offset = 100 * (120 + Math.floor(Math.random() * 70));
    const env: Record<string, string> = {
      MOMD_DEV_STATE_DIR: stateDir,
      MOMD_DEV_PORT_OFFSET: String(offset),
      MOMD_DEV_NODES: String(nodes),
      MOMD_ADMIN_USERNAME: "admin",
      MOMD_ADMIN_PASSWORD: password,
      MOMD_RATE_LIMIT_PER_SECOND: "1000000",
      NO_COLOR: "1",
    };
    const run = async (command: string) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", `${ROOT}/scripts/local_cluster.ts`, command],
        env,
        cwd: ROOT,
        stdin: "null",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      return { code: out.code, text };
    };
    log(`bringing up momd (${nodes} node(s), port offset ${offset}, state ${stateDir})`);
    const up = await run("up");
    if (up.code !== 0) {
      lastError = up.text;
      await run("down");
      if (up.text.includes("ports are taken")) continue;
      throw new Error(`scripts/local_cluster.ts up failed:\n${up.text}`);
    }
    try {
      return await describe(up.text, offset, run);
    } catch (err) {
      await run("down");
      throw err;
    }
  }
  throw new Error(`scripts/local_cluster.ts up: no free ports after 5 tries:\n${lastError}`);

  async function describe(
    text: string,
    offset: number,
    run: (command: string) => Promise<{ code: number; text: string }>,
  ): Promise<MomdUnderTest> {
    const entry = text.match(/momd is up at (http:\/\/\S+)/)?.[1] ??
      `http://127.0.0.1:${8080 + offset}`;
    const nodePids: number[] = [];
    const redisUrls: string[] = [];
    const redisPids: number[] = [];
    const nodeAddresses: string[] = [];
    for (let i = 1; i <= nodes; i++) {
      const pid = await pidOf(stateDir, `node${i}`);
      if (pid) nodePids.push(pid);
      nodeAddresses.push(`127.0.0.1:${nodes > 1 ? 8081 + offset + i - 1 : 8080 + offset}`);
      const redisPid = await pidOf(stateDir, `redis-node${i}`);
      if (redisPid) redisPids.push(redisPid);
      // redis-server renames its process to "redis-server 127.0.0.1:PORT".
      const line = redisPid ? cmdline(redisPid).join(" ") : "";
      const port = (line.match(/--port (\d+)/) ?? line.match(/:(\d+)/))?.[1];
      if (port) redisUrls.push(`redis://127.0.0.1:${port}`);
    }
    const otherPids: Record<string, number[]> = {};
    for (
      const [role, name] of [
        ["zookeeper", "zookeeper"],
        ["central redis", "redis-users"],
        ["central redis", "redis-backup"],
      ]
    ) {
      const pid = await pidOf(stateDir, name);
      if (pid) (otherPids[role] ??= []).push(pid);
    }
    return {
      entry,
      nodeAddresses,
      username: "admin",
      password,
      nodePids,
      redisUrls,
      redisPids,
      nginxPid: nodes > 1 ? await pidOf(stateDir, "nginx") : undefined,
      otherPids,
      async down(keep: boolean) {
        if (keep) return;
        const res = await run("down");
        if (res.code !== 0) log(`warning: local_cluster.ts down: ${res.text}`);
      },
    };
  }
}

// ---- /proc ----------------------------------------------------------------------------------------

const CLOCK_TICKS = 100;

/** CPU seconds (user + system) a process used so far; 0 when it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** CPU seconds of this process's children that have exited and been waited for (wrk). */
export function waitedChildrenCpuSeconds(): number {
  try {
    const stat = Deno.readTextFileSync("/proc/self/stat");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** The process and its descendants (NGINX workers, Erlang's helpers). */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry.name));
      children.set(ppid, list);
    } catch {
      // gone
    }
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    out.push(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** Resident memory of a process now and at its peak, in bytes (0 when unknown). */
export function residentMemory(pid: number): { rss: number; peak: number } {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kb = (key: string) =>
      Number(status.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"))?.[1] ?? 0);
    return { rss: kb("VmRSS") * 1024, peak: kb("VmHWM") * 1024 };
  } catch {
    return { rss: 0, peak: 0 };
  }
}

/** Named groups of processes whose CPU time a workload's row reports. */
export type ProcessGroups = Record<string, number[]>;

/** Measures the CPU seconds each group of processes uses between `start` and `stop`. */
export class CpuMeter {
  readonly #groups: ProcessGroups;
  #before: Record<string, number> = {};

  /** Each group lists its pids (use `processTree` for a process with workers). */
  constructor(groups: ProcessGroups) {
    this.#groups = groups;
  }

  #read(): Record<string, number> {
    return Object.fromEntries(
      Object.entries(this.#groups).map((
        [name, pids],
      ) => [name, pids.reduce((sum, p) => sum + cpuSeconds(p), 0)]),
    );
  }

  /** Takes the starting reading. */
  start(): void {
    this.#before = this.#read();
  }

  /** CPU seconds per group since `start`. */
  stop(): Record<string, number> {
    const after = this.#read();
    return Object.fromEntries(
      Object.entries(after).map(([name, v]) => [name, round(v - (this.#before[name] ?? 0), 2)]),
    );
  }
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
