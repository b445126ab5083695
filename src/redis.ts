import { Redis } from "ioredis";
import { DATA_FORMAT, VERSION } from "./version.ts";

/**
 * Opens a Redis connection the way every part of a node wants it: commands fail fast while
 * Redis is unreachable (the API answers 503 instead of hanging), reconnection goes on in the
 * background, a lost connection is logged once rather than on every retry, and commands issued
 * in the same turn of the event loop leave in one write (auto-pipelining).
 */
export function connectRedis(
  url: string,
  name: string,
  opts: { lazy?: boolean; log?: (message: string) => void } = {},
): Redis {
  const log = opts.log ?? ((m: string) => console.error(m));
  const redis = new Redis(url, {
    connectionName: name,
    maxRetriesPerRequest: 2,
    // Socket writes through Deno's node:net are the largest native cost in a busy node's
    // profile: concurrent requests' scripts and a replica's batch then cost one write, in order.
    enableAutoPipelining: true,
    // Inside an auto-pipeline ioredis 6 loses the command name of callBuffer(), which snapshots
    // use for EVAL (binary replies): EVAL goes out directly. Scripts run by SHA still pipeline.
    autoPipeliningIgnoredCommands: ["EVAL", "eval"],
    lazyConnect: opts.lazy ?? false,
    retryStrategy: (times) => Math.min(times * 100, 2000),
  });
  let reported = false;
  redis.on("error", (err: Error) => {
    if (reported) return;
    reported = true;
    log(`redis ${name}: ${err.message} (retrying in the background)`);
  });
  redis.on("ready", () => {
    if (reported) log(`redis ${name}: connected again`);
    reported = false;
  });
  return redis;
}

/** A Redis holds momd data in a layout this build cannot read (a later DATA_FORMAT). */
export class DataFormatError extends Error {
  constructor(readonly store: string, readonly found: number) {
    super(
      `${store} holds momd data format ${found}; this build (momd ${VERSION}) reads format ` +
        `${DATA_FORMAT} and earlier: run a momd that knows format ${found} ` +
        `(docs/operations.md, "Upgrades")`,
    );
    this.name = "DataFormatError";
  }
}

/** Throws DataFormatError when `found` is a format this build cannot read. */
export function checkDataFormat(found: number, store: string): void {
  if (!Number.isInteger(found) || found > DATA_FORMAT || found < 1) {
    throw new DataFormatError(store, found);
  }
}

const FORMAT_KEY = "momd:format";

// Records the format in an empty Redis; returns the one it holds.
const CLAIM_FORMAT_LUA = `
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
`;

/**
 * Records this build's data format in a central Redis (users, backups) that has none, and throws
 * DataFormatError when it holds a later one: the node then stops before reading anything.
 */
export async function claimDataFormat(redis: Redis, store: string): Promise<void> {
  const found = await redis.eval(CLAIM_FORMAT_LUA, 1, FORMAT_KEY, String(DATA_FORMAT));
  checkDataFormat(Number(found), store);
}

/**
 * Checks a Redis's data format before each use after a (re)connection: a Redis that was
 * unreachable when the node started, or that restarted from other files, is checked when it
 * answers again, before anything is written to it or read from it.
 */
export class DataFormatGuard {
  #verified = false;

  constructor(readonly redis: Redis, readonly store: string) {
    redis.on("close", () => this.#verified = false);
  }

  /** Resolves when the format is one this build reads; throws DataFormatError otherwise. */
  async verify(): Promise<void> {
    if (this.#verified) return;
    await claimDataFormat(this.redis, this.store);
    this.#verified = true;
  }
}
