/** One measured figure of a benchmark run, and how a load run becomes one. */
import type { WorkloadName } from "./options.ts";
import { type LoadResult, quantile } from "./load.ts";

/** What was measured: momd, one of its ceilings, the peer, or wrk (the generator check). */
export type Target = "momd" | "http-ceiling" | "store-ceiling" | "peer" | "wrk";

/** Latency percentiles in milliseconds. */
export interface Latency {
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** One row of the results. */
export interface Row {
  workload: WorkloadName;
  target: Target;
  /** What distinguishes rows of one workload and target ("pipelined", "wrk → momd", ...). */
  variant: string;
  /** Messages moved in the measured window. */
  messages: number;
  /** Requests (or round trips) in the measured window. */
  requests: number;
  errors: number;
  /** Length of the measured window. */
  seconds: number;
  msgsPerSec: number;
  /** Message body megabytes (10^6 bytes) per second. */
  mbPerSec: number;
  /** Per request for throughput workloads; send → receive → ack for `latency`. */
  latencyMs?: Latency;
  /** CPU seconds each process group used in the window. */
  cpuSeconds?: Record<string, number>;
  /** Workload-specific figures (memory, fan-out, latency schedule). */
  extra?: Record<string, number | string | boolean>;
  errorSamples?: string[];
}

/** Rounds for display and JSON. */
export function round(value: number, digits = 2): number {
  if (!Number.isFinite(value)) return value;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Percentiles of sorted samples (ms). */
export function latencyOf(sorted: Float64Array): Latency | undefined {
  if (sorted.length === 0) return undefined;
  return {
    p50: round(quantile(sorted, 0.5), 3),
    p95: round(quantile(sorted, 0.95), 3),
    p99: round(quantile(sorted, 0.99), 3),
    max: round(sorted[sorted.length - 1], 3),
  };
}

/** Fields of a row that every workload fills the same way. */
export interface RowBase {
  workload: WorkloadName;
  target: Target;
  variant?: string;
  size: number;
}

/** A row from a closed-loop run. */
export function rowFromLoad(
  base: RowBase,
  result: LoadResult,
  cpuSeconds?: Record<string, number>,
  extra?: Row["extra"],
): Row {
  const seconds = result.elapsedMs / 1000;
  const msgsPerSec = result.messages / seconds;
  return {
    workload: base.workload,
    target: base.target,
    variant: base.variant ?? "",
    messages: result.messages,
    requests: result.ops,
    errors: result.errors,
    seconds: round(seconds, 3),
    msgsPerSec: round(msgsPerSec, 1),
    mbPerSec: round(msgsPerSec * base.size / 1e6, 2),
    latencyMs: latencyOf(result.latenciesMs),
    cpuSeconds,
    extra,
    errorSamples: result.errorSamples.length > 0 ? result.errorSamples : undefined,
  };
}
