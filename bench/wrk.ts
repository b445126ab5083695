/**
 * The load generator's check: wrk (C, from Debian's packages) sends the same `send` request with
 * the same concurrency. When wrk gets no more out of a target than the Deno generator does, the
 * generator was not what limited it.
 */
import type { Api } from "./http.ts";
import { round, type Row } from "./row.ts";
import { CpuMeter, type ProcessGroups, waitedChildrenCpuSeconds } from "./services.ts";

/** The wrk program, when installed. */
export function wrkBinary(): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/bin"])) {
    try {
      if (dir && Deno.statSync(`${dir}/wrk`).isFile) return `${dir}/wrk`;
    } catch {
      // not here
    }
  }
  return undefined;
}

const SCRIPT = `
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
local route = os.getenv("BENCH_ROUTE")
if route ~= nil and route ~= "" then wrk.headers["Momd-Route"] = route end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %.3f %.3f %.3f %.3f\\n", summary.requests,
    e.connect + e.read + e.write + e.timeout + e.status, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
`;

/** Options of one wrk run. */
export interface WrkRun {
  api: Api;
  path: string;
  body: string;
  concurrency: number;
  durationSeconds: number;
  size: number;
  /** "HTTP ceiling" or "momd": what the row's variant names. */
  label: string;
  groups: ProcessGroups;
  dir: string;
  /** The owner hint to send (Momd-Route), as the Deno generator does. */
  route?: string;
}

/** Runs wrk (one thread) with a POST of `body`; the row counts one message per request. */
export async function wrkSend(run: WrkRun): Promise<Row> {
  const binary = wrkBinary();
  if (!binary) throw new Error("wrk is not installed");
  const script = `${run.dir}/send.lua`;
  await Deno.writeTextFile(script, SCRIPT);
  const child = new Deno.Command(binary, {
    args: [
      "-t1",
      `-c${run.concurrency}`,
      `-d${Math.max(1, Math.round(run.durationSeconds))}s`,
      "-s",
      script,
      run.api.base + run.path,
    ],
    env: { BENCH_BODY: run.body, BENCH_TOKEN: run.api.token, BENCH_ROUTE: run.route ?? "" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // wrk's own CPU time is known once it exited: it counts in this process's waited children.
  const childrenBefore = waitedChildrenCpuSeconds();
  const m = new CpuMeter({ client: [Deno.pid], ...run.groups });
  m.start();
  const out = await child.output();
  const cpu = { wrk: round(waitedChildrenCpuSeconds() - childrenBefore, 2), ...m.stop() };
  const text = new TextDecoder().decode(out.stdout);
  const line = text.split("\n").find((l) => l.startsWith("BENCH "));
  if (!line) {
    throw new Error(`wrk: no result\n${text}\n${new TextDecoder().decode(out.stderr)}`);
  }
  const [requests, errors, durationUs, p50, p95, p99, max] = line.split(" ").slice(1).map(Number);
  const seconds = durationUs / 1e6;
  const ok = requests - errors;
  return {
    workload: "send",
    target: "wrk",
    variant: `wrk → ${run.label}`,
    messages: ok,
    requests,
    errors,
    seconds: round(seconds, 3),
    msgsPerSec: round(ok / seconds, 1),
    mbPerSec: round(ok / seconds * run.size / 1e6, 2),
    latencyMs: {
      p50: round(p50 / 1000, 3),
      p95: round(p95 / 1000, 3),
      p99: round(p99 / 1000, 3),
      max: round(max / 1000, 3),
    },
    cpuSeconds: cpu,
  };
}
