import { BrokerError } from "./errors.ts";

/** What one look of a long poll found. */
export interface PollLook<T> {
  /** The answer, if the poll ends here. */
  value: T;
  /** Answer now: something was found, or nothing more will come. */
  ready: boolean;
  /** When something may become due by itself, on the store's clock; false: only a notify. */
  dueAt: number | false;
  /** Look again at once, without waiting. */
  again?: boolean;
}

/** Options of a long poll. */
export interface PollOptions<T> {
  /** How long to wait at most (0: look once). */
  waitMs: number;
  /** Ends the wait (the client went away). */
  signal?: AbortSignal;
  /** The store's clock, which `dueAt` is on. */
  now: () => number;
  /** The answer after an abort during a wait; without it, one more look answers. */
  aborted?: () => T;
  /**
   * The answer when a look after a wait fails as `unavailable`: the entity moved to another
   * node (a hand-over) or its store went down while the poll waited. Nothing was taken, and
   * the client's next poll finds the owner. Without it, the error is thrown (503).
   */
  unavailable?: () => T;
}

/**
 * Wakes long-polling receivers of one entity (or subscription) as soon as something may be
 * deliverable, instead of polling on a tick. Only the owner delivers, so waking is local.
 */
export class Notifier {
  readonly #waiters = new Map<string, Set<() => void>>();
  #closed = false;

  /** Wakes every receiver waiting on the key. */
  notify(key: string): void {
    const set = this.#waiters.get(key);
    if (!set) return;
    this.#waiters.delete(key);
    for (const wake of set) wake();
  }

  #listen(key: string, wake: () => void): void {
    let set = this.#waiters.get(key);
    if (!set) this.#waiters.set(key, set = new Set());
    set.add(wake);
  }

  #unlisten(key: string, wake: () => void): void {
    const set = this.#waiters.get(key);
    if (set?.delete(wake) && set.size === 0) this.#waiters.delete(key);
  }

  /**
   * Resolves when the key is notified, at `untilMs` (epoch ms), or when the signal aborts,
   * whichever comes first.
   */
  wait(key: string, untilMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", finish);
        this.#unlisten(key, finish);
        resolve();
      };
      const timer = setTimeout(finish, Math.max(0, untilMs - Date.now()));
      this.#listen(key, finish);
      if (signal?.aborted) finish();
      else signal?.addEventListener("abort", finish, { once: true });
    });
  }

  /**
   * A long poll (receives of queues and topics, task reads): looks, and while the look is not
   * `ready` and `waitMs` has not passed, waits for the key to be notified or for the look's
   * `dueAt`, then looks again; the look after the end of the wait answers, so what arrived just
   * then is not missed. Listens before each look, so a notify between a look and its wait is not
   * missed either. An abort ends the wait: then `opts.aborted()` answers if given, otherwise one
   * more look does.
   *
   * A look that answers at once costs no timer, promise or listener on the signal: those exist
   * only while the poll actually waits.
   */
  async poll<T>(key: string, look: () => Promise<PollLook<T>>, opts: PollOptions<T>): Promise<T> {
    const signal = opts.signal;
    if (!(opts.waitMs > 0)) {
      while (true) {
        const res = await look();
        if (!res.again || signal?.aborted) return res.value;
      }
    }
    const until = Date.now() + opts.waitMs;
    let notified = false;
    let wake: (() => void) | undefined;
    // One listener for the whole poll, registered before each look: a notify during the look
    // sets `notified`, one during the wait ends it.
    const listener = () => {
      notified = true;
      wake?.();
    };
    // The previous look already found something due, yet nothing to deliver.
    let overdue = false;
    let waited = false;
    while (true) {
      notified = false;
      this.#listen(key, listener);
      try {
        let res: PollLook<T>;
        try {
          res = await look();
        } catch (err) {
          const moved = err instanceof BrokerError && err.code === "unavailable";
          if (waited && moved && opts.unavailable) return opts.unavailable();
          throw err;
        }
        if (res.again && !signal?.aborted) continue;
        if (res.ready || signal?.aborted || this.#closed) return res.value;
        const left = until - Date.now();
        if (left <= 0) return res.value;
        if (notified) continue;
        let delay = left;
        if (res.dueAt !== false) {
          // The store's clock may not be the wall clock (tests): wait the same distance.
          const dueIn = res.dueAt - opts.now();
          // Due already: look again at once; should that look find it due and nothing to
          // deliver too, wait a little between looks rather than spin.
          if (dueIn <= 0 && !overdue) {
            overdue = true;
            continue;
          }
          overdue = dueIn <= 0;
          delay = Math.min(left, Math.max(1, dueIn));
        }
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            signal?.removeEventListener("abort", done);
            wake = undefined;
            resolve();
          };
          const timer = setTimeout(done, delay);
          wake = done;
          signal?.addEventListener("abort", done, { once: true });
        });
        waited = true;
        if (signal?.aborted && opts.aborted) return opts.aborted();
      } finally {
        this.#unlisten(key, listener);
      }
    }
  }

  /** Wakes every waiting receiver (shutting down). */
  wakeAll(): void {
    for (const key of [...this.#waiters.keys()]) this.notify(key);
  }

  /**
   * Ends every long poll after one more look (the node is draining): each answers with what it
   * finds now, and polls that start later answer at once.
   */
  close(): void {
    this.#closed = true;
    this.wakeAll();
  }

  /** Number of receivers waiting (for stats and tests). */
  get waiting(): number {
    let n = 0;
    for (const set of this.#waiters.values()) n += set.size;
    return n;
  }
}
