/**
 * The node's Prometheus metrics (prom-client, on a registry of the node's own: two nodes in one
 * process, as in tests, do not share counters).
 *
 * Two kinds:
 * - **events**, counted where they happen: requests, messages sent, received, acked, nacked and
 *   redelivered, forwards, ownership changes, rate-limit refusals. An increment costs ~0.1 µs
 *   (a histogram observation ~0.4 µs), so the hot path keeps them;
 * - **state**, read when Prometheus scrapes (`sources`): queue and subscription depths, replication
 *   lag, in-sync sets, epochs, the backup's recovery point, ZooKeeper, Redis memory. A scrape
 *   costs one stats script per entity this node owns; nothing of it runs between scrapes.
 *
 * Counters of an entity are kept by the node that owns it when the event happens, so after a
 * take-over the entity's series continues on the new owner (Prometheus' rate() copes with a
 * series that starts or stops; `sum by (queue)` across nodes is the entity's rate).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { BUILD, DATA_FORMAT, VERSION } from "../version.ts";
import { MESSAGE_EVENTS, type MessageCounters } from "../broker/events.ts";
import type { ClusterEvent } from "../log/logger.ts";
import type { EntityRef } from "../broker/keys.ts";

/** Depth of one queue as its owner holds it. */
export interface QueueGauges {
  queue: string;
  ready: number;
  delayed: number;
  inFlight: number;
  dead: number;
  oldestAgeSeconds: number | null;
  /** Totals the queue keeps in its store (they follow the queue from owner to owner). */
  expired: number;
  deadLettered: number;
}

/** Depth of one subscription as its topic's owner holds it. */
export interface SubscriptionGauges {
  topic: string;
  subscription: string;
  backlog: number;
  inFlight: number;
  pendingRedelivery: number;
  dead: number;
}

/** One replica of one owned entity, as the owner's shipper sees it. */
export interface ReplicaGauges {
  entity: string;
  replica: string;
  /** Records shipped and not yet acknowledged. */
  lag: number;
  inSync: boolean;
}

/** One entity this node owns. */
export interface OwnedGauges {
  entity: string;
  epoch: number;
  replicas: number;
  inSync: number;
}

/** State read at scrape time; each part is absent where it does not apply (a single node). */
export interface MetricSources {
  entities?: () => Promise<{ queues: QueueGauges[]; subscriptions: SubscriptionGauges[] }>;
  owned?: () => OwnedGauges[];
  replicas?: () => ReplicaGauges[];
  /** Owned entities under-replicated, and entities this node replicates but is not in sync on. */
  replication?: () => { underReplicated: number; catchingUp: number };
  backup?: () => { recoveryPoint: number | null; pendingRecords: number; pendingEntities: number };
  zookeeper?: () => boolean;
  memory?: () => { usedBytes: number; maxBytes: number | null } | undefined;
}

/** prom-client's /proc-based process gauges (see #processMemory). */
const PROC_GAUGES = [
  "process_resident_memory_bytes",
  "process_virtual_memory_bytes",
  "process_heap_bytes",
  "process_open_fds",
];

const NO_ENTITIES = { queues: [], subscriptions: [] };

const LATENCY_BUCKETS = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
];

/** Cluster events counted as ownership changes, by the `change` label they get. */
const OWNERSHIP_CHANGES: Partial<Record<ClusterEvent["event"], string>> = {
  take_over: "take_over",
  hand_over: "hand_over",
  resign: "resign",
  fenced: "fenced",
  store_lost: "store_lost",
};

/** Every metric of a node. */
export class Metrics {
  readonly registry = new Registry();

  readonly httpRequests: Counter<"method" | "route" | "status">;
  readonly httpDuration: Histogram<"method" | "route">;
  readonly queueEvents: Counter<"queue" | "event">;
  readonly topicPublished: Counter<"topic">;
  readonly subscriptionEvents: Counter<"topic" | "subscription" | "event">;
  readonly forwards: Counter<"outcome">;
  readonly forwardDuration: Histogram<never>;
  readonly ownershipChanges: Counter<"change">;
  readonly rateLimited: Counter<"kind">;

  #sources: MetricSources = {};
  /** The owned entities' stats, read once per scrape and shared by the gauges of entities. */
  #scrape?: ReturnType<NonNullable<MetricSources["entities"]>>;

  /**
   * `cluster`: whether the node runs in a cluster; a single node has no ZooKeeper session,
   * ownership or replication to report, and reports none rather than zeros.
   */
  constructor(opts: { nodeId: string; cluster: boolean; defaultMetrics?: boolean }) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ node: opts.nodeId });
    if (opts.defaultMetrics !== false) {
      collectDefaultMetrics({ register: this.registry, prefix: "momd_" });
      this.#processMemory(registers);
    }
    new Gauge({
      name: "momd_build_info",
      help: "Always 1; the labels name the version, build and data format this node runs",
      labelNames: ["version", "build", "data_format"],
      registers,
    }).set({ version: VERSION, build: BUILD.commit, data_format: String(DATA_FORMAT) }, 1);

    this.httpRequests = new Counter({
      name: "momd_http_requests_total",
      help: "HTTP requests answered by this node, by route pattern and status",
      labelNames: ["method", "route", "status"],
      registers,
    });
    this.httpDuration = new Histogram({
      name: "momd_http_request_duration_seconds",
      help: "Time to answer an HTTP request, long polls included, by route pattern",
      labelNames: ["method", "route"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.queueEvents = new Counter({
      name: "momd_queue_messages_total",
      help: "Queue message events at the owner: sent, received, acked, nacked, redelivered",
      labelNames: ["queue", "event"],
      registers,
    });
    this.topicPublished = new Counter({
      name: "momd_topic_published_total",
      help: "Messages published to a topic at its owner",
      labelNames: ["topic"],
      registers,
    });
    this.subscriptionEvents = new Counter({
      name: "momd_subscription_messages_total",
      help:
        "Subscription message events at the topic's owner: received, acked, nacked, redelivered",
      labelNames: ["topic", "subscription", "event"],
      registers,
    });
    this.forwards = new Counter({
      name: "momd_forwards_total",
      help: "Requests this node forwarded to an entity's owner, by outcome",
      labelNames: ["outcome"],
      registers,
    });
    this.forwardDuration = new Histogram({
      name: "momd_forward_duration_seconds",
      help: "Time from forwarding a request to the owner's answer",
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.ownershipChanges = new Counter({
      name: "momd_ownership_changes_total",
      help: "Entities this node took over, was handed, handed over or gave up (fenced, store lost)",
      labelNames: ["change"],
      registers,
    });
    this.rateLimited = new Counter({
      name: "momd_rate_limited_total",
      help: "Requests refused with 429: request rate per user, or login failures",
      labelNames: ["kind"],
      registers,
    });
    this.#stateGauges(registers, opts.cluster);
  }

  /** Counts a cluster event that changes what this node owns. */
  clusterEvent(e: ClusterEvent): void {
    const change = OWNERSHIP_CHANGES[e.event];
    if (change) this.ownershipChanges.labels(change).inc();
  }

  /**
   * An entity this node no longer owns (moved away or deleted) loses its message series here:
   * its new owner counts from now on, and a series left behind would stay flat until a restart.
   */
  released(entity: EntityRef): void {
    this.messageCounters().forget(
      entity.type === "queue" ? { queue: entity.name } : { topic: entity.name },
    );
  }

  #counters?: MessageCounters;

  /** The broker's message events, counted here (src/broker/events.ts); one set per node. */
  messageCounters(): MessageCounters {
    return this.#counters ??= this.#newCounters();
  }

  #newCounters(): MessageCounters {
    // The subscriptions counted per topic, so a deleted topic's series can all be dropped.
    const subsOf = new Map<string, Set<string>>();
    const dropSub = (topic: string, subscription: string) => {
      for (const event of MESSAGE_EVENTS) {
        this.subscriptionEvents.remove({ topic, subscription, event });
      }
    };
    return {
      queue: (queue, event, n) => this.queueEvents.labels(queue, event).inc(n),
      published: (topic, n) => this.topicPublished.labels(topic).inc(n),
      subscription: (topic, subscription, event, n) => {
        let subs = subsOf.get(topic);
        if (!subs) subsOf.set(topic, subs = new Set());
        subs.add(subscription);
        this.subscriptionEvents.labels(topic, subscription, event).inc(n);
      },
      forget: (entity) => {
        if ("queue" in entity) {
          for (const event of MESSAGE_EVENTS) this.queueEvents.remove(entity.queue, event);
          return;
        }
        const subs = subsOf.get(entity.topic);
        if (entity.subscription !== undefined) {
          dropSub(entity.topic, entity.subscription);
          subs?.delete(entity.subscription);
          return;
        }
        this.topicPublished.remove(entity.topic);
        for (const sub of subs ?? []) dropSub(entity.topic, sub);
        subsOf.delete(entity.topic);
      },
    };
  }

  /** Where the state metrics come from (set once the node's parts exist). */
  setSources(sources: MetricSources): void {
    this.#sources = sources;
  }

  /** The Prometheus text exposition of every metric. */
  async render(): Promise<string> {
    const scrape = this.#sources.entities?.();
    this.#scrape = scrape;
    try {
      return await this.registry.metrics();
    } finally {
      if (this.#scrape === scrape) this.#scrape = undefined;
    }
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * prom-client reads the process's memory and file descriptors from /proc through node:fs,
   * which under Deno reads /proc files as empty (they report a size of 0): its gauges would
   * say 0. These take their place, from Deno's own calls.
   */
  #processMemory(registers: Registry[]): void {
    for (const name of PROC_GAUGES) this.registry.removeSingleMetric(`momd_${name}`);
    new Gauge({
      name: "momd_process_resident_memory_bytes",
      help: "Resident memory size in bytes",
      registers,
      collect() {
        this.set(Deno.memoryUsage().rss);
      },
    });
    new Gauge({
      name: "momd_process_open_fds",
      help: "Number of open file descriptors",
      registers,
      collect() {
        try {
          let n = 0;
          for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
          this.set(n);
        } catch {
          // Not Linux, or /proc not readable: no sample.
        }
      },
    });
  }

  #stateGauges(registers: Registry[], cluster: boolean): void {
    const sources = () => this.#sources;
    const readEntities = () => this.#scrape ?? Promise.resolve(NO_ENTITIES);
    new Gauge({
      name: "momd_queue_messages",
      help: "Messages in a queue this node owns, by state (ready, delayed, inflight, dead)",
      labelNames: ["queue", "state"],
      registers,
      async collect() {
        this.reset();
        for (const q of (await readEntities()).queues) {
          this.set({ queue: q.queue, state: "ready" }, q.ready);
          this.set({ queue: q.queue, state: "delayed" }, q.delayed);
          this.set({ queue: q.queue, state: "inflight" }, q.inFlight);
          this.set({ queue: q.queue, state: "dead" }, q.dead);
        }
      },
    });
    new Gauge({
      name: "momd_queue_oldest_message_age_seconds",
      help: "Age of the oldest message waiting in a queue (0 when empty)",
      labelNames: ["queue"],
      registers,
      async collect() {
        this.reset();
        for (const q of (await readEntities()).queues) {
          this.set({ queue: q.queue }, q.oldestAgeSeconds ?? 0);
        }
      },
    });
    new Counter({
      name: "momd_queue_expired_total",
      help: "Messages of a queue dropped at the end of their time to live (kept in the store)",
      labelNames: ["queue"],
      registers,
      async collect() {
        this.reset();
        for (const q of (await readEntities()).queues) this.inc({ queue: q.queue }, q.expired);
      },
    });
    new Counter({
      name: "momd_queue_dead_lettered_total",
      help: "Messages of a queue moved to its dead letters (kept in the store)",
      labelNames: ["queue"],
      registers,
      async collect() {
        this.reset();
        for (const q of (await readEntities()).queues) {
          this.inc({ queue: q.queue }, q.deadLettered);
        }
      },
    });
    new Gauge({
      name: "momd_subscription_messages",
      help: "Messages of a subscription by state (backlog, inflight, pending_redelivery, dead)",
      labelNames: ["topic", "subscription", "state"],
      registers,
      async collect() {
        this.reset();
        for (const s of (await readEntities()).subscriptions) {
          const l = { topic: s.topic, subscription: s.subscription };
          this.set({ ...l, state: "backlog" }, s.backlog);
          this.set({ ...l, state: "inflight" }, s.inFlight);
          this.set({ ...l, state: "pending_redelivery" }, s.pendingRedelivery);
          this.set({ ...l, state: "dead" }, s.dead);
        }
      },
    });
    if (cluster) {
      new Gauge({
        name: "momd_entities_owned",
        help: "Queues and topics this node owns",
        registers,
        collect() {
          const owned = sources().owned;
          if (owned) this.set(owned().length);
        },
      });
    }
    new Gauge({
      name: "momd_ownership_epoch",
      help: "The ownership epoch of each entity this node owns",
      labelNames: ["entity"],
      registers,
      collect() {
        this.reset();
        for (const e of sources().owned?.() ?? []) this.set({ entity: e.entity }, e.epoch);
      },
    });
    new Gauge({
      name: "momd_in_sync_replicas",
      help: "Replicas in an owned entity's in-sync set (every acknowledged change is on them)",
      labelNames: ["entity"],
      registers,
      collect() {
        this.reset();
        for (const e of sources().owned?.() ?? []) this.set({ entity: e.entity }, e.inSync);
      },
    });
    new Gauge({
      name: "momd_replicas",
      help: "Replicas assigned to an owned entity",
      labelNames: ["entity"],
      registers,
      collect() {
        this.reset();
        for (const e of sources().owned?.() ?? []) this.set({ entity: e.entity }, e.replicas);
      },
    });
    new Gauge({
      name: "momd_replication_lag_records",
      help: "Records shipped to a replica of an owned entity and not yet acknowledged",
      labelNames: ["entity", "replica"],
      registers,
      collect() {
        this.reset();
        for (const r of sources().replicas?.() ?? []) {
          this.set({ entity: r.entity, replica: r.replica }, r.lag);
        }
      },
    });
    if (cluster) {
      new Gauge({
        name: "momd_under_replicated_entities",
        help: "Owned entities with a live replica outside their in-sync set",
        registers,
        collect() {
          const r = sources().replication?.();
          if (r) this.set(r.underReplicated);
        },
      });
    }
    if (cluster) {
      new Gauge({
        name: "momd_catching_up_entities",
        help: "Entities this node replicates but is not in sync on yet",
        registers,
        collect() {
          const r = sources().replication?.();
          if (r) this.set(r.catchingUp);
        },
      });
    }
    new Gauge({
      name: "momd_backup_recovery_point_timestamp_seconds",
      help: "Start of the last backup pass that saved every owned entity (0: none yet)",
      registers,
      collect() {
        const b = sources().backup?.();
        if (b) this.set((b.recoveryPoint ?? 0) / 1000);
      },
    });
    new Gauge({
      name: "momd_backup_pending_records",
      help: "Store records not in the backup yet",
      registers,
      collect() {
        const b = sources().backup?.();
        if (b) this.set(b.pendingRecords);
      },
    });
    new Gauge({
      name: "momd_backup_pending_entities",
      help: "Owned entities with changes not in the backup yet",
      registers,
      collect() {
        const b = sources().backup?.();
        if (b) this.set(b.pendingEntities);
      },
    });
    if (cluster) {
      new Gauge({
        name: "momd_zookeeper_session_up",
        help: "1 while this node holds a live ZooKeeper session (its lease), else 0",
        registers,
        collect() {
          const zk = sources().zookeeper;
          if (zk) this.set(zk() ? 1 : 0);
        },
      });
    }
    new Gauge({
      name: "momd_redis_used_memory_bytes",
      help: "Memory the node's local Redis uses (as the memory alarm last sampled it)",
      registers,
      collect() {
        const m = sources().memory?.();
        if (m) this.set(m.usedBytes);
      },
    });
    new Gauge({
      name: "momd_redis_max_memory_bytes",
      help: "The local Redis's maxmemory (0: none)",
      registers,
      collect() {
        const m = sources().memory?.();
        if (m) this.set(m.maxBytes ?? 0);
      },
    });
  }
}
