import { Redis } from "ioredis";

/**
 * Opens a Redis connection the way every part of a node wants it: commands fail fast while
 * Redis is unreachable (the API answers 503 instead of hanging), reconnection goes on in the
 * background, and a lost connection is logged once rather than on every retry.
 */
export function connectRedis(url: string, name: string, opts: { lazy?: boolean } = {}): Redis {
  const redis = new Redis(url, {
    connectionName: name,
    maxRetriesPerRequest: 2,
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
