import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { z } from "zod";
import { type Config, ConfigSchema, type GrpcTls } from "./schema.ts";
import { SECRET_ADVICE, weakSecretReason } from "./secrets.ts";

type Field = keyof z.infer<typeof ConfigSchema>;

interface Setting {
  field: Field;
  env: string;
  flag: string;
  help: string;
  list?: boolean;
  bool?: boolean;
}

/** One row per setting: the environment variable, the flag and what it means. */
export const SETTINGS: readonly Setting[] = [
  {
    field: "devMode",
    env: "MOMD_DEV",
    flag: "dev",
    bool: true,
    help: "development mode: generated secrets allowed",
  },
  { field: "nodeId", env: "MOMD_NODE_ID", flag: "node-id", help: "unique id of this node" },
  {
    field: "httpListen",
    env: "MOMD_HTTP_LISTEN",
    flag: "http-listen",
    help: "host:port of the REST API",
  },
  {
    field: "httpAdvertise",
    env: "MOMD_HTTP_ADVERTISE",
    flag: "http-advertise",
    help: "host:port peers use for HTTP (default: http-listen)",
  },
  {
    field: "grpcListen",
    env: "MOMD_GRPC_LISTEN",
    flag: "grpc-listen",
    help: "host:port of the inter-node gRPC server",
  },
  {
    field: "grpcAdvertise",
    env: "MOMD_GRPC_ADVERTISE",
    flag: "grpc-advertise",
    help: "host:port peers use for gRPC (default: grpc-listen)",
  },
  {
    field: "localRedisUrl",
    env: "MOMD_LOCAL_REDIS_URL",
    flag: "local-redis-url",
    help: "this node's own message store",
  },
  {
    field: "usersRedisUrl",
    env: "MOMD_USERS_REDIS_URL",
    flag: "users-redis-url",
    help: "central Redis holding users",
  },
  {
    field: "backupRedisUrl",
    env: "MOMD_BACKUP_REDIS_URL",
    flag: "backup-redis-url",
    help: "central Redis holding backups",
  },
  {
    field: "zookeeper",
    env: "MOMD_ZOOKEEPER",
    flag: "zookeeper",
    help: "ZooKeeper connect string (unset: single node)",
  },
  {
    field: "clusterSecret",
    env: "MOMD_CLUSTER_SECRET",
    flag: "cluster-secret",
    help: "shared secret of inter-node calls, 32+ characters",
  },
  {
    field: "grpcTlsCert",
    env: "MOMD_GRPC_TLS_CERT",
    flag: "grpc-tls-cert",
    help: "PEM certificate of this node for inter-node gRPC TLS (with key and CA)",
  },
  {
    field: "grpcTlsKey",
    env: "MOMD_GRPC_TLS_KEY",
    flag: "grpc-tls-key",
    help: "PEM private key of that certificate (unencrypted)",
  },
  {
    field: "grpcTlsCa",
    env: "MOMD_GRPC_TLS_CA",
    flag: "grpc-tls-ca",
    help: "PEM CA certificate(s) that peers' certificates must be signed by",
  },
  {
    field: "zkRoot",
    env: "MOMD_ZK_ROOT",
    flag: "zk-root",
    help: "znode under which momd keeps its state",
  },
  {
    field: "zkSessionTimeoutMs",
    env: "MOMD_ZK_SESSION_TIMEOUT_MS",
    flag: "zk-session-timeout-ms",
    help: "ZooKeeper session timeout",
  },
  {
    field: "replicationFactor",
    env: "MOMD_REPLICATION_FACTOR",
    flag: "replication-factor",
    help: "copies of each entity, owner included",
  },
  {
    field: "minInSyncReplicas",
    env: "MOMD_MIN_IN_SYNC_REPLICAS",
    flag: "min-in-sync-replicas",
    help: "copies that must hold a change before it is acknowledged",
  },
  {
    field: "metrics",
    env: "MOMD_METRICS",
    flag: "metrics",
    bool: true,
    help: "serve Prometheus metrics at /metrics and count what they show",
  },
  {
    field: "groupCommit",
    env: "MOMD_GROUP_COMMIT",
    flag: "group-commit",
    bool: true,
    help: "commit concurrent calls on one entity together (off while older replicas remain)",
  },
  {
    field: "replicationAckTimeoutMs",
    env: "MOMD_REPLICATION_ACK_TIMEOUT_MS",
    flag: "replication-ack-timeout-ms",
    help: "how long a change waits for its in-sync replicas before 504 (outcome unknown)",
  },
  {
    field: "replicaLagMs",
    env: "MOMD_REPLICA_LAG_MS",
    flag: "replica-lag-ms",
    help: "how long an in-sync replica may be behind before it leaves the in-sync set",
  },
  {
    field: "storeDownMs",
    env: "MOMD_STORE_DOWN_MS",
    flag: "store-down-ms",
    help: "how long the local Redis may not answer before this node gives up what it owns",
  },
  {
    field: "forwardTimeoutMs",
    env: "MOMD_FORWARD_TIMEOUT_MS",
    flag: "forward-timeout-ms",
    help: "deadline of a request forwarded to the owner (long polls: plus their wait)",
  },
  {
    field: "backupIntervalMs",
    env: "MOMD_BACKUP_INTERVAL_MS",
    flag: "backup-interval-ms",
    help: "how often owners copy changed entities to the backup Redis",
  },
  {
    field: "jwtSecret",
    env: "MOMD_JWT_SECRET",
    flag: "jwt-secret",
    help: "HS256 secret, 32+ characters, same on every node",
  },
  {
    field: "tokenTtlSeconds",
    env: "MOMD_TOKEN_TTL_SECONDS",
    flag: "token-ttl-seconds",
    help: "lifetime of an access token",
  },
  {
    field: "adminUsername",
    env: "MOMD_ADMIN_USERNAME",
    flag: "admin-username",
    help: "first admin, created at start-up if absent",
  },
  {
    field: "adminPassword",
    env: "MOMD_ADMIN_PASSWORD",
    flag: "admin-password",
    help: "first admin's password",
  },
  {
    field: "trustedProxies",
    env: "MOMD_TRUSTED_PROXIES",
    flag: "trusted-proxies",
    list: true,
    help: "comma-separated proxy addresses whose X-Forwarded-For is trusted",
  },
  {
    field: "rateLimitPerSecond",
    env: "MOMD_RATE_LIMIT_PER_SECOND",
    flag: "rate-limit-per-second",
    help: "calls per second per user without its own limit, cluster-wide (0: none)",
  },
  {
    field: "rateLimitBurst",
    env: "MOMD_RATE_LIMIT_BURST",
    flag: "rate-limit-burst",
    help: "calls a user may make at once above the rate (default: 2 s worth)",
  },
  {
    field: "rateLimitMaxDelayMs",
    env: "MOMD_RATE_LIMIT_MAX_DELAY_MS",
    flag: "rate-limit-max-delay-ms",
    help: "how long a call over the rate is held before 429",
  },
  {
    field: "loginFailuresPerMinute",
    env: "MOMD_LOGIN_FAILURES_PER_MINUTE",
    flag: "login-failures-per-minute",
    help: "failed logins per username and client per minute",
  },
  {
    field: "loginFailuresPerAddressPerMinute",
    env: "MOMD_LOGIN_FAILURES_PER_ADDRESS_PER_MINUTE",
    flag: "login-failures-per-address-per-minute",
    help: "failed logins per client address per minute, any username",
  },
  {
    field: "loginFailuresClusterPerMinute",
    env: "MOMD_LOGIN_FAILURES_CLUSTER_PER_MINUTE",
    flag: "login-failures-cluster-per-minute",
    help: "failed logins per minute over the cluster before addresses that failed must wait",
  },
  {
    field: "passwordHashConcurrency",
    env: "MOMD_PASSWORD_HASH_CONCURRENCY",
    flag: "password-hash-concurrency",
    help: "password hashes one node computes at once",
  },
  {
    field: "maxBodyBytes",
    env: "MOMD_MAX_BODY_BYTES",
    flag: "max-body-bytes",
    help: "largest accepted request body",
  },
  {
    field: "memoryHighWatermark",
    env: "MOMD_MEMORY_HIGH_WATERMARK",
    flag: "memory-high-watermark",
    help: "share of the local Redis's maxmemory (0.1-1) above which sends are refused (507)",
  },
  {
    field: "passwordHashCost",
    env: "MOMD_PASSWORD_HASH_COST",
    flag: "password-hash-cost",
    help: "scrypt cost exponent",
  },
  {
    field: "logLevel",
    env: "MOMD_LOG_LEVEL",
    flag: "log-level",
    help: "debug | info | warn | error",
  },
];

/** A configuration problem, reported with the setting's name and exit code 2. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Text for `momd serve --help`. */
export function configHelp(): string {
  const rows = SETTINGS.map((s) => `  --${s.flag.padEnd(26)} ${s.env.padEnd(32)} ${s.help}`);
  return ["Settings (flag, environment variable, meaning):", ...rows].join("\n");
}

function parseFlags(args: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("--")) throw new ConfigError(`unexpected argument '${arg}'`);
    const eq = arg.indexOf("=");
    const name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
    const setting = SETTINGS.find((s) => s.flag === name);
    if (!setting) throw new ConfigError(`unknown flag --${name} (see --help)`);
    if (eq > 0) out.set(name, arg.slice(eq + 1));
    else if (setting.bool) out.set(name, "true");
    else if (i + 1 < args.length) out.set(name, args[++i]);
    else throw new ConfigError(`flag --${name} needs a value`);
  }
  return out;
}

function parseBool(name: string, raw: string): boolean {
  if (["1", "true", "yes", "on"].includes(raw.toLowerCase())) return true;
  if (["0", "false", "no", "off", ""].includes(raw.toLowerCase())) return false;
  throw new ConfigError(`${name}: expected true or false, got '${raw}'`);
}

/**
 * Builds the configuration from flags (highest priority) and environment variables.
 * Throws ConfigError naming the setting when anything is missing or invalid.
 */
export function loadConfig(
  args: readonly string[],
  env: Record<string, string | undefined>,
): Config {
  const flags = parseFlags(args);
  for (const [name, replacement] of Object.entries(REPLACED)) {
    if (env[name] !== undefined) {
      throw new ConfigError(`${name}: no longer read; ${replacement}`);
    }
  }
  const raw: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    const value = flags.get(s.flag) ?? env[s.env];
    if (value === undefined) continue;
    const name = flags.has(s.flag) ? `--${s.flag}` : s.env;
    if (s.bool) raw[s.field] = parseBool(name, value);
    else if (s.list) raw[s.field] = value.split(",").map((v) => v.trim()).filter((v) => v !== "");
    else raw[s.field] = value;
  }
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const setting = SETTINGS.find((s) => s.field === issue.path[0]);
    const name = setting ? `${setting.env} (--${setting.flag})` : issue.path.join(".");
    throw new ConfigError(`${name}: ${rangeMessage(issue) ?? issue.message}`);
  }
  const cfg = parsed.data;
  if (cfg.minInSyncReplicas > cfg.replicationFactor) {
    throw new ConfigError(
      "MOMD_MIN_IN_SYNC_REPLICAS (--min-in-sync-replicas): must not exceed MOMD_REPLICATION_FACTOR",
    );
  }
  if (cfg.replicaLagMs >= cfg.replicationAckTimeoutMs) {
    throw new ConfigError(
      `${settingName("replicaLagMs")}: must be below ` +
        `${settingName("replicationAckTimeoutMs")} (${cfg.replicationAckTimeoutMs}), so that a ` +
        "change waiting for a lagging replica is acknowledged once the replica leaves the set",
    );
  }
  if (cfg.forwardTimeoutMs <= cfg.replicationAckTimeoutMs) {
    throw new ConfigError(
      `${settingName("forwardTimeoutMs")}: must be above ` +
        `${settingName("replicationAckTimeoutMs")} (${cfg.replicationAckTimeoutMs}), so that ` +
        "the owner's own answer arrives before the forward gives up",
    );
  }
  if (cfg.zookeeper && !cfg.clusterSecret) {
    throw new ConfigError(
      `MOMD_CLUSTER_SECRET (--cluster-secret): required when MOMD_ZOOKEEPER is set; ` +
        `${SECRET_ADVICE} (the same on every node)`,
    );
  }
  if (!cfg.devMode) {
    // Development mode may use anything; elsewhere a guessable secret opens every token (JWT)
    // or lets anyone on the network act as a node (cluster).
    for (const field of ["jwtSecret", "clusterSecret"] as const) {
      const value = cfg[field];
      const why = value === undefined ? undefined : weakSecretReason(value);
      if (why) {
        throw new ConfigError(
          `${settingName(field)}: refused, ${why}; ${SECRET_ADVICE} (the same on every node)`,
        );
      }
    }
  }
  const grpcTls = readGrpcTls(cfg);
  let jwtSecret = cfg.jwtSecret;
  let adminPassword = cfg.adminPassword;
  if (!cfg.devMode) {
    if (!jwtSecret) {
      throw new ConfigError("MOMD_JWT_SECRET (--jwt-secret): required outside development mode");
    }
    if (!adminPassword) {
      throw new ConfigError(
        "MOMD_ADMIN_PASSWORD (--admin-password): required outside development mode",
      );
    }
  }
  // Development mode only: generated secrets, so a local run needs no configuration.
  jwtSecret ??= randomSecret();
  const adminPasswordGenerated = adminPassword === undefined;
  adminPassword ??= randomSecret().slice(0, 20);
  return { ...cfg, jwtSecret, adminPassword, adminPasswordGenerated, grpcTls };
}

/** Settings of earlier versions, refused with what replaced them (a silent no-op would mislead). */
const REPLACED: Record<string, string> = {
  MOMD_RATE_LIMIT_PER_MINUTE:
    "use MOMD_RATE_LIMIT_PER_SECOND (and MOMD_RATE_LIMIT_BURST): limits are token buckets now",
};

/** Bounds of a number setting, from its schema (through `.default()` and `.optional()`). */
function numberBounds(field: PropertyKey): { min: number | null; max: number | null } | undefined {
  let schema: unknown = (ConfigSchema.shape as Record<PropertyKey, unknown>)[field];
  while (schema instanceof z.ZodDefault || schema instanceof z.ZodOptional) {
    schema = schema.unwrap();
  }
  if (!(schema instanceof z.ZodNumber)) return undefined;
  return { min: schema.minValue, max: schema.maxValue };
}

/**
 * "must be between 1 and 9" for a number out of its range: the schemas' own message ("must be a
 * whole number") is meant for a value that is not a number at all.
 */
function rangeMessage(issue: z.core.$ZodIssue): string | undefined {
  if (issue.code !== "too_small" && issue.code !== "too_big") return undefined;
  const bounds = numberBounds(issue.path[0]);
  if (!bounds) return undefined;
  const { min, max } = bounds;
  const finite = (n: number | null) =>
    n !== null && Number.isFinite(n) && Math.abs(n) < Number.MAX_SAFE_INTEGER;
  if (finite(min) && finite(max)) return `must be between ${min} and ${max}`;
  if (finite(min)) return `must be at least ${min}`;
  if (finite(max)) return `must be at most ${max}`;
  return undefined;
}

function settingName(field: Field): string {
  const s = SETTINGS.find((s) => s.field === field)!;
  return `${s.env} (--${s.flag})`;
}

const TLS_FIELDS = ["grpcTlsCert", "grpcTlsKey", "grpcTlsCa"] as const;

/** PEM blocks of a file: the label after BEGIN and the whole block. */
function pemBlocks(text: string): { label: string; block: string }[] {
  const re = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;
  return [...text.matchAll(re)].map((m) => ({ label: m[1], block: m[0] }));
}

/**
 * Reads the gRPC TLS files, all three or none, and checks them now, so a wrong file stops the
 * node at start with the setting's name instead of failing every peer connection later.
 */
function readGrpcTls(cfg: z.infer<typeof ConfigSchema>): GrpcTls | undefined {
  const given = TLS_FIELDS.filter((f) => cfg[f] !== undefined);
  if (given.length === 0) return undefined;
  if (given.length < TLS_FIELDS.length) {
    const missing = TLS_FIELDS.find((f) => cfg[f] === undefined)!;
    throw new ConfigError(
      `${settingName(missing)}: required when ${settingName(given[0])} is set ` +
        "(gRPC TLS needs the certificate, the key and the CA, or none of them)",
    );
  }
  const read = (field: (typeof TLS_FIELDS)[number]): { bytes: Uint8Array; text: string } => {
    const path = cfg[field]!;
    let bytes: Uint8Array;
    try {
      bytes = Deno.readFileSync(path);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new ConfigError(`${settingName(field)}: cannot read '${path}': ${why}`);
    }
    return { bytes, text: new TextDecoder().decode(bytes) };
  };
  const certificates = (field: "grpcTlsCert" | "grpcTlsCa") => {
    const { bytes, text } = read(field);
    const blocks = pemBlocks(text).filter((b) => b.label === "CERTIFICATE");
    if (blocks.length === 0) {
      throw new ConfigError(
        `${settingName(field)}: '${cfg[field]}' holds no PEM certificate ` +
          "(-----BEGIN CERTIFICATE-----)",
      );
    }
    const parsed = blocks.map((b) => {
      try {
        return new X509Certificate(b.block);
      } catch (err) {
        throw new ConfigError(
          `${settingName(field)}: '${cfg[field]}' holds a certificate that cannot be parsed: ` +
            (err instanceof Error ? err.message : String(err)),
        );
      }
    });
    return { bytes, parsed };
  };
  const cert = certificates("grpcTlsCert");
  const ca = certificates("grpcTlsCa");
  const keyFile = read("grpcTlsKey");
  const keyBlock = pemBlocks(keyFile.text).find((b) => b.label.endsWith("PRIVATE KEY"));
  if (!keyBlock) {
    throw new ConfigError(
      `${settingName("grpcTlsKey")}: '${cfg.grpcTlsKey}' holds no PEM private key ` +
        "(-----BEGIN PRIVATE KEY-----)",
    );
  }
  // gRPC takes no passphrase, so an encrypted key could never be used.
  if (
    keyBlock.label === "ENCRYPTED PRIVATE KEY" || /Proc-Type: *4, *ENCRYPTED/.test(keyBlock.block)
  ) {
    throw new ConfigError(
      `${settingName("grpcTlsKey")}: '${cfg.grpcTlsKey}' is encrypted; gRPC needs the key ` +
        "unencrypted (protect the file by its permissions)",
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyBlock.block);
  } catch (err) {
    throw new ConfigError(
      `${settingName("grpcTlsKey")}: '${cfg.grpcTlsKey}' holds a private key that cannot be ` +
        `parsed: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  // The first certificate of the file is the node's own; the rest is its chain.
  if (!cert.parsed[0].checkPrivateKey(key)) {
    throw new ConfigError(
      `${settingName("grpcTlsKey")}: '${cfg.grpcTlsKey}' is not the key of the certificate in ` +
        `'${cfg.grpcTlsCert}' (${settingName("grpcTlsCert")})`,
    );
  }
  return { cert: cert.bytes, key: keyFile.bytes, ca: ca.bytes };
}

function randomSecret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return btoa(String.fromCharCode(...bytes)).replace(/[+/=]/g, "x");
}
