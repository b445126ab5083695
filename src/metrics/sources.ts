/**
 * Where a node's state metrics come from: its owned entities' stats, its replication, its backup,
 * ZooKeeper and Redis memory (read at scrape time; see metrics.ts).
 */
import type { Redis } from "ioredis";
import type { Config } from "../config/schema.ts";
import type { EntityRef } from "../broker/keys.ts";
import type { QueueService } from "../broker/queues.ts";
import type { TopicService } from "../broker/topics.ts";
import type { MemoryWatch } from "../broker/memory.ts";
import type { BackupSync } from "../backup/sync.ts";
import { registeredEntities } from "../backup/sync.ts";
import type { ClusterNode } from "../cluster/node.ts";
import type { MetricSources, QueueGauges, SubscriptionGauges } from "./metrics.ts";
import type { Principal } from "../auth/users.ts";

/** The scraper reads stats as an admin would (stats scripts check rights like any caller). */
const SCRAPER: Principal = { username: "momd-metrics", role: "admin" };

const key = (e: EntityRef) => `${e.type}/${e.name}`;

/** The sources of a node's state metrics. */
export function metricSources(parts: {
  config: Pick<Config, "nodeId">;
  cluster?: ClusterNode;
  local: Redis;
  queues: QueueService;
  topics: TopicService;
  backup: BackupSync;
  memory: MemoryWatch;
}): MetricSources {
  const { config, cluster, local, queues, topics, backup, memory } = parts;
  const ownedEntries = () =>
    cluster?.ownership.list().filter((e) => e.owner === config.nodeId) ?? [];
  const ownedRefs = async (): Promise<EntityRef[]> =>
    cluster ? ownedEntries().map((e) => e.entity) : await registeredEntities(local);

  return {
    // One stats script per owned entity, all sent at once (they pipeline on one connection).
    // An entity that moved or went away meanwhile is left out of this scrape.
    async entities() {
      // The store down: no entity gauges this scrape, but every other metric still answers.
      const refs = await ownedRefs().catch(() => []);
      const queueRows: QueueGauges[] = [];
      const subRows: SubscriptionGauges[] = [];
      await Promise.all(refs.map(async (ref) => {
        try {
          if (ref.type === "queue") {
            const q = await queues.get(SCRAPER, ref.name);
            queueRows.push({
              queue: ref.name,
              ready: q.stats.depth,
              delayed: q.stats.delayed,
              inFlight: q.stats.inFlight,
              dead: q.stats.deadLettered,
              oldestAgeSeconds: q.stats.oldestMessageAgeSeconds,
              expired: q.stats.totals.expired,
              deadLettered: q.stats.totals.deadLettered,
            });
          } else {
            for (const s of await topics.listSubscriptions(SCRAPER, ref.name)) {
              subRows.push({
                topic: ref.name,
                subscription: s.name,
                backlog: s.stats.lag,
                inFlight: s.stats.inFlight,
                pendingRedelivery: s.stats.pendingRedelivery,
                dead: s.stats.deadLettered,
              });
            }
          }
        } catch {
          // Moved, deleted or the store is down: the next scrape sees it where it is then.
        }
      }));
      return { queues: queueRows, subscriptions: subRows };
    },
    ...(cluster
      ? {
        owned: () =>
          ownedEntries().map((e) => ({
            entity: key(e.entity),
            epoch: e.epoch,
            replicas: e.replicas.length,
            inSync: e.isr.length,
          })),
        replicas: () => {
          const owned = new Map(ownedEntries().map((e) => [key(e.entity), e]));
          return cluster.shipper.lag().flatMap((l) => {
            const e = owned.get(key(l.entity));
            if (!e) return [];
            return [{
              entity: key(l.entity),
              replica: l.peer,
              lag: l.lag,
              inSync: e.isr.some((m) => m.node === l.peer),
            }];
          });
        },
        replication: () => {
          const h = cluster.replicationHealth();
          return { underReplicated: h.underReplicated.length, catchingUp: h.catchingUp.length };
        },
        zookeeper: () => cluster.zk.hasLease(),
      }
      : {}),
    backup: () => backup.progress(),
    memory: () => memory.status(),
  };
}
