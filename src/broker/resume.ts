/**
 * What a new owner does to an entity after a failover, before it serves it: deliveries in flight
 * get back the time the entity could not be reached (queue_resume.lua, topic_resume.lua), so a
 * consumer that could not ack during the failover acks afterwards with the same receipt, instead
 * of every delivery in flight coming back as a duplicate.
 */
import { type EntityRef, topicKeys } from "./keys.ts";
import type { Store } from "./store.ts";

/** The caller the scripts see for the node's own changes. */
const SYSTEM = ["momd", "admin"] as const;

/**
 * Extends the in-flight deadlines of `entity` by the time since it became unreachable: its last
 * change, or `unreachableSince` (ms) if that is later. Written with the new owner's `epoch`;
 * returns how many deliveries were extended.
 */
export async function resumeInFlight(
  store: Store,
  entity: EntityRef,
  opts: { epoch: number; unreachableSince: number },
): Promise<number> {
  const takeOver = { epoch: opts.epoch };
  const since = Math.floor(opts.unreachableSince);
  if (entity.type === "queue") {
    const r = await store.change<{ extended: number }>(entity, "queue_resume", [
      ...SYSTEM,
      "",
      since,
    ], { takeOver });
    return r.extended;
  }
  let extended = 0;
  for (const sub of (await store.redis.hkeys(topicKeys(entity.name).subs)).sort()) {
    const r = await store.change<{ extended: number }>(entity, "topic_resume", [
      ...SYSTEM,
      sub,
      since,
    ], { takeOver });
    extended += r.extended;
  }
  return extended;
}
