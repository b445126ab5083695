/** A progress line on standard error for long sends, drawn only on a terminal. */

/** Draws `[#####-----]  45%  4,500 sent  1,200/s` (or, with no known total, the count). */
export class Progress {
  readonly #write: (text: string) => Promise<void>;
  readonly #enabled: boolean;
  readonly #totalBytes?: number;
  readonly #started = Date.now();
  #lastDraw = 0;
  #drawn = false;

  constructor(
    write: (text: string) => Promise<void>,
    options: { enabled: boolean; totalBytes?: number },
  ) {
    this.#write = write;
    this.#enabled = options.enabled;
    this.#totalBytes = options.totalBytes;
  }

  /** Updates the line (at most ten times a second). */
  async update(sent: number, bytesRead: number, force = false): Promise<void> {
    if (!this.#enabled) return;
    const now = Date.now();
    if (!force && now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    this.#drawn = true;
    const rate = Math.round(sent / Math.max(0.001, (now - this.#started) / 1000));
    const counts = `${sent.toLocaleString("en")} sent  ${rate.toLocaleString("en")}/s`;
    let line = counts;
    if (this.#totalBytes) {
      const frac = Math.min(1, bytesRead / this.#totalBytes);
      const filled = Math.round(frac * 30);
      line = `[${"#".repeat(filled)}${"-".repeat(30 - filled)}] ${
        String(Math.floor(frac * 100)).padStart(3)
      }%  ${counts}`;
    }
    await this.#write(`\r\x1b[2K${line}`);
  }

  /** Ends the line so later output starts on its own. */
  async finish(): Promise<void> {
    if (this.#drawn) await this.#write("\n");
  }
}
