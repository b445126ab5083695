/** What the HTTP workloads share: the target, the settings of a run, queue set-up and preloading. */
import type { Api } from "../http.ts";
import { runClosedLoop } from "../load.ts";
import { CpuMeter, type ProcessGroups } from "../services.ts";

/** Something answering momd's HTTP API: momd itself or the HTTP ceiling. */
export interface HttpTarget {
  target: "momd" | "http-ceiling";
  /** Logged in. */
  api: Api;
  /** The processes whose CPU time the rows report (the client is always included). */
  groups: ProcessGroups;
}

/** Settings every workload of a run shares. */
export interface RunSettings {
  size: number;
  concurrency: number;
  durationMs: number;
  warmupMs: number;
  /** Prefix of every queue and topic name this run creates. */
  runId: string;
  log: (line: string) => void;
}

/** A message body of `size` bytes (ASCII, so bytes = characters). */
export function messageBody(size: number): string {
  return "x".repeat(size);
}

/** A send request body with `n` messages of `size` bytes. */
export function sendBody(n: number, size: number): string {
  const one = JSON.stringify({ body: messageBody(size) });
  return `{"messages":[${new Array(n).fill(one).join(",")}]}`;
}

/** Starts measuring the CPU of the target's processes and of this process. */
export function meter(groups: ProcessGroups): CpuMeter {
  const m = new CpuMeter({ client: [Deno.pid], ...groups });
  m.start();
  return m;
}

/** Creates a queue that holds up to 10 million messages (no de-duplication). */
export async function createQueue(api: Api, name: string): Promise<void> {
  await api.call("PUT", `/v1/queues/${name}`, {
    maxLength: 10_000_000,
    dedupWindowSeconds: 0,
    visibilityTimeoutSeconds: 600,
  }, [200, 201]);
}

/** Deletes a queue (ignoring one already gone). */
export async function deleteQueue(api: Api, name: string): Promise<void> {
  await api.call("DELETE", `/v1/queues/${name}`, undefined, [204, 404]);
}

/** Sends exactly `count` messages in batches of 100 with the run's concurrency. */
export async function preload(
  api: Api,
  path: string,
  count: number,
  settings: RunSettings,
): Promise<{ seconds: number; errors: number }> {
  const full = api.prepare("POST", path, sendBody(100, settings.size));
  let claimed = 0;
  const result = await runClosedLoop(
    { concurrency: settings.concurrency, durationMs: 30 * 60_000, maxErrors: 0 },
    async () => {
      if (claimed >= count) return "empty";
      const n = Math.min(100, count - claimed);
      claimed += n;
      try {
        await api.send(n === 100 ? full : api.prepare("POST", path, sendBody(n, settings.size)));
      } catch (err) {
        claimed -= n;
        throw err;
      }
      return n;
    },
  );
  if (result.errors > 0) {
    throw new Error(`preloading ${path}: ${result.errors} errors: ${result.errorSamples[0]}`);
  }
  return { seconds: result.elapsedMs / 1000, errors: result.errors };
}
