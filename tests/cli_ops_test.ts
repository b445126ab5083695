/**
 * The command line's settling and administration commands, run in-process with `runCli` against
 * a running node (the real API over a real Redis): `nack` and `visibility` of queues and
 * subscriptions (receipts as arguments or from standard input), `topic configure`,
 * `topic subscription`, a subscription's dead letters and their redrive, `topic seek`, and the
 * progress line of long receives.
 */
import assert from "node:assert/strict";
import { serveNode } from "./support/node.ts";
import { runMomd, type RunOptions, type RunResult } from "./support/cli.ts";
import { Progress } from "../src/cli/progress.ts";

/** Terminal escapes made visible (a regular expression may not hold control characters). */
function esc(text: string): string {
  return text.replaceAll("\x1b", "<ESC>");
}

function jsonLines(text: string): Record<string, unknown>[] {
  return text.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

/** A command runner for one user, whose token is in MOMD_TOKEN. */
function runnerFor(url: string, token: string) {
  const env = { MOMD_URL: url, MOMD_TOKEN: token, HOME: "/nonexistent" };
  return (args: string[], opts: RunOptions = {}): Promise<RunResult> => runMomd(args, env, opts);
}

/** Runs a command that must succeed, and parses its --json output. */
async function json(
  run: (args: string[], opts?: RunOptions) => Promise<RunResult>,
  args: string[],
  opts: RunOptions = {},
  // deno-lint-ignore no-explicit-any
): Promise<any> {
  const res = await run([...args, "--json"], opts);
  assert.equal(res.code, 0, `${args.join(" ")}: ${res.stderr}`);
  return JSON.parse(res.stdout);
}

type Delivery = { receipt: string; body: string; deliveryCount: number; visibleAt: string };

/** Receives up to `max` messages as JSON lines (without acking them). */
async function receive(
  run: (args: string[], opts?: RunOptions) => Promise<RunResult>,
  target: string[],
  max: number,
): Promise<Delivery[]> {
  const res = await run([
    ...target.slice(0, 1),
    "receive",
    ...target.slice(1),
    "--max",
    `${max}`,
    "--json",
  ]);
  assert.equal(res.code, 0, res.stderr);
  return jsonLines(res.stdout) as unknown as Delivery[];
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("cli ops: queue nack and visibility by receipt, from arguments and standard input", async (t) => {
  const node = await serveNode();
  const run = runnerFor(node.url, node.api.adminToken);
  const q = ["queue", "jobs"];
  try {
    assert.equal((await run(["queue", "create", "jobs", "--max-deliveries", "3"])).code, 0);
    assert.equal((await run(["queue", "send", "jobs", "a", "b", "c"])).code, 0);
    const [a, b, c] = await receive(run, q, 3);
    assert.deepEqual([a.body, b.body, c.body], ["a", "b", "c"]);

    await t.step("nack releases a delivery at once: first in line, delivered again", async () => {
      const res = await run(["queue", "nack", "jobs", a.receipt]);
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stdout, "released 1 message(s) for redelivery\n");
      assert.equal(res.stderr, "");
      const [again] = await receive(run, q, 1);
      assert.equal(again.body, "a");
      assert.equal(again.deliveryCount, 2);
      a.receipt = again.receipt;
    });

    await t.step(
      "nack --delay --json: the API's per-receipt results; the message waits",
      async () => {
        const res = await json(run, ["queue", "nack", "jobs", b.receipt, "--delay", "600"]);
        assert.deepEqual(res, { results: [{ receipt: b.receipt, ok: true }] });
        const stats = (await json(run, ["queue", "get", "jobs"])).stats;
        assert.equal(stats.delayed, 1);
        const text = await run(["queue", "nack", "jobs", a.receipt, "--delay", "90"]);
        assert.equal(text.stdout, "released 1 message(s) for redelivery after 1m30s\n");
      },
    );

    await t.step(
      "a refused receipt exits 3, listed on standard error, with --json too",
      async () => {
        const stale = await run(["queue", "nack", "jobs", b.receipt]);
        assert.equal(stale.code, 3, stale.stderr);
        assert.equal(stale.stdout, "released 0 message(s) for redelivery\n");
        assert.match(stale.stderr, /1 receipt\(s\) stale: not the current delivery/);
        assert.ok(stale.stderr.includes(`\n  ${b.receipt}\n`), stale.stderr);
        const staleJson = await run(["queue", "nack", "jobs", b.receipt, c.receipt, "--json"]);
        assert.equal(staleJson.code, 3, "the exit code does not depend on --json");
        assert.deepEqual(JSON.parse(staleJson.stdout).results, [
          { receipt: b.receipt, ok: false, error: "stale_receipt" },
          { receipt: c.receipt, ok: true },
        ]);
        const vis = await run(["queue", "visibility", "jobs", b.receipt, "--timeout", "60"]);
        assert.equal(vis.code, 3);
        assert.match(vis.stderr, /1 receipt\(s\) stale/);
      },
    );

    await t.step("visibility extends a delivery (its receipt stays valid), 0 ends it", async () => {
      const [d] = await receive(run, q, 1);
      assert.equal(d.body, "c");
      const before = Date.now();
      const res = await run(["queue", "visibility", "jobs", d.receipt, "--timeout", "600"]);
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stdout, "1 delivery(ies) stay in flight for 10m from now\n");
      const inflight = await json(run, ["queue", "peek", "jobs", "--state", "inflight"]);
      const c2 = inflight.messages.find((m: { body: string }) => m.body === "c");
      assert.ok(Date.parse(c2.visibleAt) >= before + 590_000, c2.visibleAt);
      const ended = await json(run, ["queue", "visibility", "jobs", d.receipt, "--timeout", "0"]);
      assert.deepEqual(ended.results, [{ receipt: d.receipt, ok: true }]);
      const [back] = await receive(run, q, 1);
      assert.equal(back.body, "c");
      assert.equal(back.deliveryCount, d.deliveryCount + 1);
      assert.equal((await run(["queue", "ack", "jobs", back.receipt])).code, 0);
    });

    await t.step("receipts from standard input: receive --json lines, or one a line", async () => {
      await run(["queue", "purge", "jobs"]);
      await run(["queue", "send", "jobs", "x", "y", "z"]);
      const piped = await run(["queue", "receive", "jobs", "--max", "2", "--json"]);
      const nacked = await run(["queue", "nack", "jobs"], { stdin: piped.stdout });
      assert.equal(nacked.code, 0, nacked.stderr);
      assert.equal(nacked.stdout, "released 2 message(s) for redelivery\n");
      const got = await receive(run, q, 3);
      assert.deepEqual(got.map((m) => m.body).sort(), ["x", "y", "z"]);
      const lines = `${got[0].receipt}\n\n  ${got[1].receipt}  \r\n"${got[2].receipt}"\n`;
      const acked = await run(["queue", "ack", "jobs"], { stdin: lines });
      assert.equal(acked.stdout, "acknowledged 3 message(s)\n", acked.stderr);
    });

    await t.step("more than 100 receipts go as several requests", async () => {
      const bodies = Array.from({ length: 150 }, (_, i) => `m${i}`).join("\n");
      assert.equal((await run(["queue", "send", "jobs"], { stdin: bodies })).code, 0);
      const piped = await run(["queue", "receive", "jobs", "--max", "150", "--json"]);
      assert.equal(jsonLines(piped.stdout).length, 150);
      const res = await run(["queue", "visibility", "jobs", "--timeout", "300", "--json"], {
        stdin: piped.stdout,
      });
      assert.equal(res.code, 0, res.stderr);
      assert.equal(JSON.parse(res.stdout).results.length, 150);
      const acked = await run(["queue", "ack", "jobs"], { stdin: piped.stdout });
      assert.equal(acked.stdout, "acknowledged 150 message(s)\n", acked.stderr);
      assert.equal((await json(run, ["queue", "get", "jobs"])).stats.inFlight, 0);
    });

    await t.step("bad input exits 2 with a clear message, and changes nothing", async () => {
      await run(["queue", "send", "jobs", "held"]);
      const [held] = await receive(run, q, 1);
      const cases: [string[], RunOptions, RegExp][] = [
        [
          ["queue", "nack", "jobs"],
          {},
          /missing RECEIPT: give receipts as arguments or one a line/,
        ],
        [["queue", "nack"], {}, /missing NAME/],
        [["queue", "visibility", "jobs", held.receipt], {}, /missing --timeout SECS/],
        [
          ["queue", "visibility", "jobs", held.receipt, "--timeout", "ten"],
          {},
          /--timeout must be a whole number, 0-43200 \(got 'ten'\)/,
        ],
        [
          ["queue", "visibility", "jobs", held.receipt, "--timeout", "43201"],
          {},
          /--timeout must be a whole number/,
        ],
        [["queue", "nack", "jobs", held.receipt, "--delay", "901"], {}, /--delay must be/],
        [["queue", "nack", "jobs", "not a receipt!"], {}, /not a receipt: 'not a receipt!'/],
        // The first line is a good receipt, but the second is not: nothing is sent.
        [
          ["queue", "nack", "jobs"],
          { stdin: `${held.receipt}\n{"body":"no receipt"}\n` },
          /standard input line 2 is neither a receipt nor a JSON object with a "receipt"/,
        ],
        [["queue", "ack", "jobs"], { stdin: "{not json\n" }, /standard input line 1/],
      ];
      for (const [args, opts, message] of cases) {
        const res = await run(args, opts);
        assert.equal(res.code, 2, `${args.join(" ")}: ${res.stderr}`);
        assert.match(res.stderr, message);
        assert.match(res.stderr, /Run 'momd queue \w+ --help' for usage/);
        assert.equal(res.stdout, "");
      }
      const stats = (await json(run, ["queue", "get", "jobs"])).stats;
      assert.equal(stats.inFlight, 1, "the good receipt before the bad line was not nacked");
      assert.equal((await run(["queue", "ack", "jobs", held.receipt])).code, 0);
    });

    await t.step("an unknown queue exits 3 (404)", async () => {
      const res = await run(["queue", "nack", "nope", a.receipt]);
      assert.equal(res.code, 3);
      assert.match(res.stderr, /404 not_found/);
    });
  } finally {
    await node.close();
  }
});

Deno.test("cli ops: topic configure, subscription, nack, visibility, dead letters, redrive, seek", async (t) => {
  const node = await serveNode();
  const run = runnerFor(node.url, node.api.adminToken);
  const sub = ["topic", "events", "audit"];
  try {
    assert.equal((await run(["topic", "create", "events"])).code, 0);
    const bob = runnerFor(node.url, await node.api.userToken("bob"));

    await t.step("configure changes the given settings, visible in topic get", async () => {
      const res = await run(["topic", "configure", "events", "--retention", "3600"]);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /retention: +age 1h, count none, size 100 MiB\n/);
      const got = await json(run, ["topic", "get", "events"]);
      assert.equal(got.config.retentionSeconds, 3600);
      const more = await json(run, [
        "topic",
        "configure",
        "events",
        "--retention-messages",
        "3",
        "--max-deliveries",
        "7",
        "--restricted",
        "--receiver",
        "bob",
      ]);
      assert.equal(more.config.retentionSeconds, 3600, "the other settings are kept");
      assert.equal(more.config.retentionMaxMessages, 3);
      assert.equal(more.config.maxDeliveries, 7);
      assert.deepEqual(more.config.access, { restricted: true, senders: [], receivers: ["bob"] });
      const open = await json(run, ["topic", "configure", "events", "--unrestricted"]);
      assert.equal(open.config.access.restricted, false);
      // The shorter count retention trims the log as messages come.
      await run(["topic", "publish", "events", "1", "2", "3", "4", "5"]);
      const trimmed = await run(["topic", "get", "events"]);
      assert.match(trimmed.stdout, /messages: +3 \(offsets 2-4\)\n/);
      assert.match(trimmed.stdout, /retention: +age 1h, count 3, size 100 MiB\n/);
      await run(["topic", "configure", "events", "--retention-messages", "0"]);
    });

    await t.step("configure: nothing given, bad values, not the owner", async () => {
      const none = await run(["topic", "configure", "events"]);
      assert.equal(none.code, 2);
      assert.match(none.stderr, /nothing to change/);
      const bad = await run(["topic", "configure", "events", "--retention", "1.5"]);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /--retention must be a whole number/);
      const both = await run(["topic", "configure", "events", "--restricted", "--unrestricted"]);
      assert.equal(both.code, 2);
      const forbidden = await bob(["topic", "configure", "events", "--retention", "60"]);
      assert.equal(forbidden.code, 3);
      assert.match(forbidden.stderr, /403 forbidden/);
      const missing = await run(["topic", "configure", "nope", "--retention", "60"]);
      assert.equal(missing.code, 3);
      assert.match(missing.stderr, /404 not_found/);
    });

    await t.step("topic subscription shows one subscription", async () => {
      const created = await run([
        "topic",
        "subscribe",
        "events",
        "audit",
        "--start",
        "latest",
        "--max-deliveries",
        "1",
      ]);
      assert.equal(created.code, 0, created.stderr);
      const res = await run(["topic", "subscription", "events", "audit"]);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /^topic: +events\nsubscription: +audit\ncreator: +admin\n/);
      assert.match(res.stdout, /\nposition: +5\n/);
      assert.match(res.stdout, /\nmax deliveries: +1\n/);
      const got = await json(run, ["topic", "subscription", "events", "audit"]);
      assert.equal(got.name, "audit");
      assert.equal(got.stats.position, 5);
      const missing = await run(["topic", "subscription", "events", "nope"]);
      assert.equal(missing.code, 3);
      assert.match(missing.stderr, /404/);
      assert.equal((await run(["topic", "subscription", "events"])).code, 2);
    });

    await t.step(
      "a nacked message past max deliveries is a dead letter; redrive brings it back",
      async () => {
        await run(["topic", "publish", "events", "poison", "--key", "k1"]);
        const [m] = await receive(run, sub, 1);
        assert.equal(m.body, "poison");
        const nacked = await run(["topic", "nack", "events", "audit", m.receipt]);
        assert.equal(nacked.code, 0, nacked.stderr);
        assert.equal(nacked.stdout, "released 1 message(s) for redelivery\n");
        assert.equal(
          (await json(run, ["topic", "subscription", "events", "audit"])).stats
            .deadLettered,
          1,
        );
        assert.deepEqual(await receive(run, sub, 1), [], "not delivered again");

        const list = await run(["topic", "dead-letters", "events", "audit"]);
        assert.equal(list.code, 0, list.stderr);
        const rows = list.stdout.trimEnd().split("\n");
        assert.match(rows[0], /^OFFSET +DELIVERIES +DEAD SINCE +KEY +BODY$/);
        assert.match(rows[1], /^5 +1 +\d{4}-\S+Z +k1 +poison$/);
        const listJson = await json(run, [
          "topic",
          "dead-letters",
          "events",
          "audit",
          "--limit",
          "5",
        ]);
        assert.equal(listJson.total, 1);
        assert.equal(listJson.messages[0].body, "poison");
        assert.equal(listJson.messages[0].offset, 5);
        const past = await run(["topic", "dead-letters", "events", "audit", "--offset", "1"]);
        assert.equal(past.code, 0);
        assert.match(past.stderr, /no more dead letters \(1 in all\)/);

        const redriven = await run(["topic", "redrive", "events", "audit"]);
        assert.equal(redriven.code, 0, redriven.stderr);
        assert.equal(
          redriven.stdout,
          "moved 1 dead letter(s) back to subscription 'audit' of topic 'events'; 0 left\n",
        );
        const [again] = await receive(run, sub, 1);
        assert.equal(again.body, "poison");
        assert.equal(again.deliveryCount, 1, "the delivery count starts again");
        assert.equal((await run(["topic", "ack", "events", "audit", again.receipt])).code, 0);
        const empty = await run(["topic", "dead-letters", "events", "audit"]);
        assert.equal(empty.stdout, "");
        assert.match(empty.stderr, /no dead letters in subscription 'audit' of topic 'events'/);
        assert.deepEqual(await json(run, ["topic", "redrive", "events", "audit", "--max", "10"]), {
          moved: 0,
          expired: 0,
          remaining: 0,
        });
        assert.equal((await run(["topic", "redrive", "events", "audit", "--max", "0"])).code, 2);
      },
    );

    await t.step(
      "topic visibility and nack: success, --json, stale receipts, bad input",
      async () => {
        await run(["topic", "subscribe", "events", "work", "--start", "latest"]);
        await run(["topic", "publish", "events", "job-1", "job-2"]);
        const work = ["topic", "events", "work"];
        const [j1, j2] = await receive(run, work, 2);
        const vis = await run([
          "topic",
          "visibility",
          "events",
          "work",
          j1.receipt,
          "--timeout",
          "900",
        ]);
        assert.equal(vis.code, 0, vis.stderr);
        assert.equal(vis.stdout, "1 delivery(ies) stay in flight for 15m from now\n");
        const visJson = await json(run, [
          "topic",
          "visibility",
          "events",
          "work",
          j1.receipt,
          "--timeout",
          "60",
        ]);
        assert.deepEqual(visJson.results, [{ receipt: j1.receipt, ok: true }]);
        const nackJson = await json(run, ["topic", "nack", "events", "work", "--delay", "0"], {
          stdin: JSON.stringify(j2) + "\n",
        });
        assert.deepEqual(nackJson.results, [{ receipt: j2.receipt, ok: true }]);
        const stale = await run(["topic", "nack", "events", "work", j2.receipt, "--json"]);
        assert.equal(stale.code, 3);
        assert.equal(JSON.parse(stale.stdout).results[0].error, "stale_receipt");
        const [j2again] = await receive(run, work, 1);
        assert.equal(j2again.body, "job-2");
        assert.equal(j2again.deliveryCount, 2);
        const acked = await run(["topic", "ack", "events", "work", j1.receipt, j2again.receipt]);
        assert.equal(acked.stdout, "acknowledged 2 message(s)\n", "an extended receipt still acks");

        const cases: [string[], RegExp][] = [
          [["topic", "nack", "events", "work"], /missing RECEIPT/],
          [["topic", "nack", "events"], /missing SUBSCRIPTION/],
          [["topic", "visibility", "events", "work", j1.receipt], /missing --timeout SECS/],
          [
            ["topic", "visibility", "events", "work", j1.receipt, "--timeout", "1.5"],
            /--timeout must be a whole number/,
          ],
          [["topic", "nack", "events", "work", j1.receipt, "--delay", "x"], /--delay must be/],
          [["topic", "dead-letters", "events", "work", "--limit", "101"], /--limit must be/],
        ];
        for (const [args, message] of cases) {
          const res = await run(args);
          assert.equal(res.code, 2, `${args.join(" ")}: ${res.stderr}`);
          assert.match(res.stderr, message);
        }
      },
    );

    await t.step("seek drops deliveries in flight: their receipts turn stale", async () => {
      await run(["topic", "publish", "events", "s1"]);
      const [s1] = await receive(run, ["topic", "events", "work"], 1);
      const res = await json(run, ["topic", "seek", "events", "work", "--offset", "6"]);
      assert.deepEqual(res, { position: 6, dropped: 1, requestedOffset: 6, clamped: false });
      const late = await run(["topic", "ack", "events", "work", s1.receipt]);
      assert.equal(late.code, 3);
      const replay = await receive(run, ["topic", "events", "work"], 10);
      assert.deepEqual(replay.map((m) => m.body), ["job-1", "job-2", "s1"]);
      for (
        const [args, message] of [
          [["--offset", "1", "--time", "2026-01-01T00:00:00Z"], /give one of --offset and --time/],
          [["--time", "yesterday"], /--time must be an ISO 8601 time/],
          [["--offset=-1"], /--offset must be a whole number/],
        ] as [string[], RegExp][]
      ) {
        const bad = await run(["topic", "seek", "events", "work", ...args]);
        assert.equal(bad.code, 2, args.join(" "));
        assert.match(bad.stderr, message);
      }
      const unknown = await run(["topic", "seek", "events", "nope", "--offset", "0"]);
      assert.equal(unknown.code, 3);
      assert.match(unknown.stderr, /404/);
    });
  } finally {
    await node.close();
  }
});

Deno.test("cli ops: long receives draw a progress line on a terminal only", async (t) => {
  const node = await serveNode();
  const run = runnerFor(node.url, node.api.adminToken);
  const bodies = Array.from({ length: 250 }, (_, i) => `p${i}`).join("\n");
  try {
    await run(["queue", "create", "jobs"]);

    await t.step("receive --max N on a terminal: count, rate and a bar", async () => {
      await run(["queue", "send", "jobs"], { stdin: bodies });
      const res = await run(["queue", "receive", "jobs", "--max", "250", "--ack"], {
        stderrIsTerminal: true,
      });
      assert.equal(res.code, 0, res.stderr);
      assert.match(esc(res.stderr), /\r<ESC>\[2K\[#{30}\] 100% {2}250 received {2}[\d,]+\/s\n$/);
      assert.equal(res.stdout.trimEnd().split("\n").length, 251, "the table is whole");
      assert.doesNotMatch(esc(res.stdout), /received|<ESC>/);
    });

    await t.step("no progress line into a pipe, with --json, or for a short receive", async () => {
      await run(["queue", "send", "jobs"], { stdin: bodies });
      const piped = await run(["queue", "receive", "jobs", "--max", "120", "--ack"]);
      assert.equal(piped.code, 0);
      assert.equal(piped.stderr, "");
      const asJson = await run(["queue", "receive", "jobs", "--max", "120", "--ack", "--json"], {
        stderrIsTerminal: true,
      });
      assert.equal(jsonLines(asJson.stdout).length, 120);
      assert.equal(asJson.stderr, "", "never with --json");
      const short = await run(["queue", "receive", "jobs", "--max", "10", "--ack"], {
        stderrIsTerminal: true,
      });
      assert.equal(short.stderr, "");
      assert.equal((await json(run, ["queue", "get", "jobs"])).stats.depth, 0);
    });

    await t.step(
      "receive --follow on a terminal: the line steps aside for each message",
      async () => {
        const interrupt = new AbortController();
        let seen = "";
        const following = run(["queue", "receive", "jobs", "--follow"], {
          interrupt: interrupt.signal,
          stderrIsTerminal: true,
          onStdout: (all) => seen = all,
        });
        await run(["queue", "send", "jobs", "first"]);
        await run(["queue", "send", "jobs", "second"]);
        await until(() => seen.includes("second"), "both messages printed");
        interrupt.abort();
        const res = await following;
        assert.equal(res.code, 0, res.stderr);
        assert.deepEqual(
          res.stdout.trimEnd().split("\n").slice(1).map((r) => r.split(/\s+/).at(-1)),
          [
            "first",
            "second",
          ],
        );
        assert.doesNotMatch(
          esc(res.stdout),
          /<ESC>|received/,
          "standard output has the messages only",
        );
        assert.match(esc(res.stderr), /\r<ESC>\[2K2 received {2}[\d,]+\/s\n$/);
        assert.doesNotMatch(res.stderr, /\[#/, "no bar without --max");

        const quiet = new AbortController();
        let plainOut = "";
        const plain = run(["queue", "receive", "jobs", "--follow"], {
          interrupt: quiet.signal,
          onStdout: (all) => plainOut = all,
        });
        await run(["queue", "send", "jobs", "third"]);
        await until(() => plainOut.includes("third"), "the third message printed");
        quiet.abort();
        const plainRes = await plain;
        assert.equal(plainRes.code, 0, plainRes.stderr);
        assert.equal(plainRes.stderr, "", "no progress line when stderr is not a terminal");
      },
    );

    await t.step("topic receive shows it too", async () => {
      await run(["topic", "create", "events"]);
      await run(["topic", "subscribe", "events", "audit", "--start", "earliest"]);
      await run(["topic", "publish", "events"], { stdin: bodies });
      const res = await run(["topic", "receive", "events", "audit", "--max", "300", "--ack"], {
        stderrIsTerminal: true,
      });
      assert.equal(res.code, 0, res.stderr);
      assert.match(esc(res.stderr), /\r<ESC>\[2K\[#{25}-{5}\] {2}83% {2}250 received/);
    });
  } finally {
    await node.close();
  }
});

Deno.test("cli ops: Progress clears its line for other output and ends it once", async () => {
  let written = "";
  const write = (t: string) => {
    written += t;
    return Promise.resolve();
  };
  const off = new Progress(write, { enabled: false, verb: "received", total: 10 });
  await off.update(5, 5, true);
  await off.finish();
  assert.equal(written, "");

  const on = new Progress(write, { enabled: true, verb: "received", total: 10 });
  await on.update(5, 5, true);
  assert.match(esc(written), /^\r<ESC>\[2K\[#{15}-{15}\] {2}50% {2}5 received {2}[\d,]+\/s$/);
  written = "";
  await on.clear();
  assert.equal(written, "\r\x1b[2K");
  await on.clear();
  await on.finish();
  assert.equal(written, "\r\x1b[2K", "nothing more: the line is gone already");
  await on.update(10, 10, true);
  await on.finish();
  assert.match(written, /100% {2}10 received .*\n$/);

  written = "";
  const sends = new Progress(write, { enabled: true, totalBytes: 200 });
  await sends.update(3, 100, true);
  assert.match(written, /\] {2}50% {2}3 sent {2}/);
});
