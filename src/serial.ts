/**
 * Runs jobs one at a time per key: a job starts when the previous one of its key has settled
 * (whatever its outcome); jobs of different keys run side by side.
 */
export class PerKey {
  readonly #tails = new Map<string, Promise<unknown>>();

  /** Runs `job` after the jobs of `key` queued before it; resolves or rejects as it does. */
  run<T>(key: string, job: () => Promise<T>): Promise<T> {
    const before = this.#tails.get(key) ?? Promise.resolve();
    const result = before.then(job, job);
    const tail = result.catch(() => {});
    this.#tails.set(key, tail);
    tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return result;
  }
}
