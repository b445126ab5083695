/**
 * A whole momd cluster for fault tests, as real processes on loopback: one ZooKeeper, five Redis
 * servers (one local per node, users, backup), three `deno run main.ts serve` nodes and NGINX in
 * front (nginx/nginx.conf rendered the way scripts/local_cluster.ts does). The layout mirrors
 * scripts/local_cluster.ts, on ports below the ephemeral range (a restarted node gets its port
 * back) and with short ZooKeeper sessions, so failovers take seconds.
 *
 * Every process writes to its own log in a temporary directory; `withCluster` prints the end of
 * each log when the test fails, and always stops every process (also when starting fails).
 */
import { BINARY_PERMISSIONS } from "../../scripts/compile.ts";
import { NODE_REDIS_MAXMEMORY, redisServerArgs } from "../../scripts/processes.ts";
import { renderLocalNginxConf } from "../../scripts/nginx_conf.ts";
import type { ClusterStatus } from "../../src/api/routing.ts";

export type { ClusterStatus };

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar";
/** ZooKeeper logs through slf4j; these jars of its Debian dependencies route it to log4j. */
const ZOOKEEPER_LOGGING_JARS = [
  "/usr/share/java/slf4j-log4j12.jar",
  "/usr/share/java/log4j-1.2.jar",
];
const NGINX_CONF = new URL("../../nginx/nginx.conf", import.meta.url);
/** NGINX connects to the nodes from this address, the proxy whose X-Forwarded-For they believe. */
const PROXY_ADDRESS = "127.0.0.10";

/** The admin every node creates at start-up. */
export const CLUSTER_ADMIN = { username: "cluster-admin", password: "cluster-admin-password" };

/** Options of startCluster. */
export interface ClusterOptions {
  /** Number of nodes (default 3). */
  nodes?: number;
  /** ZooKeeper tick (default 200 ms): session timeouts are bounded to 2..20 ticks. */
  tickTime?: number;
  /** MOMD_ZK_SESSION_TIMEOUT_MS (default 2000). */
  sessionTimeoutMs?: number;
  /** MOMD_BACKUP_INTERVAL_MS (default 500). */
  backupIntervalMs?: number;
  /** More MOMD_* settings for every node. */
  env?: Record<string, string>;
  /** How long a node may take to answer /readyz (default 90 s). */
  readyTimeoutMs?: number;
  /**
   * withCluster only: the test fails after this long (default 5 min) and the cluster is torn
   * down, so a hang cannot hold the whole suite until CI's own limit.
   */
  deadlineMs?: number;
}

/** What a JSON call answered. */
export interface CallResult {
  status: number;
  headers: Headers;
  // deno-lint-ignore no-explicit-any
  body: any;
}

/** Options of Cluster.call. */
export interface CallOptions {
  body?: unknown;
  /** Bearer token (default: the admin's); `null` sends none. */
  token?: string | null;
  /** Base URL (default: NGINX). */
  base?: string;
  /** More request headers. */
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/** Options of Cluster.waitFor. */
export interface WaitOptions {
  /** Default 15 s. */
  timeoutMs?: number;
  /** Pause between checks, default 100 ms. */
  intervalMs?: number;
  /** What the check saw last, for the timeout's message. */
  describe?: () => string;
}

/** A running cluster and the faults a test can inject into it. */
export interface Cluster {
  /** NGINX, the entry point clients use. */
  url: string;
  nodeIds: readonly string[];
  /** Temporary directory with the data and the logs (`logs/<process>.log`). */
  dir: string;
  /** A token of the admin, obtained through NGINX at start. */
  token: string;
  /** `http://host:port` of one node's own HTTP API. */
  nodeUrl(id: string): string;
  /** URL of a node's local Redis, or of the `users` or `backup` Redis. */
  redisUrl(id: string): string;
  /** Whether the node's process runs (a stopped, SIGSTOPped, process counts as running). */
  isRunning(id: string): boolean;
  /**
   * Sends a signal to a node. SIGKILL and SIGTERM wait for the exit (SIGTERM: SIGKILL after
   * 20 s); SIGSTOP and SIGCONT return at once.
   */
  kill(id: string, signal?: Deno.Signal): Promise<void>;
  /** How a node's last run ended (undefined while it runs or before it ever ran). */
  exitStatus(id: string): Deno.CommandStatus | undefined;
  /** Everything a node printed, over all its runs. */
  nodeLog(id: string): Promise<string>;
  /** Starts a node that is not running (same ports, same Redis) and waits for /readyz. */
  start(id: string): Promise<void>;
  /** Empties a node's local Redis: stopped, its data directory removed, started again. */
  wipeRedis(id: string): Promise<void>;
  /** Kills ZooKeeper (SIGKILL) and starts it again on the same port and data; the down time. */
  restartZooKeeper(): Promise<{ downMs: number }>;
  /** ZooKeeper's connect string (`127.0.0.1:<port>`), for tests that read its znodes. */
  zookeeper: string;
  /** Sends SIGSTOP or SIGCONT to ZooKeeper (a server that stops answering, then resumes). */
  signalZooKeeper(signal: "SIGSTOP" | "SIGCONT"): void;
  /** Whether a Redis server (a node's local one, `users` or `backup`) runs. */
  isRedisRunning(id: string): boolean;
  /**
   * Stops a Redis server, keeping its data directory (SIGKILL by default: a crash; its
   * append-only file holds every write it answered, since Redis writes it before replying).
   */
  stopRedis(id: string, signal?: Deno.Signal): Promise<void>;
  /** Starts a stopped Redis server from its data directory and waits until it answers PING. */
  startRedis(id: string): Promise<void>;
  /** `GET /v1/cluster` (through NGINX, or `via` a node's own address). */
  cluster(opts?: { via?: string; timeoutMs?: number }): Promise<ClusterStatus>;
  /** Logs in (the admin by default) and returns the token. */
  login(username?: string, password?: string, base?: string): Promise<string>;
  /** A JSON request; network errors throw. */
  call(method: string, path: string, opts?: CallOptions): Promise<CallResult>;
  /** Polls `check` until it returns a truthy value, which is returned; throws after the timeout. */
  waitFor<T>(
    what: string,
    check: () => T | Promise<T>,
    opts?: WaitOptions,
  ): Promise<NonNullable<T>>;
  /** The last `lines` lines of every process's log. */
  logs(lines?: number): Promise<string>;
  /** Stops every process and removes the temporary directory (but its logs with `keepLogs`). */
  stop(opts?: { keepLogs?: boolean }): Promise<void>;
}

// ---- processes ----------------------------------------------------------------------------------

/**
 * Processes of every cluster of this test process, killed if it ends without stop(): on an
 * uncaught error (unload) or when it is interrupted or terminated (a signal skips unload).
 */
const LIVE = new Set<Deno.ChildProcess>();
let unloadHooked = false;

function hookUnload(): void {
  if (unloadHooked) return;
  unloadHooked = true;
  const killAll = () => {
    for (const child of LIVE) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
  };
  globalThis.addEventListener("unload", killAll);
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    Deno.addSignalListener(signal, () => {
      killAll();
      Deno.exit(code);
    });
  }
}

/** One process whose output goes to a log file, started again on demand. */
class Proc {
  child?: Deno.ChildProcess;
  exited?: Deno.CommandStatus;
  #status?: Promise<Deno.CommandStatus>;

  constructor(
    readonly name: string,
    readonly log: string,
    readonly command: readonly string[],
    readonly env: Record<string, string> = {},
  ) {}

  get running(): boolean {
    return this.child !== undefined && this.exited === undefined;
  }

  async spawn(): Promise<void> {
    await Deno.writeTextFile(this.log, `--- ${new Date().toISOString()} starting ${this.name}\n`, {
      append: true,
    });
    // The shell replaces itself with the program, so the child's pid is the program's and
    // signals (SIGSTOP included) reach it directly.
    const child = new Deno.Command("sh", {
      args: [
        "-c",
        'log=$1; shift; exec "$@" >>"$log" 2>&1 </dev/null',
        "sh",
        this.log,
        ...this.command,
      ],
      env: this.env,
      clearEnv: true,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    hookUnload();
    LIVE.add(child);
    this.child = child;
    this.exited = undefined;
    this.#status = child.status.then((s) => {
      LIVE.delete(child);
      if (this.child === child) this.exited = s;
      return s;
    });
  }

  signal(signal: Deno.Signal): void {
    if (!this.running) return;
    try {
      this.child!.kill(signal);
    } catch {
      // already gone
    }
  }

  /** Sends `signal` and waits for the exit, SIGKILL after `timeoutMs`. */
  async stop(signal: Deno.Signal = "SIGKILL", timeoutMs = 20_000): Promise<void> {
    if (!this.running) return;
    // A stopped process would not handle SIGTERM.
    if (signal !== "SIGKILL") this.signal("SIGCONT");
    this.signal(signal);
    const timer = setTimeout(() => this.signal("SIGKILL"), timeoutMs);
    await this.#status;
    clearTimeout(timer);
  }
}

// ---- ports and probes ---------------------------------------------------------------------------

function portFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * `count` free ports below the ephemeral range (32768+), so an outgoing connection cannot take a
 * port while its node is down.
 */
function pickPorts(count: number): number[] {
  const ports: number[] = [];
  let port = 20_000 + Math.floor(Math.random() * 10_000);
  while (ports.length < count) {
    if (port >= 32_000) port = 20_000;
    if (portFree(port)) ports.push(port);
    port++;
  }
  return ports;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends `send` to a loopback port and checks the answer's start; every step is bounded. */
async function tcpAnswers(port: number, send: string, expect: string): Promise<boolean> {
  let conn: Deno.TcpConn | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(new TextEncoder().encode(send));
    const buf = new Uint8Array(64);
    const n = await Promise.race([
      conn.read(buf),
      new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), 1_000)),
    ]);
    return n !== null && new TextDecoder().decode(buf.subarray(0, n)).startsWith(expect);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch {
      // closed by the server
    }
  }
}

async function httpReady(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    await res.body?.cancel();
    return res.status === 200;
  } catch {
    return false;
  }
}

async function tail(path: string, lines: number): Promise<string> {
  try {
    return (await Deno.readTextFile(path)).trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

async function pollUntil<T>(
  what: string,
  check: () => T | Promise<T>,
  opts: WaitOptions & { abort?: () => string | undefined } = {},
): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (true) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    const aborted = opts.abort?.();
    if (aborted) throw new Error(`${what}: ${aborted}`);
    if (Date.now() >= until) break;
    await sleep(opts.intervalMs ?? 100);
  }
  const seen = opts.describe ? `\nlast seen: ${opts.describe()}` : "";
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}${seen}`,
  );
}

// ---- the cluster --------------------------------------------------------------------------------

function redisCommand(port: number, dir: string, maxmemory?: string): string[] {
  return ["redis-server", ...redisServerArgs(port, dir, { maxmemory }), "--loglevel", "warning"];
}

function nginxBinary(): string {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/sbin", "/sbin"])) {
    try {
      if (Deno.statSync(`${dir}/nginx`).isFile) return `${dir}/nginx`;
    } catch {
      // not here
    }
  }
  return "nginx";
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A standalone ZooKeeper's zoo.cfg and log4j.properties (logging to the console). */
async function writeZooKeeperConf(
  conf: string,
  o: { port: number; dataDir: string; tickTime: number },
): Promise<void> {
  await Deno.mkdir(conf, { recursive: true });
  await Deno.mkdir(o.dataDir, { recursive: true });
  await Deno.writeTextFile(
    `${conf}/zoo.cfg`,
    [
      `tickTime=${o.tickTime}`,
      `dataDir=${o.dataDir}`,
      `clientPort=${o.port}`,
      "clientPortAddress=127.0.0.1",
      "admin.enableServer=false",
      "4lw.commands.whitelist=ruok,stat,mntr",
      "",
    ].join("\n"),
  );
  await Deno.writeTextFile(
    `${conf}/log4j.properties`,
    [
      "log4j.rootLogger=INFO, CONSOLE",
      "log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender",
      "log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout",
      "log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %c{1} - %m%n",
      "",
    ].join("\n"),
  );
}

/** The test's environment without MOMD_* settings (a node gets exactly the ones it is given). */
function baseEnv(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([key]) => !key.startsWith("MOMD_")),
  );
}

interface RedisEntry {
  proc: Proc;
  port: number;
  dir: string;
}

interface NodeEntry {
  id: string;
  proc: Proc;
  http: string;
  grpc: string;
}

/** Starts ZooKeeper, the Redis servers, the nodes and NGINX; everything is stopped on failure. */
export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const count = opts.nodes ?? 3;
  const nodeIds = Array.from({ length: count }, (_, i) => `node${i + 1}`);
  const dir = await Deno.makeTempDir({ prefix: "momd-cluster-" });
  await Deno.mkdir(`${dir}/logs`);
  const ports = pickPorts(2 * count + (count + 2) + 2);
  const take = () => ports.shift()!;
  const env = baseEnv();

  const redis = new Map<string, RedisEntry>();
  for (const name of [...nodeIds, "users", "backup"]) {
    const port = take();
    const data = `${dir}/redis-${name}`;
    const proc = new Proc(
      `redis-${name}`,
      `${dir}/logs/redis-${name}.log`,
      // A node's own store is bounded as deployed; the users and backup Redis are not.
      redisCommand(port, data, nodeIds.includes(name) ? NODE_REDIS_MAXMEMORY : undefined),
      env,
    );
    redis.set(name, { proc, port, dir: data });
  }
  const redisUrl = (name: string) => {
    const r = redis.get(name);
    if (!r) throw new Error(`no Redis '${name}'`);
    return `redis://127.0.0.1:${r.port}`;
  };

  const zkPort = take();
  const zkConf = `${dir}/zookeeper/conf`;
  const logging = ZOOKEEPER_LOGGING_JARS.filter((jar) => exists(jar));
  const zookeeper = new Proc(
    "zookeeper",
    `${dir}/logs/zookeeper.log`,
    [
      "java",
      "-Xmx256m",
      "-cp",
      [zkConf, ZOOKEEPER_JAR, ...logging].join(":"),
      "org.apache.zookeeper.server.ZooKeeperServerMain",
      `${zkConf}/zoo.cfg`,
    ],
    env,
  );

  const sessionMs = opts.sessionTimeoutMs ?? 2000;
  const jwtSecret = `cluster-test-jwt-${crypto.randomUUID()}`;
  const clusterSecret = `cluster-test-grpc-${crypto.randomUUID()}`;
  const nodes = new Map<string, NodeEntry>();
  for (const id of nodeIds) {
    const http = `127.0.0.1:${take()}`;
    const grpc = `127.0.0.1:${take()}`;
    const nodeEnv: Record<string, string> = {
      ...env,
      NO_COLOR: "1",
      MOMD_NODE_ID: id,
      MOMD_HTTP_LISTEN: http,
      MOMD_HTTP_ADVERTISE: http,
      MOMD_GRPC_LISTEN: grpc,
      MOMD_GRPC_ADVERTISE: grpc,
      MOMD_LOCAL_REDIS_URL: `${redisUrl(id)}/0`,
      MOMD_USERS_REDIS_URL: `${redisUrl("users")}/0`,
      MOMD_BACKUP_REDIS_URL: `${redisUrl("backup")}/0`,
      MOMD_ZOOKEEPER: `127.0.0.1:${zkPort}`,
      MOMD_ZK_SESSION_TIMEOUT_MS: String(sessionMs),
      // The deployed relation (nginx/nginx.conf), scaled to the short session: replication ack
      // timeout = session < forward timeout < NGINX read timeout = session + 1 s; a replica
      // lagging half a session leaves the in-sync set.
      MOMD_REPLICATION_ACK_TIMEOUT_MS: String(sessionMs),
      MOMD_FORWARD_TIMEOUT_MS: String(sessionMs + 500),
      MOMD_REPLICA_LAG_MS: String(Math.floor(sessionMs / 2)),
      MOMD_BACKUP_INTERVAL_MS: String(opts.backupIntervalMs ?? 500),
      MOMD_JWT_SECRET: jwtSecret,
      MOMD_CLUSTER_SECRET: clusterSecret,
      MOMD_ADMIN_USERNAME: CLUSTER_ADMIN.username,
      MOMD_ADMIN_PASSWORD: CLUSTER_ADMIN.password,
      MOMD_TRUSTED_PROXIES: PROXY_ADDRESS,
      MOMD_PASSWORD_HASH_COST: "10",
      // The load driver sends far more than a person would.
      MOMD_RATE_LIMIT_PER_SECOND: "1000000",
      ...opts.env,
    };
    const proc = new Proc(
      id,
      `${dir}/logs/${id}.log`,
      [Deno.execPath(), "run", ...BINARY_PERMISSIONS, MAIN, "serve"],
      nodeEnv,
    );
    nodes.set(id, { id, proc, http, grpc });
  }
  const nodeOf = (id: string) => {
    const n = nodes.get(id);
    if (!n) throw new Error(`no node '${id}' (nodes: ${nodeIds.join(", ")})`);
    return n;
  };

  const nginxPort = take();
  const nginxPrefix = `${dir}/nginx/`;
  const nginx = new Proc(
    "nginx",
    `${dir}/logs/nginx.log`,
    [nginxBinary(), "-p", nginxPrefix, "-c", "nginx.conf", "-e", "stderr", "-g", "daemon off;"],
    env,
  );
  const url = `http://127.0.0.1:${nginxPort}`;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 90_000;

  async function startRedis(name: string): Promise<void> {
    const r = redis.get(name)!;
    await Deno.mkdir(r.dir, { recursive: true });
    await r.proc.spawn();
    await pollUntil(
      `redis-${name} on port ${r.port}`,
      () => tcpAnswers(r.port, "PING\r\n", "+PONG"),
      {
        timeoutMs: 20_000,
        intervalMs: 25,
        abort: () => r.proc.exited ? `exited with code ${r.proc.exited.code}` : undefined,
      },
    );
  }

  async function startZooKeeper(): Promise<void> {
    await zookeeper.spawn();
    await pollUntil(`ZooKeeper on port ${zkPort}`, () => tcpAnswers(zkPort, "ruok", "imok"), {
      timeoutMs: 30_000,
      intervalMs: 50,
      abort: () => zookeeper.exited ? `exited with code ${zookeeper.exited.code}` : undefined,
    });
  }

  async function startNode(id: string): Promise<void> {
    const n = nodeOf(id);
    if (n.proc.running) throw new Error(`${id} is running already`);
    await n.proc.spawn();
    try {
      await pollUntil(`${id} /readyz`, () => httpReady(`http://${n.http}/readyz`), {
        timeoutMs: readyTimeoutMs,
        intervalMs: 100,
        abort: () => n.proc.exited ? `exited with code ${n.proc.exited.code}` : undefined,
      });
    } catch (err) {
      throw new Error(
        `${(err as Error).message}\n--- end of ${id}'s log:\n${await tail(n.proc.log, 30)}`,
      );
    }
  }

  async function call(method: string, path: string, o: CallOptions = {}): Promise<CallResult> {
    const headers: Record<string, string> = { ...o.headers };
    const token = o.token === undefined ? cluster.token : o.token;
    if (token) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (o.body !== undefined) {
      body = JSON.stringify(o.body);
      headers["content-type"] = "application/json";
    }
    const res = await fetch(`${o.base ?? url}${path}`, {
      method,
      headers,
      body,
      signal: AbortSignal.timeout(o.timeoutMs ?? 15_000),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status, headers: res.headers, body: parsed };
  }

  async function login(
    username = CLUSTER_ADMIN.username,
    password = CLUSTER_ADMIN.password,
    base = url,
  ): Promise<string> {
    const res = await call("POST", "/v1/auth/token", {
      body: { username, password },
      token: null,
      base,
    });
    if (res.status !== 200) {
      throw new Error(`login ${username}: ${res.status} ${JSON.stringify(res.body)}`);
    }
    return res.body.token;
  }

  const allProcs = () => [
    nginx,
    ...[...nodes.values()].map((n) => n.proc),
    ...[...redis.values()].map((r) => r.proc),
  ];

  async function stop(o: { keepLogs?: boolean } = {}): Promise<void> {
    // Nodes first (SIGKILL: nothing to hand over), then NGINX, the Redis servers and ZooKeeper.
    await Promise.all([...nodes.values()].map((n) => n.proc.stop("SIGKILL")));
    await nginx.stop("SIGTERM", 5_000);
    await Promise.all([...redis.values()].map((r) => r.proc.stop("SIGKILL")));
    await zookeeper.stop("SIGKILL");
    if (!o.keepLogs) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      return;
    }
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name !== "logs") {
        await Deno.remove(`${dir}/${entry.name}`, { recursive: true }).catch(() => {});
      }
    }
  }

  const cluster: Cluster = {
    url,
    nodeIds,
    dir,
    token: "",
    nodeUrl: (id) => `http://${nodeOf(id).http}`,
    redisUrl,
    isRunning: (id) => nodeOf(id).proc.running,
    async kill(id, signal = "SIGKILL") {
      const n = nodeOf(id);
      if (signal === "SIGKILL" || signal === "SIGTERM") await n.proc.stop(signal);
      else n.proc.signal(signal);
    },
    exitStatus: (id) => nodeOf(id).proc.exited,
    nodeLog: (id) => Deno.readTextFile(nodeOf(id).proc.log).catch(() => ""),
    start: startNode,
    async wipeRedis(id) {
      const r = redis.get(id);
      if (!r || !nodes.has(id)) throw new Error(`no local Redis of a node '${id}'`);
      await r.proc.stop("SIGKILL");
      await Deno.remove(r.dir, { recursive: true }).catch(() => {});
      await startRedis(id);
    },
    zookeeper: `127.0.0.1:${zkPort}`,
    signalZooKeeper: (signal) => zookeeper.signal(signal),
    isRedisRunning: (id) => redis.get(id)?.proc.running ?? false,
    async stopRedis(id, signal = "SIGKILL") {
      const r = redis.get(id);
      if (!r) throw new Error(`no Redis '${id}'`);
      await r.proc.stop(signal);
    },
    async startRedis(id) {
      const r = redis.get(id);
      if (!r) throw new Error(`no Redis '${id}'`);
      if (r.proc.running) throw new Error(`redis-${id} is running already`);
      await startRedis(id);
    },
    async restartZooKeeper() {
      if (!zookeeper.running) throw new Error("ZooKeeper is not running");
      const down = Date.now();
      // SIGKILL: a crash. Its transaction log (sessions included) is synced at every commit,
      // so the sessions survive if their clients come back within their timeout.
      await zookeeper.stop("SIGKILL");
      await startZooKeeper();
      return { downMs: Date.now() - down };
    },
    async cluster(o = {}) {
      const res = await call("GET", "/v1/cluster", {
        base: o.via,
        timeoutMs: o.timeoutMs ?? 10_000,
      });
      if (res.status !== 200) {
        throw new Error(`GET /v1/cluster: ${res.status} ${JSON.stringify(res.body)}`);
      }
      return res.body as ClusterStatus;
    },
    login,
    call,
    waitFor: (what, check, o) => pollUntil(what, check, o),
    async logs(lines = 40) {
      const parts: string[] = [];
      for (const p of allProcs()) {
        parts.push(`===== ${p.name} (${p.log}) =====\n${await tail(p.log, lines)}`);
      }
      return parts.join("\n");
    },
    stop,
  };

  try {
    await Promise.all([...redis.keys()].map(startRedis));
    await writeZooKeeperConf(zkConf, {
      port: zkPort,
      dataDir: `${dir}/zookeeper/data`,
      tickTime: opts.tickTime ?? 200,
    });
    await startZooKeeper();
    // One node first: it creates the admin and the znodes the others find.
    await startNode(nodeIds[0]);
    await Promise.all(nodeIds.slice(1).map(startNode));
    await Deno.mkdir(`${nginxPrefix}temp`, { recursive: true });
    const conf = renderLocalNginxConf(await Deno.readTextFile(NGINX_CONF), {
      listen: `127.0.0.1:${nginxPort}`,
      servers: nodeIds.map((id) => nodeOf(id).http),
      nodeIds,
      proxyBind: PROXY_ADDRESS,
      runAsRoot: Deno.uid() === 0,
      readTimeoutSeconds: Math.ceil(sessionMs / 1000) + 1,
    });
    await Deno.writeTextFile(`${nginxPrefix}nginx.conf`, conf);
    await nginx.spawn();
    await pollUntil("NGINX /healthz", () => httpReady(`${url}/healthz`), {
      timeoutMs: 20_000,
      intervalMs: 50,
      abort: () => nginx.exited ? `exited with code ${nginx.exited.code}` : undefined,
    });
    cluster.token = await login();
    // Every node sees the others alive before a test injects faults.
    await pollUntil("every node alive in /v1/cluster", async () => {
      const status = await cluster.cluster();
      return nodeIds.every((id) => status.nodes.some((n) => n.id === id && n.alive));
    }, { timeoutMs: 30_000, intervalMs: 200 });
  } catch (err) {
    const logs = await cluster.logs(30);
    await stop();
    throw new Error(`the cluster did not start: ${(err as Error).message}\n${logs}`);
  }
  return cluster;
}

/**
 * Runs `fn` against a fresh cluster, then stops it. When `fn` throws, the end of every process's
 * log is printed before the error goes on.
 */
export async function withCluster(
  opts: ClusterOptions,
  fn: (cluster: Cluster) => Promise<void>,
): Promise<void> {
  const cluster = await startCluster(opts);
  const deadlineMs = opts.deadlineMs ?? 300_000;
  let failed = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`the test did not end within ${deadlineMs} ms`)),
        deadlineMs,
      );
    });
    await Promise.race([fn(cluster), expired]);
  } catch (err) {
    failed = true;
    console.error(`\n----- logs of the cluster (${cluster.dir}) -----\n${await cluster.logs(60)}`);
    throw err;
  } finally {
    clearTimeout(timer);
    await cluster.stop({ keepLogs: failed });
    if (failed) console.error(`the whole logs are kept in ${cluster.dir}/logs`);
  }
}
