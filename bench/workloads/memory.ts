/**
 * `memory`: Redis bytes per stored message. Reads `INFO memory` of every node's local Redis,
 * sends N messages to a fresh queue (batches of 100), waits a moment, reads it again, and divides
 * the growth by N; then reads each node's resident memory from /proc, deletes the queue and
 * checks the memory comes back (once Redis has freed the UNLINKed keys in the background).
 */
import { Redis } from "ioredis";
import { round, type Row } from "../row.ts";
import { sleep } from "../../scripts/processes.ts";
import { residentMemory } from "../services.ts";
import {
  createQueue,
  deleteQueue,
  type HttpTarget,
  meter,
  preload,
  type RunSettings,
} from "./common.ts";

/** Where the memory workload looks. */
export interface MemorySources {
  /** Each node's local Redis. */
  redisUrls: string[];
  nodePids: number[];
}

async function usedMemory(
  urls: string[],
): Promise<{ used: number; rss: number; pendingFrees: number }[]> {
  return await Promise.all(urls.map(async (url) => {
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      const info = await redis.info("memory");
      const field = (name: string) => Number(info.match(new RegExp(`^${name}:(\\d+)`, "m"))?.[1]);
      return {
        used: field("used_memory"),
        rss: field("used_memory_rss"),
        pendingFrees: field("lazyfree_pending_objects") || 0,
      };
    } finally {
      redis.disconnect();
    }
  }));
}

/** Memory once no background free is pending (deletes UNLINK), waiting at most 30 s. */
async function settledMemory(urls: string[]): ReturnType<typeof usedMemory> {
  if (urls.length === 0) return [];
  let mem = await usedMemory(urls);
  for (let i = 0; i < 120 && mem.some((m) => m.pendingFrees > 0); i++) {
    await sleep(250);
    mem = await usedMemory(urls);
  }
  return mem;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** Runs the memory workload with `count` messages. */
export async function memoryWorkload(
  t: HttpTarget,
  count: number,
  sources: MemorySources,
  settings: RunSettings,
): Promise<Row> {
  const queue = `${settings.runId}-memory`;
  await createQueue(t.api, queue);
  let deleted = false;
  try {
    // Earlier workloads' deletes may still be freeing in the background.
    const before = await settledMemory(sources.redisUrls);
    const m = meter(t.groups);
    settings.log(`  storing ${count} messages in ${queue}`);
    const loaded = await preload(t.api, `/v1/queues/${queue}/messages`, count, settings);
    const cpu = m.stop();
    // Let the append-only file's buffer drain before reading.
    await sleep(1_500);
    const after = sources.redisUrls.length > 0 ? await usedMemory(sources.redisUrls) : [];
    const rss = sources.nodePids.map((pid) => residentMemory(pid));
    await deleteQueue(t.api, queue);
    deleted = true;
    // The delete UNLINKs: Redis frees the keys in the background. Wait for it (at most 30 s).
    const afterDelete = await settledMemory(sources.redisUrls);

    const extra: Row["extra"] = { messages: count };
    if (before.length > 0) {
      // Per copy: the Redis that grew most (the owner's; replicas hold the same). All copies:
      // the growth of every node's Redis together.
      const grownEach = after.map((a, i) => a.used - before[i].used);
      const grown = Math.max(...grownEach);
      const copies = grownEach.filter((g) => g >= grown / 2).length;
      extra.redisBytesPerMessage = round(grown / count, 1);
      extra.redisBytesPerMessageRatioToSize = round(grown / count / settings.size, 2);
      extra.copies = copies;
      extra.redisBytesPerMessageAllCopies = round(sum(grownEach) / count, 1);
      extra.redisUsedMB = round(sum(after.map((a) => a.used)) / 1e6, 1);
      extra.redisRssMB = round(sum(after.map((a) => a.rss)) / 1e6, 1);
      extra.redisMBLeftAfterDelete = round(
        (sum(afterDelete.map((a) => a.used)) - sum(before.map((b) => b.used))) / 1e6,
        2,
      );
    }
    rss.forEach((r, i) => {
      extra[`node${i + 1}RssMB`] = round(r.rss / 1e6, 1);
      extra[`node${i + 1}PeakRssMB`] = round(r.peak / 1e6, 1);
    });
    return {
      workload: "memory",
      target: t.target,
      variant: `${count} messages`,
      messages: count,
      requests: Math.ceil(count / 100),
      errors: loaded.errors,
      seconds: round(loaded.seconds, 3),
      msgsPerSec: round(count / loaded.seconds, 1),
      mbPerSec: round(count / loaded.seconds * settings.size / 1e6, 2),
      cpuSeconds: cpu,
      extra,
    };
  } finally {
    if (!deleted) await deleteQueue(t.api, queue);
  }
}
