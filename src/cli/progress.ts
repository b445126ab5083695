/** A progress line on standard error for long sends and receives, drawn only on a terminal. */

/** How a Progress counts and what it measures its bar against. */
export interface ProgressOptions {
  enabled: boolean;
  /** What the count is: `4,500 sent`, `4,500 received` (default "sent"). */
  verb?: string;
  /** The amount that fills the bar (bytes of a file, `--max` messages); none: just the count. */
  total?: number;
  /** The size of the file a send reads: the same as `total`. */
  totalBytes?: number;
}

/** Draws `[#####-----]  45%  4,500 sent  1,200/s` (or, with no known total, the count). */
export class Progress {
  readonly #write: (text: string) => Promise<void>;
  readonly #enabled: boolean;
  readonly #verb: string;
  readonly #total?: number;
  readonly #started = Date.now();
  #lastDraw = 0;
  /** The line is on the screen now (not cleared for other output): finish() ends it. */
  #showing = false;

  constructor(write: (text: string) => Promise<void>, options: ProgressOptions) {
    this.#write = write;
    this.#enabled = options.enabled;
    this.#verb = options.verb ?? "sent";
    this.#total = options.total ?? options.totalBytes;
  }

  /**
   * Updates the line (at most ten times a second unless forced): `count` messages so far, and
   * `done` of the total (bytes read for a file; by default the count itself).
   */
  async update(count: number, done = count, force = false): Promise<void> {
    if (!this.#enabled) return;
    const now = Date.now();
    if (!force && now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    this.#showing = true;
    const rate = Math.round(count / Math.max(0.001, (now - this.#started) / 1000));
    const counts = `${count.toLocaleString("en")} ${this.#verb}  ${rate.toLocaleString("en")}/s`;
    let line = counts;
    if (this.#total) {
      const frac = Math.min(1, done / this.#total);
      const filled = Math.round(frac * 30);
      line = `[${"#".repeat(filled)}${"-".repeat(30 - filled)}] ${
        String(Math.floor(frac * 100)).padStart(3)
      }%  ${counts}`;
    }
    await this.#write(`\r\x1b[2K${line}`);
  }

  /**
   * Wipes the line so other output (messages printed as they come) starts at the left margin;
   * the next update draws it again.
   */
  async clear(): Promise<void> {
    if (!this.#showing) return;
    this.#showing = false;
    await this.#write("\r\x1b[2K");
  }

  /** Ends the line so later output starts on its own. */
  async finish(): Promise<void> {
    if (!this.#showing) return;
    this.#showing = false;
    await this.#write("\n");
  }
}
