/** Reading messages one per line from a file or standard input, in batches, as a stream. */

/** A batch of lines and how far into the input it reaches. */
export interface LineBatch {
  lines: string[];
  /**
   * Line number (1-based) of each line in the input (blank lines, also those of only white
   * space, are skipped, not renumbered).
   */
  numbers: number[];
  /** Bytes of input up to the end of this batch's last line (for a progress bar). */
  bytesRead: number;
}

/**
 * Splits a byte stream into lines (`\n` or `\r\n`; blank lines, also those of only white space,
 * skipped) and yields them in batches of `size`, holding no more than one batch in memory.
 */
export async function* lineBatches(
  input: ReadableStream<Uint8Array>,
  size: number,
): AsyncGenerator<LineBatch> {
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  let pending = "";
  let batch: string[] = [];
  let numbers: number[] = [];
  let lineNo = 0;
  let bytesRead = 0;
  const take = (line: string) => {
    lineNo++;
    bytesRead += encoder.encode(line).length + 1;
    const text = line.endsWith("\r") ? line.slice(0, -1) : line;
    if (text.trim() === "") return; // a line of only spaces or tabs is blank too
    batch.push(text);
    numbers.push(lineNo);
  };
  for await (const chunk of input) {
    pending += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      take(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
      if (batch.length === size) {
        yield { lines: batch, numbers, bytesRead };
        batch = [];
        numbers = [];
      }
    }
  }
  pending += decoder.decode();
  if (pending !== "") take(pending);
  if (batch.length) yield { lines: batch, numbers, bytesRead };
}
