import assert from "node:assert/strict";
import { ConfigError, configHelp, loadConfig, SETTINGS } from "../src/config/load.ts";
import { Redis } from "ioredis";
import { runMomd } from "./support/process.ts";
import { startRedis } from "./support/services.ts";
import { makeTlsFiles, type TlsFiles } from "./support/tls.ts";
import { estimatedEntropyBits, weakSecretReason } from "../src/config/secrets.ts";

const SECRET = "q7Rk2vXp9LmZ4tWb8NcY3hJd6FgS1aEu";
const REQUIRED = { MOMD_JWT_SECRET: SECRET, MOMD_ADMIN_PASSWORD: "admin-password" };

/** The message of the ConfigError that loading throws. */
function configError(args: string[], env: Record<string, string>): string {
  try {
    loadConfig(args, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${err}`);
    return err.message;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("config: defaults with the two required secrets", () => {
  const cfg = loadConfig([], REQUIRED);
  assert.equal(cfg.devMode, false);
  assert.equal(cfg.nodeId, "node1");
  assert.equal(cfg.httpListen, "127.0.0.1:8080");
  assert.equal(cfg.jwtSecret, SECRET);
  assert.equal(cfg.adminUsername, "admin");
  assert.equal(cfg.adminPassword, "admin-password");
  assert.equal(cfg.tokenTtlSeconds, 1800);
  assert.deepEqual(cfg.trustedProxies, []);
  assert.equal(cfg.zookeeper, undefined);
});

Deno.test("config: environment variables are read and converted", () => {
  const cfg = loadConfig([], {
    ...REQUIRED,
    MOMD_NODE_ID: "node-7",
    MOMD_HTTP_LISTEN: "0.0.0.0:9000",
    MOMD_LOCAL_REDIS_URL: "redis://10.0.0.5:6380/3",
    MOMD_TOKEN_TTL_SECONDS: "600",
    MOMD_TRUSTED_PROXIES: " 127.0.0.10, 10.0.0.1 ,,",
    MOMD_LOG_LEVEL: "debug",
    UNRELATED: "ignored",
  });
  assert.equal(cfg.nodeId, "node-7");
  assert.equal(cfg.httpListen, "0.0.0.0:9000");
  assert.equal(cfg.localRedisUrl, "redis://10.0.0.5:6380/3");
  assert.equal(cfg.tokenTtlSeconds, 600);
  assert.deepEqual(cfg.trustedProxies, ["127.0.0.10", "10.0.0.1"]);
  assert.equal(cfg.logLevel, "debug");
});

Deno.test("config: flags win over environment variables, in both spellings", () => {
  const cfg = loadConfig(
    ["--node-id", "from-flag", "--token-ttl-seconds=900", "--dev"],
    { ...REQUIRED, MOMD_NODE_ID: "from-env", MOMD_TOKEN_TTL_SECONDS: "600" },
  );
  assert.equal(cfg.nodeId, "from-flag");
  assert.equal(cfg.tokenTtlSeconds, 900);
  assert.equal(cfg.devMode, true);
});

Deno.test("config: secrets are required outside development mode", () => {
  assert.match(
    configError([], { MOMD_ADMIN_PASSWORD: "admin-password" }),
    /^MOMD_JWT_SECRET .*required outside development mode/,
  );
  assert.match(
    configError([], { MOMD_JWT_SECRET: SECRET }),
    /^MOMD_ADMIN_PASSWORD .*required outside development mode/,
  );
});

Deno.test("config: development mode generates the missing secrets", () => {
  const a = loadConfig([], { MOMD_DEV: "true" });
  const b = loadConfig(["--dev"], {});
  assert.ok(a.jwtSecret.length >= 32);
  assert.ok(a.adminPassword.length >= 8);
  assert.notEqual(a.jwtSecret, b.jwtSecret);
  assert.equal(loadConfig([], { ...REQUIRED, MOMD_DEV: "1" }).jwtSecret, SECRET);
});

Deno.test("config: a bad value names its setting and what is wrong", () => {
  const cases: [Record<string, string>, string[], RegExp][] = [
    [{ MOMD_HTTP_LISTEN: "garbage" }, [], /^MOMD_HTTP_LISTEN \(--http-listen\): must be host:port/],
    [{ MOMD_TOKEN_TTL_SECONDS: "abc" }, [], /^MOMD_TOKEN_TTL_SECONDS \(--token-ttl-seconds\)/],
    [{ MOMD_TOKEN_TTL_SECONDS: "5" }, [], /^MOMD_TOKEN_TTL_SECONDS/],
    [{ MOMD_JWT_SECRET: "short" }, [], /^MOMD_JWT_SECRET .*at least 32 characters/],
    [{ MOMD_LOCAL_REDIS_URL: "http://x" }, [], /^MOMD_LOCAL_REDIS_URL .*redis:\/\//],
    [{ MOMD_NODE_ID: "no spaces" }, [], /^MOMD_NODE_ID/],
    [{ MOMD_LOG_LEVEL: "loud" }, [], /^MOMD_LOG_LEVEL/],
    [{ MOMD_DEV: "maybe" }, [], /^MOMD_DEV: expected true or false/],
    [{}, ["--bogus"], /unknown flag --bogus/],
    [{}, ["--node-id"], /flag --node-id needs a value/],
    [{}, ["serve"], /unexpected argument 'serve'/],
  ];
  for (const [env, args, expected] of cases) {
    const base = env.MOMD_JWT_SECRET ? { MOMD_ADMIN_PASSWORD: "admin-password" } : REQUIRED;
    assert.match(configError(args, { ...base, ...env }), expected, JSON.stringify({ env, args }));
  }
});

Deno.test("config: --help text lists every setting with its flag and variable", () => {
  const help = configHelp();
  for (const s of SETTINGS) {
    assert.ok(help.includes(`--${s.flag}`), s.flag);
    assert.ok(help.includes(s.env), s.env);
  }
});

/** The three gRPC TLS settings for node1's files, as environment variables. */
function tlsEnv(files: TlsFiles): Record<string, string> {
  return {
    MOMD_GRPC_TLS_CERT: files.node1.cert,
    MOMD_GRPC_TLS_KEY: files.node1.key,
    MOMD_GRPC_TLS_CA: files.ca,
  };
}

Deno.test("config: gRPC TLS files are read once, at load, all three or none", async () => {
  const files = await makeTlsFiles();
  try {
    assert.equal(loadConfig([], REQUIRED).grpcTls, undefined);
    const cfg = loadConfig([], { ...REQUIRED, ...tlsEnv(files) });
    assert.deepEqual(cfg.grpcTls, {
      cert: await Deno.readFile(files.node1.cert),
      key: await Deno.readFile(files.node1.key),
      ca: await Deno.readFile(files.ca),
    });
    assert.equal(cfg.grpcTlsCert, files.node1.cert);
    const flags = loadConfig([
      `--grpc-tls-cert=${files.node2.cert}`,
      "--grpc-tls-key",
      files.node2.key,
      `--grpc-tls-ca=${files.ca}`,
    ], REQUIRED);
    assert.deepEqual(flags.grpcTls?.cert, await Deno.readFile(files.node2.cert));
  } finally {
    await files.remove();
  }
});

Deno.test("config: bad gRPC TLS settings name the setting", async () => {
  const files = await makeTlsFiles();
  const dir = files.dir;
  const notPem = `${dir}/not-pem.txt`;
  const encrypted = `${dir}/encrypted.key`;
  const garbled = `${dir}/garbled.crt`;
  await Deno.writeTextFile(notPem, "certificate: yes\n");
  await Deno.writeTextFile(
    garbled,
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
  );
  // Only the label matters: gRPC cannot use an encrypted key whatever it holds.
  await Deno.writeTextFile(
    encrypted,
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
  );
  const all = tlsEnv(files);
  const without = (name: string) =>
    Object.fromEntries(Object.entries(all).filter(([k]) => k !== name));
  try {
    const cases: [Record<string, string>, RegExp][] = [
      [
        without("MOMD_GRPC_TLS_KEY"),
        /^MOMD_GRPC_TLS_KEY \(--grpc-tls-key\): required when MOMD_GRPC_TLS_CERT .* is set/,
      ],
      [without("MOMD_GRPC_TLS_CA"), /^MOMD_GRPC_TLS_CA \(--grpc-tls-ca\): required when/],
      [{ MOMD_GRPC_TLS_CA: files.ca }, /^MOMD_GRPC_TLS_CERT .*required when MOMD_GRPC_TLS_CA/],
      [{ ...all, MOMD_GRPC_TLS_CERT: "" }, /^MOMD_GRPC_TLS_CERT .*must be a file path/],
      [
        { ...all, MOMD_GRPC_TLS_CA: `${dir}/missing.crt` },
        /^MOMD_GRPC_TLS_CA \(--grpc-tls-ca\): cannot read '.*missing\.crt'/,
      ],
      [{ ...all, MOMD_GRPC_TLS_CERT: dir }, /^MOMD_GRPC_TLS_CERT .*cannot read/],
      [{ ...all, MOMD_GRPC_TLS_CERT: notPem }, /^MOMD_GRPC_TLS_CERT .*no PEM certificate/],
      [{ ...all, MOMD_GRPC_TLS_CA: files.node1.key }, /^MOMD_GRPC_TLS_CA .*no PEM certificate/],
      [{ ...all, MOMD_GRPC_TLS_CA: garbled }, /^MOMD_GRPC_TLS_CA .*cannot be parsed/],
      [{ ...all, MOMD_GRPC_TLS_KEY: files.node1.cert }, /^MOMD_GRPC_TLS_KEY .*no PEM private key/],
      [{ ...all, MOMD_GRPC_TLS_KEY: encrypted }, /^MOMD_GRPC_TLS_KEY .*is encrypted/],
      [
        { ...all, MOMD_GRPC_TLS_KEY: files.node2.key },
        /^MOMD_GRPC_TLS_KEY .*is not the key of the certificate/,
      ],
    ];
    for (const [env, expected] of cases) {
      assert.match(configError([], { ...REQUIRED, ...env }), expected, JSON.stringify(env));
    }
  } finally {
    await files.remove();
  }
});

/** A configuration error as a person sees it: exit code 2, one message, no stack trace. */
function assertConfigExit(result: { code: number; stderr: string }, setting: string): void {
  assert.equal(result.code, 2, result.stderr);
  assert.match(result.stderr, /^momd: configuration error: /);
  assert.ok(result.stderr.includes(setting), `stderr names ${setting}: ${result.stderr}`);
  assert.doesNotMatch(result.stderr, /^\s+at |Uncaught|^error: /m, "no stack trace");
}

Deno.test("config: momd serve stops with exit code 2 and names the bad setting", async (t) => {
  await t.step("no JWT secret outside development mode", async () => {
    const res = await runMomd(["serve"], { MOMD_ADMIN_PASSWORD: "admin-password" });
    assertConfigExit(res, "MOMD_JWT_SECRET");
  });
  await t.step("an HTTP listen address that is not host:port", async () => {
    const res = await runMomd(["serve"], { ...REQUIRED, MOMD_HTTP_LISTEN: "garbage" });
    assertConfigExit(res, "MOMD_HTTP_LISTEN");
  });
  await t.step("a token lifetime that is not a number", async () => {
    const res = await runMomd(["serve"], { ...REQUIRED, MOMD_TOKEN_TTL_SECONDS: "abc" });
    assertConfigExit(res, "MOMD_TOKEN_TTL_SECONDS");
  });
  await t.step("gRPC TLS: a certificate without its key and CA", async () => {
    const res = await runMomd(["serve"], { ...REQUIRED, MOMD_GRPC_TLS_CERT: "/tls/node.crt" });
    assertConfigExit(res, "MOMD_GRPC_TLS_KEY");
  });
  await t.step("gRPC TLS: a file that cannot be read, or is not PEM", async () => {
    const files = await makeTlsFiles();
    try {
      const missing = { ...tlsEnv(files), MOMD_GRPC_TLS_CA: `${files.dir}/missing-ca.crt` };
      const unreadable = await runMomd(["serve"], { ...REQUIRED, ...missing });
      assertConfigExit(unreadable, "MOMD_GRPC_TLS_CA");
      assert.match(unreadable.stderr, /cannot read '.*missing-ca\.crt'/);
      const notPem = `${files.dir}/not-pem.key`;
      await Deno.writeTextFile(notPem, "hello\n");
      const wrong = { ...tlsEnv(files), MOMD_GRPC_TLS_KEY: notPem };
      const res = await runMomd(["serve"], { ...REQUIRED, ...wrong });
      assertConfigExit(res, "MOMD_GRPC_TLS_KEY");
      assert.match(res.stderr, /no PEM private key/);
    } finally {
      await files.remove();
    }
  });
  await t.step("an unknown flag", async () => {
    const res = await runMomd(["serve", "--no-such-setting", "1"], REQUIRED);
    assertConfigExit(res, "--no-such-setting");
  });
  await t.step("an unknown command", async () => {
    const res = await runMomd(["serv"], REQUIRED);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /unknown command 'serv'/);
  });
});

Deno.test("config: momd serve --help lists the settings and exits 0", async () => {
  const res = await runMomd(["serve", "--help"]);
  assert.equal(res.code, 0, res.stderr);
  for (const s of SETTINGS) {
    assert.ok(res.stdout.includes(`--${s.flag}`), s.flag);
    assert.ok(res.stdout.includes(s.env), s.env);
  }
});

Deno.test("config: the README table and deploy/momd.env.example name every setting", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const example = await Deno.readTextFile(new URL("../deploy/momd.env.example", import.meta.url));
  for (const s of SETTINGS) {
    const row = new RegExp(`^\\| \`${s.env}\` +\\| \`--${s.flag}\` +\\|`, "m");
    assert.match(readme, row, `README lists ${s.env}`);
    assert.match(example, new RegExp(`^#?${s.env}=`, "m"), `momd.env.example has ${s.env}`);
  }
});

/** What `openssl rand -base64 <bytes>` prints. */
function opensslBase64(bytes: number): string {
  return btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(bytes))));
}

Deno.test("config: every port is checked up front, naming the setting and the range", () => {
  const cases: [Record<string, string>, RegExp][] = [
    [
      { MOMD_HTTP_LISTEN: "127.0.0.1:99999" },
      /^MOMD_HTTP_LISTEN \(--http-listen\): the port \(99999\) must be between 1 and 65535$/,
    ],
    [{ MOMD_HTTP_LISTEN: "0.0.0.0:0" }, /^MOMD_HTTP_LISTEN .*must be between 1 and 65535/],
    [{ MOMD_HTTP_ADVERTISE: "momd1:65536" }, /^MOMD_HTTP_ADVERTISE .*must be between 1 and 65535/],
    [{ MOMD_GRPC_LISTEN: "0.0.0.0:70000" }, /^MOMD_GRPC_LISTEN .*must be between 1 and 65535/],
    [{ MOMD_GRPC_ADVERTISE: "h:99999" }, /^MOMD_GRPC_ADVERTISE .*must be between 1 and 65535/],
    [
      { MOMD_LOCAL_REDIS_URL: "redis://127.0.0.1:99999/0" },
      /^MOMD_LOCAL_REDIS_URL .*the port \(99999\) must be between 1 and 65535/,
    ],
    [
      { MOMD_USERS_REDIS_URL: "redis://user:pw@h:0/1" },
      /^MOMD_USERS_REDIS_URL .*must be between 1 and 65535/,
    ],
    [
      { MOMD_BACKUP_REDIS_URL: "rediss://h:123456" },
      /^MOMD_BACKUP_REDIS_URL .*must be between 1 and 65535/,
    ],
    [
      { MOMD_ZOOKEEPER: "zk1:2181,zk2:99999/momd", MOMD_CLUSTER_SECRET: opensslBase64(48) },
      /^MOMD_ZOOKEEPER .*zk2:99999: the port \(99999\) must be between 1 and 65535/,
    ],
  ];
  for (const [env, expected] of cases) {
    assert.match(configError([], { ...REQUIRED, ...env }), expected, JSON.stringify(env));
  }
  // The edges and the address forms that are fine.
  const ok = loadConfig([], {
    ...REQUIRED,
    MOMD_HTTP_LISTEN: "0.0.0.0:65535",
    MOMD_GRPC_LISTEN: "127.0.0.1:1",
    MOMD_LOCAL_REDIS_URL: "redis://user:pw@127.0.0.1:6380/0",
    MOMD_USERS_REDIS_URL: "redis://[::1]:6379/1",
    MOMD_BACKUP_REDIS_URL: "redis://backup/2",
  });
  assert.equal(ok.httpListen, "0.0.0.0:65535");
});

Deno.test("config: a number out of range says the range, not 'must be a whole number'", () => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ MOMD_TOKEN_TTL_SECONDS: "5" }, /^MOMD_TOKEN_TTL_SECONDS .*: must be between 60 and 86400$/],
    [{ MOMD_REPLICATION_FACTOR: "10" }, /^MOMD_REPLICATION_FACTOR .*: must be between 1 and 9$/],
    [{ MOMD_MAX_BODY_BYTES: "1" }, /^MOMD_MAX_BODY_BYTES .*: must be between 1024 and 67108864$/],
    [{ MOMD_MEMORY_HIGH_WATERMARK: "1.5" }, /^MOMD_MEMORY_HIGH_WATERMARK .*between 0\.1 and 1$/],
    [{ MOMD_MEMORY_HIGH_WATERMARK: "0" }, /^MOMD_MEMORY_HIGH_WATERMARK .*between 0\.1 and 1$/],
    [
      { MOMD_LOGIN_FAILURES_PER_MINUTE: "0" },
      /^MOMD_LOGIN_FAILURES_PER_MINUTE .*: must be at least 1$/,
    ],
    // Not a number, or not whole: that message is right.
    [{ MOMD_TOKEN_TTL_SECONDS: "abc" }, /^MOMD_TOKEN_TTL_SECONDS .*: must be a whole number$/],
    [{ MOMD_REPLICATION_FACTOR: "1.5" }, /^MOMD_REPLICATION_FACTOR .*: must be a whole number$/],
    [{ MOMD_MEMORY_HIGH_WATERMARK: "most" }, /^MOMD_MEMORY_HIGH_WATERMARK .*: must be a number$/],
  ];
  for (const [env, expected] of cases) {
    assert.match(configError([], { ...REQUIRED, ...env }), expected, JSON.stringify(env));
  }
  assert.equal(loadConfig([], REQUIRED).memoryHighWatermark, 0.8);
  assert.equal(
    loadConfig([], { ...REQUIRED, MOMD_MEMORY_HIGH_WATERMARK: "0.5" }).memoryHighWatermark,
    0.5,
  );
});

/** The values the example files give the secrets (placeholders, if any). */
async function exampleSecrets(): Promise<string[]> {
  const text = await Deno.readTextFile(new URL("../deploy/momd.env.example", import.meta.url));
  return [...text.matchAll(/^#?MOMD_\w*SECRET=(.+)$/gm)].map((m) => m[1].trim());
}

Deno.test("config: placeholders, patterns and guessable secrets are refused outside development mode", async () => {
  const weak = [
    "change-me-to-32-or-more-random-characters", // the example file's former value
    "changeme-changeme-changeme-changeme",
    "CHANGE_ME_PLEASE_a8f3k2m9x7q1w5e6",
    "please-replace-me-with-a-real-secret-value",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "0123456789abcdef0123456789abcdef",
    "abcdefghijklmnopqrstuvwxyz0123456789",
    "passwordpasswordpasswordpassword",
    "abababababababababababababababab1",
    "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbcccc",
    ...await exampleSecrets(),
  ];
  for (const value of weak) {
    assert.ok(weakSecretReason(value), `refused: ${value}`);
    for (const env of ["MOMD_JWT_SECRET", "MOMD_CLUSTER_SECRET"]) {
      const message = configError([], { ...REQUIRED, [env]: value });
      assert.match(message, new RegExp(`^${env} \\(--[a-z-]+\\): refused, `), message);
      assert.match(message, /openssl rand -base64 48/);
      assert.ok(!message.includes(value), "the message does not repeat the secret");
    }
    // Development mode takes anything (of the minimum length).
    assert.equal(loadConfig([], { MOMD_DEV: "1", MOMD_JWT_SECRET: value }).jwtSecret, value);
  }
  // What the documentation says to use passes, also cut to the 32 characters required.
  for (let i = 0; i < 500; i++) {
    const secret = opensslBase64(48);
    assert.equal(weakSecretReason(secret), undefined, secret);
    assert.equal(weakSecretReason(secret.slice(0, 32)), undefined, secret.slice(0, 32));
    const hex = [...crypto.getRandomValues(new Uint8Array(16))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    assert.equal(weakSecretReason(hex), undefined, `openssl rand -hex 16: ${hex}`);
  }
  // As do the secrets the tests and the local broker use.
  for (
    const s of ["process-test-secret-0123456789abcdef", `cluster-test-jwt-${crypto.randomUUID()}`]
  ) {
    assert.equal(weakSecretReason(s), undefined, s);
  }
  assert.ok(estimatedEntropyBits("aaaa") === 0);
  assert.ok(estimatedEntropyBits(opensslBase64(48)) > 250);
});

Deno.test("config: a cluster without a secret is told how to make one", () => {
  assert.match(
    configError([], { ...REQUIRED, MOMD_ZOOKEEPER: "127.0.0.1:2181" }),
    /^MOMD_CLUSTER_SECRET .*required when MOMD_ZOOKEEPER is set; .*openssl rand -base64 48/,
  );
});

Deno.test("config: deploy/momd.env.example, with its secrets filled in, loads; so does each documented value", async () => {
  const text = await Deno.readTextFile(new URL("../deploy/momd.env.example", import.meta.url));
  const active: Record<string, string> = {};
  const documented: [string, string][] = [];
  for (const line of text.split("\n")) {
    const m = /^(#?)(MOMD_\w+)=(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === "") active[m[2]] = m[3];
    else if (m[3] !== "") documented.push([m[2], m[3]]);
  }
  // Empty in the file: the secrets the operator must set.
  const filled = { ...active };
  for (const [k, v] of Object.entries(active)) {
    if (v === "") filled[k] = k.endsWith("PASSWORD") ? "an-admin-password" : opensslBase64(48);
  }
  assert.ok(Object.keys(active).includes("MOMD_JWT_SECRET"));
  loadConfig([], filled);
  const cluster = { MOMD_CLUSTER_SECRET: opensslBase64(48), MOMD_ZOOKEEPER: "zk1:2181" };
  // The TLS files are not there: those three are checked by the TLS tests.
  for (const [k, v] of documented.filter(([k]) => !k.startsWith("MOMD_GRPC_TLS_"))) {
    try {
      loadConfig([], { ...filled, ...cluster, [k]: v });
    } catch (err) {
      assert.fail(`${k}=${v} from the example is refused: ${(err as Error).message}`);
    }
  }
});

Deno.test("config: momd serve with a bad port stops before it creates anything", async () => {
  const redis = await startRedis();
  const client = new Redis(redis.url, { lazyConnect: true });
  await client.connect();
  try {
    const env = {
      ...REQUIRED,
      MOMD_LOCAL_REDIS_URL: `${redis.url}/0`,
      MOMD_USERS_REDIS_URL: `${redis.url}/1`,
      MOMD_BACKUP_REDIS_URL: `${redis.url}/2`,
      MOMD_PASSWORD_HASH_COST: "10",
    };
    const bads: Record<string, string>[] = [
      { MOMD_HTTP_LISTEN: "127.0.0.1:99999" },
      { MOMD_GRPC_LISTEN: "0:0" },
    ];
    for (const bad of bads) {
      const res = await runMomd(["serve"], { ...env, ...bad });
      assertConfigExit(res, Object.keys(bad)[0]);
      assert.match(res.stderr, /must be between 1 and 65535/);
    }
    const placeholder = await runMomd(["serve"], {
      ...env,
      MOMD_CLUSTER_SECRET: "change-me-to-32-or-more-random-characters",
    });
    assertConfigExit(placeholder, "MOMD_CLUSTER_SECRET");
    // Nothing was created in any of the three databases: no admin, no store identity.
    for (const db of [0, 1, 2]) {
      await client.select(db);
      assert.equal(await client.dbsize(), 0, `database ${db} is empty`);
    }
  } finally {
    client.disconnect();
    await redis.stop();
  }
});
