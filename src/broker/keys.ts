/**
 * Every Redis key momd uses is built here. An entity's keys share one hash tag, so one Lua script
 * may touch all of them (and Redis Cluster would keep them on one shard).
 */

/** The two kinds of entity. */
export type EntityType = "queue" | "topic";

/** Which entity a state change or a key belongs to. */
export interface EntityRef {
  type: EntityType;
  name: string;
}

const PREFIX = "momd";

/** Names of queues, topics and subscriptions (the earlier API's rule, with a length cap). */
export const NAME_PATTERN = /^[a-zA-Z0-9_-]{1,128}$/;

function base(ref: EntityRef): string {
  return `${PREFIX}:${ref.type === "queue" ? "q" : "t"}:{${ref.name}}`;
}

/** Keys of one queue. Messages live in hashes keyed by id: no key per message. */
export function queueKeys(name: string) {
  const b = base({ type: "queue", name });
  return {
    meta: `${b}:meta`, // hash: config, owner, access, seq, epoch, counters
    ready: `${b}:ready`, // list of ids: next deliveries, FIFO; redeliveries go to the front
    delayed: `${b}:delayed`, // zset id -> visibleAt (ms)
    inflight: `${b}:inflight`, // zset id -> visibility deadline (ms)
    messages: `${b}:msgs`, // hash id -> encoded immutable message
    deliveries: `${b}:dc`, // hash id -> delivery count
    receipts: `${b}:rc`, // hash id -> receipt token of the current attempt
    dead: `${b}:dead`, // list of ids that reached max deliveries or expired in flight
    dedup: `${b}:dd`, // hash dedupId -> message id
    dedupExpiry: `${b}:ddx`, // zset dedupId -> end of the de-duplication window (ms)
    tasks: `${b}:tasks`, // hash taskId -> request/reply task (requester, deadline, result)
    taskExpiry: `${b}:taskx`, // zset taskId -> deadline (ms), for lazy clean-up
  };
}

/** Keys of one topic and of its subscriptions. */
export function topicKeys(name: string) {
  const b = base({ type: "topic", name });
  return {
    meta: `${b}:meta`, // hash: config, owner, access, seq, epoch, next offset, byte count
    log: `${b}:log`, // stream; entry id `<offset>-1`
    subs: `${b}:subs`, // hash sub -> encoded subscription config
    sub(sub: string) {
      const s = `${b}:s:${sub}`;
      return {
        state: `${s}:state`, // hash: position, counters
        redeliver: `${s}:redeliver`, // zset offset -> offset: released messages, served first
        inflight: `${s}:inflight`, // zset offset -> deadline (ms)
        deliveries: `${s}:dc`, // hash offset -> delivery count
        receipts: `${s}:rc`, // hash offset -> receipt token
        dead: `${s}:dead`, // list of encoded dead-lettered messages
      };
    },
  };
}

/** Registry of entity names held in this Redis, for listing with prefix and pagination. */
export function registryKey(type: EntityType): string {
  return `${PREFIX}:registry:${type}`;
}

/**
 * The local store's identity: a hash `{id, createdAt}` written when a node first opens an empty
 * Redis. Every script checks it exists, so a store that lost its data (FLUSHALL, a restart from
 * nothing) refuses to run anything until its node has noticed and taken a new id.
 */
export const STORE_KEY = `${PREFIX}:store`;

/** Keys in the central users Redis. */
export const userKeys = {
  user: (name: string) => `${PREFIX}:user:${name}`,
  index: `${PREFIX}:users`, // zset of names, for listing
  changes: `${PREFIX}:user-changes`, // pub/sub channel: token invalidation
  loginFailures: (username: string, client: string) => `${PREFIX}:login-fail:${username}:${client}`,
  addressLoginFailures: (client: string) => `${PREFIX}:login-fail-address:${client}`,
  clusterLoginFailures: `${PREFIX}:login-fail-cluster`,
  bucket: (user: string) => `${PREFIX}:rate-bucket:${user}`, // token bucket {t, at}
};
