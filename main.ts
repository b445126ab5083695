import type { Redis } from "ioredis";
import { claimDataFormat, connectRedis, DataFormatError, DataFormatGuard } from "./src/redis.ts";
import { ConfigError, configHelp, loadConfig } from "./src/config/load.ts";
import type { Config } from "./src/config/schema.ts";
import { UserStore } from "./src/auth/users.ts";
import { TokenService, watchUserChanges } from "./src/auth/tokens.ts";
import { RedisRateLimiter } from "./src/auth/redis_rate_limiter.ts";
import { rateLimitOf } from "./src/auth/rate_limit.ts";
import { identifyStore, Store } from "./src/broker/store.ts";
import { StoreGuard } from "./src/broker/store_guard.ts";
import { MemoryWatch } from "./src/broker/memory.ts";
import { Notifier } from "./src/broker/notifier.ts";
import { QueueService } from "./src/broker/queues.ts";
import { TopicService } from "./src/broker/topics.ts";
import { RequestService } from "./src/broker/requests.ts";
import { localOnlySink } from "./src/replication/record.ts";
import { createApp } from "./src/api/app.ts";
import { StreamHub } from "./src/api/stream/mod.ts";
import { runCli } from "./src/cli/mod.ts";
import { ClusterNode } from "./src/cluster/node.ts";
import { clusterChecker, singleNodeChecker } from "./src/cluster/check.ts";
import { BackupSync, registeredEntities } from "./src/backup/sync.ts";
import { listBackups, restoreBeforeServing } from "./src/backup/restore.ts";
import type { EntityRef } from "./src/broker/keys.ts";
import { createLogger, logEvent, type Logger } from "./src/log/logger.ts";
import { Metrics } from "./src/metrics/metrics.ts";
import { metricSources } from "./src/metrics/sources.ts";
import { BUILD, VERSION } from "./src/version.ts";

/** A running node. */
export interface RunningNode {
  config: Config;
  log: Logger;
  url: string;
  /**
   * Drains the node: stops taking requests and finishes those in flight, hands what it owns to
   * in-sync replicas, then leaves the cluster. Connections stay open (a process that exits next
   * need not close them).
   */
  drain(): Promise<void>;
  /** Drains, then closes every connection. */
  stop(): Promise<void>;
}

async function ping(redis: Redis): Promise<boolean> {
  try {
    return (await redis.ping()) === "PONG";
  } catch {
    return false;
  }
}

/** Wires one node together from its configuration and starts serving. */
export async function startNode(
  config: Config,
  opts: { log?: Logger } = {},
): Promise<RunningNode> {
  const log = opts.log ?? createLogger({ nodeId: config.nodeId, level: config.logLevel });
  const metrics = config.metrics
    ? new Metrics({ nodeId: config.nodeId, cluster: !!config.zookeeper })
    : undefined;
  const warn = (m: string) => log.warn(m);
  const lazy = { lazy: true, log: warn };
  const local = connectRedis(config.localRedisUrl, `momd-${config.nodeId}-local`, lazy);
  const usersRedis = connectRedis(config.usersRedisUrl, `momd-${config.nodeId}-users`, lazy);
  const userEvents = connectRedis(config.usersRedisUrl, `momd-${config.nodeId}-events`, lazy);
  await Promise.all([local.connect(), usersRedis.connect(), userEvents.connect()]);
  // Every Redis's data format first: a node must not touch data it would misread.
  await identifyStore(local);
  await claimDataFormat(usersRedis, "MOMD_USERS_REDIS_URL (the users' Redis)");

  const users = new UserStore(usersRedis, {
    hashCost: config.passwordHashCost,
    hashConcurrency: config.passwordHashConcurrency,
  });
  const tokens = new TokenService(users, {
    secret: config.jwtSecret,
    ttlSeconds: config.tokenTtlSeconds,
  });
  await watchUserChanges(userEvents, tokens);
  const limiter = new RedisRateLimiter(usersRedis, {
    log,
    defaultLimit: rateLimitOf(config.rateLimitPerSecond, config.rateLimitBurst),
    maxDelayMs: config.rateLimitMaxDelayMs,
    loginFailuresPerMinute: config.loginFailuresPerMinute,
    loginFailuresPerAddressPerMinute: config.loginFailuresPerAddressPerMinute,
    loginFailuresClusterPerMinute: config.loginFailuresClusterPerMinute,
  });

  // In a cluster, ZooKeeper decides who writes what: the store writes with the ownership epoch
  // and ships every record to the entity's replicas before the change is acknowledged.
  // Not lazy: a backup Redis that is down must not stop the node.
  const backupRedis = connectRedis(config.backupRedisUrl, `momd-${config.nodeId}-backup`, {
    log: warn,
  });
  const backupFormat = new DataFormatGuard(
    backupRedis,
    "MOMD_BACKUP_REDIS_URL (the backup Redis)",
  );
  await backupFormat.verify().catch((err) => {
    if (err instanceof DataFormatError) throw err;
    // Unreachable: the node serves without backups until it is back (see above), and checks
    // the format before its first use then.
  });
  const cluster = config.zookeeper
    ? await ClusterNode.connect(config, local, {
      log,
      onEvent: (e) => metrics?.clusterEvent(e),
      onReleased: (e) => metrics?.released(e),
    })
    : undefined;
  const backup = new BackupSync({
    local,
    backup: backupRedis,
    owned: cluster
      ? () => cluster.ownership.list().filter((e) => e.owner === config.nodeId).map((e) => e.entity)
      : () => registeredEntities(local),
    epochOf: cluster ? (e) => cluster.epochOf(e) : () => 0,
    replicaSnapshot: cluster ? (e) => cluster.replicaSnapshot(e) : undefined,
    intervalMs: config.backupIntervalMs,
    verify: () => backupFormat.verify(),
    log: warn,
  });
  let guard: StoreGuard | undefined;
  // The memory alarm samples the store over the store's connection (see memory.ts).
  const memory = new MemoryWatch(local, {
    highWatermark: config.memoryHighWatermark,
    log: warn,
  });
  // What a restore from the backup did, as a cluster event.
  const restore = async (entity: EntityRef) => {
    try {
      await backupFormat.verify();
    } catch (err) {
      // Unreachable: restoreBeforeServing waits for it. A later format: never read.
      if (err instanceof DataFormatError) {
        log.error({ err }, `not restoring ${entity.type}/${entity.name} from the backup`);
        return undefined;
      }
    }
    return await restoreBeforeServing(local, backupRedis, store, entity, {
      log: warn,
      onRestored: (r) =>
        logEvent(log, {
          event: "backup_restore",
          entity: `${entity.type}/${entity.name}`,
          seq: r.backup?.seq ?? 0,
          epoch: r.backup?.epoch ?? 0,
        }, `restored ${entity.type}/${entity.name} from the backup (${r.replayed ?? 0} records)`),
    });
  };
  const store = await Store.open(local, {
    admitChange: (op, args) => memory.admit(op, args),
    sink: backup.recordSink(cluster?.sink ?? localOnlySink), // delete records drop backups
    epochOf: cluster ? (e) => cluster.epochOf(e) : undefined,
    onLost: () => cluster ? cluster.storeLost() : guard?.reportLost(),
    groupCommit: config.groupCommit,
  });
  // A single node owns everything: what its store lacks, only the backup holds.
  const restoreAll = async (when: string) => {
    try {
      for (const b of await listBackups(backupRedis)) await restore(b.entity);
    } catch (err) {
      log.warn({ err }, `backup: ${when} restore skipped`);
    }
  };
  if (!cluster) {
    await restoreAll("start-up");
    // The cluster watches its store itself (ClusterNode); a single node restores from the
    // backup when its store lost its data under it.
    guard = new StoreGuard({
      log,
      store,
      downAfterMs: config.storeDownMs,
      onLost: async () => {
        if (await store.currentIdentity() === store.incarnation) return;
        const previous = store.incarnation;
        const incarnation = await store.renew();
        logEvent(
          log,
          { event: "store_lost", previous, incarnation },
          "the local store lost its data; restoring from the backup",
        );
        await restoreAll("loss");
      },
      onDown: () => Promise.resolve(),
      onUp: () => Promise.resolve(),
    });
    guard.start();
  }
  await memory.start();
  const notifier = new Notifier();
  const counters = metrics?.messageCounters();
  const queues = new QueueService(store, notifier, {
    serves: cluster ? (name) => cluster.ownership.isWritable({ type: "queue", name }) : undefined,
    counters,
    log,
  });
  const requests = new RequestService(store, notifier);
  queues.startSweeper(); // expiry and redelivery also for queues nobody is receiving from
  const topics = new TopicService(store, notifier, { counters });
  metrics?.setSources(metricSources({ config, cluster, local, queues, topics, backup, memory }));

  if (await users.ensureAdmin(config.adminUsername, config.adminPassword)) {
    const generated = config.adminPasswordGenerated
      ? ` with the generated password '${config.adminPassword}' (development mode)`
      : "";
    log.info(`created admin '${config.adminUsername}'${generated}`);
  }

  const streams = new StreamHub();
  const app = createApp({
    config,
    users,
    tokens,
    limiter,
    queues,
    topics,
    requests,
    router: cluster,
    checker: cluster
      ? clusterChecker({ cluster, local, backup: backupRedis, config })
      : singleNodeChecker({ local, backup: backupRedis, config }),
    streams,
    log,
    metrics,
    recoveryPoint: () => backup.progress().recoveryPoint,
    memory: () => memory.status(),
    readiness: async () => ({
      localRedis: await ping(local),
      usersRedis: await ping(usersRedis),
      ...(cluster ? { zookeeper: cluster.zk.hasLease() } : {}),
    }),
  });
  await cluster?.serve(
    store,
    async (request, principal) => await app.fetch(request, { forwarded: { principal } }),
    // A new owner restores from the backup first when the backup is newer than its copy.
    { beforeServing: (e) => restore(e).then(() => {}) },
  );
  backup.start();

  const [hostname, port] = splitHostPort(config.httpListen);
  const server = Deno.serve({ hostname, port, onListen: () => {} }, app.fetch);
  const url = `http://${hostname}:${server.addr.port}`;
  log.info({ version: VERSION, build: BUILD.commit }, `momd node ${config.nodeId} serving ${url}`);

  let drained: Promise<void> | undefined;
  const drain = () =>
    drained ??= (async () => {
      // 1. No new requests (NGINX retries a refused connection on another node: it never
      //    reached this one); those in flight finish, long polls with what they find now.
      //    Streams close (1001: their clients connect to another node) and release the
      //    deliveries they hold while this node still serves them.
      const streamsDone = streams.close();
      const httpDone = server.shutdown();
      notifier.close();
      await httpDone;
      await streamsDone;
      // 2. A last backup pass, then every owned entity handed to an in-sync replica, while
      //    requests other nodes forward here are still served.
      await backup.flush().catch((err) => log.warn({ err }, "backup: final pass failed"));
      await backup.stop();
      await cluster?.handOverAll();
      // 3. Leave: the controller election and membership; forwarded requests finish.
      await cluster?.leave();
      await guard?.stop();
      await memory.stop();
      queues.close();
      await limiter.close();
    })();
  return {
    config,
    log,
    url,
    drain,
    async stop() {
      await drain();
      await cluster?.close();
      await Promise.allSettled([
        local.quit(),
        usersRedis.quit(),
        userEvents.quit(),
        backupRedis.quit(),
      ]);
    },
  };
}

function splitHostPort(value: string): [string, number] {
  const i = value.lastIndexOf(":");
  return [value.slice(0, i), Number(value.slice(i + 1))];
}

async function serve(args: string[]): Promise<void> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(`Usage: momd serve [settings]\n\n${configHelp()}`);
    return;
  }
  let config: Config;
  try {
    config = loadConfig(args, Deno.env.toObject());
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`momd: configuration error: ${err.message}`);
      Deno.exit(2);
    }
    throw err;
  }
  let node: RunningNode;
  try {
    node = await startNode(config);
  } catch (err) {
    if (err instanceof DataFormatError) {
      console.error(`momd: ${err.message}`);
      Deno.exit(2);
    }
    throw err;
  }
  let stopping = false;
  const onSignal = () => {
    if (stopping) Deno.exit(1); // second signal: stop at once
    stopping = true;
    node.log.info("draining and stopping (signal again to stop at once)");
    const force = setTimeout(() => Deno.exit(1), 15_000);
    // The process ends right after the drain: inter-node HTTP/2 sessions are not closed one by
    // one (closing them sends GOAWAY frames, on which Deno's HTTP/2 can abort the process:
    // denoland/deno#36788); peers see the connections drop and the node gone from ZooKeeper.
    node.drain().then(() => {
      clearTimeout(force);
      Deno.exit(0);
    }, (err) => {
      node.log.error({ err }, "draining failed");
      Deno.exit(1);
    });
  };
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.addSignalListener("SIGINT", onSignal);
}

if (import.meta.main) {
  // One binary: `momd serve` runs a node; every other command is the command line client.
  const [command, ...rest] = Deno.args;
  if (command === "serve") await serve(rest);
  else Deno.exit(await runCli(Deno.args));
}
