/**
 * Watches this node's local store, which holds every copy the node has, and tells its node when
 * the store lost its data or stopped answering:
 *
 * - **lost**: the store's identity is gone or changed (a FLUSHALL, a Redis restarted from
 *   nothing). Reported by any script that finds it missing (Store's `onLost`) and by a probe
 *   every `intervalMs`, which also covers a store nobody writes to.
 * - **down**: the store has not taken the probe's write for `downAfterMs` (it does not answer, or
 *   it refuses writes: out of memory, read-only); **up** when it takes it again with its
 *   identity (after any failed probe, so a short outage is checked too).
 *
 * The node's reactions (giving up what it owns, taking a new identity) run one at a time.
 */
import type { Store } from "./store.ts";
import { fallbackLogger, type Logger } from "../log/logger.ts";

/** Options of a StoreGuard. */
export interface StoreGuardOptions {
  /** Where failures are logged (default: warnings and errors on standard error). */
  log?: Logger;
  store: Store;
  /** How often the store is probed (default 250 ms). */
  intervalMs?: number;
  /** How long the store may fail to answer before it counts as down. */
  downAfterMs: number;
  /** The store lost its data: resolve once the node has dealt with it. */
  onLost: () => Promise<void>;
  /** The store has not answered for `downAfterMs`. */
  onDown: () => Promise<void>;
  /** The store answers again with its identity, after having failed at least one probe. */
  onUp: (wasDown: boolean) => Promise<void>;
}

/** See the module comment. */
export class StoreGuard {
  readonly #log: Logger;
  readonly #o: Required<StoreGuardOptions>;
  #timer?: ReturnType<typeof setInterval>;
  /** When probes started failing; undefined while they succeed. */
  #failingSince: number | undefined;
  #down = false;
  /** The reaction running now (one at a time). */
  #busy: Promise<void> | undefined;
  #lostReported = false;

  constructor(opts: StoreGuardOptions) {
    this.#log = opts.log ?? fallbackLogger();
    this.#o = { intervalMs: 250, log: this.#log, ...opts };
  }

  /** Whether the store counts as down now. */
  get down(): boolean {
    return this.#down;
  }

  /** Starts probing. */
  start(): void {
    this.#timer ??= setInterval(() => {
      if (!this.#busy) this.#run(() => this.#probe());
    }, this.#o.intervalMs);
  }

  /** Stops probing (a reaction under way finishes). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#busy;
  }

  /** A script found the store without its identity. */
  reportLost(): void {
    if (this.#lostReported) return;
    this.#lostReported = true;
    this.#run(() => this.#o.onLost()).finally(() => this.#lostReported = false);
  }

  #run(job: () => Promise<void>): Promise<void> {
    const run = (this.#busy ?? Promise.resolve()).then(job)
      .catch((err) => this.#log.error({ err }, `store guard`))
      .finally(() => {
        if (this.#busy === run) this.#busy = undefined;
      });
    this.#busy = run;
    return run;
  }

  async #probe(): Promise<void> {
    const { store } = this.#o;
    let identity: string;
    try {
      identity = await withTimeout(store.probe(), this.#o.downAfterMs);
    } catch {
      this.#failingSince ??= Date.now();
      if (!this.#down && Date.now() - this.#failingSince >= this.#o.downAfterMs) {
        this.#down = true;
        this.#log.error(
          `store guard: the local store has not taken a write for ` +
            `${Date.now() - this.#failingSince} ms`,
        );
        await this.#o.onDown();
      }
      return;
    }
    const wasFailing = this.#failingSince !== undefined;
    const wasDown = this.#down;
    this.#failingSince = undefined;
    this.#down = false;
    if (identity !== store.incarnation) {
      this.#log.error(
        `store guard: the local store lost its data (identity ${identity || "missing"}, ` +
          `expected ${store.incarnation})`,
      );
      await this.#o.onLost();
      return;
    }
    if (wasFailing) await this.#o.onUp(wasDown);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
