import assert from "node:assert/strict";
import { ConfigError, configHelp, loadConfig, SETTINGS } from "../src/config/load.ts";
import { runMomd } from "./support/process.ts";

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
