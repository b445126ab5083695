import { Redis } from "ioredis";

/**
 * Opens a Redis connection the way every part of a node wants it: commands fail fast while
 * Redis is unreachable (the API answers 503 instead of hanging), reconnection goes on in the
 * background, a lost connection is logged once rather than on every retry, and commands issued
 * in the same turn of the event loop leave in one write (auto-pipelining).
 */
export function connectRedis(url: string, name: string, opts: { lazy?: boolean } = {}): Redis {
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
    console.error(`redis ${name}: ${err.message} (retrying in the background)`);
  });
  redis.on("ready", () => {
    if (reported) console.error(`redis ${name}: connected again`);
    reported = false;
  });
  return redis;
}
