/**
 * The figures of a nemesis run (tests/nemesis_test.ts): what the checker found per queue and
 * subscription, availability and the longest time without a successful send, the audits of
 * ownership and replica copies, and the storm's results, each with its bound. `checks` lists
 * every bound with whether it held; `render` prints them as one block, evidence included.
 */
import type { Finding, FindingKind, Report } from "./checker.ts";
import type { OwnershipAudit, ReplicaAudit } from "./cluster_audit.ts";
import type { FaultRecord, StormStats } from "./nemesis.ts";
import type { SendAttempt, Workload } from "./workload.ts";

/** Bounds of the figures. */
export interface Bounds {
  /** Most duplicate deliveries, in % of acknowledged sends (default 1). */
  duplicatePercent: number;
  /** Least successful send requests, in % of all (default 95). */
  availabilityPercent: number;
  /** Longest time a queue may go without a successful send while producers run (ms). */
  maxGapMs: number;
}

/** One bound and whether the run kept it. */
export interface Check {
  name: string;
  /** The figure, e.g. `0`, `0.41 %`. */
  value: string;
  /** The bound, e.g. `must be 0`. */
  bound: string;
  ok: boolean;
  /** The first few findings behind a failed check. */
  evidence: string[];
}

/** How the cluster came back after the faults. */
export interface Settle {
  ok: boolean;
  ms: number;
  detail: string;
}

/** Everything a run measured, for `figures`. */
export interface RunResult {
  seed: number;
  faultsEnabled: readonly string[];
  loadSeconds: number;
  sessionTimeoutMs: number;
  t0: number;
  workload: Workload;
  faults: readonly FaultRecord[];
  heal: string[];
  storm: StormStats;
  stormPrefix: string;
  settle: Settle;
  drained: boolean;
  ownership: OwnershipAudit;
  replicas: ReplicaAudit;
  bounds: Bounds;
}

/** The longest interval of one target without a successful send. */
export interface Gap {
  target: string;
  ms: number;
  from: number;
  to: number;
  /** The owners named by the successes before and after it: `node1 -> node2`. */
  owners: string;
  /** The faults it overlapped, or the last one healed before it. */
  faults: string;
}

const SHOW = 5;

function at(t0: number, ms: number): string {
  return `+${((ms - t0) / 1000).toFixed(1)}s`;
}

function faultName(f: FaultRecord): string {
  return `${f.kind} ${f.target}`;
}

/**
 * The faults around an interval: the last one that began before it (an effect may outlast its
 * heal, e.g. a wiped store) and every one that began during it.
 */
export function faultsAround(faults: readonly FaultRecord[], from: number, to: number): string {
  const parts: string[] = [];
  const before = faults.filter((f) => f.startedAt <= from).at(-1);
  if (before) {
    const healed = before.healedAt ?? Infinity;
    parts.push(
      healed > from
        ? `during ${faultName(before)}`
        : `${((from - healed) / 1000).toFixed(1)} s after ${faultName(before)}`,
    );
  }
  const during = faults.filter((f) => f.startedAt > from && f.startedAt < to);
  if (during.length > 0) parts.push(`then ${during.map(faultName).join(", ")}`);
  return parts.join(", ") || "no fault";
}

/**
 * Per target, the longest interval in [since, until] without a successful send while a sender
 * was trying: from the start of the first request after the previous success (or the success
 * itself, for a request that was already waiting) to the next success, or to `until` when none
 * came. Producers pick random queues one request at a time, so producers held up by one queue's
 * requests do not count as the other queues' unavailability; the held-up queue's own interval
 * shows them.
 */
export function longestGaps(
  attempts: readonly SendAttempt[],
  targets: readonly string[],
  since: number,
  until: number,
  faults: readonly FaultRecord[],
): Gap[] {
  return targets.map((target) => {
    const mine = attempts.filter((a) => a.target === target && a.startedAt < until)
      .sort((a, b) => a.startedAt - b.startedAt);
    // latestDone[i]: the latest end of the requests started up to mine[i].
    const latestDone: number[] = [];
    for (const [i, a] of mine.entries()) {
      latestDone.push(Math.max(a.doneAt, latestDone[i - 1] ?? 0));
    }
    /** Index of the first request started after `t`. */
    const firstAfter = (t: number) => {
      let [lo, hi] = [0, mine.length];
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (mine[mid].startedAt <= t) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    };
    const successes = mine.filter((a) => a.ok && a.doneAt >= since && a.doneAt <= until)
      .sort((a, b) => a.doneAt - b.doneAt);
    let best = { ms: 0, from: since, to: since, owners: "" };
    let last = since;
    let lastOwner = "start";
    for (const success of [...successes, undefined]) {
      const end = success?.doneAt ?? until;
      const owner = success ? success.owner ?? "?" : "end";
      // A sender waiting since `last` (a request in flight then), or the first one after it.
      const i = firstAfter(last);
      const waiting = i > 0 && latestDone[i - 1] > last;
      const from = waiting
        ? last
        : i < mine.length && mine[i].startedAt < end
        ? mine[i].startedAt
        : end;
      if (end - from > best.ms) {
        best = { ms: end - from, from, to: end, owners: `${lastOwner} -> ${owner}` };
      }
      last = Math.max(last, end);
      lastOwner = owner;
    }
    return { target, ...best, faults: faultsAround(faults, best.from, best.to) };
  });
}

function findings(list: readonly Finding[], kinds?: readonly FindingKind[]): Finding[] {
  return kinds ? list.filter((f) => f.kind !== undefined && kinds.includes(f.kind)) : [...list];
}

function show(list: readonly Finding[]): string[] {
  return list.slice(0, SHOW).map((f) =>
    `${f.queue} ${f.body}${f.id ? ` (${f.id})` : ""}: ${f.detail}`
  )
    .concat(list.length > SHOW ? [`... and ${list.length - SHOW} more`] : []);
}

function check(name: string, value: string, bound: string, ok: boolean, evidence: string[] = []) {
  return { name, value, bound, ok, evidence: ok ? [] : evidence };
}

function pct(n: number, of: number): number {
  return of === 0 ? 0 : (100 * n) / of;
}

/** The checks of a run, in the order they are printed. */
export function figures(
  r: RunResult,
): { checks: Check[]; reports: Map<string, Report>; gaps: Gap[] } {
  const w = r.workload;
  const reports = new Map([...w.histories].map(([name, h]) => [name, h.report()]));
  const all = [...reports.values()];
  const sum = (f: (x: Report) => number) => all.reduce((n, x) => n + f(x), 0);
  const every = (f: (x: Report) => Finding[]) => all.flatMap(f);
  const checks: Check[] = [];

  const perTarget = (f: (x: Report) => number) =>
    [...reports].map(([name, x]) => `${name} ${f(x)}`).join(", ");
  const lost = every((x) => x.lost);
  checks.push(check(
    "acknowledged sends lost",
    `${lost.length} (${perTarget((x) => x.lost.length)})`,
    "must be 0",
    lost.length === 0,
    show(lost),
  ));
  const neverSent = every((x) =>
    findings(x.unexpected, ["never_sent", "wrong_queue", "refused_delivered"])
  );
  checks.push(
    check(
      "received messages never sent",
      String(neverSent.length),
      "must be 0",
      neverSent.length === 0,
      show(neverSent),
    ),
  );
  const several = every((x) => findings(x.unexpected, ["several_messages"]));
  checks.push(
    check(
      "one send stored as several messages",
      String(several.length),
      "must be 0",
      several.length === 0,
      show(several),
    ),
  );
  const concurrent = every((x) => x.concurrentDeliveries);
  checks.push(check(
    "deliveries while the previous attempt was invisible",
    String(concurrent.length),
    "must be 0",
    concurrent.length === 0,
    show(concurrent),
  ));
  const afterAck = every((x) => x.redeliveredAfterAck);
  checks.push(
    check(
      "acked messages delivered again",
      String(afterAck.length),
      "must be 0",
      afterAck.length === 0,
      show(afterAck),
    ),
  );

  const acknowledged = sum((x) => x.acknowledged);
  const extra = sum((x) => x.deliveries - x.delivered);
  const dupPct = pct(extra, acknowledged);
  checks.push(check(
    "duplicate deliveries",
    `${extra} extra deliveries (${sum((x) => x.duplicatedDeliveries.length)} messages) per ` +
      `${acknowledged} acknowledged sends = ${dupPct.toFixed(2)} %`,
    `must be <= ${r.bounds.duplicatePercent} %`,
    dupPct <= r.bounds.duplicatePercent,
    show(every((x) => x.duplicatedDeliveries)),
  ));

  const attempts = w.attempts;
  const ok = attempts.filter((a) => a.ok).length;
  const avail = pct(ok, attempts.length);
  const failedBy = new Map<string, number>();
  for (const a of attempts.filter((a) => !a.ok)) {
    const k = a.status === 0 ? "no answer" : String(a.status);
    failedBy.set(k, (failedBy.get(k) ?? 0) + 1);
  }
  checks.push(check(
    "send availability",
    `${ok} of ${attempts.length} send and publish requests = ${avail.toFixed(2)} % ` +
      `(failed: ${[...failedBy].map(([k, v]) => `${k} x${v}`).join(", ") || "none"})`,
    `must be >= ${r.bounds.availabilityPercent} %`,
    avail >= r.bounds.availabilityPercent,
  ));

  const gapTargets = [...new Set(attempts.map((a) => a.target))].sort();
  const gaps = longestGaps(attempts, gapTargets, w.producingSince, w.producingUntil, r.faults);
  const worst = [...gaps].sort((a, b) => b.ms - a.ms)[0];
  const gapLine = (g: Gap) => {
    const when = `${at(r.t0, g.from)}..${at(r.t0, g.to)}`;
    return `${g.target} ${(g.ms / 1000).toFixed(1)} s (${when}, owner ${g.owners}, ${g.faults})`;
  };
  checks.push(check(
    "longest time without a successful send",
    worst ? gapLine(worst) : "no sends",
    `must be <= ${(r.bounds.maxGapMs / 1000).toFixed(1)} s`,
    worst !== undefined && worst.ms <= r.bounds.maxGapMs,
    gaps.filter((g) => g.ms > r.bounds.maxGapMs).map(gapLine),
  ));

  const silent = [...reports].filter(([, x]) => x.acknowledged === 0).map(([name]) => name);
  checks.push(check(
    "every queue and subscription had acknowledged sends",
    silent.length === 0 ? "yes" : `none for ${silent.join(", ")}`,
    "must be yes",
    silent.length === 0,
  ));

  checks.push(check(
    "the cluster settled after the faults",
    `${r.settle.ok ? "yes" : "no"} after ${(r.settle.ms / 1000).toFixed(1)} s`,
    "every node alive, every entity served",
    r.settle.ok,
    [r.settle.detail],
  ));
  const undelivered = [...w.undelivered()].filter(([, n]) => n > 0);
  checks.push(check(
    "drained: every acknowledged send delivered",
    r.drained ? "yes" : `no: ${undelivered.map(([t, n]) => `${t} ${n}`).join(", ")}`,
    "must be yes",
    r.drained,
  ));

  const o = r.ownership;
  checks.push(check(
    "ownership views equal ZooKeeper",
    o.mismatches.length === 0
      ? `yes (${o.zookeeper.length} entities, every node)`
      : `${o.mismatches.length} differences after ${(o.waitedMs / 1000).toFixed(1)} s`,
    "must be equal",
    o.mismatches.length === 0,
    o.mismatches.slice(0, 10),
  ));
  checks.push(check(
    "entities two nodes both own",
    String(o.doubleOwners.length),
    "must be 0",
    o.doubleOwners.length === 0,
    o.doubleOwners,
  ));
  const rep = r.replicas;
  checks.push(check(
    "replica copies equal their owner's (seq and SHA-256)",
    rep.mismatches.length === 0
      ? `yes (${rep.copies} copies of ${rep.entities} entities)`
      : `${rep.mismatches.length} differ after ${(rep.waitedMs / 1000).toFixed(1)} s`,
    "must be equal",
    rep.mismatches.length === 0,
    rep.mismatches.slice(0, 10),
  ));

  const s = r.storm;
  const stormInZk = o.zookeeper.filter((e) => e.name.startsWith(r.stormPrefix)).map((e) =>
    `${e.type}/${e.name}`
  );
  const leftovers = [...new Set([...s.leftovers, ...stormInZk])];
  if (s.created.size + s.invalid.size > 0) {
    checks.push(check(
      "storm: invalid creates refused with 4xx",
      `${s.invalid.size - s.invalidNotRefused.length} of ${s.invalid.size}`,
      "must be all",
      s.invalidNotRefused.length === 0,
      s.invalidNotRefused.slice(0, 10),
    ));
  }
  checks.push(check(
    "storm: queues left over (ZooKeeper or undeletable)",
    String(leftovers.length),
    "must be 0",
    leftovers.length === 0,
    leftovers.slice(0, 10),
  ));

  const terms = r.faults.filter((f) => f.kind === "term" && !f.error);
  const unclean = terms.filter((f) => f.exitCode !== 0);
  if (terms.length > 0) {
    checks.push(check(
      "SIGTERM: the node drained and exited 0",
      `${terms.length - unclean.length} of ${terms.length}`,
      "must be all",
      unclean.length === 0,
      unclean.map((f) => `${at(r.t0, f.startedAt)} ${faultName(f)}: ${f.notes[0]}`),
    ));
  }
  const failedFaults = r.faults.filter((f) => f.error).map((f) => `${faultName(f)}: ${f.error}`);
  const failedHeals = r.heal.filter((h) => h.includes("FAILED"));
  checks.push(check(
    "every fault injected and healed",
    failedFaults.length + failedHeals.length === 0 ? `yes (${r.faults.length} faults)` : "no",
    "must be yes",
    failedFaults.length + failedHeals.length === 0,
    [...failedFaults, ...failedHeals],
  ));
  return { checks, reports, gaps };
}

/** The figures block as printed. */
export function render(r: RunResult): { text: string; failed: Check[] } {
  const { checks, reports, gaps } = figures(r);
  const w = r.workload;
  const lines: string[] = [];
  const rule = "=".repeat(100);
  lines.push(rule);
  lines.push(
    `nemesis figures: seed ${r.seed}, ${r.loadSeconds} s of load, faults ` +
      `${r.faultsEnabled.length ? r.faultsEnabled.join(",") : "none"}, session timeout ` +
      `${r.sessionTimeoutMs} ms (reproduce: MOMD_NEMESIS_SEED=${r.seed} ` +
      `MOMD_NEMESIS_SECONDS=${r.loadSeconds} MOMD_NEMESIS_FAULTS=` +
      `${r.faultsEnabled.length ? r.faultsEnabled.join(",") : "none"})`,
  );
  lines.push(`faults (${r.faults.length}; times from the start of the load):`);
  for (const f of r.faults) {
    lines.push(
      `  ${at(r.t0, f.startedAt)}..${f.healedAt ? at(r.t0, f.healedAt) : "?"} ${f.kind} ` +
        `${f.target}: ${f.notes.join("; ")}${f.error ? ` ERROR ${f.error}` : ""}`,
    );
  }
  if (r.heal.length) lines.push(`final heal: ${r.heal.join("; ")}`);
  const sends = w.attempts.filter((a) => a.kind === "send");
  lines.push(
    `load: ${sends.length} send requests (${w.messages.send} messages), ` +
      `${w.attempts.length - sends.length} publish requests (${w.messages.publish} messages), ` +
      `producers ran ${((w.producingUntil - w.producingSince) / 1000).toFixed(1)} s`,
  );
  for (const [name, x] of reports) {
    lines.push(
      `  ${name.padEnd(16)} acknowledged ${x.acknowledged}, refused ${x.refused}, ` +
        `indeterminate ${x.indeterminate}; ${x.deliveries} deliveries of ${x.delivered} ` +
        `messages, ${x.acked} acks confirmed`,
    );
  }
  lines.push(
    `  longest gaps: ${gaps.map((g) => `${g.target} ${(g.ms / 1000).toFixed(1)} s`).join(", ")}`,
  );
  lines.push(`  answers: ${w.describe()}`);
  if (r.storm.statuses.size) {
    lines.push(
      `  storm: ${[...r.storm.statuses].sort().map(([k, v]) => `${k}: ${v}`).join(", ")}`,
    );
  }
  for (const c of checks) {
    lines.push(`[${c.ok ? " ok " : "FAIL"}] ${c.name}: ${c.value} (${c.bound})`);
    for (const e of c.evidence) lines.push(`         ${e}`);
  }
  const failed = checks.filter((c) => !c.ok);
  lines.push(
    failed.length === 0
      ? "every check passed"
      : `${failed.length} checks failed: ${failed.map((c) => c.name).join("; ")}`,
  );
  lines.push(rule);
  return { text: lines.join("\n"), failed };
}
