/**
 * A Jepsen-style checker for queues: it records every send (attempted, acknowledged or refused),
 * every delivery and every ack, and reports what a broker must never do: lose an acknowledged
 * send, deliver something that was never sent, store a send twice, deliver one attempt twice or
 * before the previous attempt's visibility deadline (two owners), or deliver a message again after
 * its ack was confirmed.
 *
 * The load driver sends and consumes through one URL (NGINX) with bounded concurrency, count and
 * time. A send is retried only with its de-duplication id (after a 503, honouring Retry-After, a
 * 5xx or a network error), so a retry can never store a second copy.
 */

/** One delivery as a consumer saw it. */
export interface DeliveryRecord {
  queue: string;
  id: string;
  body: string;
  receipt: string;
  deliveryCount: number;
  /** Server time of the attempt's visibility deadline (ms). */
  visibleAt: number;
  /** Server time of the delivery (ms): visibleAt minus the requested visibility. */
  deliveredAt: number;
  /** Client time the answer arrived (ms). */
  receivedAt: number;
}

interface SendRecord {
  queue: string;
  body: string;
  dedupId?: string;
  /** The id of the 201, if one came. */
  id?: string;
  /** A definite refusal (4xx): it was not stored. */
  refused?: number;
}

/**
 * What a finding is about, so a report can count the kinds of `unexpected` apart: a delivery of
 * something never sent (or sent elsewhere, or refused), and one send stored as several messages.
 */
export type FindingKind =
  | "lost"
  | "never_sent"
  | "wrong_queue"
  | "refused_delivered"
  | "several_messages"
  | "duplicated"
  | "concurrent"
  | "after_ack";

/** A problem with one message, for reports. */
export interface Finding {
  queue: string;
  body: string;
  id?: string;
  detail: string;
  kind?: FindingKind;
}

/** What the checker found. The lists are the anomalies; the numbers are for the log. */
export interface Report {
  attempted: number;
  acknowledged: number;
  /** Sends refused with a 4xx (not stored). */
  refused: number;
  /** Sends without an answer that says whether they were stored (indeterminate). */
  indeterminate: number;
  deliveries: number;
  /** Distinct messages delivered. */
  delivered: number;
  /** Acks confirmed ok. */
  acked: number;
  /** Acknowledged sends never delivered. */
  lost: Finding[];
  /** Deliveries of something never sent (to that queue), or a second copy of one send. */
  unexpected: Finding[];
  /** Messages delivered more than once (allowed: at-least-once; redelivery after a timeout). */
  duplicatedDeliveries: Finding[];
  /**
   * A delivery while an earlier attempt of the same message was still invisible, or the same
   * attempt delivered twice: two nodes delivering, or a delivery that was not replicated.
   */
  concurrentDeliveries: Finding[];
  /** A message delivered again after an ack of it was confirmed: an acknowledged ack was lost. */
  redeliveredAfterAck: Finding[];
}

/** The record of one run. Bodies are unique per run; they identify messages. */
export class History {
  readonly #sends = new Map<string, SendRecord>();
  readonly #deliveries: DeliveryRecord[] = [];
  readonly #byBody = new Map<string, DeliveryRecord[]>();
  /** Confirmed acks: message id -> highest acked delivery count. */
  readonly #acked = new Map<string, number>();
  #ackCount = 0;
  /** Acknowledged sends not delivered yet. */
  readonly #undelivered = new Set<string>();

  /** A send is about to be tried (first attempt). */
  attempted(queue: string, body: string, dedupId?: string): void {
    if (!this.#sends.has(body)) this.#sends.set(body, { queue, body, dedupId });
  }

  /** A send was answered 201 with this id. */
  acknowledged(queue: string, body: string, id: string): void {
    const s = this.#sends.get(body) ?? { queue, body };
    if (s.id !== undefined && s.id !== id) {
      // A retry answered with another id: the first copy must have been lost, or dedup failed.
      s.id = `${s.id}|${id}`;
    } else {
      s.id = id;
    }
    this.#sends.set(body, s);
    if (!this.#byBody.has(body)) this.#undelivered.add(body);
  }

  /** A send was refused for good (4xx): nothing was stored. */
  refused(queue: string, body: string, status: number): void {
    const s = this.#sends.get(body) ?? { queue, body };
    s.refused = status;
    this.#sends.set(body, s);
  }

  /** A consumer received this delivery. */
  delivered(d: DeliveryRecord): void {
    this.#deliveries.push(d);
    const list = this.#byBody.get(d.body) ?? [];
    list.push(d);
    this.#byBody.set(d.body, list);
    this.#undelivered.delete(d.body);
  }

  /** An ack of this delivery was answered ok. */
  ackConfirmed(d: DeliveryRecord): void {
    this.#ackCount++;
    this.#acked.set(d.id, Math.max(this.#acked.get(d.id) ?? 0, d.deliveryCount));
  }

  /** Acknowledged sends not delivered so far. */
  undelivered(): number {
    return this.#undelivered.size;
  }

  /** The acknowledged id of a send, if it was acknowledged. */
  idOf(body: string): string | undefined {
    return this.#sends.get(body)?.id;
  }

  /** Every delivery so far, in arrival order. */
  deliveries(): readonly DeliveryRecord[] {
    return this.#deliveries;
  }

  /** Acknowledged sends, as body -> queue. */
  acknowledgedSends(): Map<string, string> {
    const out = new Map<string, string>();
    for (const s of this.#sends.values()) if (s.id !== undefined) out.set(s.body, s.queue);
    return out;
  }

  /** Checks the history. `marginMs` absorbs rounding of visibility deadlines. */
  report(opts: { marginMs?: number } = {}): Report {
    const margin = opts.marginMs ?? 100;
    const lost: Finding[] = [];
    const unexpected: Finding[] = [];
    const duplicated: Finding[] = [];
    const concurrent: Finding[] = [];
    const afterAck: Finding[] = [];
    let acknowledged = 0, refused = 0, indeterminate = 0;

    for (const s of this.#sends.values()) {
      if (s.id !== undefined) acknowledged++;
      else if (s.refused !== undefined) refused++;
      else indeterminate++;
      if (s.id !== undefined && !this.#byBody.has(s.body)) {
        lost.push({
          queue: s.queue,
          body: s.body,
          id: s.id,
          detail: "acknowledged, never delivered",
          kind: "lost",
        });
      }
      if (s.id?.includes("|")) {
        unexpected.push({
          queue: s.queue,
          body: s.body,
          id: s.id,
          detail: `retries of one send were acknowledged with different ids: ${s.id}`,
          kind: "several_messages",
        });
      }
    }

    for (const [body, list] of this.#byBody) {
      const first = list[0];
      const sent = this.#sends.get(body);
      if (!sent) {
        unexpected.push({
          queue: first.queue,
          body,
          id: first.id,
          detail: "never sent",
          kind: "never_sent",
        });
        continue;
      }
      const wrongQueue = list.find((d) => d.queue !== sent.queue);
      if (wrongQueue) {
        unexpected.push({
          queue: wrongQueue.queue,
          body,
          id: wrongQueue.id,
          detail: `sent to ${sent.queue}, delivered from ${wrongQueue.queue}`,
          kind: "wrong_queue",
        });
      }
      if (sent.refused !== undefined) {
        unexpected.push({
          queue: sent.queue,
          body,
          id: first.id,
          detail: `refused with ${sent.refused}, delivered anyway`,
          kind: "refused_delivered",
        });
      }
      const ids = new Set(list.map((d) => d.id));
      if (ids.size > 1) {
        unexpected.push({
          queue: sent.queue,
          body,
          detail: `one send stored as several messages: ${[...ids].join(", ")}`,
          kind: "several_messages",
        });
      } else if (sent.id !== undefined && !sent.id.includes("|") && sent.id !== first.id) {
        unexpected.push({
          queue: sent.queue,
          body,
          id: first.id,
          detail: `acknowledged as ${sent.id}, delivered as ${first.id}`,
          kind: "several_messages",
        });
      }
      if (list.length > 1) {
        duplicated.push({
          queue: sent.queue,
          body,
          id: first.id,
          detail: `delivered ${list.length} times (counts ${list.map((d) => d.deliveryCount)})`,
          kind: "duplicated",
        });
      }
      // Attempts of one message in delivery order: none may start before the previous one's
      // deadline, and none may repeat a delivery count.
      for (const id of ids) {
        const attempts = list.filter((d) => d.id === id).sort((a, b) =>
          a.deliveryCount - b.deliveryCount || a.deliveredAt - b.deliveredAt
        );
        for (let i = 1; i < attempts.length; i++) {
          const [prev, next] = [attempts[i - 1], attempts[i]];
          if (next.deliveryCount === prev.deliveryCount) {
            concurrent.push({
              queue: sent.queue,
              body,
              id,
              detail: `attempt ${next.deliveryCount} delivered twice ` +
                `(at ${iso(prev.deliveredAt)} and ${iso(next.deliveredAt)})`,
              kind: "concurrent",
            });
          } else if (next.deliveredAt < prev.visibleAt - margin) {
            concurrent.push({
              queue: sent.queue,
              body,
              id,
              detail: `attempt ${next.deliveryCount} at ${iso(next.deliveredAt)}, while attempt ` +
                `${prev.deliveryCount} was invisible until ${iso(prev.visibleAt)}`,
              kind: "concurrent",
            });
          }
        }
        const ackedCount = this.#acked.get(id);
        const later = ackedCount === undefined
          ? undefined
          : attempts.find((d) => d.deliveryCount > ackedCount);
        if (later) {
          afterAck.push({
            queue: sent.queue,
            body,
            id,
            detail: `attempt ${ackedCount} was acked (confirmed), yet attempt ` +
              `${later.deliveryCount} was delivered at ${iso(later.deliveredAt)}`,
            kind: "after_ack",
          });
        }
      }
    }

    return {
      attempted: this.#sends.size,
      acknowledged,
      refused,
      indeterminate,
      deliveries: this.#deliveries.length,
      delivered: this.#byBody.size,
      acked: this.#ackCount,
      lost,
      unexpected,
      duplicatedDeliveries: duplicated,
      concurrentDeliveries: concurrent,
      redeliveredAfterAck: afterAck,
    };
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** A short, printable summary of a report (counts and the first few findings of each kind). */
export function summarize(report: Report, show = 5): string {
  const lines = [
    `attempted ${report.attempted}, acknowledged ${report.acknowledged}, refused ` +
    `${report.refused}, indeterminate ${report.indeterminate}; ${report.deliveries} deliveries ` +
    `of ${report.delivered} messages, ${report.acked} acks confirmed`,
  ];
  const kinds: [string, Finding[]][] = [
    ["lost", report.lost],
    ["unexpected", report.unexpected],
    ["duplicated deliveries", report.duplicatedDeliveries],
    ["concurrent deliveries", report.concurrentDeliveries],
    ["redelivered after ack", report.redeliveredAfterAck],
  ];
  for (const [name, list] of kinds) {
    lines.push(`${name}: ${list.length}`);
    for (const f of list.slice(0, show)) {
      lines.push(`  ${f.queue} ${f.body}${f.id ? ` (${f.id})` : ""}: ${f.detail}`);
    }
  }
  return lines.join("\n");
}

// ---- the load driver ----------------------------------------------------------------------------

/** Options of a load run. */
export interface LoadOptions {
  /** Where every request goes (NGINX). */
  base: string;
  /** Bearer token of the producers and consumers. */
  token: string;
  queues: readonly string[];
  /** Relative share of sends per queue (default: equal). */
  weights?: readonly number[];
  producers: number;
  consumers: number;
  /** Most messages sent in all (default 5000). */
  maxMessages?: number;
  /** Producers stop starting new messages after this long (default 60 s). */
  maxDurationMs?: number;
  /** A send is retried for at most this long, then left indeterminate (default 20 s). */
  sendRetryMs?: number;
  /** Timeout of one request (default 8 s); longer than a long poll. */
  requestTimeoutMs?: number;
  /** Long poll of a receive (default 1 s). */
  waitSeconds?: number;
  /** Visibility of a delivery (default 5 s). */
  visibilitySeconds?: number;
  /** Messages per receive (default 10). */
  receiveMax?: number;
  /** Prefix of the bodies, unique per run (default random). */
  runId?: string;
  history?: History;
}

/** One answered or failed HTTP attempt, for the failover time. */
interface Attempt {
  queue: string;
  startedAt: number;
  doneAt: number;
  ok: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs producers and consumers against a cluster and records everything in a History. */
export class LoadDriver {
  readonly history: History;
  readonly #opts: Required<Omit<LoadOptions, "weights" | "history">> & { weights: number[] };
  #producing = true;
  #consuming = true;
  #sent = 0;
  /** Producers still running. */
  #running = 0;
  readonly #producers: Promise<void>[] = [];
  readonly #consumers: Promise<void>[] = [];
  readonly #sendAttempts: Attempt[] = [];
  /** Answers by kind, e.g. `send 503`, `receive error`, for the log. */
  readonly statuses = new Map<string, number>();
  readonly #ackedPerQueue = new Map<string, number>();

  constructor(opts: LoadOptions) {
    this.history = opts.history ?? new History();
    this.#opts = {
      maxMessages: 5000,
      maxDurationMs: 60_000,
      sendRetryMs: 20_000,
      requestTimeoutMs: 8_000,
      waitSeconds: 1,
      visibilitySeconds: 5,
      receiveMax: 10,
      runId: crypto.randomUUID().slice(0, 8),
      ...opts,
      weights: [...(opts.weights ?? opts.queues.map(() => 1))],
    };
  }

  /** Starts the producers and consumers. */
  start(): void {
    const stopAt = Date.now() + this.#opts.maxDurationMs;
    for (let p = 0; p < this.#opts.producers; p++) this.#producers.push(this.#produce(p, stopAt));
    for (let c = 0; c < this.#opts.consumers; c++) this.#consumers.push(this.#consume(c));
  }

  /** Whether a producer is still running (not stopped, count and time left). */
  get producing(): boolean {
    return this.#running > 0;
  }

  /** Acknowledged sends per queue so far. */
  acknowledgedPerQueue(): Map<string, number> {
    return new Map(this.#ackedPerQueue);
  }

  /** How many messages were acknowledged so far. */
  get acknowledged(): number {
    let n = 0;
    for (const v of this.#ackedPerQueue.values()) n += v;
    return n;
  }

  /**
   * Completion time of the first successful send to `queue` whose attempt started at or after
   * `since` (ms), or undefined.
   */
  firstSendAfter(queue: string, since: number): number | undefined {
    let best: number | undefined;
    for (const a of this.#sendAttempts) {
      if (a.ok && a.queue === queue && a.startedAt >= since) {
        if (best === undefined || a.doneAt < best) best = a.doneAt;
      }
    }
    return best;
  }

  /** Stops starting new sends; resolves when every producer has finished its current one. */
  async stopProducing(): Promise<void> {
    this.#producing = false;
    await Promise.all(this.#producers);
  }

  /**
   * Stops the producers, lets the consumers run until every acknowledged send was delivered (or
   * `timeoutMs` passed), then stops them. Resolves with whether everything was delivered.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    await this.stopProducing();
    const until = Date.now() + timeoutMs;
    while (this.history.undelivered() > 0 && Date.now() < until) await sleep(100);
    await this.stop();
    return this.history.undelivered() === 0;
  }

  /** Stops everything (no draining). */
  async stop(): Promise<void> {
    this.#producing = false;
    this.#consuming = false;
    await Promise.all([...this.#producers, ...this.#consumers]);
  }

  #count(kind: string): void {
    this.statuses.set(kind, (this.statuses.get(kind) ?? 0) + 1);
  }

  #pickQueue(): string {
    const w = this.#opts.weights;
    let r = Math.random() * w.reduce((a, b) => a + b, 0);
    for (let i = 0; i < w.length; i++) {
      r -= w[i];
      if (r < 0) return this.#opts.queues[i];
    }
    return this.#opts.queues[this.#opts.queues.length - 1];
  }

  async #request(path: string, body: unknown): Promise<Response> {
    return await fetch(`${this.#opts.base}${path}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${this.#opts.token}`,
        "content-type": "application/json",
      },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(this.#opts.requestTimeoutMs),
    });
  }

  async #produce(p: number, stopAt: number): Promise<void> {
    this.#running++;
    let n = 0;
    try {
      while (this.#producing && Date.now() < stopAt && this.#sent < this.#opts.maxMessages) {
        this.#sent++;
        const queue = this.#pickQueue();
        const body = `${this.#opts.runId}-p${p}-${n++}`;
        await this.sendOne(queue, body, this.#opts.sendRetryMs);
      }
    } finally {
      this.#running--;
    }
  }

  /**
   * Sends one message with `body` as its de-duplication id, retrying for up to `retryMs`;
   * records it in the history. Returns the final HTTP status (0: no answer).
   */
  async sendOne(queue: string, body: string, retryMs: number): Promise<number> {
    this.history.attempted(queue, body, body);
    const giveUp = Date.now() + retryMs;
    const path = `/v1/queues/${encodeURIComponent(queue)}/messages`;
    let status = 0;
    while (true) {
      const startedAt = Date.now();
      let wait = 200;
      try {
        const res = await this.#request(path, { messages: [{ body, dedupId: body }] });
        status = res.status;
        const answer = await res.text();
        this.#count(`send ${res.status}`);
        this.#sendAttempts.push({ queue, startedAt, doneAt: Date.now(), ok: res.status === 201 });
        if (res.status === 201) {
          const id = JSON.parse(answer).messages[0].id as string;
          this.history.acknowledged(queue, body, id);
          this.#ackedPerQueue.set(queue, (this.#ackedPerQueue.get(queue) ?? 0) + 1);
          return status;
        }
        if (res.status >= 400 && res.status < 500 && res.status !== 429) {
          this.history.refused(queue, body, res.status);
          return status;
        }
        const retryAfter = Number(res.headers.get("retry-after"));
        if (Number.isFinite(retryAfter) && retryAfter > 0) wait = Math.min(retryAfter * 1000, 2000);
      } catch {
        status = 0;
        this.#count("send error");
        this.#sendAttempts.push({ queue, startedAt, doneAt: Date.now(), ok: false });
      }
      if (Date.now() + wait > giveUp) return status; // indeterminate: it may be stored
      await sleep(wait);
    }
  }

  async #consume(c: number): Promise<void> {
    const queues = this.#opts.queues;
    let i = c;
    while (this.#consuming) {
      const queue = queues[i++ % queues.length];
      const got = await this.receiveOnce(queue);
      if (got < 0) await sleep(200);
    }
  }

  /**
   * One receive from `queue` and the ack of what came; records both. Returns the number of
   * deliveries, or -1 when the receive failed.
   */
  async receiveOnce(queue: string): Promise<number> {
    const vis = this.#opts.visibilitySeconds;
    const q = encodeURIComponent(queue);
    let deliveries: DeliveryRecord[];
    try {
      const res = await this.#request(`/v1/queues/${q}/receive`, {
        max: this.#opts.receiveMax,
        waitSeconds: this.#opts.waitSeconds,
        visibilitySeconds: vis,
      });
      const text = await res.text();
      this.#count(`receive ${res.status}`);
      if (res.status !== 200) return -1;
      const receivedAt = Date.now();
      // deno-lint-ignore no-explicit-any
      deliveries = (JSON.parse(text).messages as any[]).map((m) => {
        const visibleAt = Date.parse(m.visibleAt);
        return {
          queue,
          id: m.id,
          body: m.body,
          receipt: m.receipt,
          deliveryCount: m.deliveryCount,
          visibleAt,
          deliveredAt: visibleAt - vis * 1000,
          receivedAt,
        };
      });
    } catch {
      this.#count("receive error");
      return -1;
    }
    for (const d of deliveries) this.history.delivered(d);
    if (deliveries.length > 0) await this.#ack(q, deliveries);
    return deliveries.length;
  }

  async #ack(q: string, deliveries: DeliveryRecord[]): Promise<void> {
    const pending = deliveries;
    for (let attempt = 0; attempt < 3 && pending.length > 0; attempt++) {
      if (attempt > 0) await sleep(300 * attempt);
      try {
        const res = await this.#request(`/v1/queues/${q}/ack`, {
          receipts: pending.map((d) => d.receipt),
        });
        const text = await res.text();
        this.#count(`ack ${res.status}`);
        if (res.status !== 200) continue;
        const results = JSON.parse(text).results as { receipt: string; ok: boolean }[];
        const ok = new Set(results.filter((r) => r.ok).map((r) => r.receipt));
        for (const d of pending) if (ok.has(d.receipt)) this.history.ackConfirmed(d);
        return; // stale receipts stay stale: the message comes back after its deadline
      } catch {
        this.#count("ack error");
      }
    }
  }

  /** Answers seen, e.g. `send 201: 812, send 503: 14, receive error: 2`. */
  describe(): string {
    return [...this.statuses].sort().map(([k, v]) => `${k}: ${v}`).join(", ");
  }
}
