/**
 * The nemesis of tests/nemesis_test.ts: driven by a seeded PRNG, it injects one fault at a time
 * into a running cluster (tests/support/cluster.ts), holds it, heals it, waits a few seconds and
 * picks the next. Every fault acts on real processes (signals, a Redis killed or emptied or made
 * to refuse writes, requests straight to the nodes) and is logged with its start and end.
 *
 * The faults come from a shuffled deck: every enabled fault is played once before any repeats,
 * so a short run sees as many kinds as it has time for. Targets and durations come from the same
 * PRNG, so a seed names the schedule (the timing of the load around it is not reproducible).
 */
import { Redis } from "ioredis";
import type { Cluster } from "./cluster.ts";

/** Every fault the nemesis knows, by the name MOMD_NEMESIS_FAULTS uses. */
export const FAULT_KINDS = [
  "kill",
  "pause",
  "term",
  "zk-pause",
  "redis-kill",
  "redis-flush",
  "storm",
  "apply-error",
] as const;

/** One kind of fault. */
export type FaultKind = typeof FAULT_KINDS[number];

/** What each fault does, for the log and docs/nemesis.md. */
export const FAULT_DESCRIPTIONS: Record<FaultKind, string> = {
  "kill": "kill -9 of a node, restarted after 2-5 s",
  "pause": "SIGSTOP of a node for the session timeout + 1-3 s, then SIGCONT",
  "term": "SIGTERM of a node (graceful drain), restarted 1-3 s after its exit",
  "zk-pause": "SIGSTOP of ZooKeeper for 0.3-0.8 x the session timeout, then SIGCONT",
  "redis-kill": "kill -9 of a node's local Redis, restarted from its files after 1-3 s",
  "redis-flush": "FLUSHALL of a node's local Redis while the node runs",
  "storm": "creates, deletes and invalid creates of short-lived queues through three nodes",
  "apply-error": "a node's local Redis refuses writes (maxmemory below its use) for 1-2 s",
};

/**
 * The faults named by MOMD_NEMESIS_FAULTS: unset, empty or `all` for every fault, `none` for
 * none, else a comma list of FAULT_KINDS. Throws on an unknown name.
 */
export function parseFaults(spec: string | undefined): FaultKind[] {
  const text = (spec ?? "").trim();
  if (text === "" || text === "all") return [...FAULT_KINDS];
  if (text === "none") return [];
  const kinds: FaultKind[] = [];
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    if (!(FAULT_KINDS as readonly string[]).includes(part)) {
      throw new Error(
        `MOMD_NEMESIS_FAULTS: unknown fault '${part}' (known: ${FAULT_KINDS.join(", ")}, ` +
          `or all, none)`,
      );
    }
    if (!kinds.includes(part as FaultKind)) kinds.push(part as FaultKind);
  }
  return kinds;
}

// ---- the PRNG -----------------------------------------------------------------------------------

/** mulberry32: a tiny 32-bit PRNG, good enough to pick faults; returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seeded random source with the few helpers the suite needs. */
export class Rng {
  readonly #next: () => number;

  constructor(readonly seed: number) {
    this.#next = mulberry32(seed);
  }

  /** A float in [0, 1). */
  next(): number {
    return this.#next();
  }

  /** A float in [min, max). */
  between(min: number, max: number): number {
    return min + (max - min) * this.#next();
  }

  /** An integer in [min, max], both included. */
  int(min: number, max: number): number {
    return min + Math.floor((max - min + 1) * this.#next());
  }

  /** One element of a non-empty list. */
  pick<T>(list: readonly T[]): T {
    return list[Math.floor(list.length * this.#next())];
  }

  /** A shuffled copy (Fisher-Yates). */
  shuffle<T>(list: readonly T[]): T[] {
    const out = [...list];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor((i + 1) * this.#next());
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }

  /** A new independent source derived from this seed and `stream` (one per worker). */
  derive(stream: number): Rng {
    return new Rng((Math.imul(this.seed ^ 0x9e3779b9, 0x85ebca6b) + stream * 0x27d4eb2f) >>> 0);
  }
}

/** A random 32-bit seed, for runs that do not name one. */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

// ---- faults -------------------------------------------------------------------------------------

/** One fault as it happened (times are client clock, ms). */
export interface FaultRecord {
  kind: FaultKind;
  /** The node (or `zookeeper`, or the storm's three nodes). */
  target: string;
  startedAt: number;
  /** When the heal finished; undefined while the fault is on. */
  healedAt?: number;
  /** What was done and seen, e.g. `held 3412 ms`, `exited with code 0 after 812 ms`. */
  notes: string[];
  /** The fault could not be injected or healed: a harness or a broker failure, reported. */
  error?: string;
  /** `term` only: the node's exit code (0: drained and stopped cleanly). */
  exitCode?: number;
}

/** What the storm did, for the figures. */
export interface StormStats {
  /** `create 201`, `delete 204`, `invalid 400`, `delete error` ... -> count. */
  statuses: Map<string, number>;
  /** Invalid creates answered anything but 4xx (they must be refused). */
  invalidNotRefused: string[];
  /** Names created by storms (valid creates, whatever they answered). */
  created: Set<string>;
  /** Names of invalid creates (they must never exist). */
  invalid: Set<string>;
  /** Storm queues still there after the storm's own clean-up (deleted through NGINX). */
  leftovers: string[];
}

/** Options of a Nemesis. */
export interface NemesisOptions {
  /** The faults to play; none: the nemesis does nothing. */
  faults: readonly FaultKind[];
  rng: Rng;
  /** The nodes' ZooKeeper session timeout (pauses are sized from it). */
  sessionTimeoutMs: number;
  /** Token of the user that creates and deletes the storm's queues. */
  stormToken: string;
  /** Prefix of the storm's queue names (never one of the load's queues). */
  stormPrefix: string;
  /** Where log lines go (default console.log). */
  log?: (line: string) => void;
  /** Time zero of the log (default: now). */
  t0?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs faults, one at a time, until stopped; then heals whatever is still broken. */
export class Nemesis {
  readonly faults: FaultRecord[] = [];
  readonly storm: StormStats = {
    statuses: new Map(),
    invalidNotRefused: [],
    created: new Set(),
    invalid: new Set(),
    leftovers: [],
  };
  readonly #c: Cluster;
  readonly #o: NemesisOptions;
  readonly #rng: Rng;
  readonly #log: (line: string) => void;
  readonly #t0: number;
  #deck: FaultKind[] = [];
  #running?: Promise<void>;
  #stopping = false;
  #wake?: () => void;
  /** Nodes SIGSTOPped now. */
  readonly #paused = new Set<string>();
  #zkPaused = false;
  /** Redis servers with a lowered maxmemory -> the settings to restore. */
  readonly #limited = new Map<string, { maxmemory: string; policy: string }>();
  #stormCount = 0;

  constructor(cluster: Cluster, opts: NemesisOptions) {
    this.#c = cluster;
    this.#o = opts;
    this.#rng = opts.rng;
    this.#log = opts.log ?? ((line) => console.log(line));
    this.#t0 = opts.t0 ?? Date.now();
  }

  /** Seconds since time zero, for the log: `+12.3s`. */
  at(ms: number): string {
    return `+${((ms - this.#t0) / 1000).toFixed(1)}s`;
  }

  /** Starts playing faults after `quietMs` (the load warms up first). */
  start(quietMs: number): void {
    if (this.#o.faults.length === 0) return;
    this.#running = this.#loop(quietMs);
  }

  /** Starts no new fault; resolves when the current one is healed. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    await this.#running;
  }

  async #pause(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#wake = undefined;
  }

  async #loop(quietMs: number): Promise<void> {
    await this.#pause(quietMs);
    while (!this.#stopping) {
      if (this.#deck.length === 0) this.#deck = this.#rng.shuffle(this.#o.faults);
      const kind = this.#deck.shift()!;
      const record: FaultRecord = { kind, target: "", startedAt: Date.now(), notes: [] };
      this.faults.push(record);
      try {
        await this.#play(kind, record);
      } catch (err) {
        record.error = (err as Error).message.split("\n")[0];
      }
      record.healedAt = Date.now();
      this.#log(
        `nemesis ${this.at(record.healedAt)}: healed ${kind} ${record.target}` +
          ` (${record.notes.join("; ")})${record.error ? ` ERROR ${record.error}` : ""}`,
      );
      if (record.error) {
        // A fault that could not be healed leaves the cluster in an unknown state: stop here,
        // the final heal and the checks report it.
        this.#log(`nemesis: stopping after a failed fault`);
        return;
      }
      await this.#pause(this.#rng.between(3000, 6000));
    }
  }

  #begin(record: FaultRecord, target: string, what: string): void {
    record.target = target;
    record.startedAt = Date.now();
    this.#log(`nemesis ${this.at(record.startedAt)}: ${record.kind} ${target}: ${what}`);
  }

  /** Nodes whose process runs (a fault picks one of them). */
  #liveNodes(): string[] {
    return this.#c.nodeIds.filter((id) => this.#c.isRunning(id));
  }

  async #play(kind: FaultKind, r: FaultRecord): Promise<void> {
    const c = this.#c;
    const rng = this.#rng;
    const session = this.#o.sessionTimeoutMs;
    switch (kind) {
      case "kill": {
        const node = rng.pick(this.#liveNodes());
        const hold = Math.round(rng.between(2000, 5000));
        this.#begin(r, node, `kill -9, restart after ${hold} ms`);
        await c.kill(node, "SIGKILL");
        await sleep(hold);
        await this.#restartNode(node, r);
        return;
      }
      case "pause": {
        const node = rng.pick(this.#liveNodes());
        const hold = Math.round(session + rng.between(1000, 3000));
        this.#begin(r, node, `SIGSTOP for ${hold} ms`);
        this.#paused.add(node);
        await c.kill(node, "SIGSTOP");
        await sleep(hold);
        await c.kill(node, "SIGCONT");
        this.#paused.delete(node);
        r.notes.push(`paused ${Date.now() - r.startedAt} ms`);
        return;
      }
      case "term": {
        const node = rng.pick(this.#liveNodes());
        const hold = Math.round(rng.between(1000, 3000));
        this.#begin(r, node, `SIGTERM, restart ${hold} ms after its exit`);
        await c.kill(node, "SIGTERM");
        const exit = c.exitStatus(node);
        r.exitCode = exit?.code;
        const how = exit?.signal === "SIGKILL"
          ? "killed (no exit within 20 s)"
          : exit?.signal
          ? `by signal ${exit.signal}`
          : `with code ${exit?.code}`;
        r.notes.push(`exited after ${Date.now() - r.startedAt} ms ${how}`);
        await sleep(hold);
        await this.#restartNode(node, r);
        return;
      }
      case "zk-pause": {
        const hold = Math.round(session * rng.between(0.3, 0.8));
        this.#begin(r, "zookeeper", `SIGSTOP for ${hold} ms`);
        this.#zkPaused = true;
        c.signalZooKeeper("SIGSTOP");
        await sleep(hold);
        c.signalZooKeeper("SIGCONT");
        this.#zkPaused = false;
        r.notes.push(`paused ${Date.now() - r.startedAt} ms`);
        return;
      }
      case "redis-kill": {
        const node = rng.pick(c.nodeIds);
        const hold = Math.round(rng.between(1000, 3000));
        this.#begin(r, node, `kill -9 of its local Redis, restart after ${hold} ms`);
        await c.stopRedis(node, "SIGKILL");
        await sleep(hold);
        const t = Date.now();
        await c.startRedis(node);
        r.notes.push(`Redis down ${Date.now() - r.startedAt} ms (start took ${Date.now() - t} ms)`);
        return;
      }
      case "redis-flush": {
        const node = rng.pick(c.nodeIds);
        this.#begin(r, node, "FLUSHALL of its local Redis");
        await withRedis(c.redisUrl(node), async (redis) => {
          const keys = await redis.dbsize();
          await redis.flushall();
          r.notes.push(`${keys} keys dropped`);
        });
        return;
      }
      case "storm": {
        const [creator, deleter, invalid] = rng.shuffle(c.nodeIds);
        const hold = Math.round(rng.between(3000, 6000));
        this.#begin(
          r,
          `${creator},${deleter},${invalid}`,
          `for ${hold} ms: creates via ${creator}, deletes via ${deleter}, invalid creates via ` +
            invalid,
        );
        await this.#storm({ creator, deleter, invalid }, hold, r);
        return;
      }
      case "apply-error": {
        const node = rng.pick(c.nodeIds);
        // The node's own entities cannot be written meanwhile, and a refused send is retried
        // after its Retry-After (1 s): at most 2 s keeps that within the bound on time without
        // a successful send, so a longer gap is the broker's (e.g. replication not resuming).
        const hold = Math.round(rng.between(1000, 2000));
        this.#begin(r, node, `its local Redis refuses writes for ${hold} ms`);
        await withRedis(c.redisUrl(node), async (redis) => {
          const [, maxmemory] = await redis.config("GET", "maxmemory") as string[];
          const [, policy] = await redis.config("GET", "maxmemory-policy") as string[];
          const used = Number((await redis.info("memory")).match(/used_memory:(\d+)/)?.[1]);
          // Half of what it uses: noeviction then refuses every write (scripts fail with OOM).
          const limit = Math.max(1024, Math.floor(used / 2));
          this.#limited.set(node, { maxmemory, policy });
          await redis.config("SET", "maxmemory-policy", "noeviction");
          await redis.config("SET", "maxmemory", String(limit));
          r.notes.push(`maxmemory ${limit} (used ${used})`);
          await sleep(hold);
          await redis.config("SET", "maxmemory", maxmemory);
          await redis.config("SET", "maxmemory-policy", policy);
          this.#limited.delete(node);
        });
        return;
      }
    }
  }

  async #restartNode(node: string, r: FaultRecord): Promise<void> {
    const t = Date.now();
    await this.#c.start(node);
    r.notes.push(`down ${t - r.startedAt} ms, ready ${Date.now() - t} ms after its start`);
  }

  /**
   * Short-lived queues created through one node's own address, deleted through another's, and
   * invalid creates (which must be refused) through a third, for `holdMs`; then whatever the
   * storm left is deleted through NGINX.
   */
  async #storm(
    via: { creator: string; deleter: string; invalid: string },
    holdMs: number,
    r: FaultRecord,
  ): Promise<void> {
    const c = this.#c;
    const s = this.storm;
    const tag = `${this.#o.stormPrefix}${++this.#stormCount}`;
    const until = Date.now() + holdMs;
    const count = (key: string) => s.statuses.set(key, (s.statuses.get(key) ?? 0) + 1);
    const call = async (
      what: string,
      method: string,
      path: string,
      base: string,
      body?: unknown,
    ) => {
      try {
        const res = await c.call(method, path, {
          base,
          body,
          token: this.#o.stormToken,
          timeoutMs: 10_000,
        });
        count(`${what} ${res.status}`);
        return res;
      } catch {
        count(`${what} error`);
        return undefined;
      }
    };
    const open = new Set<string>();
    let n = 0;
    const createDelete = async () => {
      while (Date.now() < until) {
        const name = `${tag}-${n++}`;
        s.created.add(name);
        open.add(name);
        await call("create", "PUT", `/v1/queues/${name}`, c.nodeUrl(via.creator), {
          visibilityTimeoutSeconds: 5,
        });
        const del = await call("delete", "DELETE", `/v1/queues/${name}`, c.nodeUrl(via.deleter));
        if (del?.status === 204 || del?.status === 404) open.delete(name);
      }
    };
    const invalidCreates = async () => {
      let i = 0;
      while (Date.now() < until) {
        const name = `${tag}-bad-${i++}`;
        s.invalid.add(name);
        const res = await call("invalid", "PUT", `/v1/queues/${name}`, c.nodeUrl(via.invalid), {
          maxLength: -1,
        });
        if (res && (res.status < 400 || res.status >= 500 || res.status === 429)) {
          s.invalidNotRefused.push(`${name} via ${via.invalid}: ${res.status}`);
        }
      }
    };
    await Promise.all([createDelete(), createDelete(), invalidCreates()]);
    r.notes.push(`${n} creates`);
    // Clean-up through NGINX: a storm queue that stays would be a leftover of the broker's.
    const cleanupUntil = Date.now() + 15_000;
    for (const name of open) {
      while (Date.now() < cleanupUntil) {
        const res = await call("cleanup", "DELETE", `/v1/queues/${name}`, c.url);
        if (res?.status === 204 || res?.status === 404) {
          open.delete(name);
          break;
        }
        await sleep(300);
      }
    }
    if (open.size > 0) {
      s.leftovers.push(...open);
      r.notes.push(`could not delete ${[...open].join(", ")}`);
    }
  }

  /**
   * Heals whatever may still be broken (after stop(), or after a fault that failed): resumes
   * paused processes, restores Redis settings, starts stopped Redis servers and nodes. Returns
   * what it did, or what failed.
   */
  async healAll(): Promise<string[]> {
    const c = this.#c;
    const done: string[] = [];
    const attempt = async (what: string, fn: () => Promise<void> | void) => {
      try {
        await fn();
        done.push(what);
      } catch (err) {
        done.push(`${what} FAILED: ${(err as Error).message.split("\n")[0]}`);
      }
    };
    if (this.#zkPaused) {
      await attempt("SIGCONT zookeeper", () => c.signalZooKeeper("SIGCONT"));
      this.#zkPaused = false;
    }
    for (const node of [...this.#paused]) {
      await attempt(`SIGCONT ${node}`, () => c.kill(node, "SIGCONT"));
      this.#paused.delete(node);
    }
    for (const [node, old] of [...this.#limited]) {
      await attempt(
        `restore maxmemory of ${node}'s Redis`,
        () =>
          withRedis(c.redisUrl(node), async (redis) => {
            await redis.config("SET", "maxmemory", old.maxmemory);
            await redis.config("SET", "maxmemory-policy", old.policy);
          }),
      );
      this.#limited.delete(node);
    }
    for (const node of c.nodeIds) {
      if (!c.isRedisRunning(node)) await attempt(`start ${node}'s Redis`, () => c.startRedis(node));
    }
    for (const node of c.nodeIds) {
      if (!c.isRunning(node)) await attempt(`start ${node}`, () => c.start(node));
    }
    return done;
  }
}

/** Runs `fn` with a short-lived connection to a Redis (no retries: a fault must not hang). */
async function withRedis<T>(url: string, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(`${url}/0`, {
    maxRetriesPerRequest: 1,
    connectTimeout: 5_000,
    commandTimeout: 10_000,
    lazyConnect: true,
  });
  try {
    await redis.connect();
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}
