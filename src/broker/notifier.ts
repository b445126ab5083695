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
