/**
 * The command line, run in-process with `runCli` (standard streams, environment and config
 * directory injected) against a running node: real HTTP to the real API over a real Redis.
 */
import assert from "node:assert/strict";
import { serveNode } from "./support/node.ts";
import { commandPaths } from "../src/cli/mod.ts";
import { cliUser } from "./support/cli.ts";
import { clusterProblems, renderClusterStatus } from "../src/cli/commands/cluster.ts";
import type { ClusterStatus } from "../src/api/routing.ts";

function jsonLines(text: string): Record<string, unknown>[] {
  return text.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

Deno.test("cli: --help on every level", async () => {
  const user = await cliUser();
  try {
    const top = await user.run(["--help"]);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /Usage:\n {2}momd serve/);
    assert.match(top.stdout, /Exit codes:/);
    for (const g of ["queue", "topic", "user", "cluster"]) {
      assert.match(top.stdout, new RegExp(`\\n  ${g} `), `top help lists ${g}`);
      const res = await user.run([g, "--help"]);
      assert.equal(res.code, 0, g);
      assert.match(res.stdout, new RegExp(`Usage: momd ${g} <command>`));
    }
    for (const path of commandPaths()) {
      const res = await user.run([...path, "--help"]);
      assert.equal(res.code, 0, path.join(" "));
      assert.match(res.stdout, new RegExp(`^Usage: momd ${path.join(" ")}`), path.join(" "));
      assert.match(res.stdout, /--json/);
    }
    assert.equal(
      (await user.run(["help", "queue", "send"])).stdout,
      (await user.run(["queue", "send", "-h"])).stdout,
    );
    const none = await user.run([]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /Commands:/);
  } finally {
    await user.close();
  }
});

Deno.test("cli: usage errors exit 2", async () => {
  const user = await cliUser();
  try {
    const cases: [string[], RegExp][] = [
      [["frobnicate"], /unknown command 'frobnicate'/],
      [["queue"], /missing queue command/],
      [["queue", "explode"], /unknown queue command 'explode'/],
      [["queue", "list", "--bogus", "--url", "http://x"], /Unknown option '--bogus'/],
      [["queue", "get", "--url", "http://127.0.0.1:9"], /missing NAME/],
      [["queue", "get", "a", "b", "--url", "http://127.0.0.1:9"], /unexpected argument 'b'/],
      [
        ["queue", "receive", "q", "--max", "zero", "--url", "http://127.0.0.1:9"],
        /--max must be a whole number/,
      ],
      [["queue", "peek", "q", "--state", "gone", "--url", "http://127.0.0.1:9"], /--state must be/],
      [["queue", "list"], /no server URL/],
      [["queue", "list", "--url", "ftp://x"], /must start with http/],
      [
        ["login", "--url", "http://127.0.0.1:9", "--username", "a"],
        /no password: use --password-stdin/,
      ],
      [
        ["queue", "send", "q", "--url", "http://127.0.0.1:9", "--file", "/nonexistent/x"],
        /cannot read/,
      ],
    ];
    for (const [args, message] of cases) {
      const res = await user.run(args);
      assert.equal(res.code, 2, `${args.join(" ")}: ${res.stderr}`);
      assert.match(res.stderr, message);
      assert.equal(res.stdout, "");
    }
  } finally {
    await user.close();
  }
});

Deno.test("cli: login, queues, send from stdin, receive --ack, JSON, exit codes 3 and 4", async (t) => {
  const node = await serveNode();
  const admin = await cliUser();
  try {
    await t.step("a wrong password is refused: exit 3, nothing saved", async () => {
      const res = await admin.run(
        ["login", "--url", node.url, "--username", "admin", "--password-stdin"],
        { stdin: "wrong-password\n" },
      );
      assert.equal(res.code, 3);
      assert.match(res.stderr, /401 bad_credentials/);
      await assert.rejects(Deno.stat(admin.credentialsFile));
    });

    await t.step("login --password-stdin saves the token with mode 0600", async () => {
      const res = await admin.run(
        ["login", "--url", node.url, "--username", "admin", "--password-stdin"],
        { stdin: "admin-password\n" },
      );
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /logged in to .* as admin/);
      const info = await Deno.stat(admin.credentialsFile);
      assert.equal(info.mode! & 0o777, 0o600);
      assert.equal((await Deno.stat(`${admin.home}/config/momd`)).mode! & 0o777, 0o700);
      const saved = JSON.parse(await Deno.readTextFile(admin.credentialsFile));
      assert.equal(saved.url, node.url);
      assert.equal(saved.username, "admin");
      assert.equal(typeof saved.token, "string");
      assert.ok(!JSON.stringify(saved).includes("admin-password"), "no password saved");
      const who = await admin.run(["whoami", "--json"]);
      assert.equal(JSON.parse(who.stdout).username, "admin");
    });

    await t.step("queue create, then list and get as tables and JSON", async () => {
      const created = await admin.run(["queue", "create", "jobs", "--visibility-timeout", "60"]);
      assert.equal(created.code, 0, created.stderr);
      assert.equal(created.stdout, "created queue 'jobs'\n");
      const again = await admin.run(["queue", "create", "jobs", "--visibility-timeout", "60"]);
      assert.equal(again.stdout, "queue 'jobs' exists already\n");
      const conflict = await admin.run(["queue", "create", "jobs", "--max-deliveries", "9"]);
      assert.equal(conflict.code, 3);
      assert.match(conflict.stderr, /409 already_exists/);

      const list = await admin.run(["queue", "list"]);
      assert.match(list.stdout, /^NAME +OWNER +CREATED\njobs +admin +\d{4}-/);
      const listJson = JSON.parse((await admin.run(["queue", "list", "--json"])).stdout);
      assert.deepEqual(listJson.queues.map((q: { name: string }) => q.name), ["jobs"]);
      const get = await admin.run(["queue", "get", "jobs"]);
      assert.match(get.stdout, /visibility timeout: +1m\n/);
      const getJson = JSON.parse((await admin.run(["queue", "get", "jobs", "--json"])).stdout);
      assert.equal(getJson.config.visibilityTimeoutSeconds, 60);
    });

    await t.step("send from standard input: one message a line, batched by 100", async () => {
      const lines = Array.from({ length: 250 }, (_, i) => `line ${i + 1}`);
      // Blank lines, also those of only spaces or tabs, are skipped (and not renumbered).
      const res = await admin.run(["queue", "send", "jobs"], {
        stdin: lines.slice(0, 100).join("\n") + "\n   \n\t\n \r\n" + lines.slice(100).join("\n") +
          "\n\n",
      });
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stdout, "sent 250 messages to queue 'jobs'\n");
      const q = JSON.parse((await admin.run(["queue", "get", "jobs", "--json"])).stdout);
      assert.equal(q.stats.depth, 250);
      assert.equal(q.stats.totals.sent, 250);
    });

    await t.step("receive --ack --json: one parseable line per message, in order", async () => {
      const res = await admin.run(["queue", "receive", "jobs", "--ack", "--max", "250", "--json"]);
      assert.equal(res.code, 0, res.stderr);
      const got = jsonLines(res.stdout);
      assert.equal(got.length, 250);
      assert.equal(got[0].body, "line 1");
      assert.equal(got[249].body, "line 250");
      assert.equal(typeof got[0].receipt, "string");
      const q = JSON.parse((await admin.run(["queue", "get", "jobs", "--json"])).stdout);
      assert.equal(q.stats.depth + q.stats.inFlight, 0);
      assert.equal(q.stats.totals.acked, 250);
    });

    await t.step("send from arguments and a file; receive as a table; ack by receipt", async () => {
      const one = await admin.run(["queue", "send", "jobs", "hello world", "--attr", "k=v"]);
      assert.match(one.stdout, /^sent 1 message to queue 'jobs': [0-9A-Z]{26}\n$/);
      const file = `${admin.home}/messages.txt`;
      await Deno.writeTextFile(file, "from file 1\r\nfrom file 2\n");
      const fromFile = await admin.run(["queue", "send", "jobs", "--file", file, "--json"]);
      assert.deepEqual(jsonLines(fromFile.stdout).map((l) => l.line), [1, 2]);

      const table = await admin.run(["queue", "receive", "jobs", "--max", "3"]);
      assert.equal(table.code, 0);
      const rows = table.stdout.trimEnd().split("\n");
      assert.match(rows[0], /^ID +DELIVERY +RECEIPT +BODY$/);
      assert.match(rows[1], /^[0-9A-Z]{26} +1 +\S+ +hello world$/);
      assert.match(rows[3], / from file 2$/);
      const receipts = rows.slice(1).map((r) => r.split(/\s+/)[2]);
      const acked = await admin.run(["queue", "ack", "jobs", ...receipts]);
      assert.equal(acked.stdout, "acknowledged 3 message(s)\n");
      // The receipts are stale now: exit 3 with and without --json.
      const stale = await admin.run(["queue", "ack", "jobs", receipts[0]]);
      assert.equal(stale.code, 3, stale.stderr);
      assert.match(stale.stderr, /1 receipt\(s\) stale/);
      const staleJson = await admin.run(["queue", "ack", "jobs", receipts[0], "--json"]);
      assert.equal(staleJson.code, 3, "the exit code does not depend on --json");
      assert.deepEqual(JSON.parse(staleJson.stdout).results.map((r: { ok: boolean }) => r.ok), [
        false,
      ]);
      const empty = await admin.run(["queue", "receive", "jobs"]);
      assert.equal(empty.code, 0);
      assert.equal(empty.stdout, "");
      assert.match(empty.stderr, /no message ready/);
    });

    await t.step("--dedup-prefix makes a repeated send store each line once", async () => {
      await admin.run(["queue", "create", "dedup"]);
      const args = ["queue", "send", "dedup", "--dedup-prefix", "batch-1"];
      await admin.run(args, { stdin: "a\nb\nc\n" });
      const again = await admin.run(args, { stdin: "a\nb\nc\n" });
      assert.equal(again.stdout, "sent 3 messages to queue 'dedup' (3 duplicates)\n");
      const q = JSON.parse((await admin.run(["queue", "get", "dedup", "--json"])).stdout);
      assert.equal(q.stats.depth, 3);
    });

    await t.step("peek, purge, redrive, delete", async () => {
      await admin.run(["queue", "send", "jobs", "x", "y"]);
      const peek = await admin.run(["queue", "peek", "jobs", "--json"]);
      assert.deepEqual(JSON.parse(peek.stdout).messages.map((m: { body: string }) => m.body), [
        "x",
        "y",
      ]);
      assert.match((await admin.run(["queue", "purge", "jobs"])).stdout, /purged 2 message/);
      assert.match((await admin.run(["queue", "redrive", "jobs"])).stdout, /moved 0 dead letter/);
      assert.equal((await admin.run(["queue", "delete", "dedup"])).code, 0);
      const gone = await admin.run(["queue", "get", "dedup"]);
      assert.equal(gone.code, 3);
      assert.match(gone.stderr, /404 not_found/);
    });

    await t.step("a progress line on a terminal for a large input", async () => {
      const lines = Array.from({ length: 300 }, (_, i) => `p${i}`).join("\n");
      const res = await admin.run(["queue", "send", "jobs"], {
        stdin: lines,
        stderrIsTerminal: true,
      });
      assert.equal(res.code, 0);
      assert.match(res.stderr, /\r.*300 sent/);
      const quiet = await admin.run(["queue", "send", "jobs"], { stdin: lines });
      assert.equal(quiet.stderr, "", "no progress line when standard error is not a terminal");
      await admin.run(["queue", "purge", "jobs"]);
    });

    await t.step("receive --follow prints messages as they come and stops on Ctrl-C", async () => {
      const interrupt = new AbortController();
      let seen = "";
      const following = admin.run(["queue", "receive", "jobs", "--follow", "--ack"], {
        interrupt: interrupt.signal,
        onStdout: (all) => seen = all,
      });
      await admin.run(["queue", "send", "jobs", "first"]);
      await admin.run(["queue", "send", "jobs", "second"]);
      for (let i = 0; i < 100 && !seen.includes("second"); i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      interrupt.abort();
      const res = await following;
      assert.equal(res.code, 0, res.stderr);
      const rows = res.stdout.trimEnd().split("\n");
      assert.match(rows[0], /^ID +DELIVERY +BODY$/);
      assert.deepEqual(rows.slice(1).map((r) => r.split(/\s+/).at(-1)), ["first", "second"]);
      const q = JSON.parse((await admin.run(["queue", "get", "jobs", "--json"])).stdout);
      assert.equal(q.stats.depth + q.stats.inFlight, 0);
    });

    await t.step("refused requests exit 3 with the reason", async () => {
      const alice = await cliUser();
      try {
        await admin.run(["user", "create", "alice", "--password-stdin"], {
          stdin: "alice-password\n",
        });
        await alice.run(["login", "--url", node.url, "--username", "alice", "--password-stdin"], {
          stdin: "alice-password",
        });
        const forbidden = await alice.run(["user", "list"]);
        assert.equal(forbidden.code, 3);
        assert.match(forbidden.stderr, /403 forbidden/);
        const notOwner = await alice.run(["queue", "delete", "jobs"]);
        assert.equal(notOwner.code, 3);
      } finally {
        await alice.close();
      }
      const anonymous = await cliUser();
      try {
        const res = await anonymous.run(["queue", "list", "--url", node.url]);
        assert.equal(res.code, 3);
        assert.match(res.stderr, /not logged in: run 'momd login' \(401 unauthenticated\)/);
      } finally {
        await anonymous.close();
      }
    });

    await t.step("an unreachable server exits 4", async () => {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (listener.addr as Deno.NetAddr).port;
      listener.close();
      const res = await admin.run(["queue", "list", "--url", `http://127.0.0.1:${port}`]);
      assert.equal(res.code, 4);
      assert.match(res.stderr, /cannot reach/);
    });

    await t.step("a server answering 503 exits 4 (after the retries)", async () => {
      let calls = 0;
      const down = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, () => {
        calls++;
        return new Response(
          JSON.stringify({
            type: "x",
            title: "Service Unavailable",
            status: 503,
            detail: "not now",
            code: "unavailable",
          }),
          {
            status: 503,
            headers: { "content-type": "application/problem+json", "retry-after": "0" },
          },
        );
      });
      try {
        const res = await admin.run([
          "queue",
          "list",
          "--url",
          `http://127.0.0.1:${down.addr.port}`,
        ]);
        assert.equal(res.code, 4);
        assert.match(res.stderr, /not now \(503 unavailable\)/);
        assert.equal(calls, 4, "a GET is retried");
        calls = 0;
        const send = await admin.run([
          "queue",
          "send",
          "q",
          "m",
          "--url",
          `http://127.0.0.1:${down.addr.port}`,
        ]);
        assert.equal(send.code, 4);
        // A 503 means "not applied": a send is retried too (the client gave it a dedupId).
        assert.equal(calls, 4, "a send is retried after a 503");
        assert.match(send.stderr, /0 message\(s\) sent to queue 'q' before the failure/);
      } finally {
        await down.shutdown();
      }
    });

    await t.step("cluster status on a single node says so and lists what it owns", async () => {
      const res = await admin.run(["cluster", "status"]);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /^single node '\S+' \(no cluster\)/);
      assert.match(res.stdout, /\nNODE +ALIVE +READY +CONTROLLER +OWNS/);
      assert.match(res.stdout, /\nqueue\/jobs +\S+ +- +- +0 +-\n/);
      const json = JSON.parse((await admin.run(["cluster", "status", "--json"])).stdout);
      assert.equal(json.mode, "single");
      assert.ok(json.entities.some((e: { name: string }) => e.name === "jobs"));
    });

    await t.step("logout forgets the login", async () => {
      const res = await admin.run(["logout"]);
      assert.equal(res.code, 0);
      await assert.rejects(Deno.stat(admin.credentialsFile));
      const after = await admin.run(["queue", "list", "--url", node.url]);
      assert.equal(after.code, 3);
      assert.equal((await admin.run(["logout"])).stdout, "not logged in\n");
    });
  } finally {
    await admin.close();
    await node.close();
  }
});

Deno.test("cli: topics — create, subscribe, publish, receive --ack", async () => {
  const node = await serveNode();
  const user = await cliUser();
  try {
    const env = { MOMD_URL: node.url };
    const login = await user.run(["login", "--username", "admin", "--password-stdin"], {
      stdin: "admin-password\n",
      env,
    });
    assert.equal(login.code, 0, login.stderr);
    assert.equal(
      (await user.run(["topic", "create", "events"])).stdout,
      "created topic 'events'\n",
    );
    const sub = await user.run(["topic", "subscribe", "events", "audit", "--start", "earliest"]);
    assert.equal(sub.stdout, "subscribed 'audit' to topic 'events' from offset 0\n");
    const pub = await user.run(["topic", "publish", "events", "--key", "u1", "--json"], {
      stdin: "signed up\nlogged in\n",
    });
    assert.deepEqual(jsonLines(pub.stdout).map((l) => [l.line, l.offset]), [[1, 0], [2, 1]]);
    const got = await user.run(["topic", "receive", "events", "audit", "--max", "5", "--ack"]);
    assert.equal(got.code, 0, got.stderr);
    const rows = got.stdout.trimEnd().split("\n");
    assert.match(rows[0], /^OFFSET +DELIVERY +KEY +BODY$/);
    assert.match(rows[1], /^0 +1 +u1 +signed up$/);
    assert.match(rows[2], /^1 +1 +u1 +logged in$/);
    const subs = await user.run(["topic", "subscriptions", "events", "--json"]);
    const audit = JSON.parse(subs.stdout).subscriptions[0];
    assert.equal(audit.stats.position, 2);
    assert.equal(audit.stats.inFlight, 0);
    const get = await user.run(["topic", "get", "events"]);
    assert.match(get.stdout, /next offset: +2/);
    assert.match(get.stdout, /\nSUBSCRIPTION +POSITION +LAG/);
    const peek = await user.run(["topic", "peek", "events", "--json"]);
    assert.equal(JSON.parse(peek.stdout).messages.length, 2);

    // Seek: back to 0; past the end is clamped, and the command says so.
    const back = await user.run(["topic", "seek", "events", "audit", "--offset", "0"]);
    assert.equal(back.code, 0, back.stderr);
    assert.match(back.stdout, /^moved subscription 'audit' of topic 'events' to offset 0;/);
    assert.doesNotMatch(back.stdout, /outside/);
    const past = await user.run(["topic", "seek", "events", "audit", "--offset", "99"]);
    assert.equal(past.code, 0, past.stderr);
    assert.match(past.stdout, /to offset 2 \(offset 99 is outside the retained messages/);
    const pastJson = await user.run([
      "topic",
      "seek",
      "events",
      "audit",
      "--offset",
      "99",
      "--json",
    ]);
    assert.deepEqual(JSON.parse(pastJson.stdout), {
      position: 2,
      dropped: 0,
      requestedOffset: 99,
      clamped: true,
    });
    const byTime = await user.run([
      "topic",
      "seek",
      "events",
      "audit",
      "--time",
      "2000-01-01T00:00:00Z",
      "--json",
    ]);
    assert.equal(JSON.parse(byTime.stdout).position, 0);
    assert.equal(JSON.parse(byTime.stdout).clamped, false);
    assert.equal((await user.run(["topic", "seek", "events", "audit"])).code, 2);
    assert.equal((await user.run(["topic", "list", "--json"])).code, 0);
    assert.equal((await user.run(["topic", "unsubscribe", "events", "audit"])).code, 0);
    assert.equal((await user.run(["topic", "delete", "events"])).code, 0);
    assert.equal((await user.run(["topic", "get", "events"])).code, 3);
  } finally {
    await user.close();
    await node.close();
  }
});

Deno.test("cli: users — create, list, passwd, delete", async () => {
  const node = await serveNode();
  const admin = await cliUser();
  const bob = await cliUser();
  try {
    const env = { MOMD_URL: node.url };
    await admin.run(["login", "--username", "admin", "--password-stdin"], {
      stdin: "admin-password",
      env,
    });
    const created = await admin.run(["user", "create", "bob", "--password-stdin"], {
      stdin: "bob-password-1\n",
    });
    assert.equal(created.stdout, "created user 'bob'\n");
    const list = await admin.run(["user", "list"]);
    assert.match(list.stdout, /^USERNAME +ROLE +CREATED\nadmin +admin +.*\nbob +user +/);

    await bob.run(["login", "--username", "bob", "--password-stdin"], {
      stdin: "bob-password-1",
      env,
    });
    const passwd = await bob.run(["user", "passwd", "--password-stdin"], {
      stdin: "bob-password-1\nbob-password-2\n",
    });
    assert.equal(passwd.code, 0, passwd.stderr);
    const who = await bob.run(["whoami", "--json"]);
    assert.equal(who.code, 0, "logged in again with the new password: " + who.stderr);
    const oneLine = await bob.run(["user", "passwd", "--password-stdin"], { stdin: "only-one\n" });
    assert.equal(oneLine.code, 2);

    // Cluster status is for admins.
    const status = await bob.run(["cluster", "status"]);
    assert.equal(status.code, 3);
    assert.match(status.stderr, /403 forbidden/);
    assert.equal((await admin.run(["cluster", "status", "--json"])).code, 0);

    // MOMD_TOKEN overrides the saved login, and the messages say which token was used.
    const adminToken = JSON.parse(await Deno.readTextFile(admin.credentialsFile)).token;
    const asAdmin = await bob.run(["whoami"], { env: { MOMD_TOKEN: adminToken } });
    assert.equal(asAdmin.code, 0, asAdmin.stderr);
    assert.match(asAdmin.stdout, /user: +admin\n/);
    assert.match(asAdmin.stdout, /token from: +MOMD_TOKEN/);
    assert.match(asAdmin.stdout, /token expires: +\d{4}-/);
    const saved = await bob.run(["whoami", "--json"]);
    assert.equal(JSON.parse(saved.stdout).tokenFrom, bob.credentialsFile);

    const bobToken = JSON.parse(await Deno.readTextFile(bob.credentialsFile)).token;
    const reset = await admin.run(["user", "passwd", "bob", "--password-stdin"], {
      stdin: "bob-password-3\n",
    });
    assert.equal(reset.code, 0, reset.stderr);
    const revoked = await bob.run(["whoami"]);
    assert.equal(revoked.code, 3);
    assert.match(revoked.stderr, /your token was revoked/);
    const revokedEnv = await admin.run(["whoami"], { env: { MOMD_TOKEN: bobToken } });
    assert.equal(revokedEnv.code, 3);
    assert.match(revokedEnv.stderr, /the token in MOMD_TOKEN was revoked/);
    assert.doesNotMatch(revokedEnv.stderr, /the saved token|your token/);
    const forged = await admin.run(["whoami"], { env: { MOMD_TOKEN: "x.y.z" } });
    assert.equal(forged.code, 3);
    assert.match(forged.stderr, /the token in MOMD_TOKEN is not valid for this server/);

    assert.equal((await admin.run(["user", "delete", "bob"])).stdout, "deleted user 'bob'\n");
    assert.equal((await admin.run(["user", "delete", "bob"])).code, 3);
  } finally {
    await admin.close();
    await bob.close();
    await node.close();
  }
});

Deno.test("cli: cluster status renders nodes and ownership as tables", () => {
  const status: ClusterStatus = {
    node: "n2",
    version: "0.14.0",
    mode: "cluster",
    backup: { recoveryPoint: null },
    controller: "n1",
    nodes: [
      {
        id: "n1",
        http: "127.0.0.1:8081",
        grpc: "127.0.0.1:9081",
        alive: true,
        owned: 1,
        replicated: 1,
        startedAt: "2026-01-01T00:00:00.000Z",
        version: "0.14.0",
        ready: true,
        recoveryPoint: "2026-01-01T00:00:05.000Z",
      },
      {
        id: "n2",
        http: "127.0.0.1:8082",
        grpc: "127.0.0.1:9082",
        alive: true,
        owned: 1,
        replicated: 1,
        startedAt: "2026-01-01T00:00:01.000Z",
        version: "0.14.0",
        ready: false,
        recoveryPoint: null,
      },
      {
        id: "n3",
        http: null,
        grpc: null,
        alive: false,
        owned: 0,
        replicated: 0,
        startedAt: null,
        version: null,
        ready: null,
        recoveryPoint: null,
      },
    ],
    entities: [
      {
        type: "queue",
        name: "jobs",
        owner: "n1",
        replicas: ["n2", "n3"],
        epoch: 3,
        lag: { n2: 0, n3: null },
        inSync: ["n2"],
      },
      { type: "topic", name: "events", owner: "n2", replicas: [], epoch: 1, lag: {}, inSync: [] },
    ],
  };
  const text = renderClusterStatus(status);
  assert.match(
    text,
    /^cluster seen from 'n2': 2 of 3 nodes alive, controller n1, backup recovery point -\n/,
  );
  assert.match(
    text,
    /NODE +ALIVE +READY +CONTROLLER +OWNS +REPLICAS +VERSION +HTTP +GRPC +STARTED\nn1 +yes +yes +yes +1 +1 +0\.14\.0 +127\.0\.0\.1:8081 +127\.0\.0\.1:9081 +2026-01-01T00:00:00Z\n/,
  );
  assert.match(text, /\nn2 +yes +no +no +1 +1 +0\.14\.0 /);
  assert.match(text, /\nn3 +no +- +no +0 +0 +- +- +- +-\n/);
  assert.match(
    text,
    /ENTITY +OWNER +REPLICAS +IN SYNC +EPOCH +LAG\nqueue\/jobs +n1 +n2,n3 +n2 +3 +n2:0 n3:\?\ntopic\/events +n2 +- +- +1 +-\n/,
  );
  // What makes `cluster status` exit 5.
  assert.deepEqual(clusterProblems(status), [
    "node down: n3",
    "not ready: n2",
    "1 under-replicated (queue/jobs)",
  ]);
  const healthy: ClusterStatus = {
    ...status,
    nodes: status.nodes.slice(0, 1),
    entities: [{ ...status.entities[0], replicas: ["n2"] }],
  };
  assert.deepEqual(clusterProblems(healthy), []);
});
