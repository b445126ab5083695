/**
 * The store ceiling: the operations a queue needs, straight against one Redis with ioredis, one
 * connection per worker, the same concurrency and message size. A message is a field of a hash
 * (id → body) plus its id at the tail of a list, as in momd's data model, without the rest
 * (receipts, delivery counts, deadlines, counters, replication records).
 *
 * - send: HSET and RPUSH, one round trip each, or pipelined into one;
 * - send-batch: the same with 100 messages per command (HSET of 100 fields, RPUSH of 100 ids);
 * - drain-N: LPOP N ids, HMGET their bodies, HDEL them: three round trips per batch.
 */
import { Redis } from "ioredis";
import { runClosedLoop } from "../load.ts";
import { type Row, rowFromLoad } from "../row.ts";
import { messageBody, meter, type RunSettings } from "./common.ts";

const MSGS = "bench:msgs";
const READY = "bench:ready";

/** A pool of connections to the store ceiling's Redis, one per worker. */
export class StoreCeiling {
  readonly #url: string;
  readonly #pid: number;
  #clients: Redis[] = [];

  constructor(url: string, pid: number) {
    this.#url = url;
    this.#pid = pid;
  }

  async #connect(n: number): Promise<Redis[]> {
    while (this.#clients.length < n) {
      const r = new Redis(this.#url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await r.connect();
      this.#clients.push(r);
    }
    return this.#clients.slice(0, n);
  }

  /** Closes every connection. */
  close(): void {
    for (const r of this.#clients) r.disconnect();
    this.#clients = [];
  }

  async #reset(): Promise<void> {
    const [r] = await this.#connect(1);
    await r.del(MSGS, READY);
  }

  /** send (batch 1) or send-batch (batch 100), pipelined or one round trip per command. */
  async send(batch: number, pipelined: boolean, settings: RunSettings): Promise<Row> {
    await this.#reset();
    const clients = await this.#connect(settings.concurrency);
    const body = messageBody(settings.size);
    const next = new Array(settings.concurrency).fill(0);
    const m = meter({ redis: [this.#pid] });
    const result = await runClosedLoop({
      concurrency: settings.concurrency,
      durationMs: settings.durationMs,
      warmupMs: settings.warmupMs,
    }, async (w) => {
      const r = clients[w];
      const fields: string[] = [];
      const ids: string[] = [];
      for (let i = 0; i < batch; i++) {
        const id = `${w}.${(next[w]++).toString(36)}`;
        fields.push(id, body);
        ids.push(id);
      }
      if (pipelined) {
        await r.pipeline().hset(MSGS, ...fields).rpush(READY, ...ids).exec();
      } else {
        await r.hset(MSGS, ...fields);
        await r.rpush(READY, ...ids);
      }
      return batch;
    });
    const cpu = m.stop();
    await this.#reset();
    const row = rowFromLoad(
      {
        workload: batch === 1 ? "send" : "send-batch",
        target: "store-ceiling",
        size: settings.size,
        variant: pipelined ? "HSET+RPUSH pipelined" : "HSET, RPUSH: 2 round trips",
      },
      result,
      cpu,
    );
    row.requests = pipelined ? result.ops : result.ops * 2;
    return row;
  }

  /** drain-N over `count` preloaded messages. */
  async drain(batch: number, count: number, settings: RunSettings): Promise<Row> {
    await this.#reset();
    const clients = await this.#connect(settings.concurrency);
    const body = messageBody(settings.size);
    const [loader] = clients;
    for (let done = 0; done < count;) {
      const pipe = loader.pipeline();
      for (let k = 0; k < 10 && done < count; k++) {
        const n = Math.min(1000, count - done);
        const fields: string[] = [];
        const ids: string[] = [];
        for (let i = 0; i < n; i++) {
          fields.push(`p.${done + i}`, body);
          ids.push(`p.${done + i}`);
        }
        pipe.hset(MSGS, ...fields).rpush(READY, ...ids);
        done += n;
      }
      await pipe.exec();
    }
    const m = meter({ redis: [this.#pid] });
    const result = await runClosedLoop({
      concurrency: settings.concurrency,
      durationMs: settings.durationMs,
    }, async (w) => {
      const r = clients[w];
      const ids = await r.lpop(READY, batch);
      if (!ids || ids.length === 0) return "empty";
      await r.hmget(MSGS, ...ids);
      await r.hdel(MSGS, ...ids);
      return ids.length;
    });
    const cpu = m.stop();
    await this.#reset();
    const row = rowFromLoad(
      {
        workload: batch === 10 ? "drain-10" : "drain-100",
        target: "store-ceiling",
        size: settings.size,
        variant: "LPOP, HMGET, HDEL: 3 round trips",
      },
      result,
      cpu,
      { preloaded: count, emptied: result.drained },
    );
    row.requests = result.ops * 3;
    return row;
  }
}
