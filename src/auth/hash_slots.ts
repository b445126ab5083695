import { BrokerError } from "../broker/errors.ts";

/**
 * Bounds how many password hashes (scrypt: tens of milliseconds of CPU and 32 MiB each) one node
 * computes at once, and how many wait. A burst of logins then queues behind a core instead of
 * taking every core from the API, and past the queue a login is refused as not applied (503).
 */
export class HashSlots {
  #free: number;
  readonly #maxWaiting: number;
  readonly #waiting: (() => void)[] = [];

  constructor(opts: { concurrency: number; maxWaiting: number }) {
    this.#free = Math.max(1, opts.concurrency);
    this.#maxWaiting = opts.maxWaiting;
  }

  /** Runs one hash in a free slot, waiting for one; `unavailable` when too many wait already. */
  async run<T>(hash: () => Promise<T>): Promise<T> {
    if (this.#free > 0) {
      this.#free--;
    } else {
      if (this.#waiting.length >= this.#maxWaiting) {
        throw new BrokerError(
          "unavailable",
          "this node is checking too many passwords at once; try again",
          1,
        );
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
    try {
      return await hash();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}
