/**
 * The nemesis suite's load: producers, topic publishers and consumers, each logged in as its own
 * user, through NGINX, with the owner hints momd's client sends (`Momd-Owner` -> `Momd-Route`).
 * Everything is recorded in one checker History per queue and per topic subscription
 * (tests/support/checker.ts), plus every send request with its time and outcome (availability and
 * the longest time without a successful send).
 *
 * - Queue producers send batches of 1-5 messages, each with its body as de-duplication id, to
 *   random queues. A batch is retried only as it was (same dedup ids) after a 5xx, a 429 or a
 *   network error, honouring Retry-After (at most 2 s; else a jittered backoff from 200 ms to
 *   2 s, as momd's client does), for up to 20 s; then it stays indeterminate. A 4xx other than
 *   429 refuses it for good.
 * - Topic publishers publish batches of 1-5. Topics have no de-duplication, so a publish is never
 *   retried: without a 201 or a 4xx its outcome is unknown (indeterminate), and the next batch is
 *   new messages. A publish is recorded in the History of every subscription (created at the
 *   earliest offset before the load, each subscription must deliver every message).
 * - Consumers long-poll (1 s) with a 5 s visibility and ack by receipt; an ack that fails is
 *   retried until shortly before the delivery's deadline, so a short outage does not turn every
 *   in-flight message into a duplicate. While producers run, consumers take breaks, so messages
 *   wait in every queue and subscription when a fault strikes (a lost store shows as loss).
 */
import { type DeliveryRecord, History } from "./checker.ts";
import type { Rng } from "./nemesis.ts";

/** A queue or a topic subscription the load uses: the History's "queue" name. */
export interface Target {
  /** `q0`, or `events/sub-a` for a subscription. */
  name: string;
  type: "queue" | "subscription";
  /** `queue/q0` or `topic/events`: the entity (owner hints are per entity). */
  entity: string;
  /** Request path prefix: `/v1/queues/q0` or `/v1/topics/events/subscriptions/sub-a`. */
  path: string;
}

/** The target of a queue. */
export function queueTarget(name: string): Target {
  return { name, type: "queue", entity: `queue/${name}`, path: `/v1/queues/${name}` };
}

/** The target of a topic subscription. */
export function subscriptionTarget(topic: string, sub: string): Target {
  return {
    name: `${topic}/${sub}`,
    type: "subscription",
    entity: `topic/${topic}`,
    path: `/v1/topics/${topic}/subscriptions/${sub}`,
  };
}

/** One send or publish request as the client saw it. */
export interface SendAttempt {
  kind: "send" | "publish";
  /** The queue, or the topic's name. */
  target: string;
  startedAt: number;
  doneAt: number;
  /** HTTP status; 0 for a network error or a timeout. */
  status: number;
  ok: boolean;
  /** The owner the answer named (`Momd-Owner`), if any. */
  owner?: string;
}

/** A user of the load. */
export interface WorkerUser {
  username: string;
  password: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One user's HTTP access: its own token (renewed on a 401) and the owner hints it learnt. */
export class WorkerClient {
  #token = "";
  readonly #owners = new Map<string, string>();

  constructor(readonly base: string, readonly user: WorkerUser) {}

  /** Logs in; throws unless the answer is 200. */
  async login(): Promise<void> {
    const res = await fetch(`${this.base}/v1/auth/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(this.user),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`login ${this.user.username}: ${res.status} ${text}`);
    this.#token = JSON.parse(text).token;
  }

  /** A POST about `entity`; network errors and timeouts throw. */
  async post(
    entity: string,
    path: string,
    body: unknown,
    timeoutMs: number,
  ): Promise<{ status: number; headers: Headers; text: string }> {
    for (let attempt = 0;; attempt++) {
      const headers: Record<string, string> = {
        authorization: `Bearer ${this.#token}`,
        "content-type": "application/json",
      };
      const owner = this.#owners.get(entity);
      if (owner) headers["momd-route"] = owner;
      let res: Response;
      let text: string;
      try {
        res = await fetch(`${this.base}${path}`, {
          method: "POST",
          headers,
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(timeoutMs),
        });
        text = await res.text();
      } catch (err) {
        this.#owners.delete(entity); // the hinted node may be the one that stopped answering
        throw err;
      }
      // As momd's client does: follow the owner an answer names; forget it on a plain 404, and
      // on a 502 or 504 (the hinted node may have stopped answering: let NGINX choose).
      const hint = res.headers.get("momd-owner");
      if (hint) this.#owners.set(entity, hint);
      else if (res.status === 404 || res.status === 502 || res.status === 504) {
        this.#owners.delete(entity);
      }
      // An expired token is the client's business, not an outcome of the request.
      if (res.status === 401 && attempt === 0) {
        await this.login();
        continue;
      }
      return { status: res.status, headers: res.headers, text };
    }
  }
}

/** Options of a Workload. */
export interface WorkloadOptions {
  /** NGINX. */
  base: string;
  /** Body prefix, unique per run. */
  runId: string;
  queues: readonly string[];
  topic: string;
  subscriptions: readonly string[];
  /** One user per worker: producers, then publishers, then consumers. */
  producers: readonly WorkerUser[];
  publishers: readonly WorkerUser[];
  consumers: readonly WorkerUser[];
  rng: Rng;
  /** Pause between two batches of one producer (ms), which sets the rate. */
  paceMs: number;
}

const SEND_RETRY_MS = 20_000;
const SEND_TIMEOUT_MS = 10_000;
const WAIT_SECONDS = 1;
const VISIBILITY_SECONDS = 5;
const RECEIVE_MAX = 10;

/** Producers, publishers and consumers over the queues and the topic's subscriptions. */
export class Workload {
  /** History per target name (queues and `topic/sub`). */
  readonly histories = new Map<string, History>();
  readonly targets: Target[];
  /** Every send and publish request. */
  readonly attempts: SendAttempt[] = [];
  /** Answers by kind, e.g. `send 201`, `receive error`, for the log. */
  readonly statuses = new Map<string, number>();
  /** Messages per send request kind: `send` / `publish` -> messages attempted. */
  readonly messages = { send: 0, publish: 0 };
  producingSince = 0;
  producingUntil = 0;
  readonly #o: WorkloadOptions;
  readonly #producerClients: WorkerClient[];
  readonly #publisherClients: WorkerClient[];
  readonly #consumerClients: WorkerClient[];
  #producing = false;
  #consuming = false;
  readonly #producerRuns: Promise<void>[] = [];
  readonly #consumerRuns: Promise<void>[] = [];

  constructor(opts: WorkloadOptions) {
    this.#o = opts;
    this.targets = [
      ...opts.queues.map(queueTarget),
      ...opts.subscriptions.map((s) => subscriptionTarget(opts.topic, s)),
    ];
    for (const t of this.targets) this.histories.set(t.name, new History());
    this.#producerClients = opts.producers.map((u) => new WorkerClient(opts.base, u));
    this.#publisherClients = opts.publishers.map((u) => new WorkerClient(opts.base, u));
    this.#consumerClients = opts.consumers.map((u) => new WorkerClient(opts.base, u));
  }

  /** Logs every worker in. */
  async login(): Promise<void> {
    for (
      const w of [...this.#producerClients, ...this.#publisherClients, ...this.#consumerClients]
    ) {
      await w.login();
    }
  }

  /**
   * Starts everything. Consumers: one per target, the rest roam over every target (several
   * consumers share each queue and subscription).
   */
  start(): void {
    this.#producing = true;
    this.#consuming = true;
    this.producingSince = Date.now();
    this.#producerClients.forEach((w, i) =>
      this.#producerRuns.push(this.#produce(w, this.#o.rng.derive(100 + i), i))
    );
    this.#publisherClients.forEach((w, i) =>
      this.#producerRuns.push(this.#publish(w, this.#o.rng.derive(200 + i), i))
    );
    this.#consumerClients.forEach((w, i) => {
      const own = i < this.targets.length ? [this.targets[i]] : this.targets;
      this.#consumerRuns.push(this.#consume(w, own, i));
    });
  }

  /** Starts no new batch; resolves when every producer finished (retries included). */
  async stopProducing(): Promise<void> {
    if (this.#producing) this.producingUntil = Date.now();
    this.#producing = false;
    await Promise.all(this.#producerRuns);
  }

  /** Acknowledged sends not delivered yet, per target. */
  undelivered(): Map<string, number> {
    return new Map([...this.histories].map(([name, h]) => [name, h.undelivered()]));
  }

  /** Waits until every acknowledged send was delivered or `timeoutMs` passed; true if all. */
  async drain(timeoutMs: number): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    const left = () => [...this.histories.values()].reduce((n, h) => n + h.undelivered(), 0);
    while (left() > 0 && Date.now() < until) await sleep(200);
    return left() === 0;
  }

  /** Stops every worker. */
  async stop(): Promise<void> {
    await this.stopProducing();
    this.#consuming = false;
    await Promise.all(this.#consumerRuns);
  }

  /** Answers seen, e.g. `ack 200: 812, send 503: 14`. */
  describe(): string {
    return [...this.statuses].sort().map(([k, v]) => `${k}: ${v}`).join(", ");
  }

  /** Records one send or publish attempt: its answer, or (none) a network error or timeout. */
  #attempted(
    kind: SendAttempt["kind"],
    target: string,
    startedAt: number,
    res?: { status: number; headers: Headers },
  ): void {
    this.#count(`${kind} ${res ? res.status : "error"}`);
    this.attempts.push({
      kind,
      target,
      startedAt,
      doneAt: Date.now(),
      status: res?.status ?? 0,
      ok: res?.status === 201,
      owner: res?.headers.get("momd-owner") ?? undefined,
    });
  }

  #count(kind: string): void {
    this.statuses.set(kind, (this.statuses.get(kind) ?? 0) + 1);
  }

  async #produce(w: WorkerClient, rng: Rng, p: number): Promise<void> {
    let n = 0;
    while (this.#producing) {
      const queue = rng.pick(this.#o.queues);
      const bodies = Array.from({ length: rng.int(1, 5) }, () => `${this.#o.runId}-p${p}-${n++}`);
      await this.#sendBatch(w, rng, queue, bodies);
      await sleep(this.#o.paceMs);
    }
  }

  /** One batch to one queue, retried with the same dedup ids (see the module comment). */
  async #sendBatch(w: WorkerClient, rng: Rng, queue: string, bodies: string[]): Promise<void> {
    const history = this.histories.get(queue)!;
    for (const body of bodies) history.attempted(queue, body, body);
    this.messages.send += bodies.length;
    const giveUp = Date.now() + SEND_RETRY_MS;
    const body = { messages: bodies.map((b) => ({ body: b, dedupId: b })) };
    for (let retry = 0;; retry++) {
      const startedAt = Date.now();
      // As momd's client: full jitter under a ceiling from 200 ms doubling (here up to 2 s).
      let wait = rng.between(0, Math.min(2000, 200 * 2 ** retry));
      try {
        const res = await w.post(
          `queue/${queue}`,
          `/v1/queues/${queue}/messages`,
          body,
          SEND_TIMEOUT_MS,
        );
        this.#attempted("send", queue, startedAt, res);
        if (res.status === 201) {
          const ids = (JSON.parse(res.text).messages as { id: string }[]).map((m) => m.id);
          bodies.forEach((b, i) => history.acknowledged(queue, b, ids[i]));
          return;
        }
        if (res.status >= 400 && res.status < 500 && res.status !== 429) {
          for (const b of bodies) history.refused(queue, b, res.status);
          return;
        }
        const retryAfter = Number(res.headers.get("retry-after"));
        if (Number.isFinite(retryAfter) && retryAfter > 0) wait = Math.min(retryAfter * 1000, 2000);
      } catch {
        this.#attempted("send", queue, startedAt);
      }
      if (Date.now() + wait > giveUp) return; // indeterminate: it may be stored
      await sleep(wait);
    }
  }

  async #publish(w: WorkerClient, rng: Rng, p: number): Promise<void> {
    const topic = this.#o.topic;
    const subs = this.targets.filter((t) => t.type === "subscription");
    let n = 0;
    while (this.#producing) {
      const bodies = Array.from({ length: rng.int(1, 5) }, () => `${this.#o.runId}-t${p}-${n++}`);
      for (const t of subs) {
        for (const b of bodies) this.histories.get(t.name)!.attempted(t.name, b);
      }
      this.messages.publish += bodies.length;
      const startedAt = Date.now();
      try {
        const res = await w.post(
          `topic/${topic}`,
          `/v1/topics/${topic}/messages`,
          { messages: bodies.map((b) => ({ body: b })) },
          SEND_TIMEOUT_MS,
        );
        this.#attempted("publish", topic, startedAt, res);
        if (res.status === 201) {
          const ids = (JSON.parse(res.text).messages as { id: string }[]).map((m) => m.id);
          for (const t of subs) {
            bodies.forEach((b, i) => this.histories.get(t.name)!.acknowledged(t.name, b, ids[i]));
          }
        } else if (res.status >= 400 && res.status < 500 && res.status !== 429) {
          for (const t of subs) {
            for (const b of bodies) this.histories.get(t.name)!.refused(t.name, b, res.status);
          }
        }
        // Anything else: unknown outcome, never retried (a retry could store a second copy).
        if (res.status !== 201) await sleep(res.status === 503 ? 500 : 200);
      } catch {
        this.#attempted("publish", topic, startedAt);
        await sleep(200);
      }
      await sleep(this.#o.paceMs);
    }
  }

  /**
   * Receives and acks in turns of 2-5 s, with breaks of 2-6 s while producers run, so every
   * queue and subscription keeps a backlog that a fault can lose; without breaks once the
   * producers stopped (the drain).
   */
  async #consume(w: WorkerClient, targets: readonly Target[], c: number): Promise<void> {
    const rng = this.#o.rng.derive(300 + c);
    let i = c;
    let on = rng.next() < 0.5;
    let turnEnds = Date.now() + rng.between(0, 4000);
    while (this.#consuming) {
      if (Date.now() >= turnEnds) {
        on = !on;
        turnEnds = Date.now() + (on ? rng.between(2000, 5000) : rng.between(2000, 6000));
      }
      if (!on && this.#producing) {
        await sleep(Math.min(200, Math.max(0, turnEnds - Date.now())));
        continue;
      }
      const target = targets[i++ % targets.length];
      const got = await this.#receiveOnce(w, target);
      if (got < 0) await sleep(200);
    }
  }

  /** One receive and the ack of what came; -1 when the receive failed. */
  async #receiveOnce(w: WorkerClient, t: Target): Promise<number> {
    const history = this.histories.get(t.name)!;
    let deliveries: DeliveryRecord[];
    try {
      const res = await w.post(t.entity, `${t.path}/receive`, {
        max: RECEIVE_MAX,
        waitSeconds: WAIT_SECONDS,
        visibilitySeconds: VISIBILITY_SECONDS,
      }, (WAIT_SECONDS + 10) * 1000);
      this.#count(`receive ${res.status}`);
      if (res.status !== 200) return -1;
      const receivedAt = Date.now();
      // deno-lint-ignore no-explicit-any
      deliveries = (JSON.parse(res.text).messages as any[]).map((m) => {
        const visibleAt = Date.parse(m.visibleAt);
        return {
          queue: t.name,
          id: m.id,
          body: m.body,
          receipt: m.receipt,
          deliveryCount: m.deliveryCount,
          visibleAt,
          deliveredAt: visibleAt - VISIBILITY_SECONDS * 1000,
          receivedAt,
        };
      });
    } catch {
      this.#count("receive error");
      return -1;
    }
    for (const d of deliveries) history.delivered(d);
    if (deliveries.length > 0) await this.#ack(w, t, history, deliveries);
    return deliveries.length;
  }

  /** Acks by receipt, retrying until shortly before the earliest deadline. */
  async #ack(w: WorkerClient, t: Target, history: History, ds: DeliveryRecord[]): Promise<void> {
    // Deadlines are server times; the client's clock is the same machine's.
    const until = Math.min(...ds.map((d) => d.visibleAt)) - 1000;
    for (let attempt = 0;; attempt++) {
      try {
        const res = await w.post(t.entity, `${t.path}/ack`, {
          receipts: ds.map((d) => d.receipt),
        }, 5_000);
        this.#count(`ack ${res.status}`);
        if (res.status === 200) {
          const results = JSON.parse(res.text).results as { receipt: string; ok: boolean }[];
          const ok = new Set(results.filter((r) => r.ok).map((r) => r.receipt));
          for (const d of ds) if (ok.has(d.receipt)) history.ackConfirmed(d);
          return; // a stale receipt stays stale: the message comes back after its deadline
        }
        if (res.status >= 400 && res.status < 500 && res.status !== 429) return;
      } catch {
        this.#count("ack error");
      }
      const wait = Math.min(200 * 2 ** attempt, 1000);
      if (Date.now() + wait > until) return;
      await sleep(wait);
    }
  }
}
