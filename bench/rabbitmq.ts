/**
 * The peer: RabbitMQ from Debian's packages, run as a plain process of this benchmark (its own
 * ports on 127.0.0.1, its own data directory and Erlang cookie), measured with the same message
 * size, concurrency and load shapes as momd through amqplib: quorum queues (replicated, fsynced
 * log), publisher confirms (a publish counts once the broker confirmed it), consumer acks.
 *
 * Loaded by bench/main.ts only with --peer (the amqplib package is fetched on first use).
 */
import * as amqp from "npm:amqplib@2.3.1";
import { Buffer } from "node:buffer";
import { runAtRate, runClosedLoop, Samples } from "./load.ts";
import { latencyOf, round, type Row, rowFromLoad } from "./row.ts";
import { freePort, lastLines, sleep } from "../scripts/processes.ts";
import {
  CpuMeter,
  type ProcessGroups,
  processTree,
  type Service,
  spawnService,
} from "./services.ts";
import type { RunSettings } from "./workloads/common.ts";
import { latencyConsumers, latencyMaxInFlight, stampedBody } from "./workloads/latency.ts";
import { FANOUT_SUBSCRIPTIONS, fanoutWorkers } from "./workloads/fanout.ts";

const SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const QUORUM = { durable: true, arguments: { "x-queue-type": "quorum" } };

/** Installs rabbitmq-server (and Erlang) from Debian's packages when it is missing. */
export async function ensureRabbitInstalled(log: (line: string) => void): Promise<void> {
  try {
    Deno.statSync(SERVER);
    return;
  } catch {
    // not installed
  }
  log("installing rabbitmq-server from Debian's packages (it brings Erlang; about a minute)");
  const apt = async (...args: string[]) => {
    const root = Deno.uid() === 0;
    const out = await new Deno.Command(root ? "apt-get" : "sudo", {
      args: [...(root ? [] : ["apt-get"]), "-o", "DPkg::Lock::Timeout=300", ...args],
      env: { DEBIAN_FRONTEND: "noninteractive" },
      stdin: "null",
    }).output();
    if (out.code !== 0) {
      throw new Error(`apt-get ${args.join(" ")} failed:\n${new TextDecoder().decode(out.stderr)}`);
    }
  };
  await apt("update", "-q");
  await apt("install", "-y", "-q", "--no-install-recommends", "rabbitmq-server");
  Deno.statSync(SERVER);
}

/** A RabbitMQ node of this run. */
export interface RabbitServer {
  url: string;
  /** The Erlang VM and its helpers (for CPU time). */
  pids(): number[];
  stop(): Promise<void>;
}

/** Starts RabbitMQ on free loopback ports with its state under `dir`. */
export async function startRabbit(dir: string, log: (line: string) => void): Promise<RabbitServer> {
  const base = `${dir}/rabbitmq`;
  await Deno.mkdir(`${base}/log`, { recursive: true });
  const amqpPort = freePort();
  const distPort = freePort();
  const epmdPort = freePort();
  await Deno.writeTextFile(
    `${base}/rabbitmq.conf`,
    `listeners.tcp.default = 127.0.0.1:${amqpPort}\nloopback_users = none\n`,
  );
  await Deno.writeTextFile(`${base}/enabled_plugins`, "[].\n");
  const env: Record<string, string> = {
    HOME: base, // the Erlang cookie lives here
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    RABBITMQ_NODENAME: `bench${amqpPort}@localhost`,
    RABBITMQ_NODE_IP_ADDRESS: "127.0.0.1",
    RABBITMQ_NODE_PORT: String(amqpPort),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: "-kernel inet_dist_use_interface {127,0,0,1}",
    ERL_EPMD_PORT: String(epmdPort),
    ERL_EPMD_ADDRESS: "127.0.0.1",
    RABBITMQ_MNESIA_BASE: `${base}/mnesia`,
    RABBITMQ_LOG_BASE: `${base}/log`,
    RABBITMQ_CONFIG_FILE: `${base}/rabbitmq.conf`,
    RABBITMQ_ENABLED_PLUGINS_FILE: `${base}/enabled_plugins`,
    RABBITMQ_PID_FILE: `${base}/rabbitmq.pid`,
  };
  log(`starting RabbitMQ on 127.0.0.1:${amqpPort}`);
  const service: Service = spawnService("rabbitmq", [SERVER], {
    env,
    cwd: base,
    log: `${dir}/rabbitmq.log`,
  });
  const url = `amqp://guest:guest@127.0.0.1:${amqpPort}`;
  const vmPid = () => {
    try {
      return Number(Deno.readTextFileSync(`${base}/rabbitmq.pid`).trim()) || undefined;
    } catch {
      return undefined;
    }
  };
  const stop = async () => {
    const pid = vmPid();
    if (pid) {
      try {
        Deno.kill(pid, "SIGTERM");
      } catch {
        // gone
      }
      for (let i = 0; i < 300 && processTree(pid).length > 0 && alive(pid); i++) await sleep(100);
    }
    await service.stop("SIGTERM", 5_000);
    // The Erlang port mapper daemonizes; ask the one on our port to leave.
    await new Deno.Command("epmd", { args: ["-kill"], env, stdout: "null", stderr: "null" })
      .output().catch(() => {});
  };
  const until = Date.now() + 120_000;
  while (Date.now() < until) {
    try {
      const conn = await amqp.connect(url);
      await conn.close();
      return { url, pids: () => (vmPid() ? processTree(vmPid()!) : []), stop };
    } catch {
      if (!alive(service.pid)) break;
      await sleep(250);
    }
  }
  await stop();
  throw new Error(`RabbitMQ did not start:\n${await lastLines(`${dir}/rabbitmq.log`, 15)}`);
}

function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

type Conn = amqp.ChannelModel;

/** Opens `n` connections, each with one channel (a confirm channel when asked). */
async function channels(url: string, n: number, confirm: boolean) {
  const conns: Conn[] = [];
  const chans: (amqp.Channel | amqp.ConfirmChannel)[] = [];
  for (let i = 0; i < n; i++) {
    const conn = await amqp.connect(url);
    conns.push(conn);
    chans.push(confirm ? await conn.createConfirmChannel() : await conn.createChannel());
  }
  return {
    conns,
    chans,
    async close() {
      await Promise.allSettled(conns.map((c) => c.close()));
    },
  };
}

function publishConfirmed(
  ch: amqp.ConfirmChannel,
  exchange: string,
  key: string,
  content: Buffer,
): Promise<void> {
  return new Promise((resolve, reject) => {
    ch.publish(
      exchange,
      key,
      content,
      { persistent: true },
      (err) => err ? reject(err) : resolve(),
    );
  });
}

/** Acks consumed messages in groups (ack "multiple" every `batch`, and any rest within 20 ms). */
function groupedAcker(ch: amqp.Channel, batch: number) {
  let last: amqp.ConsumeMessage | undefined;
  let pending = 0;
  const flush = () => {
    if (last) ch.ack(last, true);
    last = undefined;
    pending = 0;
  };
  const timer = setInterval(flush, 20);
  return {
    add(msg: amqp.ConsumeMessage) {
      last = msg;
      if (++pending >= batch) flush();
    },
    stop() {
      flush();
      clearInterval(timer);
    },
  };
}

/** The peer's workloads, on one RabbitMQ server. */
export class RabbitPeer {
  readonly #server: RabbitServer;
  readonly #settings: RunSettings;
  #admin?: { conn: Conn; ch: amqp.Channel };

  constructor(server: RabbitServer, settings: RunSettings) {
    this.#server = server;
    this.#settings = settings;
  }

  #meter(): CpuMeter {
    const groups: ProcessGroups = { client: [Deno.pid], rabbitmq: this.#server.pids() };
    const m = new CpuMeter(groups);
    m.start();
    return m;
  }

  async #adminChannel(): Promise<amqp.Channel> {
    if (!this.#admin) {
      const conn = await amqp.connect(this.#server.url);
      this.#admin = { conn, ch: await conn.createChannel() };
    }
    return this.#admin.ch;
  }

  async #queue(name: string): Promise<string> {
    const ch = await this.#adminChannel();
    await ch.assertQueue(name, QUORUM);
    await ch.purgeQueue(name);
    return name;
  }

  async #deleteQueue(name: string): Promise<void> {
    const ch = await this.#adminChannel();
    await ch.deleteQueue(name);
  }

  /** Closes the admin connection. */
  async close(): Promise<void> {
    await this.#admin?.conn.close().catch(() => {});
  }

  /** send (one message, wait for its confirm) or send-batch (100, wait for their confirms). */
  async send(batch: number): Promise<Row> {
    const s = this.#settings;
    const workload = batch === 1 ? "send" : "send-batch";
    const queue = await this.#queue(`${s.runId}-${workload}`);
    const pool = await channels(this.#server.url, s.concurrency, true);
    const content = Buffer.from("x".repeat(s.size));
    try {
      const m = this.#meter();
      const result = await runClosedLoop({
        concurrency: s.concurrency,
        durationMs: s.durationMs,
        warmupMs: s.warmupMs,
      }, async (w) => {
        const ch = pool.chans[w] as amqp.ConfirmChannel;
        if (batch === 1) {
          await publishConfirmed(ch, "", queue, content);
        } else {
          for (let i = 0; i < batch; i++) ch.sendToQueue(queue, content, { persistent: true });
          await ch.waitForConfirms();
        }
        return batch;
      });
      return rowFromLoad(
        {
          workload,
          target: "peer",
          size: s.size,
          variant: batch === 1 ? "publish + confirm" : "100 publishes + confirms",
        },
        result,
        m.stop(),
      );
    } finally {
      await pool.close();
      await this.#deleteQueue(queue);
    }
  }

  async #preload(exchange: string, key: string, count: number): Promise<void> {
    const s = this.#settings;
    const pool = await channels(this.#server.url, Math.min(s.concurrency, 8), true);
    const content = Buffer.from("x".repeat(s.size));
    let claimed = 0;
    try {
      await runClosedLoop(
        { concurrency: pool.chans.length, durationMs: 30 * 60_000, maxErrors: 0 },
        async (w) => {
          if (claimed >= count) return "empty";
          const n = Math.min(100, count - claimed);
          claimed += n;
          const ch = pool.chans[w] as amqp.ConfirmChannel;
          for (let i = 0; i < n; i++) ch.publish(exchange, key, content, { persistent: true });
          await ch.waitForConfirms();
          return n;
        },
      );
    } finally {
      await pool.close();
    }
  }

  /** drain-N: consumers with prefetch N, acking every N, over `count` preloaded messages. */
  async drain(batch: number, count: number): Promise<Row> {
    const s = this.#settings;
    const workload = batch === 10 ? "drain-10" : "drain-100";
    const queue = await this.#queue(`${s.runId}-${workload}`);
    s.log(`  preloading ${count} messages into RabbitMQ ${queue}`);
    await this.#preload("", queue, count);
    const pool = await channels(this.#server.url, s.concurrency, false);
    try {
      const m = this.#meter();
      const start = performance.now();
      let received = 0;
      const ackers: ReturnType<typeof groupedAcker>[] = [];
      const done = new Promise<void>((resolve) => {
        pool.chans.forEach((ch, w) => {
          const acker = groupedAcker(ch, batch);
          ackers[w] = acker;
          ch.prefetch(batch).then(() =>
            ch.consume(queue, (msg) => {
              if (!msg) return;
              acker.add(msg);
              if (++received >= count) resolve();
            }, { noAck: false })
          );
        });
      });
      // For the duration, or until the preloaded queue is empty (as momd's drain).
      const cap = sleep(s.durationMs);
      await Promise.race([done, cap]);
      ackers.forEach((a) => a.stop());
      const seconds = (performance.now() - start) / 1000;
      const cpu = m.stop();
      return {
        workload,
        target: "peer",
        variant: `prefetch ${batch}, ack every ${batch}`,
        messages: received,
        requests: Math.ceil(received / batch),
        errors: 0,
        seconds: round(seconds, 3),
        msgsPerSec: round(received / seconds, 1),
        mbPerSec: round(received / seconds * s.size / 1e6, 2),
        cpuSeconds: cpu,
        extra: { preloaded: count, emptied: received >= count },
      };
    } finally {
      await pool.close();
      await this.#deleteQueue(queue);
    }
  }

  /** latency: publish with confirms at `rate`, consumers ack each message as it arrives. */
  async latency(rate: number): Promise<Row> {
    const s = this.#settings;
    const queue = await this.#queue(`${s.runId}-latency`);
    const consumers = latencyConsumers(s.concurrency);
    const producer = await channels(this.#server.url, 1, true);
    const pool = await channels(this.#server.url, consumers, false);
    const origin = performance.timeOrigin;
    const measureFrom = origin + performance.now() + s.warmupMs;
    const samples = new Samples();
    let acked = 0;
    try {
      const m = this.#meter();
      for (const ch of pool.chans) {
        await ch.prefetch(10);
        await ch.consume(queue, (msg) => {
          if (!msg) return;
          ch.ack(msg);
          acked++;
          const sentAt = parseFloat(msg.content.toString("latin1", 0, 32));
          if (sentAt >= measureFrom) samples.add(origin + performance.now() - sentAt);
        }, { noAck: false });
      }
      const ch = producer.chans[0] as amqp.ConfirmChannel;
      const produced = await runAtRate({
        rate,
        durationMs: s.warmupMs + s.durationMs,
        maxInFlight: latencyMaxInFlight(s.concurrency),
      }, (at) => publishConfirmed(ch, "", queue, Buffer.from(stampedBody(origin + at, s.size))));
      const until = performance.now() + 10_000;
      while (acked < produced.completed && performance.now() < until) await sleep(10);
      const cpu = m.stop();
      const sorted = samples.sorted();
      const seconds = s.durationMs / 1000;
      return {
        workload: "latency",
        target: "peer",
        variant: `${round(rate, 0)} msgs/s, ${consumers} consumers`,
        messages: sorted.length,
        requests: produced.started,
        errors: produced.errors,
        seconds,
        msgsPerSec: round(sorted.length / seconds, 1),
        mbPerSec: round(sorted.length / seconds * s.size / 1e6, 2),
        latencyMs: latencyOf(sorted),
        cpuSeconds: cpu,
        extra: {
          rate: round(rate, 1),
          consumers,
          sent: produced.completed,
          acked,
          skipped: produced.skipped,
          lost: produced.completed - acked,
        },
      };
    } finally {
      await pool.close();
      await producer.close();
      await this.#deleteQueue(queue);
    }
  }

  /** fan-out: a fanout exchange to three quorum queues, published and consumed as momd's. */
  async fanout(): Promise<Row> {
    const s = this.#settings;
    const { producers, perSubscription } = fanoutWorkers(s.concurrency);
    const exchange = `${s.runId}-fan-out`;
    const admin = await this.#adminChannel();
    await admin.assertExchange(exchange, "fanout", { durable: true });
    const queues: string[] = [];
    for (const sub of FANOUT_SUBSCRIPTIONS) {
      const q = await this.#queue(`${exchange}-${sub}`);
      await admin.bindQueue(q, exchange, "");
      queues.push(q);
    }
    const pubs = await channels(this.#server.url, producers, true);
    const subs = await channels(this.#server.url, perSubscription * queues.length, false);
    const content = Buffer.from("x".repeat(s.size));
    try {
      const m = this.#meter();
      const start = performance.now();
      let delivered = 0;
      const ackers = subs.chans.map((ch) => groupedAcker(ch, 100));
      await Promise.all(subs.chans.map(async (ch, i) => {
        await ch.prefetch(100);
        await ch.consume(queues[i % queues.length], (msg) => {
          if (!msg) return;
          ackers[i].add(msg);
          delivered++;
        }, { noAck: false });
      }));
      const published = await runClosedLoop({
        concurrency: producers,
        durationMs: s.durationMs,
      }, async (w) => {
        const ch = pubs.chans[w] as amqp.ConfirmChannel;
        for (let i = 0; i < 100; i++) ch.publish(exchange, "", content, { persistent: true });
        await ch.waitForConfirms();
        return 100;
      });
      const publishEnd = performance.now();
      const expected = published.messages * queues.length;
      const until = publishEnd + Math.max(60_000, s.durationMs * 10);
      while (delivered < expected && performance.now() < until) await sleep(5);
      ackers.forEach((a) => a.stop());
      const end = performance.now();
      const cpu = m.stop();
      const seconds = (end - start) / 1000;
      return {
        workload: "fan-out",
        target: "peer",
        variant: `fanout exchange, 3 quorum queues`,
        messages: delivered,
        requests: published.ops,
        errors: published.errors,
        seconds: round(seconds, 3),
        msgsPerSec: round(delivered / seconds, 1),
        mbPerSec: round(delivered / seconds * s.size / 1e6, 2),
        cpuSeconds: cpu,
        extra: {
          published: published.messages,
          publishPerSec: round(published.messages / (published.elapsedMs / 1000), 1),
          delivered,
          complete: delivered >= expected,
          tailSeconds: round((end - publishEnd) / 1000, 2),
        },
      };
    } finally {
      await subs.close();
      await pubs.close();
      for (const q of queues) await this.#deleteQueue(q);
      await admin.deleteExchange(exchange);
    }
  }
}
