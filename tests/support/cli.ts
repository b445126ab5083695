import { runCli } from "../../src/cli/mod.ts";
import type { CliIo } from "../../src/cli/io.ts";

/** What one command-line run printed, and its exit code. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of one command-line run. */
export interface RunOptions {
  stdin?: string;
  env?: Record<string, string>;
  stderrIsTerminal?: boolean;
  interrupt?: AbortSignal;
  /** Called with stdout so far after each write (to follow a running command). */
  onStdout?: (all: string) => void;
  /** The fetch the command's client uses (to count or change its requests). */
  fetch?: typeof fetch;
}

/** Runs one `momd` command in-process with `runCli`, in the given environment. */
export async function runMomd(
  args: string[],
  env: Record<string, string>,
  opts: RunOptions = {},
): Promise<RunResult> {
  let stdout = "";
  let stderr = "";
  const io: Partial<CliIo> = {
    stdout: (t) => {
      stdout += t;
      opts.onStdout?.(stdout);
      return Promise.resolve();
    },
    stderr: (t) => {
      stderr += t;
      return Promise.resolve();
    },
    stdin: () => ReadableStream.from([new TextEncoder().encode(opts.stdin ?? "")]),
    stdinIsTerminal: false,
    stderrIsTerminal: opts.stderrIsTerminal ?? false,
    env: (name) => env[name],
    prompt: () => Promise.reject(new Error("no terminal in tests")),
    promptSecret: () => Promise.reject(new Error("no terminal in tests")),
    interrupted: () => opts.interrupt ?? new AbortController().signal,
    fetch: opts.fetch,
  };
  const code = await runCli(args, io);
  return { code, stdout, stderr };
}

/**
 * A command-line user with its own config directory: runs `momd` in-process with `runCli`
 * (standard streams, environment and config directory injected) against a real server.
 */
export async function cliUser(): Promise<{
  home: string;
  credentialsFile: string;
  run(args: string[], opts?: RunOptions): Promise<RunResult>;
  close(): Promise<void>;
}> {
  const home = await Deno.makeTempDir({ prefix: "momd-cli-" });
  const config = `${home}/config`;
  function run(args: string[], opts: RunOptions = {}): Promise<RunResult> {
    return runMomd(args, { HOME: home, XDG_CONFIG_HOME: config, ...opts.env }, opts);
  }
  return {
    home,
    credentialsFile: `${config}/momd/credentials.json`,
    run,
    close: () => Deno.remove(home, { recursive: true }),
  };
}
