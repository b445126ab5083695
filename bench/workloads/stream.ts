/**
 * `stream-send` and `stream-drain`: momd's WebSocket streams (docs/streaming.md), driven by
 * Deno's WebSocket with the token and the owner hint as headers.
 *
 * - `stream-send`: concurrency / 8 producer sockets (4 for 32), each keeping a window of 100
 *   sends in flight, each answered by its own `sent` frame: what a streaming producer is for
 *   (the client's producer keeps up to 1000 in flight). 100 is what one REST send carries, so
 *   the node can store a socket's waiting sends as full batches. `--stream-window 8` puts as
 *   many sends in flight as RabbitMQ's `send` has (32 publishers, one confirm awaited each).
 * - `stream-drain`: `concurrency` consumer sockets over a preloaded queue, 100 credits each (as
 *   RabbitMQ's prefetch 100), acking in batches (50, or 5 ms after the first waiting) with the
 *   credits given back in the same breath. A message counts once its ack is answered.
 */
import { runClosedLoop, Samples } from "../load.ts";
import { latencyOf, round, type Row, rowFromLoad } from "../row.ts";
import type { Api } from "../http.ts";
import {
  createQueue,
  deleteQueue,
  type HttpTarget,
  messageBody,
  meter,
  preload,
  type RunSettings,
} from "./common.ts";

/** Shape of the stream-send producers. */
export interface StreamSendShape {
  sockets: number;
  /** Sends in flight per socket. */
  window: number;
}

/** Sends in flight per stream-send socket by default. */
export const STREAM_WINDOW = 100;

/** The stream-send shape: concurrency / 8 sockets, STREAM_WINDOW sends in flight on each. */
export function streamSendShape(
  concurrency: number,
  sockets?: number,
  window?: number,
): StreamSendShape {
  return {
    sockets: sockets ?? Math.max(1, Math.round(concurrency / 8)),
    window: window ?? STREAM_WINDOW,
  };
}

/** Credits of each stream-drain consumer (RabbitMQ's drain-100 prefetch). */
export const DRAIN_PREFETCH = 100;
/** A consumer acks once this many wait... */
const ACK_BATCH = 50;
/** ...or this long after the first of them. */
const ACK_DELAY_MS = 5;

// deno-lint-ignore no-explicit-any
type Frame = any;

/**
 * Opens a stream socket to `path` with the token and the owner hint as headers. Frames are
 * handed on from the start (a consumer's first deliveries may come before the open resolves).
 */
async function openSocket(
  api: Api,
  path: string,
  onFrame: (f: Frame, ws: WebSocket) => void,
): Promise<WebSocket> {
  const url = api.base.replace(/^http/, "ws") + path;
  const headers: Record<string, string> = { authorization: `Bearer ${api.token}` };
  const route = api.ownerOf(path);
  if (route) headers["momd-route"] = route;
  const ws = new WebSocket(url, { protocols: ["momd.v1"], headers } as unknown as string[]);
  ws.onmessage = (e) => onFrame(JSON.parse(e.data), ws);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = (e) => reject(new Error(`cannot open ${path}: ${(e as ErrorEvent).message}`));
  });
  ws.onerror = () => {};
  return ws;
}

function closeAll(sockets: WebSocket[]): Promise<void> {
  return Promise.all(sockets.map((ws) =>
    new Promise<void>((resolve) => {
      if (ws.readyState === WebSocket.CLOSED) return resolve();
      ws.onclose = () => resolve();
      ws.close();
      setTimeout(resolve, 2_000);
    })
  )).then(() => {});
}

function errorText(f: Frame): string {
  return `${f.status} ${f.code ?? f.title}: ${f.detail}`;
}

/** One producer socket: `send` resolves when its `sent` frame comes. */
class ProducerSocket {
  readonly #pending = new Map<string, { resolve(): void; reject(e: Error): void }>();
  #next = 0;
  ws!: WebSocket;

  static async open(api: Api, path: string): Promise<ProducerSocket> {
    const p = new ProducerSocket();
    p.ws = await openSocket(api, path, (f) => p.#answer(f));
    p.ws.onclose = (e) => {
      for (const w of p.#pending.values()) w.reject(new Error(`socket closed (${e.code})`));
      p.#pending.clear();
    };
    return p;
  }

  #answer(f: Frame): void {
    const waiting = this.#pending.get(f.context);
    if (!waiting) return;
    this.#pending.delete(f.context);
    if (f.type === "sent") waiting.resolve();
    else waiting.reject(new Error(errorText(f)));
  }

  /** Sends one message (`prefix` holds the frame up to its context). */
  send(prefix: string): Promise<void> {
    const context = String(this.#next++);
    return new Promise<void>((resolve, reject) => {
      if (this.ws.readyState !== WebSocket.OPEN) return reject(new Error("socket closed"));
      this.#pending.set(context, { resolve, reject });
      this.ws.send(`${prefix}${context}"}`);
    });
  }
}

/** Runs stream-send: producers with a window of sends in flight each. */
export async function streamSendWorkload(
  t: HttpTarget,
  shape: StreamSendShape,
  settings: RunSettings,
): Promise<Row> {
  const queue = `${settings.runId}-stream-send`;
  await createQueue(t.api, queue); // its answer names the owner: the sockets go there
  const path = `/v1/queues/${queue}/producer`;
  const sockets: ProducerSocket[] = [];
  try {
    for (let i = 0; i < shape.sockets; i++) sockets.push(await ProducerSocket.open(t.api, path));
    const prefix = `{"type":"send","body":${JSON.stringify(messageBody(settings.size))},` +
      `"context":"`;
    const m = meter(t.groups);
    const result = await runClosedLoop({
      concurrency: shape.sockets * shape.window,
      durationMs: settings.durationMs,
      warmupMs: settings.warmupMs,
    }, async (w) => {
      await sockets[w % sockets.length].send(prefix);
      return 1;
    });
    return rowFromLoad(
      {
        workload: "stream-send",
        target: t.target,
        size: settings.size,
        variant: `${shape.sockets} sockets × ${shape.window} in flight`,
      },
      result,
      m.stop(),
      { sockets: shape.sockets, window: shape.window },
    );
  } finally {
    await closeAll(sockets.map((s) => s.ws));
    await deleteQueue(t.api, queue);
  }
}

/** Runs stream-drain over `count` preloaded messages. */
export async function streamDrainWorkload(
  t: HttpTarget,
  count: number,
  settings: RunSettings,
): Promise<Row> {
  const queue = `${settings.runId}-stream-drain`;
  await createQueue(t.api, queue);
  settings.log(`  preloading ${count} messages into ${queue}`);
  const preloadSeconds =
    (await preload(t.api, `/v1/queues/${queue}/messages`, count, settings)).seconds;
  const path = `/v1/queues/${queue}/consumer?prefetch=${DRAIN_PREFETCH}&visibilitySeconds=600`;
  const sockets: WebSocket[] = [];
  const latencies = new Samples();
  const errorSamples: string[] = [];
  let acked = 0;
  let ackFrames = 0;
  let errors = 0;
  let finish!: () => void;
  const finished = new Promise<void>((r) => finish = r);
  const noteError = (text: string) => {
    errors++;
    if (errorSamples.length < 5 && !errorSamples.includes(text)) errorSamples.push(text);
  };
  try {
    const m = meter(t.groups);
    const start = performance.now();
    for (let i = 0; i < settings.concurrency; i++) {
      let waiting: string[] = [];
      let timer: ReturnType<typeof setTimeout> | undefined;
      const sentAt = new Map<string, number>();
      let next = 0;
      const flush = (ws: WebSocket) => {
        clearTimeout(timer);
        timer = undefined;
        if (waiting.length === 0 || ws.readyState !== WebSocket.OPEN) return;
        const context = String(next++);
        sentAt.set(context, performance.now());
        ws.send(JSON.stringify({ type: "ack", context, receipts: waiting }));
        ws.send(`{"type":"permit","n":${waiting.length}}`);
        ackFrames++;
        waiting = [];
      };
      const ws = await openSocket(t.api, path, (f, ws) => {
        if (f.type === "message") {
          waiting.push(f.receipt);
          if (waiting.length >= ACK_BATCH) flush(ws);
          else timer ??= setTimeout(() => flush(ws), ACK_DELAY_MS);
        } else if (f.type === "acked") {
          const at = sentAt.get(f.context);
          sentAt.delete(f.context);
          if (at !== undefined) latencies.add(performance.now() - at);
          for (const r of f.results) {
            if (r.ok) acked++;
            else noteError(`ack refused: ${r.error}`);
          }
          if (acked >= count) finish();
        } else if (f.type === "error") {
          noteError(errorText(f));
        }
      });
      sockets.push(ws);
    }
    // For the duration, or until the preloaded queue is empty (as the other drains).
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      finished,
      new Promise<void>((r) => timer = setTimeout(r, settings.durationMs)),
    ]);
    clearTimeout(timer);
    const seconds = (performance.now() - start) / 1000;
    const cpu = m.stop();
    return {
      workload: "stream-drain",
      target: t.target,
      variant: `${settings.concurrency} consumers × ${DRAIN_PREFETCH} credits, ack every ` +
        `${ACK_BATCH} or ${ACK_DELAY_MS} ms`,
      messages: acked,
      requests: ackFrames,
      errors,
      seconds: round(seconds, 3),
      msgsPerSec: round(acked / seconds, 1),
      mbPerSec: round(acked / seconds * settings.size / 1e6, 2),
      latencyMs: latencyOf(latencies.sorted()),
      cpuSeconds: cpu,
      extra: {
        preloaded: count,
        preloadSeconds: round(preloadSeconds, 2),
        emptied: acked >= count,
        consumers: settings.concurrency,
        prefetch: DRAIN_PREFETCH,
      },
      errorSamples: errorSamples.length > 0 ? errorSamples : undefined,
    };
  } finally {
    await closeAll(sockets);
    await deleteQueue(t.api, queue);
  }
}
