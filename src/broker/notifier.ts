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
}

/**
 * Wakes long-polling receivers of one entity (or subscription) as soon as something may be
 * deliverable, instead of polling on a tick. Only the owner delivers, so waking is local.
 */
export class Notifier {
  readonly #waiters = new Map<string, Set<() => void>>();

  /** Wakes every receiver waiting on the key. */
  notify(key: string): void {
    const set = this.#waiters.get(key);
    if (!set) return;
    this.#waiters.delete(key);
    for (const wake of set) wake();
  }

  /**
   * Resolves when the key is notified, at `untilMs` (epoch ms), or when the signal aborts,
   * whichever comes first.
   */
  wait(key: string, untilMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let set = this.#waiters.get(key);
      if (!set) this.#waiters.set(key, set = new Set());
      const waiters = set;
      const finish = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", finish);
        waiters.delete(finish);
        if (waiters.size === 0 && this.#waiters.get(key) === waiters) this.#waiters.delete(key);
        resolve();
      };
      const timer = setTimeout(finish, Math.max(0, untilMs - Date.now()));
      waiters.add(finish);
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
   */
  async poll<T>(key: string, look: () => Promise<PollLook<T>>, opts: PollOptions<T>): Promise<T> {
    const until = Date.now() + opts.waitMs;
    while (true) {
      const stop = new AbortController();
      const abort = () => stop.abort();
      opts.signal?.addEventListener("abort", abort, { once: true });
      const woken = opts.waitMs > 0 ? this.wait(key, until, stop.signal) : undefined;
      try {
        const res = await look();
        if (res.again && !opts.signal?.aborted) continue;
        if (res.ready || !woken || Date.now() >= until || opts.signal?.aborted) return res.value;
        if (res.dueAt === false) {
          await woken;
        } else {
          // The store's clock may not be the wall clock (tests): wait the same distance.
          const dueIn = Math.max(5, res.dueAt - opts.now());
          let timer: ReturnType<typeof setTimeout> | undefined;
          await Promise.race([
            woken,
            new Promise<void>((resolve) => timer = setTimeout(resolve, dueIn)),
          ]);
          clearTimeout(timer);
        }
        if (opts.signal?.aborted && opts.aborted) return opts.aborted();
      } finally {
        stop.abort();
        opts.signal?.removeEventListener("abort", abort);
      }
    }
  }

  /** Wakes every waiting receiver (shutting down). */
  wakeAll(): void {
    for (const key of [...this.#waiters.keys()]) this.notify(key);
  }

  /** Number of receivers waiting (for stats and tests). */
  get waiting(): number {
    let n = 0;
    for (const set of this.#waiters.values()) n += set.size;
    return n;
  }
}
