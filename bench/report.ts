/**
 * The results of a run: the markdown tables printed on the terminal (and kept as latest.md), the
 * JSON file (every row, the machine and the options), and an SVG chart of momd beside its
 * ceilings and the peer.
 */
import type { WorkloadName } from "./options.ts";
import { round, type Row, type Target } from "./row.ts";

/** Everything a run produced. */
export interface BenchReport {
  version: 1;
  startedAt: string;
  finishedAt: string;
  machine: {
    hostname: string;
    cores: number;
    memoryGB: number;
    kernel: string;
    deno: string;
    /** 1-, 5- and 15-minute load averages before and after the run (others share the machine). */
    loadBefore: number[];
    loadAfter: number[];
  };
  options: Record<string, unknown>;
  /** What momd was (single node, behind NGINX or not, ...). */
  setup: Record<string, unknown>;
  rows: Row[];
  notes: string[];
}

/** A target of the issue, checked against one run. */
export interface TargetCheck {
  name: string;
  measured: string;
  goal: string;
  met: boolean | undefined;
}

const THROUGHPUT: WorkloadName[] = [
  "send",
  "send-batch",
  "stream-send",
  "drain-10",
  "drain-100",
  "stream-drain",
  "fan-out",
];

/**
 * The peer's row a momd workload is compared with: the streaming rows have no RabbitMQ run of
 * their own but the one they stand beside (a publish with confirms, a consumer with prefetch 100).
 */
const PEER_OF: Partial<Record<WorkloadName, WorkloadName>> = {
  "stream-send": "send",
  "stream-drain": "drain-100",
};

function find(rows: Row[], workload: WorkloadName, target: Target): Row | undefined {
  const matching = rows.filter((r) => r.workload === workload && r.target === target);
  // Several variants (the store ceiling): the best is the ceiling.
  return matching.sort((a, b) => b.msgsPerSec - a.msgsPerSec)[0];
}

/** The peer's row to compare a momd workload with. */
function peerRow(rows: Row[], workload: WorkloadName): Row | undefined {
  return find(rows, PEER_OF[workload] ?? workload, "peer");
}

function ratio(a: Row | undefined, b: Row | undefined): number | undefined {
  if (!a || !b || b.msgsPerSec <= 0) return undefined;
  return a.msgsPerSec / b.msgsPerSec;
}

function num(v: number | undefined, digits = 0): string {
  if (v === undefined || !Number.isFinite(v)) return "–";
  return v.toLocaleString("en-US", {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}

function pct(r: number | undefined): string {
  if (r === undefined) return "–";
  return r >= 10 ? `${num(r, 1)}×` : r >= 1 ? `${num(r, 2)}×` : `${num(r * 100, 1)} %`;
}

function ms(v: number | undefined): string {
  return v === undefined ? "–" : num(v, v < 10 ? 2 : 1);
}

function table(head: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join("\n");
}

/** The issue's first targets, checked against the rows. */
export function checkTargets(report: BenchReport): TargetCheck[] {
  const rows = report.rows;
  const send = find(rows, "send", "momd");
  const batch = find(rows, "send-batch", "momd");
  const http = find(rows, "send", "http-ceiling");
  const peerSend = find(rows, "send", "peer");
  const peerBatch = find(rows, "send-batch", "peer");
  const peerBest =
    [peerSend, peerBatch].filter((r) => r).sort((a, b) => b!.msgsPerSec - a!.msgsPerSec)[0];
  const latency = find(rows, "latency", "momd");
  const memory = find(rows, "memory", "momd");
  const size = Number(report.options.size ?? 256);
  const checks: TargetCheck[] = [];
  const r1 = ratio(send, http);
  checks.push({
    name: "send ≥ 25 % of the HTTP ceiling",
    measured: r1 === undefined
      ? "not measured"
      : `${num(send!.msgsPerSec)} / ${num(http!.msgsPerSec)} = ${pct(r1)}`,
    goal: "≥ 25 %",
    met: r1 === undefined ? undefined : r1 >= 0.25,
  });
  const r2 = ratio(batch, send);
  checks.push({
    name: "send-batch ≥ 10 × send (msgs/s)",
    measured: r2 === undefined
      ? "not measured"
      : `${num(batch!.msgsPerSec)} / ${num(send!.msgsPerSec)} = ${pct(r2)}`,
    goal: "≥ 10×",
    met: r2 === undefined ? undefined : r2 >= 10,
  });
  for (const w of ["drain-10", "drain-100"] as const) {
    const drain = find(rows, w, "momd");
    const r = ratio(drain, send);
    checks.push({
      name: `${w} ≥ send (msgs/s)`,
      measured: r === undefined
        ? "not measured"
        : `${num(drain!.msgsPerSec)} / ${num(send!.msgsPerSec)} = ${pct(r)}`,
      goal: "≥ 1×",
      met: r === undefined ? undefined : r >= 1,
    });
  }
  const p99 = latency?.latencyMs?.p99;
  checks.push({
    name: "latency p99 ≤ 25 ms at half load",
    measured: p99 === undefined
      ? "not measured"
      : `p99 ${ms(p99)} ms at ${num(Number(latency!.extra?.rate))} msgs/s` +
        (Number(latency!.extra?.skipped) > 0 ? `, ${latency!.extra?.skipped} sends skipped` : "") +
        (Number(latency!.extra?.lost) > 0 ? `, ${latency!.extra?.lost} lost` : ""),
    goal: "≤ 25 ms",
    // A send the schedule could not make (too many in flight) or a lost message fails it too.
    met: p99 === undefined ? undefined : p99 <= 25 && Number(latency!.extra?.lost ?? 0) === 0 &&
      Number(latency!.extra?.skipped ?? 0) === 0,
  });
  const r5 = ratio(batch, peerBest);
  checks.push({
    name: "send-batch ≥ the peer's publish-with-confirms rate",
    measured: r5 === undefined
      ? "not measured (run with --peer)"
      : `${num(batch!.msgsPerSec)} / ${num(peerBest!.msgsPerSec)} (RabbitMQ ${
        peerBest!.workload
      }) = ${pct(r5)}`,
    goal: "≥ 1×",
    met: r5 === undefined ? undefined : r5 >= 1,
  });
  const bpm = memory?.extra?.redisBytesPerMessage as number | undefined;
  checks.push({
    name: `Redis memory per stored ${size}-byte message ≤ 2 × its size`,
    measured: bpm === undefined
      ? "not measured"
      : `${num(bpm)} bytes over ${num(memory!.messages)} messages = ${num(bpm / size, 2)} × size`,
    goal: `≤ ${2 * size} bytes`,
    met: bpm === undefined ? undefined : bpm <= 2 * size,
  });
  return checks;
}

/** CPU microseconds per message over every process group of a row (client included). */
export function cpuPerMessageUs(row: Row | undefined): number | undefined {
  if (!row?.cpuSeconds || row.messages <= 0) return undefined;
  const total = Object.values(row.cpuSeconds).reduce((a, b) => a + b, 0);
  return total * 1e6 / row.messages;
}

/** A ratio target: `a / b ≥ goal`, measured as "a / b (what b is) = ratio". */
function ratioCheck(
  name: string,
  a: Row | undefined,
  b: Row | undefined,
  goal: number,
  missing: string,
  of = "",
): TargetCheck {
  const r = ratio(a, b);
  return {
    name,
    measured: r === undefined
      ? missing
      : `${num(a!.msgsPerSec)} / ${num(b!.msgsPerSec)}${of} = ${pct(r)}`,
    goal: goal >= 1 ? `≥ ${goal}×` : `≥ ${Math.round(goal * 100)} %`,
    met: r === undefined ? undefined : r >= goal,
  };
}

/** The targets of issue 13 (the hot path against RabbitMQ), checked against the rows. */
export function checkIssue13Targets(report: BenchReport): TargetCheck[] {
  const rows = report.rows;
  const send = find(rows, "send", "momd");
  const noPeer = "not measured (run with --peer)";
  const checks: TargetCheck[] = [
    ratioCheck(
      "single send ≥ 25 % of the HTTP ceiling",
      send,
      find(rows, "send", "http-ceiling"),
      0.25,
      "not measured",
    ),
    ratioCheck(
      "single send ≥ 50 % of RabbitMQ's publish-confirm rate",
      send,
      find(rows, "send", "peer"),
      0.5,
      noPeer,
      " (RabbitMQ send)",
    ),
  ];
  const cpu = cpuPerMessageUs(send);
  const single = report.setup.nodes === 1;
  checks.push({
    name: "CPU per replicated send ≤ 250 µs over all processes",
    measured: cpu === undefined
      ? "not measured"
      : `${num(cpu, 1)} µs (${
        Object.entries(send!.cpuSeconds!).map(([g, v]) => `${g} ${num(v * 1e6 / send!.messages)}`)
          .join(", ")
      })${single ? "; one node: nothing replicated" : ""}`,
    goal: "≤ 250 µs",
    met: cpu === undefined ? undefined : cpu <= 250,
  });
  const latency = find(rows, "latency", "momd");
  const p99 = latency?.latencyMs?.p99;
  checks.push({
    name: "latency p99 send → receive → ack ≤ 10 ms at half load",
    measured: p99 === undefined
      ? "not measured"
      : `p99 ${ms(p99)} ms at ${num(Number(latency!.extra?.rate))} msgs/s` +
        (Number(latency!.extra?.skipped) > 0 ? `, ${latency!.extra?.skipped} sends skipped` : "") +
        (Number(latency!.extra?.lost) > 0 ? `, ${latency!.extra?.lost} lost` : ""),
    goal: "≤ 10 ms",
    met: p99 === undefined ? undefined : p99 <= 10 && Number(latency!.extra?.lost ?? 0) === 0 &&
      Number(latency!.extra?.skipped ?? 0) === 0,
  });
  checks.push(
    ratioCheck(
      "send-batch ≥ RabbitMQ's batch publish-confirm rate",
      find(rows, "send-batch", "momd"),
      find(rows, "send-batch", "peer"),
      1,
      noPeer,
      " (RabbitMQ send-batch)",
    ),
    ratioCheck(
      "stream-drain ≥ 50 % of RabbitMQ's prefetch-100 rate",
      find(rows, "stream-drain", "momd"),
      find(rows, "drain-100", "peer"),
      0.5,
      noPeer,
      " (RabbitMQ drain-100)",
    ),
    ratioCheck(
      "stream-send ≥ RabbitMQ's single publish-confirm rate",
      find(rows, "stream-send", "momd"),
      find(rows, "send", "peer"),
      1,
      noPeer,
      " (RabbitMQ send)",
    ),
  );
  return checks;
}

const LABEL: Record<Target, string> = {
  momd: "momd",
  "http-ceiling": "HTTP ceiling",
  "store-ceiling": "store ceiling",
  peer: "RabbitMQ",
  wrk: "wrk",
};

/** The markdown tables of a run. */
export function renderMarkdown(report: BenchReport): string {
  const rows = report.rows;
  const out: string[] = [];
  const o = report.options;
  out.push(
    `# momd benchmark, ${report.startedAt}`,
    "",
    `${report.machine.cores} cores, ${report.machine.memoryGB} GB, load average ` +
      `${report.machine.loadBefore.map((l) => num(l, 2)).join(" ")} before and ` +
      `${report.machine.loadAfter.map((l) => num(l, 2)).join(" ")} after; ` +
      `message ${o.size} bytes, concurrency ${o.concurrency}, ${o.durationSeconds} s per workload; ` +
      `momd: ${Object.entries(report.setup).map(([k, v]) => `${k} ${v}`).join(", ")}.`,
    "",
    "## Throughput (msgs/s) and ratios",
    "",
  );
  const peer = rows.some((r) => r.target === "peer");
  out.push(table(
    [
      "workload",
      "momd msgs/s",
      "MB/s",
      "p50 ms",
      "p99 ms",
      "HTTP ceiling",
      "momd / HTTP",
      "store ceiling",
      "momd / store",
      "RabbitMQ",
      "momd / RabbitMQ",
    ],
    THROUGHPUT.filter((w) => rows.some((r) => r.workload === w)).map((w) => {
      const m = find(rows, w, "momd");
      const h = find(rows, w, "http-ceiling");
      const s = find(rows, w, "store-ceiling");
      const p = peerRow(rows, w);
      const counterpart = PEER_OF[w];
      return [
        w,
        num(m?.msgsPerSec),
        num(m?.mbPerSec, 2),
        ms(m?.latencyMs?.p50),
        ms(m?.latencyMs?.p99),
        num(h?.msgsPerSec),
        pct(ratio(m, h)),
        num(s?.msgsPerSec),
        pct(ratio(m, s)),
        peer ? `${num(p?.msgsPerSec)}${p && counterpart ? ` (${counterpart})` : ""}` : "not run",
        pct(ratio(m, p)),
      ];
    }),
  ));
  out.push(
    "",
    "p50/p99: per request (a receive plus its ack for drains, receive plus ack for fan-out; " +
      "a send and its `sent` frame for stream-send, an ack frame and its answer for " +
      "stream-drain). Store ceiling: the best of its variants. Fan-out: deliveries per second " +
      "over three subscriptions. The streaming rows stand beside RabbitMQ's single publish with " +
      "confirm (stream-send) and its prefetch-100 consumers (stream-drain).",
  );

  const lat = rows.filter((r) => r.workload === "latency");
  if (lat.length > 0) {
    out.push("", `## Latency: send → receive → ack, at a fixed rate`, "");
    out.push(table(
      ["target", "rate msgs/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "sent", "acked", "skipped"],
      lat.map((r) => [
        LABEL[r.target],
        num(Number(r.extra?.rate)),
        ms(r.latencyMs?.p50),
        ms(r.latencyMs?.p95),
        ms(r.latencyMs?.p99),
        ms(r.latencyMs?.max),
        num(Number(r.extra?.sent)),
        num(Number(r.extra?.acked)),
        num(Number(r.extra?.skipped)),
      ]),
    ));
  }

  const mem = find(rows, "memory", "momd");
  if (mem) {
    const e = mem.extra ?? {};
    out.push("", "## Memory", "");
    const rss = Object.entries(e).filter(([k]) => /^node\d+RssMB$/.test(k));
    out.push(table(
      [
        "messages stored",
        "copies",
        "Redis bytes / message (one copy)",
        "× message size",
        "Redis used MB (all)",
        "Redis RSS MB (all)",
        "left after delete MB",
        ...rss.map(([k]) => `${k.replace("RssMB", "")} RSS MB (peak)`),
      ],
      [[
        num(mem.messages),
        e.copies === undefined ? "–" : String(e.copies),
        num(e.redisBytesPerMessage as number, 1),
        num(e.redisBytesPerMessageRatioToSize as number, 2),
        num(e.redisUsedMB as number, 1),
        num(e.redisRssMB as number, 1),
        num(e.redisMBLeftAfterDelete as number, 2),
        ...rss.map(([k, v]) =>
          `${num(v as number, 1)} (${num(e[k.replace("RssMB", "PeakRssMB")] as number, 1)})`
        ),
      ]],
    ));
  }

  out.push("", "## Targets (issue 5)", "");
  out.push(table(
    ["target", "measured", "goal", "result"],
    checkTargets(report).map((c) => [
      c.name,
      c.measured,
      c.goal,
      c.met === undefined ? "not measured" : c.met ? "**met**" : "**missed**",
    ]),
  ));

  out.push("", "## Targets (issue 13)", "");
  out.push(table(
    ["target", "measured", "goal", "result"],
    checkIssue13Targets(report).map((c) => [
      c.name,
      c.measured,
      c.goal,
      c.met === undefined ? "not measured" : c.met ? "**met**" : "**missed**",
    ]),
  ));

  const groups = [...new Set(rows.flatMap((r) => Object.keys(r.cpuSeconds ?? {})))];
  out.push("", "## Where the CPU went (CPU µs per message, all processes of the target)", "");
  out.push(table(
    ["workload", "target", ...groups, "total", "CPU cores busy"],
    rows.filter((r) => r.cpuSeconds && r.messages > 0).map((r) => {
      const cpu = r.cpuSeconds!;
      const total = Object.values(cpu).reduce((a, b) => a + b, 0);
      const per = (v: number | undefined) => v === undefined ? "" : num(v * 1e6 / r.messages, 1);
      return [
        r.workload,
        `${LABEL[r.target]}${r.variant ? ` (${r.variant})` : ""}`,
        ...groups.map((g) => per(cpu[g])),
        per(total),
        num(total / r.seconds, 2),
      ];
    }),
  ));

  out.push("", "## Every row", "");
  out.push(table(
    [
      "workload",
      "target",
      "variant",
      "msgs/s",
      "MB/s",
      "messages",
      "requests",
      "errors",
      "s",
      "p50",
      "p95",
      "p99",
      "max",
    ],
    rows.map((r) => [
      r.workload,
      LABEL[r.target],
      r.variant,
      num(r.msgsPerSec),
      num(r.mbPerSec, 2),
      num(r.messages),
      num(r.requests),
      num(r.errors),
      num(r.seconds, 1),
      ms(r.latencyMs?.p50),
      ms(r.latencyMs?.p95),
      ms(r.latencyMs?.p99),
      ms(r.latencyMs?.max),
    ]),
  ));
  const errors = rows.filter((r) => r.errorSamples);
  if (errors.length > 0) {
    out.push("", "Errors seen:");
    for (const r of errors) {
      out.push(`- ${r.workload} ${LABEL[r.target]}: ${r.errorSamples!.join("; ")}`);
    }
  }
  if (report.notes.length > 0) {
    out.push("", "Notes:");
    for (const n of report.notes) out.push(`- ${n}`);
  }
  return out.join("\n") + "\n";
}

// ---- SVG ----------------------------------------------------------------------------------------

const COLORS: Record<string, string> = {
  momd: "#2563eb",
  "http-ceiling": "#9ca3af",
  "store-ceiling": "#10b981",
  peer: "#f97316",
};

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function short(v: number): string {
  if (v >= 1e6) return `${round(v / 1e6, 2)}M`;
  if (v >= 1e3) return `${round(v / 1e3, 1)}k`;
  return `${round(v, 0)}`;
}

/** The latency targets drawn on the chart: issue 5's p99 and issue 13's. */
const LATENCY_GOALS = [[25, "issue 5: p99 25 ms"], [10, "issue 13: p99 10 ms"]] as const;

/** A bar chart: throughput of momd, its ceilings and the peer (log scale), and latency. */
export function renderSvg(report: BenchReport): string {
  const rows = report.rows;
  const width = 960;
  const left = 110;
  const right = 250;
  const plot = width - left - right;
  const bar = 14;
  const targets: Target[] = ["momd", "http-ceiling", "store-ceiling", "peer"];
  const parts: string[] = [];
  let y = 30;
  parts.push(
    `<text x="${left}" y="20" font-size="14" font-weight="bold">momd throughput beside its ` +
      `ceilings and RabbitMQ, msgs/s (log scale), ${esc(report.startedAt)}</text>`,
  );
  // Legend.
  let lx = left;
  for (const t of targets) {
    parts.push(`<rect x="${lx}" y="${y}" width="12" height="12" fill="${COLORS[t]}"/>`);
    parts.push(`<text x="${lx + 16}" y="${y + 10}" font-size="11">${LABEL[t]}</text>`);
    lx += 120;
  }
  y += 26;
  const values = rows.filter((r) => THROUGHPUT.includes(r.workload) && r.target !== "wrk")
    .map((r) => r.msgsPerSec).filter((v) => v > 0);
  const hi = 10 ** Math.ceil(Math.log10(Math.max(10, ...values)));
  const lo = Math.min(100, 10 ** Math.floor(Math.log10(Math.max(1, Math.min(...values, hi)))));
  const x = (v: number) =>
    left + plot * (Math.log10(Math.max(v, lo)) - Math.log10(lo)) /
      (Math.log10(hi) - Math.log10(lo));
  const top = y;
  const gridAt = parts.length;
  for (const w of THROUGHPUT) {
    const present = targets.map((t) =>
      [t, t === "peer" ? peerRow(rows, w) : find(rows, w, t)] as const
    )
      .filter(([, r]) => r);
    if (present.length === 0) continue;
    const groupTop = y;
    const momd = find(rows, w, "momd");
    for (const [t, r] of present) {
      const v = r!.msgsPerSec;
      parts.push(
        `<rect x="${left}" y="${y}" width="${Math.max(1, x(v) - left)}" height="${bar}" ` +
          `fill="${COLORS[t]}"><title>${
            esc(
              `${w} ${LABEL[t]}${t === "peer" && PEER_OF[w] ? ` ${PEER_OF[w]}` : ""}: ${
                num(v)
              } msgs/s`,
            )
          }</title></rect>`,
      );
      let label = `${short(v)}`;
      if (t === "peer" && PEER_OF[w]) label += ` RabbitMQ ${PEER_OF[w]}`;
      if (t !== "momd" && momd) label += `  (momd ${pct(ratio(momd, r))})`;
      parts.push(`<text x="${x(v) + 4}" y="${y + 11}" font-size="11">${esc(label)}</text>`);
      y += bar + 3;
    }
    parts.push(
      `<text x="${left - 8}" y="${
        (groupTop + y) / 2 + 4
      }" font-size="12" text-anchor="end">${w}</text>`,
    );
    y += 12;
  }
  // Decades, under the bars.
  const grid: string[] = [];
  for (let d = lo; d <= hi; d *= 10) {
    grid.push(
      `<line x1="${x(d)}" y1="${top - 4}" x2="${x(d)}" y2="${y - 8}" stroke="#e5e7eb"/>`,
      `<text x="${x(d)}" y="${y + 4}" font-size="10" text-anchor="middle">${short(d)}</text>`,
    );
  }
  parts.splice(gridAt, 0, ...grid);
  y += 30;

  const lat = rows.filter((r) => r.workload === "latency" && r.latencyMs);
  if (lat.length > 0) {
    const rate = num(Number(lat[0].extra?.rate));
    parts.push(
      `<text x="${left}" y="${y}" font-size="14" font-weight="bold">Latency send → receive → ack ` +
        `at ${rate} msgs/s, ms</text>`,
    );
    y += 14;
    const maxMs = Math.max(...lat.map((r) => r.latencyMs!.p99), 1) * 1.1;
    for (const r of lat) {
      const groupTop = y;
      for (const q of ["p50", "p95", "p99"] as const) {
        const v = r.latencyMs![q];
        const wpx = Math.max(1, plot * v / maxMs);
        parts.push(
          `<rect x="${left}" y="${y}" width="${wpx}" height="${bar}" fill="${COLORS[r.target]}" ` +
            `opacity="${q === "p50" ? 1 : q === "p95" ? 0.75 : 0.5}"/>`,
          `<text x="${left + wpx + 4}" y="${y + 11}" font-size="11">${q} ${ms(v)}</text>`,
        );
        y += bar + 3;
      }
      parts.push(
        `<text x="${left - 8}" y="${(groupTop + y) / 2 + 4}" font-size="12" text-anchor="end">` +
          `${LABEL[r.target]}</text>`,
      );
      y += 12;
    }
    const bars = y - 12;
    const barsTop = bars - lat.length * (3 * (bar + 3) + 12);
    for (const [goalMs, label] of LATENCY_GOALS) {
      const goal = left + plot * goalMs / maxMs;
      if (goal > left + plot) continue;
      parts.push(
        `<line x1="${goal}" y1="${barsTop}" x2="${goal}" y2="${bars}" stroke="#dc2626" ` +
          `stroke-dasharray="4 3"/>`,
        `<text x="${goal + 3}" y="${goalMs === 25 ? y : y + 12}" font-size="10" ` +
          `fill="#dc2626">${label}</text>`,
      );
    }
    y += 32;
  }
  const mem = find(rows, "memory", "momd");
  if (mem?.extra?.redisBytesPerMessage !== undefined) {
    parts.push(
      `<text x="${left}" y="${y}" font-size="12">Memory: ${
        num(Number(mem.extra.redisBytesPerMessage))
      } ` +
        `Redis bytes per stored ${report.options.size}-byte message ` +
        `(${num(Number(mem.extra.redisBytesPerMessageRatioToSize), 2)} × size; target ≤ 2 ×), ` +
        `${num(mem.messages)} messages</text>`,
    );
    y += 20;
  }
  parts.push(
    `<text x="${left}" y="${y}" font-size="10" fill="#6b7280">${
      esc(
        `momd: ${report.setup.nodes} node(s), behind NGINX: ${report.setup["behind NGINX"]}; ` +
          `${report.options.size}-byte messages, concurrency ${report.options.concurrency}. ` +
          `${report.machine.cores} cores shared with other work (load ${
            report.machine.loadBefore.map((l) => num(l, 2)).join(" ")
          }); judge by ratios within one run.`,
      )
    }</text>`,
  );
  y += 12;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" ` +
    `viewBox="0 0 ${width} ${y}" font-family="sans-serif">\n` +
    `<rect width="100%" height="100%" fill="white"/>\n${parts.join("\n")}\n</svg>\n`;
}

/** Writes <time>.json, latest.json, latest.md and latest.svg; returns the paths. */
export async function writeReport(report: BenchReport, dir: string): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const stamp = report.startedAt.replace(/[:.]/g, "-");
  const json = JSON.stringify(report, null, 2) + "\n";
  const files: [string, string][] = [
    [`${dir}/${stamp}.json`, json],
    [`${dir}/latest.json`, json],
    [`${dir}/latest.md`, renderMarkdown(report)],
    [`${dir}/latest.svg`, renderSvg(report)],
  ];
  for (const [path, text] of files) await Deno.writeTextFile(path, text);
  return files.map(([p]) => p);
}

/** Renders latest.md and latest.svg again from a results JSON file (after a change to this file). */
async function rerender(path: string): Promise<void> {
  const report = JSON.parse(await Deno.readTextFile(path)) as BenchReport;
  const dir = path.replace(/\/[^/]*$/, "");
  await Deno.writeTextFile(`${dir}/latest.md`, renderMarkdown(report));
  await Deno.writeTextFile(`${dir}/latest.svg`, renderSvg(report));
  console.log(`rendered ${dir}/latest.md and ${dir}/latest.svg from ${path}`);
}

if (import.meta.main) {
  if (Deno.args.length !== 1) {
    console.error("usage: deno run --allow-read --allow-write bench/report.ts RESULTS.json");
    Deno.exit(2);
  }
  await rerender(Deno.args[0]);
}
