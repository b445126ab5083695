import assert from "node:assert/strict";
import { ConfigError, configHelp, loadConfig, SETTINGS } from "../src/config/load.ts";
import { runMomd } from "./support/process.ts";
import { makeTlsFiles, type TlsFiles } from "./support/tls.ts";

const SECRET = "0123456789abcdef0123456789abcdef";
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
