import { z } from "zod";
import { isTrustedProxyEntry } from "./addresses.ts";

const redisUrl = z.string().regex(/^rediss?:\/\/.+/, "must be a redis:// or rediss:// URL");
const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$/, "must be host:port");

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
  rateLimitPerMinute: z.coerce.number({ error: "must be a whole number" }).int().min(1).default(
    6000,
  ),
  loginFailuresPerMinute: z.coerce.number({ error: "must be a whole number" }).int().min(1).default(
    10,
  ),
  maxBodyBytes: z.coerce.number({ error: "must be a whole number" }).int().min(1024).max(
    64 * 1024 * 1024,
  ).default(4 * 1024 * 1024),
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
