/**
 * Everything the command line touches outside itself, injectable so tests run `runCli`
 * in-process: output streams, standard input, terminal checks, environment, prompts, Ctrl-C.
 */

/** The command line's view of its process. */
export interface CliIo {
  /** Writes text to standard output as is. */
  stdout(text: string): Promise<void>;
  /** Writes text to standard error as is. */
  stderr(text: string): Promise<void>;
  /** Standard input as a byte stream (read once). */
  stdin(): ReadableStream<Uint8Array>;
  /** Standard input is a terminal (prompts possible, nothing piped in). */
  stdinIsTerminal: boolean;
  /** Standard error is a terminal (a progress bar may be drawn). */
  stderrIsTerminal: boolean;
  /** An environment variable. */
  env(name: string): string | undefined;
  /** Asks a question on the terminal and reads a line (null at end of input). */
  prompt(question: string): Promise<string | null>;
  /** Asks for a secret on the terminal without echoing it (null at end of input). */
  promptSecret(question: string): Promise<string | null>;
  /** A signal aborted on the first Ctrl-C (a second one ends the process). */
  interrupted(): AbortSignal;
  /** The fetch the client uses (tests may wrap it). */
  fetch?: typeof fetch;
}

const encoder = new TextEncoder();

async function writeAll(w: { write(p: Uint8Array): Promise<number> }, text: string) {
  const bytes = encoder.encode(text);
  let written = 0;
  while (written < bytes.length) written += await w.write(bytes.subarray(written));
}

/** Reads one line from the terminal, echoing as usual. */
async function readLine(): Promise<string | null> {
  const buf = new Uint8Array(1);
  const bytes: number[] = [];
  while (true) {
    const n = await Deno.stdin.read(buf);
    if (n === null) return bytes.length ? new TextDecoder().decode(new Uint8Array(bytes)) : null;
    if (buf[0] === 10) break;
    if (buf[0] !== 13) bytes.push(buf[0]);
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** Reads one line from the terminal in raw mode, echoing nothing; Ctrl-C gives up. */
async function readSecretLine(): Promise<string | null> {
  Deno.stdin.setRaw(true);
  const buf = new Uint8Array(1);
  const bytes: number[] = [];
  try {
    while (true) {
      const n = await Deno.stdin.read(buf);
      if (n === null) return null;
      const b = buf[0];
      if (b === 3) return null; // Ctrl-C
      if (b === 4) return bytes.length ? decode(bytes) : null; // Ctrl-D
      if (b === 13 || b === 10) return decode(bytes);
      if (b === 127 || b === 8) bytes.pop();
      else bytes.push(b);
    }
  } finally {
    Deno.stdin.setRaw(false);
  }
}

function decode(bytes: number[]): string {
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** The real process: Deno's standard streams, environment and signals. */
export function denoIo(): CliIo {
  let interrupt: AbortController | undefined;
  return {
    stdout: (text) => writeAll(Deno.stdout, text),
    stderr: (text) => writeAll(Deno.stderr, text),
    stdin: () => Deno.stdin.readable,
    stdinIsTerminal: Deno.stdin.isTerminal(),
    stderrIsTerminal: Deno.stderr.isTerminal(),
    env: (name) => Deno.env.get(name),
    async prompt(question) {
      await writeAll(Deno.stderr, question);
      return await readLine();
    },
    async promptSecret(question) {
      await writeAll(Deno.stderr, question);
      const line = await readSecretLine();
      await writeAll(Deno.stderr, "\n");
      return line;
    },
    interrupted() {
      if (!interrupt) {
        const controller = new AbortController();
        interrupt = controller;
        Deno.addSignalListener("SIGINT", () => {
          if (controller.signal.aborted) Deno.exit(130);
          controller.abort(new Error("interrupted"));
        });
      }
      return interrupt.signal;
    },
  };
}
