/**
 * The local broker: every process momd needs, started in the background on this machine, with
 * its state (data, logs, pid files, generated secrets) under `.momd/` in the repository.
 *
 *   deno run -A scripts/local_cluster.ts up | down | status
 *   deno run -A scripts/local_cluster.ts node stop|kill|start <id>
 *
 * The layout is data (`localLayout`): a list of services in start stages. By default the cluster:
 * ZooKeeper, the users and backup Redis, three nodes each with its own Redis, and NGINX on
 * 127.0.0.1:8080 in front of them. With MOMD_DEV_NODES=1, one node serves the API itself on
 * 127.0.0.1:8080 beside its Redis, the users Redis and the backup Redis. Other settings:
 *   MOMD_DEV_STATE_DIR    where the state lives (default: .momd in the repository)
 *   MOMD_DEV_PORT_OFFSET  added to every port (default 0), to run a second copy beside the first;
 *                         a multiple of 100, since one copy's ports lie in 8061..8099 (PORTS)
 *   MOMD_DEV_REDIS_MAXMEMORY  maxmemory of each node's own Redis (default 512mb)
 *   MOMD_ADMIN_USERNAME, MOMD_ADMIN_PASSWORD, MOMD_JWT_SECRET   used when set; otherwise
 *                         generated once and kept in <state>/secrets.env (mode 0600)
 * Any other MOMD_* setting in the environment reaches the nodes unchanged.
 */

import { BINARY_PERMISSIONS } from "./compile.ts";
import { renderLocalNginxConf } from "./nginx_conf.ts";
import {
  httpRequest,
  lastLines,
  nginxBinary,
  NODE_REDIS_MAXMEMORY,
  redisServerArgs,
  ROOT,
  sleep,
  zooKeeperConfig,
} from "./processes.ts";
const ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar";
const ZOOKEEPER_LOGGING_JARS = [
  "/usr/share/java/slf4j-log4j12.jar",
  "/usr/share/java/log4j-1.2.jar",
];
/** Address NGINX connects to the nodes from: the one proxy whose X-Forwarded-For they believe. */
const PROXY_ADDRESS = "127.0.0.10";

/**
 * The ports of one copy at offset 0, all within one block of 100 (8061..8099): copies whose
 * offsets are different multiples of 100 never share a port. Nodes are numbered from 0.
 */
export const PORTS = {
  /** NGINX, or the single node itself. */
  entry: 8080,
  nodeHttp: (i: number) => 8081 + i,
  nodeGrpc: (i: number) => 8091 + i,
  nodeRedis: (i: number) => 8061 + i,
  usersRedis: 8071,
  backupRedis: 8072,
  zookeeper: 8075,
} as const;

/** Offsets are whole blocks, so that two copies cannot overlap. */
export const PORT_OFFSET_STEP = 100;

/** How a service shows it is ready. */
type Readiness =
  | { kind: "redis"; port: number }
  | { kind: "zookeeper"; port: number }
  | { kind: "http"; port: number; path: string };

/** One background process of the local broker. */
interface Service {
  name: string;
  kind: "redis" | "zookeeper" | "node" | "nginx";
  /** Services of one stage start together, after every service of the stages before. */
  stage: number;
  /** Ports it listens on (on 127.0.0.1), with what each is for. */
  listens: { port: number; what: string }[];
  command: string[];
  env?: Record<string, string>;
  /** Writes its configuration files and directories; runs before every start. */
  prepare?: () => Promise<void>;
  ready: Readiness;
  readyTimeoutMs: number;
  /** Substrings of /proc/<pid>/cmdline: a pid file never makes us signal another program. */
  identity: string[];
  /** SIGTERM, then this long, then SIGKILL. */
  stopTimeoutMs: number;
  /** Node id, for `node stop|kill|start <id>`. */
  nodeId?: string;
}

/** What `up` chose, kept in <state>/cluster.json so `down` and `status` find the same services. */
export interface LayoutOptions {
  nodes: number;
  portOffset: number;
  /** maxmemory of each node's own Redis (redis-server syntax: "512mb"). */
  redisMaxmemory?: string;
}

/** The secrets every node of the local broker shares. */
export interface Secrets {
  jwtSecret: string;
  clusterSecret: string;
  adminUsername: string;
  adminPassword: string;
}

/** The services of a local broker and where clients reach it. */
export interface Layout {
  stateDir: string;
  /** The URL clients use. */
  entry: string;
  /** Its port (on 127.0.0.1). */
  entryPort: number;
  services: Service[];
}

/** The services of a local broker with `nodes` nodes, in start order. */
export function localLayout(stateDir: string, opts: LayoutOptions, secrets: Secrets): Layout {
  const p = (port: number) => port + opts.portOffset;
  const cluster = opts.nodes > 1;
  const services: Service[] = [];
  const redis = (name: string, port: number, maxmemory?: string): string => {
    const dir = `${stateDir}/data/${name}`;
    services.push({
      name,
      kind: "redis",
      stage: 1,
      listens: [{ port, what: "redis" }],
      command: ["redis-server", ...redisServerArgs(port, dir, { maxmemory })],
      prepare: () => Deno.mkdir(dir, { recursive: true }),
      ready: { kind: "redis", port },
      readyTimeoutMs: 20_000,
      identity: ["redis-server", `:${port}`],
      stopTimeoutMs: 10_000,
    });
    return `redis://127.0.0.1:${port}`;
  };

  const nodeIds = Array.from({ length: opts.nodes }, (_, i) => `node${i + 1}`);
  // Each node's own store is bounded; the users and backup Redis are not (the memory alarm
  // watches only a node's own store).
  const maxmemory = opts.redisMaxmemory ?? NODE_REDIS_MAXMEMORY;
  const localRedis = nodeIds.map((id, i) => redis(`redis-${id}`, p(PORTS.nodeRedis(i)), maxmemory));
  const usersRedis = redis("redis-users", p(PORTS.usersRedis));
  const backupRedis = redis("redis-backup", p(PORTS.backupRedis));

  let zookeeper: string | undefined;
  if (cluster) {
    const port = p(PORTS.zookeeper);
    const conf = `${stateDir}/zookeeper`;
    zookeeper = `127.0.0.1:${port}`;
    services.push({
      name: "zookeeper",
      kind: "zookeeper",
      stage: 2,
      listens: [{ port, what: "client" }],
      command: [
        "java",
        "-Xmx256m",
        "-cp",
        // ZooKeeper logs through slf4j; these two jars of its Debian dependencies route it to log4j.
        [conf, ZOOKEEPER_JAR, ...ZOOKEEPER_LOGGING_JARS].join(":"),
        "org.apache.zookeeper.server.ZooKeeperServerMain",
        `${conf}/zoo.cfg`,
      ],
      prepare: async () => {
        await Deno.mkdir(`${stateDir}/data/zookeeper`, { recursive: true });
        await Deno.mkdir(conf, { recursive: true });
        await Deno.writeTextFile(
          `${conf}/zoo.cfg`,
          zooKeeperConfig({ tickTime: 500, dataDir: `${stateDir}/data/zookeeper`, port }),
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
      },
      ready: { kind: "zookeeper", port },
      readyTimeoutMs: 30_000,
      identity: ["ZooKeeperServerMain", `${conf}/zoo.cfg`],
      stopTimeoutMs: 10_000,
    });
  }

  const nodeHttp = (i: number) => p(cluster ? PORTS.nodeHttp(i) : PORTS.entry);
  nodeIds.forEach((id, i) => {
    const http = `127.0.0.1:${nodeHttp(i)}`;
    const grpc = `127.0.0.1:${p(PORTS.nodeGrpc(i))}`;
    const env: Record<string, string> = {
      MOMD_NODE_ID: id,
      MOMD_HTTP_LISTEN: http,
      MOMD_HTTP_ADVERTISE: http,
      MOMD_GRPC_LISTEN: grpc,
      MOMD_GRPC_ADVERTISE: grpc,
      MOMD_LOCAL_REDIS_URL: `${localRedis[i]}/0`,
      MOMD_USERS_REDIS_URL: `${usersRedis}/0`,
      MOMD_BACKUP_REDIS_URL: `${backupRedis}/0`,
      MOMD_JWT_SECRET: secrets.jwtSecret,
      MOMD_ADMIN_USERNAME: secrets.adminUsername,
      MOMD_ADMIN_PASSWORD: secrets.adminPassword,
    };
    if (zookeeper) {
      env.MOMD_ZOOKEEPER = zookeeper;
      env.MOMD_CLUSTER_SECRET = secrets.clusterSecret;
    }
    if (cluster) env.MOMD_TRUSTED_PROXIES = PROXY_ADDRESS;
    services.push({
      name: id,
      kind: "node",
      stage: 3,
      listens: [
        { port: nodeHttp(i), what: "http" },
        { port: p(PORTS.nodeGrpc(i)), what: "grpc" },
      ],
      command: [Deno.execPath(), "run", ...BINARY_PERMISSIONS, `${ROOT}/main.ts`, "serve"],
      env,
      ready: { kind: "http", port: nodeHttp(i), path: "/readyz" },
      readyTimeoutMs: 120_000,
      identity: [`${ROOT}/main.ts`, "serve"],
      // The node drains for at most 15 s after SIGTERM.
      stopTimeoutMs: 20_000,
      nodeId: id,
    });
  });

  let entryPort = nodeHttp(0);
  if (cluster) {
    const port = p(PORTS.entry);
    const prefix = `${stateDir}/nginx/`;
    entryPort = port;
    services.push({
      name: "nginx",
      kind: "nginx",
      stage: 4,
      listens: [{ port, what: "http" }],
      command: [
        nginxBinary() ?? "nginx",
        "-p",
        prefix,
        "-c",
        "nginx.conf",
        "-e",
        "stderr",
        "-g",
        "daemon off;",
      ],
      prepare: async () => {
        await Deno.mkdir(`${prefix}temp`, { recursive: true });
        const template = await Deno.readTextFile(`${ROOT}/nginx/nginx.conf`);
        const conf = renderLocalNginxConf(template, {
          listen: `127.0.0.1:${port}`,
          servers: nodeIds.map((_, i) => `127.0.0.1:${nodeHttp(i)}`),
          nodeIds,
          proxyBind: PROXY_ADDRESS,
          runAsRoot: Deno.uid() === 0,
        });
        await Deno.writeTextFile(`${prefix}nginx.conf`, conf);
      },
      ready: { kind: "http", port, path: "/healthz" },
      readyTimeoutMs: 20_000,
      identity: ["nginx", prefix],
      stopTimeoutMs: 10_000,
    });
  }
  return { stateDir, entry: `http://127.0.0.1:${entryPort}`, entryPort, services };
}

// ---- state files ------------------------------------------------------------------------------

function stateDirectory(): string {
  return Deno.env.get("MOMD_DEV_STATE_DIR") ?? `${ROOT}/.momd`;
}

function intFromEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = Deno.env.get(name);
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(`${name}: expected an integer from ${min} to ${max}, got '${raw}'`);
  }
  return value;
}

/** MOMD_DEV_PORT_OFFSET: whole blocks of PORT_OFFSET_STEP, so that copies never share a port. */
function portOffsetFromEnv(): number {
  const offset = intFromEnv("MOMD_DEV_PORT_OFFSET", 0, 0, 50_000);
  if (offset % PORT_OFFSET_STEP !== 0) {
    const below = offset - (offset % PORT_OFFSET_STEP);
    throw new UsageError(
      `MOMD_DEV_PORT_OFFSET: must be a multiple of ${PORT_OFFSET_STEP} (each copy uses ports ` +
        `${PORTS.nodeRedis(0)}-${PORTS.nodeGrpc(8)} plus its offset), got ${offset}; e.g. ` +
        `${below} or ${below + PORT_OFFSET_STEP}`,
    );
  }
  return offset;
}

function redisMaxmemoryFromEnv(): string {
  const raw = Deno.env.get("MOMD_DEV_REDIS_MAXMEMORY");
  if (raw === undefined || raw === "") return NODE_REDIS_MAXMEMORY;
  if (!/^[1-9]\d*(b|kb|mb|gb)?$/i.test(raw)) {
    throw new UsageError(
      `MOMD_DEV_REDIS_MAXMEMORY: expected a size like 512mb or 2gb, got '${raw}'`,
    );
  }
  return raw;
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(path)) as T;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/** Reads <state>/secrets.env, generating and storing what is missing. */
async function loadSecrets(stateDir: string): Promise<Secrets> {
  const path = `${stateDir}/secrets.env`;
  const stored = new Map<string, string>();
  try {
    for (const line of (await Deno.readTextFile(path)).split("\n")) {
      const m = line.match(/^([A-Z_]+)=(.*)$/);
      if (m) stored.set(m[1], m[2]);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const wanted: [string, () => string][] = [
    ["MOMD_JWT_SECRET", () => randomToken(48)],
    ["MOMD_CLUSTER_SECRET", () => randomToken(48)],
    ["MOMD_ADMIN_USERNAME", () => "admin"],
    ["MOMD_ADMIN_PASSWORD", () => randomToken(18)],
  ];
  if (wanted.some(([key]) => !stored.has(key))) {
    for (const [key, make] of wanted) if (!stored.has(key)) stored.set(key, make());
    const text = "# Development secrets of the local broker (scripts/local_cluster.ts). " +
      "Not for production.\n" + [...stored].map(([k, v]) => `${k}=${v}\n`).join("");
    await Deno.writeTextFile(path, text, { mode: 0o600 });
  }
  await Deno.chmod(path, 0o600);
  const env = (key: string) => Deno.env.get(key) || stored.get(key)!;
  return {
    jwtSecret: env("MOMD_JWT_SECRET"),
    clusterSecret: env("MOMD_CLUSTER_SECRET"),
    adminUsername: env("MOMD_ADMIN_USERNAME"),
    adminPassword: env("MOMD_ADMIN_PASSWORD"),
  };
}

/** URL-safe random characters (letters, digits, - and _), from `bytes` random bytes. */
function randomToken(bytes: number): string {
  const raw = crypto.getRandomValues(new Uint8Array(bytes));
  return btoa(String.fromCharCode(...raw)).replace(/\+/g, "-").replace(/\//g, "_")
    .replace(/=+$/, "");
}

// ---- processes --------------------------------------------------------------------------------

const pidFile = (stateDir: string, s: Service) => `${stateDir}/pids/${s.name}.pid`;
const logFile = (stateDir: string, s: Service) => `${stateDir}/logs/${s.name}.log`;

/** The pid of a running service, or undefined (a stale pid file is removed). */
async function runningPid(stateDir: string, s: Service): Promise<number | undefined> {
  let pid: number;
  try {
    pid = Number((await Deno.readTextFile(pidFile(stateDir, s))).trim());
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  if (Number.isInteger(pid) && pid > 0 && isAlive(pid) && isService(pid, s)) return pid;
  await Deno.remove(pidFile(stateDir, s)).catch(() => {});
  return undefined;
}

function isAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // "pid (comm) S ...": the state follows the last ')'.
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function isService(pid: number, s: Service): boolean {
  try {
    const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ");
    return s.identity.every((part) => cmdline.includes(part));
  } catch {
    return false;
  }
}

function portFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

/** Starts a service detached from this process, its output appended to its log file. */
async function spawn(stateDir: string, s: Service): Promise<Deno.ChildProcess> {
  await s.prepare?.();
  const log = logFile(stateDir, s);
  await Deno.writeTextFile(log, `--- ${new Date().toISOString()} starting ${s.name}\n`, {
    append: true,
  });
  const child = new Deno.Command("sh", {
    // The shell replaces itself with the service, so the child's pid is the service's.
    args: ["-c", 'log=$1; shift; exec "$@" >>"$log" 2>&1 </dev/null', "sh", log, ...s.command],
    cwd: ROOT,
    env: s.env,
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  child.unref();
  await Deno.writeTextFile(pidFile(stateDir, s), `${child.pid}\n`);
  return child;
}

async function probe(r: Readiness): Promise<boolean> {
  try {
    // Not fetch: it refuses the Fetch standard's "bad ports" (10080, ...), which an offset can
    // land on, and would report a running service as not ready.
    if (r.kind === "http") return (await httpRequest(r.port, r.path)).status === 200;
    const [send, expect] = r.kind === "redis" ? ["PING\r\n", "+PONG"] : ["ruok", "imok"];
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: r.port });
    try {
      await conn.write(new TextEncoder().encode(send));
      const buf = new Uint8Array(64);
      const n = await Promise.race([
        conn.read(buf),
        new Promise<null>((resolve) => setTimeout(() => resolve(null), 2_000)),
      ]);
      return n !== null && new TextDecoder().decode(buf.subarray(0, n)).startsWith(expect);
    } finally {
      conn.close();
    }
  } catch {
    return false;
  }
}

async function waitReady(stateDir: string, s: Service, child: Deno.ChildProcess): Promise<void> {
  let exited: Deno.CommandStatus | undefined;
  child.status.then((status) => exited = status);
  const until = Date.now() + s.readyTimeoutMs;
  while (Date.now() < until) {
    if (await probe(s.ready)) return;
    if (exited) {
      await Deno.remove(pidFile(stateDir, s)).catch(() => {});
      throw new CommandError(
        `${s.name} exited with code ${exited.code} while starting; the end of ` +
          `${logFile(stateDir, s)}:\n${await lastLines(logFile(stateDir, s), 20)}`,
      );
    }
    await sleep(100);
  }
  throw new CommandError(
    `${s.name} is not ready after ${s.readyTimeoutMs / 1000} s; the end of ` +
      `${logFile(stateDir, s)}:\n${await lastLines(logFile(stateDir, s), 20)}`,
  );
}

/** Stops a running service: SIGTERM (or SIGKILL at once with `kill`), wait, then SIGKILL. */
async function stop(stateDir: string, s: Service, how: "stop" | "kill"): Promise<boolean> {
  const pid = await runningPid(stateDir, s);
  if (pid === undefined) return false;
  const signalAndWait = async (signal: Deno.Signal, ms: number) => {
    try {
      Deno.kill(pid, signal);
    } catch {
      // already gone
    }
    const until = Date.now() + ms;
    while (Date.now() < until && isAlive(pid)) await sleep(50);
    return !isAlive(pid);
  };
  let stopped = how === "stop" && await signalAndWait("SIGTERM", s.stopTimeoutMs);
  if (!stopped) {
    if (how === "stop") console.log(`${s.name}: still running after SIGTERM; sending SIGKILL`);
    stopped = await signalAndWait("SIGKILL", 5_000);
  }
  if (!stopped) throw new CommandError(`${s.name} (pid ${pid}) does not stop`);
  await Deno.remove(pidFile(stateDir, s)).catch(() => {});
  return true;
}

/** Starts the given services that are not running, stage by stage. */
async function startServices(layout: Layout, services: Service[]): Promise<void> {
  const { stateDir } = layout;
  const toStart: Service[] = [];
  for (const s of services) {
    const pid = await runningPid(stateDir, s);
    if (pid === undefined) toStart.push(s);
    else console.log(`${s.name}: already running (pid ${pid})`);
  }
  const taken = toStart.flatMap((s) =>
    s.listens.filter((l) => !portFree(l.port)).map((l) =>
      `  port ${l.port} (${s.name} ${l.what}) is in use by another program ` +
      `(see: ss -ltnp 'sport = :${l.port}')`
    )
  );
  if (taken.length > 0) {
    throw new CommandError(
      `cannot start: ports are taken\n${taken.join("\n")}\n` +
        "Stop that program, or run a second copy with MOMD_DEV_PORT_OFFSET and MOMD_DEV_STATE_DIR.",
    );
  }
  const stages = [...new Set(toStart.map((s) => s.stage))].sort((a, b) => a - b);
  try {
    for (const stage of stages) {
      const batch = toStart.filter((s) => s.stage === stage);
      await Promise.all(batch.map(async (s) => {
        const child = await spawn(stateDir, s);
        await waitReady(stateDir, s, child);
        console.log(`${s.name}: started (pid ${child.pid}), log ${logFile(stateDir, s)}`);
      }));
    }
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    throw new CommandError(
      `${err.message}\nWhat did start keeps running: 'deno task down' stops it.`,
    );
  }
}

// ---- commands ---------------------------------------------------------------------------------

class UsageError extends Error {}
class CommandError extends Error {}

/** Single-quotes a word for a POSIX shell. */
function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'"'"'`)}'`;
}

async function openLayout(forUp: boolean): Promise<Layout> {
  const stateDir = stateDirectory();
  await Deno.mkdir(`${stateDir}/pids`, { recursive: true, mode: 0o700 });
  await Deno.mkdir(`${stateDir}/logs`, { recursive: true });
  await Deno.chmod(stateDir, 0o700);
  const saved = await readJson<LayoutOptions>(`${stateDir}/cluster.json`);
  const asked: LayoutOptions = {
    nodes: intFromEnv("MOMD_DEV_NODES", 3, 1, 9),
    portOffset: portOffsetFromEnv(),
    redisMaxmemory: redisMaxmemoryFromEnv(),
  };
  const secrets = await loadSecrets(stateDir);
  if (forUp && saved && (saved.nodes !== asked.nodes || saved.portOffset !== asked.portOffset)) {
    const running = localLayout(stateDir, saved, secrets);
    const alive = [];
    for (const s of running.services) if (await runningPid(stateDir, s)) alive.push(s.name);
    if (alive.length > 0) {
      throw new UsageError(
        `the local broker runs with ${saved.nodes} node(s) and port offset ${saved.portOffset} ` +
          `(${alive.join(", ")}); stop it first with 'deno task down'`,
      );
    }
  }
  // `up` takes the environment (or the defaults); the other commands act on what `up` started.
  const options = forUp ? asked : saved ?? asked;
  if (forUp) await Deno.writeTextFile(`${stateDir}/cluster.json`, JSON.stringify(options) + "\n");
  return localLayout(stateDir, options, secrets);
}

async function up(): Promise<void> {
  const layout = await openLayout(true);
  await startServices(layout, layout.services);
  await printLogin(layout);
}

async function printLogin(layout: Layout): Promise<void> {
  const node = layout.services.find((s) => s.kind === "node")!;
  const username = node.env!.MOMD_ADMIN_USERNAME;
  const password = node.env!.MOMD_ADMIN_PASSWORD;
  const body = JSON.stringify({ username, password });
  let loginStatus = 0;
  try {
    // Not fetch, which refuses some ports (see probe).
    const res = await httpRequest(layout.entryPort, "/v1/auth/token", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      timeoutMs: 10_000,
    });
    loginStatus = res.status;
  } catch {
    // reported below
  }
  const nodeCount = layout.services.filter((s) => s.kind === "node").length;
  const login = `curl -s -X POST ${layout.entry}/v1/auth/token ` +
    `-H 'content-type: application/json' -d ${shellQuote(body)}`;
  console.log(`
momd is up at ${layout.entry} (${nodeCount === 1 ? "1 node" : `${nodeCount} nodes`})
  state, logs and pid files: ${layout.stateDir}/  (logs/<service>.log)
  development secrets:       ${layout.stateDir}/secrets.env

Log in as the admin '${username}' (answers {"token", "expiresAt"}):
  ${login}

Or keep the token in a shell variable and ask who you are:
  TOKEN=$(${login} | sed -E 's/.*"token":"([^"]+)".*/\\1/')
  curl -s ${layout.entry}/v1/auth/me -H "authorization: Bearer $TOKEN"

Stop everything with: deno task down   (or ./scripts/dev down)`);
  if (loginStatus !== 200) {
    const answer = loginStatus ? `answers ${loginStatus}` : "gets no answer";
    console.log(`
warning: logging in as '${username}' with these credentials ${answer}. The admin is created
only when absent: the users Redis in ${layout.stateDir}/data/redis-users may hold it with an
earlier password. Log in with that one, or start afresh: deno task down && rm -rf ${layout.stateDir}`);
  }
}

async function down(): Promise<void> {
  const layout = await openLayout(false);
  const stages = [...new Set(layout.services.map((s) => s.stage))].sort((a, b) => b - a);
  let stopped = 0;
  for (const stage of stages) {
    await Promise.all(
      layout.services.filter((s) => s.stage === stage).map(async (s) => {
        if (await stop(layout.stateDir, s, "stop")) {
          stopped++;
          console.log(`${s.name}: stopped`);
        }
      }),
    );
  }
  console.log(stopped > 0 ? "momd is down" : "nothing was running");
}

async function status(): Promise<void> {
  const layout = await openLayout(false);
  console.log(`entry point: ${layout.entry}   state: ${layout.stateDir}`);
  for (const s of layout.services) {
    const pid = await runningPid(layout.stateDir, s);
    const ports = s.listens.map((l) => `${l.what} ${l.port}`).join(", ");
    const state = pid === undefined ? "stopped" : `running (pid ${pid})`;
    console.log(`  ${s.name.padEnd(14)} ${state.padEnd(22)} ${ports}`);
  }
}

async function nodeCommand(action: string | undefined, id: string | undefined): Promise<void> {
  const layout = await openLayout(false);
  const nodes = layout.services.filter((s) => s.kind === "node");
  const node = nodes.find((s) => s.nodeId === id);
  if (!["stop", "kill", "start"].includes(action ?? "") || !node) {
    throw new UsageError(
      `usage: node stop|kill|start <id>, with <id> one of ${nodes.map((s) => s.nodeId).join(", ")}`,
    );
  }
  if (action === "start") {
    await startServices(layout, [node]);
    return;
  }
  const done = await stop(layout.stateDir, node, action as "stop" | "kill");
  console.log(
    done ? `${node.name}: ${action === "kill" ? "killed" : "stopped"}` : `${id} was not running`,
  );
}

const USAGE = "usage: local_cluster.ts up | down | status | node stop|kill|start <id>";

async function main(args: string[]): Promise<number> {
  try {
    switch (args[0]) {
      case "up":
        await up();
        return 0;
      case "down":
        await down();
        return 0;
      case "status":
        await status();
        return 0;
      case "node":
        await nodeCommand(args[1], args[2]);
        return 0;
      default:
        throw new UsageError(USAGE);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(err.message);
      return 2;
    }
    if (err instanceof CommandError) {
      console.error(err.message);
      return 1;
    }
    throw err;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
