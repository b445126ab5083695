/** The benchmark's command-line options. */
import { parseArgs } from "node:util";
import type { ClientKind } from "./http.ts";

/** Every workload, in the order a run measures them. */
export const WORKLOADS = [
  "send",
  "send-batch",
  "stream-send",
  "drain-10",
  "drain-100",
  "stream-drain",
  "latency",
  "fan-out",
  "memory",
] as const;

/** One workload's name. */
export type WorkloadName = typeof WORKLOADS[number];

/** Everything a benchmark run is told. */
export interface BenchOptions {
  /** A running momd to measure; undefined: bring one up (scripts/local_cluster.ts). */
  url?: string;
  /** Nodes to bring up when there is no url (3, the default, is the cluster behind NGINX). */
  nodes: number;
  /** Login of an admin on the momd under test (with --url; brought-up ones use their own). */
  username?: string;
  password?: string;
  /** Message body size in bytes. */
  size: number;
  /** Concurrent workers (connections) of every closed-loop workload. */
  concurrency: number;
  /** Measured seconds of each timed workload. */
  durationSeconds: number;
  /** Unmeasured seconds before each timed workload. */
  warmupSeconds: number;
  /** Messages stored by the memory workload. */
  memoryMessages: number;
  /** Messages preloaded for each drain; undefined: what send-batch moves in one duration. */
  preload?: number;
  /** Messages per second of the latency workload; undefined: half the measured send rate. */
  latencyRate?: number;
  /** stream-send's producer sockets (default concurrency / 8). */
  streamSockets?: number;
  /** stream-send's sends in flight per socket (default 100). */
  streamWindow?: number;
  /** Also run RabbitMQ (installs it from Debian's packages when missing). */
  peer: boolean;
  /** Few seconds in all, small counts: the smoke mode. */
  quick: boolean;
  /** Put the HTTP ceiling (and a single brought-up node) behind NGINX; auto: as the url is. */
  nginx: "auto" | "on" | "off";
  client: ClientKind;
  /** Workloads to run (all by default). */
  only: WorkloadName[];
  /** Skip the HTTP and store ceilings. */
  ceilings: boolean;
  /** Also check the generator against wrk, when wrk is installed (off in quick mode). */
  wrk: boolean;
  /** The momd node's local Redis servers (for memory), when --url is used. */
  redisUrls: string[];
  /** The momd node processes (for CPU and RSS), when --url is used. */
  nodePids: number[];
  /** Where results go (JSON, SVG, markdown). */
  outDir: string;
  /** Leave what was brought up running. */
  keep: boolean;
}

/** Thrown for a bad command line; main prints it with the usage and exits 2. */
export class UsageError extends Error {}

/** The usage text. */
export const USAGE = `deno task bench [options]

Brings up momd (scripts/local_cluster.ts, state in a temporary directory) unless --url is
given, measures every workload against momd, the HTTP ceiling and the store ceiling (and
RabbitMQ with --peer), prints a markdown table and writes bench/results/<time>.json,
latest.json, latest.md and latest.svg.

  --url URL             measure a running momd (give --user/--password, or MOMD_ADMIN_USERNAME
                        and MOMD_ADMIN_PASSWORD; its rate limit must allow the load)
  --nodes N             nodes to bring up (default 3: the cluster behind its NGINX; with 1,
                        one node, behind an NGINX of the same configuration unless --nginx off)
  --size BYTES          message body size (default 256)
  --concurrency N       concurrent workers and connections (default 32)
  --duration SECONDS    measured time of each workload (default 10; quick 0.5)
  --warmup SECONDS      unmeasured time before each workload (default 1; quick 0)
  --memory-messages N   messages stored by the memory workload (default 1000000; quick 5000)
  --preload N           messages preloaded for each drain (default: what send-batch moved)
  --rate N              latency workload rate in msgs/s (default: half the send rate)
  --stream-sockets N    stream-send's producer sockets (default: concurrency / 8)
  --stream-window N     stream-send's sends in flight per socket (default 100; 8 with 4
                        sockets: as many in flight as RabbitMQ's send with concurrency 32)
  --peer                also run RabbitMQ (quorum queue, publisher confirms, consumer acks);
                        installs rabbitmq-server from Debian's packages when missing
  --quick               the smoke mode: a few seconds, small counts, no wrk check
  --nginx auto|on|off   NGINX in front of the HTTP ceiling and a single node (default auto:
                        on when bringing momd up, else as the --url answers)
  --client raw|fetch    the generator's HTTP client (default raw; see bench/README.md)
  --only A,B            run only these workloads: ${WORKLOADS.join(", ")}
  --no-ceilings         skip the HTTP and store ceilings
  --no-wrk              skip the wrk check of the load generator
  --redis-url URL       a momd node's local Redis, for the memory workload with --url
                        (repeat for several nodes)
  --node-pid PID        a momd node's process id, for CPU and RSS with --url (repeatable)
  --user NAME, --password PASSWORD   admin login for --url
  --out DIR             results directory (default bench/results)
  --keep                leave what was brought up running
  -h, --help            this text
`;

function positiveNumber(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) {
    throw new UsageError(`--${name}: expected a positive number, got '${raw}'`);
  }
  return value;
}

function positiveInt(name: string, raw: string | undefined, fallback: number): number {
  const value = positiveNumber(name, raw, fallback);
  if (!Number.isInteger(value)) throw new UsageError(`--${name}: expected an integer`);
  return value;
}

/** Parses the command line (and MOMD_ADMIN_* from the environment for --url). */
export function parseOptions(
  args: string[],
  env: Record<string, string | undefined> = {},
): BenchOptions | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        url: { type: "string" },
        nodes: { type: "string" },
        user: { type: "string" },
        password: { type: "string" },
        size: { type: "string" },
        concurrency: { type: "string" },
        duration: { type: "string" },
        warmup: { type: "string" },
        "memory-messages": { type: "string" },
        preload: { type: "string" },
        rate: { type: "string" },
        "stream-sockets": { type: "string" },
        "stream-window": { type: "string" },
        peer: { type: "boolean" },
        quick: { type: "boolean" },
        nginx: { type: "string" },
        client: { type: "string" },
        only: { type: "string" },
        "no-ceilings": { type: "boolean" },
        "no-wrk": { type: "boolean" },
        "redis-url": { type: "string", multiple: true },
        "node-pid": { type: "string", multiple: true },
        out: { type: "string" },
        keep: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const v = parsed.values;
  if (v.help) return "help";
  const quick = v.quick ?? false;
  const nginx = v.nginx ?? "auto";
  if (!["auto", "on", "off"].includes(nginx)) {
    throw new UsageError(`--nginx: expected auto, on or off, got '${nginx}'`);
  }
  const client = v.client ?? "raw";
  if (client !== "raw" && client !== "fetch") {
    throw new UsageError(`--client: expected raw or fetch, got '${client}'`);
  }
  let only: WorkloadName[] = [...WORKLOADS];
  if (v.only !== undefined) {
    only = v.only.split(",").map((s) => s.trim()).filter((s) => s !== "") as WorkloadName[];
    const unknown = only.filter((w) => !WORKLOADS.includes(w));
    if (unknown.length > 0 || only.length === 0) {
      throw new UsageError(`--only: expected some of ${WORKLOADS.join(", ")}`);
    }
  }
  if (
    v.url !== undefined &&
    !/^http:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?\/?$/.test(v.url)
  ) {
    throw new UsageError(`--url: expected http:// with a loopback address, got '${v.url}'`);
  }
  const pids = (v["node-pid"] ?? []).map((p) => positiveInt("node-pid", p, 0));
  const size = positiveInt("size", v.size, 256);
  if (size > 1_000_000) throw new UsageError("--size: at most 1000000 bytes");
  return {
    url: v.url,
    nodes: positiveInt("nodes", v.nodes, 3),
    username: v.user ?? env.MOMD_ADMIN_USERNAME,
    password: v.password ?? env.MOMD_ADMIN_PASSWORD,
    size,
    concurrency: positiveInt("concurrency", v.concurrency, 32),
    durationSeconds: positiveNumber("duration", v.duration, quick ? 0.5 : 10),
    warmupSeconds: v.warmup === "0" ? 0 : positiveNumber("warmup", v.warmup, quick ? 0 : 1),
    memoryMessages: positiveInt("memory-messages", v["memory-messages"], quick ? 5_000 : 1_000_000),
    preload: v.preload === undefined ? undefined : positiveInt("preload", v.preload, 0),
    latencyRate: v.rate === undefined ? undefined : positiveNumber("rate", v.rate, 0),
    streamSockets: v["stream-sockets"] === undefined
      ? undefined
      : positiveInt("stream-sockets", v["stream-sockets"], 0),
    streamWindow: v["stream-window"] === undefined
      ? undefined
      : positiveInt("stream-window", v["stream-window"], 0),
    peer: v.peer ?? false,
    quick,
    nginx: nginx as BenchOptions["nginx"],
    client,
    only,
    ceilings: !(v["no-ceilings"] ?? false),
    wrk: !(v["no-wrk"] ?? false) && !quick,
    redisUrls: v["redis-url"] ?? [],
    nodePids: pids,
    outDir: v.out ?? new URL("./results", import.meta.url).pathname,
    keep: v.keep ?? false,
  };
}
