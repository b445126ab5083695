/**
 * `deno task bench`: measures momd beside its ceilings (and RabbitMQ with --peer) in one run and
 * reports msgs/s, MB/s, latency percentiles, memory and each figure's ratio to its ceiling and to
 * the peer. See bench/README.md for how to read the results.
 *
 *   deno run --allow-all bench/main.ts [options]     (deno run -A bench/main.ts --help)
 */
import { Api } from "./http.ts";
import {
  type BenchOptions,
  parseOptions,
  USAGE,
  UsageError,
  type WorkloadName,
} from "./options.ts";
import { type BenchReport, renderMarkdown, writeReport } from "./report.ts";
import { round, type Row } from "./row.ts";
import {
  bringUpMomd,
  type MomdUnderTest,
  type ProcessGroups,
  processTree,
  startCeilingServer,
  startNginx,
  startRedisServer,
} from "./services.ts";
import type { HttpTarget, RunSettings } from "./workloads/common.ts";
import { sendWorkload } from "./workloads/send.ts";
import { drainWorkload } from "./workloads/drain.ts";
import { latencyWorkload } from "./workloads/latency.ts";
import { fanoutWorkload } from "./workloads/fanout.ts";
import { memoryWorkload } from "./workloads/memory.ts";
import { StoreCeiling } from "./workloads/store.ts";
import { streamDrainWorkload, streamSendShape, streamSendWorkload } from "./workloads/stream.ts";
import { wrkBinary, wrkSend } from "./wrk.ts";
import { sendBody } from "./workloads/common.ts";

/** The part of bench/rabbitmq.ts used here (typed here so amqplib loads only with --peer). */
interface RabbitModule {
  ensureRabbitInstalled(log: (line: string) => void): Promise<void>;
  startRabbit(dir: string, log: (line: string) => void): Promise<{ stop(): Promise<void> }>;
  RabbitPeer: new (server: unknown, settings: RunSettings) => {
    send(batch: number): Promise<Row>;
    drain(batch: number, count: number): Promise<Row>;
    latency(rate: number): Promise<Row>;
    fanout(): Promise<Row>;
    close(): Promise<void>;
  };
}

/** What a run returns. */
export interface BenchRun {
  report: BenchReport;
  markdown: string;
  /** The files written. */
  files: string[];
}

/** Cleanups of what a run started, newest first; `main` runs them on a signal too. */
export class Cleanups {
  readonly #steps: { name: string; run: () => Promise<void> }[] = [];

  /** Registers a cleanup step. */
  add(name: string, run: () => Promise<void>): void {
    this.#steps.push({ name, run });
  }

  /** Runs every step once, newest first, reporting failures without stopping. */
  async runAll(log: (line: string) => void): Promise<void> {
    while (this.#steps.length > 0) {
      const step = this.#steps.pop()!;
      try {
        await step.run();
      } catch (err) {
        log(`warning: cleanup '${step.name}': ${(err as Error).message}`);
      }
    }
  }
}

function summary(row: Row): string {
  const l = row.latencyMs;
  const lat = l ? `, p50 ${l.p50} ms, p99 ${l.p99} ms` : "";
  const err = row.errors > 0 ? `, ${row.errors} errors (${row.errorSamples?.[0] ?? ""})` : "";
  return `${row.msgsPerSec.toLocaleString("en-US")} msgs/s${lat}${err}`;
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

/** Runs the benchmark as the options say; `cleanups` lets a signal handler stop what it started. */
export async function runBench(
  opts: BenchOptions,
  log: (line: string) => void = console.log,
  cleanups: Cleanups = new Cleanups(),
): Promise<BenchRun> {
  const startedAt = new Date().toISOString();
  const loadBefore = Deno.loadavg();
  const dir = await Deno.makeTempDir({ prefix: "momd-bench-" });
  let failed = true;
  cleanups.add("temporary directory", async () => {
    if (opts.keep || failed) log(`state and logs kept in ${dir}`);
    else await Deno.remove(dir, { recursive: true });
  });
  const rows: Row[] = [];
  const notes: string[] = [];
  const wants = (w: WorkloadName) => opts.only.includes(w);
  const settings: RunSettings = {
    size: opts.size,
    concurrency: opts.concurrency,
    durationMs: opts.durationSeconds * 1000,
    warmupMs: opts.warmupSeconds * 1000,
    runId: `bench-${Date.now().toString(36)}`,
    log,
  };
  const record = (label: string, row: Row) => {
    rows.push(row);
    log(`  ${label}: ${summary(row)}`);
    return row;
  };
  const attempt = async <T>(label: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (err) {
      const text = `${label} failed: ${(err as Error).message.split("\n")[0]}`;
      log(`  ${text}`);
      notes.push(text);
      return undefined;
    }
  };

  try {
    // ---- momd under test ----
    let momd: MomdUnderTest | undefined;
    let entry: string;
    let username = opts.username;
    let password = opts.password;
    let nodePids = opts.nodePids;
    let redisUrls = opts.redisUrls;
    let redisPids: number[] = [];
    let momdNginxPid: number | undefined;
    let nginxInFront: boolean;
    if (opts.url) {
      entry = opts.url.replace(/\/$/, "");
      if (!username || !password) {
        throw new UsageError(
          "--url needs an admin login: --user and --password, or MOMD_ADMIN_USERNAME and " +
            "MOMD_ADMIN_PASSWORD",
        );
      }
      const probe = new Api(entry);
      const server = await probe.serverHeader().catch((err) => {
        throw new Error(`cannot reach ${entry}: ${err.message}`);
      });
      nginxInFront = opts.nginx === "auto" ? /nginx/i.test(server) : opts.nginx === "on";
    } else {
      momd = await bringUpMomd(`${dir}/momd`, opts.nodes, log);
      const up = momd;
      cleanups.add("momd", () => up.down(opts.keep));
      entry = momd.entry;
      username = momd.username;
      password = momd.password;
      nodePids = momd.nodePids;
      redisUrls = momd.redisUrls;
      redisPids = momd.redisPids;
      momdNginxPid = momd.nginxPid;
      nginxInFront = opts.nodes > 1 || opts.nginx !== "off";
      if (opts.nodes === 1 && nginxInFront) {
        const nginx = await startNginx(dir, "nginx-momd", momd.nodeAddresses);
        cleanups.add("nginx-momd", () => nginx.stop());
        entry = nginx.url;
        momdNginxPid = nginx.pid;
      }
    }
    const setup = {
      nodes: opts.url ? (nodePids.length || "unknown") : opts.nodes,
      "behind NGINX": nginxInFront ? "yes" : "no",
      entry,
      "brought up by the bench": opts.url ? "no" : "yes",
      "HTTP client": opts.client,
    };
    log(`momd at ${entry} (NGINX in front: ${nginxInFront ? "yes" : "no"})`);
    const api = new Api(entry, opts.client);
    cleanups.add("momd client", () => Promise.resolve(api.close()));
    await api.login(username!, password!);
    const momdGroups: ProcessGroups = { node: nodePids };
    if (redisPids.length > 0) momdGroups.redis = redisPids;
    if (momdNginxPid) momdGroups.nginx = processTree(momdNginxPid);
    for (const [role, pids] of Object.entries(momd?.otherPids ?? {})) {
      momdGroups[role] = pids.flatMap((p) => processTree(p));
    }
    const momdTarget: HttpTarget = { target: "momd", api, groups: momdGroups };
    // More than one node: requests about an entity another node owns are forwarded.
    const clustered = opts.url ? nodePids.length !== 1 : opts.nodes > 1;
    if (opts.url && nodePids.length === 0) {
      notes.push("--url without --node-pid: CPU figures cover the load generator only");
    }

    // ---- HTTP ceiling ----
    const wrk = opts.wrk && wrkBinary() !== undefined;
    if (opts.wrk && !wrk) notes.push("wrk is not installed: the generator check was skipped");
    if (opts.ceilings) {
      log("HTTP ceiling");
      const ceiling = await startCeilingServer(dir, opts.size);
      cleanups.add("ceiling server", () => ceiling.stop());
      let ceilingUrl = ceiling.url;
      const ceilingGroups: ProcessGroups = { ceiling: [ceiling.pid] };
      if (nginxInFront) {
        const nginx = await startNginx(dir, "nginx-ceiling", [ceiling.url.replace("http://", "")]);
        cleanups.add("nginx-ceiling", () => nginx.stop());
        ceilingUrl = nginx.url;
        ceilingGroups.nginx = processTree(nginx.pid);
      }
      const capi = new Api(ceilingUrl, opts.client);
      cleanups.add("ceiling client", () => Promise.resolve(capi.close()));
      capi.token = "ceiling";
      const ct: HttpTarget = { target: "http-ceiling", api: capi, groups: ceilingGroups };
      if (wants("send")) {
        await attempt(
          "HTTP ceiling send",
          async () => record("send", await sendWorkload(ct, 1, settings)),
        );
        if (wrk) {
          await attempt("wrk → HTTP ceiling", async () =>
            record(
              "send via wrk",
              await wrkSend({
                api: capi,
                path: `/v1/queues/${settings.runId}-send/messages`,
                body: sendBody(1, opts.size),
                concurrency: opts.concurrency,
                durationSeconds: opts.durationSeconds,
                size: opts.size,
                label: "HTTP ceiling",
                groups: ceilingGroups,
                dir,
              }),
            ));
        }
      }
      if (wants("send-batch")) {
        await attempt(
          "HTTP ceiling send-batch",
          async () => record("send-batch", await sendWorkload(ct, 100, settings)),
        );
      }
      for (const [w, b] of [["drain-10", 10], ["drain-100", 100]] as const) {
        if (!wants(w)) continue;
        await attempt(
          `HTTP ceiling ${w}`,
          async () => record(w, await drainWorkload(ct, b, 0, settings)),
        );
      }
    }

    // ---- momd ----
    log("momd");
    let sendRate: number | undefined;
    let batchRate: number | undefined;
    if (wants("send")) {
      const row = await attempt(
        "momd send",
        async () => record("send", await sendWorkload(momdTarget, 1, settings)),
      );
      sendRate = row?.msgsPerSec;
      if (clustered) {
        // What a client that sends no owner hints gets: 2 requests in 3 forwarded by a node.
        const plain = new Api(entry, opts.client, { ownerHints: false });
        plain.token = api.token;
        await attempt("momd send without owner hints", async () =>
          record(
            "send without owner hints",
            await sendWorkload({ ...momdTarget, api: plain }, 1, settings, "no owner hints"),
          )).finally(() => plain.close());
      }
      if (wrk) {
        await attempt("wrk → momd", async () => {
          const queue = `${settings.runId}-wrk`;
          const path = `/v1/queues/${queue}/messages`;
          await api.call("PUT", `/v1/queues/${queue}`, { maxLength: 10_000_000 }, [200, 201]);
          try {
            await api.call("POST", path, sendBody(1, opts.size), [201]); // learns the owner
            record(
              "send via wrk",
              await wrkSend({
                api,
                path,
                route: api.ownerOf(path),
                body: sendBody(1, opts.size),
                concurrency: opts.concurrency,
                durationSeconds: opts.durationSeconds,
                size: opts.size,
                label: "momd",
                groups: momdGroups,
                dir,
              }),
            );
          } finally {
            await api.call("DELETE", `/v1/queues/${queue}`, undefined, [204, 404]);
          }
        });
      }
    }
    if (wants("send-batch")) {
      const row = await attempt(
        "momd send-batch",
        async () => record("send-batch", await sendWorkload(momdTarget, 100, settings)),
      );
      batchRate = row?.msgsPerSec;
    }
    if (wants("stream-send")) {
      const shape = streamSendShape(opts.concurrency, opts.streamSockets, opts.streamWindow);
      await attempt(
        "momd stream-send",
        async () => record("stream-send", await streamSendWorkload(momdTarget, shape, settings)),
      );
    }
    // What send-batch stores in a third of the time: a drain a third as fast as send-batch runs
    // for the whole duration; a faster one empties the queue early (its rate is still right).
    const preload = opts.preload ??
      (batchRate
        ? clamp(
          Math.round(batchRate * (opts.durationSeconds + opts.warmupSeconds) / 3),
          1_000,
          1_000_000,
        )
        : opts.quick
        ? 2_000
        : 100_000);
    for (const [w, b] of [["drain-10", 10], ["drain-100", 100]] as const) {
      if (!wants(w)) continue;
      await attempt(
        `momd ${w}`,
        async () => record(w, await drainWorkload(momdTarget, b, preload, settings)),
      );
    }
    if (wants("stream-drain")) {
      await attempt(
        "momd stream-drain",
        async () =>
          record("stream-drain", await streamDrainWorkload(momdTarget, preload, settings)),
      );
    }
    let latencyRate = opts.latencyRate;
    if (latencyRate === undefined && sendRate) latencyRate = sendRate / 2;
    if (latencyRate === undefined) {
      latencyRate = 500;
      if (wants("latency")) notes.push("send was not measured: latency ran at 500 msgs/s");
    }
    if (wants("latency")) {
      await attempt(
        "momd latency",
        async () => record("latency", await latencyWorkload(momdTarget, latencyRate!, settings)),
      );
    }
    if (wants("fan-out")) {
      await attempt(
        "momd fan-out",
        async () => record("fan-out", await fanoutWorkload(momdTarget, settings)),
      );
    }
    if (wants("memory")) {
      if (redisUrls.length === 0) {
        notes.push("memory: no --redis-url, so Redis bytes per message were not measured");
      }
      await attempt("momd memory", async () =>
        record(
          "memory",
          await memoryWorkload(momdTarget, opts.memoryMessages, { redisUrls, nodePids }, settings),
        ));
    }

    // ---- store ceiling ----
    if (opts.ceilings) {
      const wanted = (["send", "send-batch", "drain-10", "drain-100"] as const).filter(wants);
      if (wanted.length > 0) {
        log("store ceiling (one Redis, ioredis)");
        const redis = await startRedisServer(dir, "redis-store-ceiling");
        cleanups.add("store redis", () => redis.stop());
        const store = new StoreCeiling(redis.url, redis.pid);
        cleanups.add("store clients", () => Promise.resolve(store.close()));
        for (const w of wanted) {
          if (w === "send" || w === "send-batch") {
            const batch = w === "send" ? 1 : 100;
            for (const pipelined of [false, true]) {
              await attempt(
                `store ${w}`,
                async () =>
                  record(
                    `${w}${pipelined ? " pipelined" : ""}`,
                    await store.send(batch, pipelined, settings),
                  ),
              );
            }
          } else {
            await attempt(
              `store ${w}`,
              async () =>
                record(w, await store.drain(w === "drain-10" ? 10 : 100, preload, settings)),
            );
          }
        }
        store.close();
        await redis.stop();
      }
    }

    // ---- peer ----
    if (opts.peer) {
      log("peer: RabbitMQ");
      await attempt("RabbitMQ", async () => {
        // Loaded only here: it fetches amqplib on first use.
        const modulePath = "./rabbitmq.ts";
        const rabbit = await import(modulePath) as RabbitModule;
        await rabbit.ensureRabbitInstalled(log);
        const server = await rabbit.startRabbit(dir, log);
        cleanups.add("rabbitmq", () => server.stop());
        const peer = new rabbit.RabbitPeer(server, settings);
        cleanups.add("rabbitmq clients", () => peer.close());
        // The streaming rows are compared with these: run them for those too.
        if (wants("send") || wants("stream-send")) {
          await attempt("peer send", async () => record("send", await peer.send(1)));
        }
        if (wants("send-batch")) {
          await attempt("peer send-batch", async () => record("send-batch", await peer.send(100)));
        }
        for (const [w, b] of [["drain-10", 10], ["drain-100", 100]] as const) {
          if (wants(w) || (w === "drain-100" && wants("stream-drain"))) {
            await attempt(`peer ${w}`, async () => record(w, await peer.drain(b, preload)));
          }
        }
        if (wants("latency")) {
          await attempt(
            "peer latency",
            async () => record("latency", await peer.latency(latencyRate!)),
          );
        }
        if (wants("fan-out")) {
          await attempt("peer fan-out", async () => record("fan-out", await peer.fanout()));
        }
        await peer.close();
        await server.stop();
      });
    }

    notes.push(
      `load generator: Deno, ${opts.client === "raw" ? "HTTP/1.1 over Deno.connect" : "fetch"}, ` +
        `${opts.concurrency} keep-alive connections, in the same process as the ioredis and ` +
        `amqplib clients`,
    );
    const report: BenchReport = {
      version: 1,
      startedAt,
      finishedAt: new Date().toISOString(),
      machine: {
        hostname: Deno.hostname(),
        cores: navigator.hardwareConcurrency,
        memoryGB: round(Deno.systemMemoryInfo().total / 2 ** 30, 1),
        kernel: Deno.osRelease(),
        deno: Deno.version.deno,
        loadBefore: loadBefore.map((l) => round(l, 2)),
        loadAfter: Deno.loadavg().map((l) => round(l, 2)),
      },
      options: {
        size: opts.size,
        concurrency: opts.concurrency,
        durationSeconds: opts.durationSeconds,
        warmupSeconds: opts.warmupSeconds,
        memoryMessages: opts.memoryMessages,
        preload,
        latencyRate: round(latencyRate, 1),
        streamSockets: opts.streamSockets,
        streamWindow: opts.streamWindow,
        peer: opts.peer,
        quick: opts.quick,
        client: opts.client,
        only: opts.only,
      },
      setup,
      rows,
      notes,
    };
    const markdown = renderMarkdown(report);
    const files = await writeReport(report, opts.outDir);
    failed = false;
    return { report, markdown, files };
  } finally {
    await cleanups.runAll(log);
  }
}

async function main(args: string[]): Promise<number> {
  let opts: BenchOptions | "help";
  try {
    opts = parseOptions(args, Deno.env.toObject());
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`bench: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  if (opts === "help") {
    console.log(USAGE);
    return 0;
  }
  const cleanups = new Cleanups();
  const onSignal = () => {
    console.error("bench: interrupted; stopping what it started");
    cleanups.runAll(console.error).finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const run = await runBench(opts, console.log, cleanups);
    console.log(`\n${run.markdown}`);
    console.log(`written: ${run.files.join(", ")}`);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`bench: ${err.message}`);
      return 2;
    }
    console.error(`bench: ${(err as Error).stack ?? err}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
