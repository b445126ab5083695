import { z } from "zod";
import { isTrustedProxyEntry } from "./addresses.ts";

/** A TCP port's problem, if it is one: checked here so a bad port stops the node before it starts. */
function badPort(port: string): string | undefined {
  const n = Number(port);
  return Number.isInteger(n) && n >= 1 && n <= 65535
    ? undefined
    : `the port (${port}) must be between 1 and 65535`;
}

const redisUrl = z.string().regex(/^rediss?:\/\/.+/, "must be a redis:// or rediss:// URL")
  .superRefine((value, ctx) => {
    // The authority's port, after any user:password@ and an IPv6 [host].
    const port = /^rediss?:\/\/(?:[^@/]*@)?(?:\[[^\]]*\]|[^:/?#]*)(?::([^/?#]*))?/.exec(value)?.[1];
    const problem = port === undefined || port === "" ? undefined : badPort(port);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });
const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$/, "must be host:port")
  .superRefine((value, ctx) => {
    const problem = badPort(value.slice(value.lastIndexOf(":") + 1));
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });

/** Every setting of a node. Environment variables and flags map onto these fields. */
export const ConfigSchema = z.object({
  devMode: z.boolean().default(false),
  nodeId: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "must be 1-64 of [a-zA-Z0-9_-]").default(
    "node1",
  ),
  httpListen: hostPort.default("127.0.0.1:8080"),
  /** Address other nodes and clients use to reach this node's HTTP API. */
  httpAdvertise: hostPort.optional(),
  grpcListen: hostPort.default("127.0.0.1:9090"),
  grpcAdvertise: hostPort.optional(),
  localRedisUrl: redisUrl.default("redis://127.0.0.1:6379/0"),
  usersRedisUrl: redisUrl.default("redis://127.0.0.1:6379/1"),
  backupRedisUrl: redisUrl.default("redis://127.0.0.1:6379/2"),
  zookeeper: z.string().regex(
    /^[^\s,]+:\d+(,[^\s,]+:\d+)*(\/[\w/-]*)?$/,
    "must be host:port[,host:port...]",
  )
    .superRefine((value, ctx) => {
      for (const server of value.replace(/\/.*$/, "").split(",")) {
        const problem = badPort(server.slice(server.lastIndexOf(":") + 1));
        if (problem) ctx.addIssue({ code: "custom", message: `${server}: ${problem}` });
      }
    })
    .optional(),
  /** Shared secret every inter-node gRPC call carries (required with ZooKeeper). */
  clusterSecret: z.string().min(32, "must be at least 32 characters").optional(),
  /** Inter-node gRPC over mutual TLS: PEM files, all three or none (read by loadConfig). */
  grpcTlsCert: z.string().min(1, "must be a file path").optional(),
  grpcTlsKey: z.string().min(1, "must be a file path").optional(),
  grpcTlsCa: z.string().min(1, "must be a file path").optional(),
  zkRoot: z.string().regex(/^(\/[A-Za-z0-9_.-]+)+$/, "must be an absolute znode path").default(
    "/momd",
  ),
  zkSessionTimeoutMs: z.coerce.number({ error: "must be a whole number" }).int().min(1000)
    .max(60_000).default(6000),
  replicationFactor: z.coerce.number({ error: "must be a whole number" }).int().min(1).max(9)
    .default(3),
  minInSyncReplicas: z.coerce.number({ error: "must be a whole number" }).int().min(1).max(9)
    .default(2),
  /** Group commit of concurrent calls on one entity (Store); off during a rolling upgrade from a
   * version whose replicas do not apply `group:` records. */
  groupCommit: z.boolean().default(true),
  /** Prometheus metrics at /metrics, and the counting behind them. */
  metrics: z.boolean().default(true),
  replicationAckTimeoutMs: z.coerce.number({ error: "must be a whole number" }).int().min(100)
    .max(60_000).default(5000),
  /** How long an in-sync replica may be behind before the owner drops it from the set. */
  replicaLagMs: z.coerce.number({ error: "must be a whole number" }).int().min(50).max(60_000)
    .default(2000),
  /** How long the local Redis may not answer before the node gives up what it owns. */
  storeDownMs: z.coerce.number({ error: "must be a whole number" }).int().min(100).max(60_000)
    .default(1000),
  /** Deadline of a forwarded request that does not wait; long polls get their wait on top. */
  forwardTimeoutMs: z.coerce.number({ error: "must be a whole number" }).int().min(200)
    .max(600_000).default(6000),
  backupIntervalMs: z.coerce.number({ error: "must be a whole number" }).int().min(100)
    .max(3_600_000).default(1000),
  jwtSecret: z.string().min(32, "must be at least 32 characters").optional(),
  tokenTtlSeconds: z.coerce.number({ error: "must be a whole number" }).int().min(60).max(86_400)
    .default(1800),
  adminUsername: z.string().regex(/^[a-zA-Z0-9_-]{3,64}$/, "must be 3-64 of [a-zA-Z0-9_-]")
    .default("admin"),
  adminPassword: z.string().min(8, "must be at least 8 characters").optional(),
  /** Addresses whose X-Forwarded-For header is believed (the load balancer). */
  trustedProxies: z.array(
    z.string().refine(isTrustedProxyEntry, "must be an IP address or CIDR range"),
  ).default([]),
  /** Calls per second per user without its own limit, cluster-wide; 0 turns the default off. */
  rateLimitPerSecond: z.coerce.number({ error: "must be a number" }).min(0).max(1_000_000).default(
    5000,
  ),
  /** Token bucket size of the default limit (default: two seconds' worth). */
  rateLimitBurst: z.coerce.number({ error: "must be a whole number" }).int().min(1).max(10_000_000)
    .optional(),
  /** How long a call over its rate is held before it is served; beyond it, 429. */
  rateLimitMaxDelayMs: z.coerce.number({ error: "must be a whole number" }).int().min(0).max(5000)
    .default(500),
  loginFailuresPerMinute: z.coerce.number({ error: "must be a whole number" }).int().min(1).default(
    10,
  ),
  loginFailuresPerAddressPerMinute: z.coerce.number({ error: "must be a whole number" }).int()
    .min(1).default(30),
  loginFailuresClusterPerMinute: z.coerce.number({ error: "must be a whole number" }).int().min(1)
    .default(600),
  /** Password hashes one node computes at once (each is CPU-bound scrypt). */
  passwordHashConcurrency: z.coerce.number({ error: "must be a whole number" }).int().min(1)
    .max(64).default(1),
  maxBodyBytes: z.coerce.number({ error: "must be a whole number" }).int().min(1024).max(
    64 * 1024 * 1024,
  ).default(4 * 1024 * 1024),
  /**
   * Share of the local Redis's maxmemory from which the node refuses new messages (507), before
   * Redis refuses every write; receives, acks, purges and deletes go on so consumers can drain.
   */
  memoryHighWatermark: z.coerce.number({ error: "must be a number" }).min(0.1).max(1).default(0.8),
  /** scrypt cost exponent (N = 2^x); lowered only for tests. */
  passwordHashCost: z.coerce.number({ error: "must be a whole number" }).int().min(10).max(20)
    .default(15),
  logLevel: z.enum(["debug", "info", "warn", "error"]).default("info"),
});

/**
 * The contents of the gRPC TLS files (PEM), read once when the configuration is loaded. The node's
 * certificate and key serve its gRPC server and also identify it as a client of its peers; peers
 * are verified against the CA.
 */
export interface GrpcTls {
  /** This node's certificate (chain). */
  cert: Uint8Array;
  /** Its private key, unencrypted. */
  key: Uint8Array;
  /** The CA certificate(s) every node's certificate is checked against. */
  ca: Uint8Array;
}

/** A validated node configuration. */
export type Config = z.infer<typeof ConfigSchema> & {
  jwtSecret: string;
  adminPassword: string;
  /** Development mode generated the admin's password (so the node prints it once). */
  adminPasswordGenerated: boolean;
  /** Set when the three gRPC TLS settings are: inter-node gRPC runs over mutual TLS. */
  grpcTls?: GrpcTls;
};
