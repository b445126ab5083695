import type { CliIo } from "./io.ts";

/** The first `count` lines of standard input (fewer when it ends first), without line ends. */
export async function stdinLines(io: Pick<CliIo, "stdin">, count: number): Promise<string[]> {
  const reader = io.stdin().getReader();
  const decoder = new TextDecoder();
  let text = "";
  try {
    while (text.split("\n").length <= count) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    reader.releaseLock();
  }
  text += decoder.decode();
  const lines = text.split("\n").map((l) => l.replace(/\r$/, ""));
  if (lines.at(-1) === "") lines.pop(); // after the last line end: no line
  return lines.slice(0, count);
}

/** The first line of standard input, or null when it is empty. */
export async function firstLine(io: Pick<CliIo, "stdin">): Promise<string | null> {
  const [line] = await stdinLines(io, 1);
  return line ? line : null;
}
