import type { Redis } from "ioredis";
import { type EntityRef, topicKeys } from "../../src/broker/keys.ts";
import { entityKeys } from "../../src/broker/store.ts";

/**
 * Every key of an entity with its content in a canonical form (sorted where Redis order is not
 * meaningful), so two Redis servers can be compared for the same logical state.
 */
export async function dumpEntity(
  redis: Redis,
  entity: EntityRef,
): Promise<Record<string, unknown>> {
  const keys = new Set(entityKeys(entity, ["", "", ""]));
  if (entity.type === "topic") {
    const t = topicKeys(entity.name);
    for (const sub of (await redis.hkeys(t.subs)).sort()) {
      for (const k of entityKeys(entity, ["", "", sub])) keys.add(k);
    }
  }
  const out: Record<string, unknown> = {};
  for (const key of [...keys].sort()) {
    const type = await redis.type(key);
    switch (type) {
      case "none":
        break;
      case "string":
        out[key] = await redis.get(key);
        break;
      case "hash":
        out[key] = Object.fromEntries(Object.entries(await redis.hgetall(key)).sort());
        break;
      case "list":
        out[key] = await redis.lrange(key, 0, -1);
        break;
      case "set":
        out[key] = (await redis.smembers(key)).sort();
        break;
      case "zset":
        out[key] = await redis.zrange(key, "0", "-1", "WITHSCORES");
        break;
      case "stream":
        out[key] = await redis.xrange(key, "-", "+");
        break;
      default:
        out[key] = `<${type}>`;
    }
  }
  return out;
}
