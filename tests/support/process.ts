/**
 * Runs momd as a real process (`deno run main.ts ...` with the permissions the compiled binary
 * gets), for tests of what only a process shows: exit codes, signals, stderr, the real port.
 */
import { BINARY_PERMISSIONS } from "../../scripts/compile.ts";
import { freePort, stopChild } from "../../scripts/processes.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** The test's environment without any MOMD_* setting, plus the given ones. */
function momdEnv(env: Record<string, string>): Record<string, string> {
  const base = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([key]) => !key.startsWith("MOMD_")),
  );
  return { ...base, NO_COLOR: "1", ...env };
}

function command(args: readonly string[], env: Record<string, string>): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", ...BINARY_PERMISSIONS, MAIN, ...args],
    env: momdEnv(env),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** What a finished momd process did. */
export interface MomdResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `momd <args>` to its end with exactly the given MOMD_* settings. */
export async function runMomd(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<MomdResult> {
  const out = await command(args, env).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

/** A node running as its own process. */
export interface NodeProcess {
  url: string;
  pid: number;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** Sends a signal and waits for the exit (SIGKILL after `timeoutMs`). */
  stop(signal?: Deno.Signal, timeoutMs?: number): Promise<Deno.CommandStatus>;
}

/** Options of startNodeProcess. */
export interface NodeProcessOptions {
  /** MOMD_* settings; MOMD_HTTP_LISTEN defaults to a free port on 127.0.0.1. */
  env: Record<string, string>;
  readyTimeoutMs?: number;
}

/** Starts `momd serve` and waits until /readyz answers 200. */
export async function startNodeProcess(opts: NodeProcessOptions): Promise<NodeProcess> {
  const env = { MOMD_HTTP_LISTEN: `127.0.0.1:${freePort()}`, ...opts.env };
  const child = command(["serve"], env).spawn();
  let output = "";
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) output += text;
  };
  const drained = Promise.all([collect(child.stdout), collect(child.stderr)]);
  let exited: Deno.CommandStatus | undefined;
  const status = child.status.then((s) => exited = s);
  const url = `http://${env.MOMD_HTTP_LISTEN}`;

  async function stop(signal: Deno.Signal = "SIGTERM", timeoutMs = 20_000) {
    if (!exited) await stopChild(child, { signal, timeoutMs });
    await drained;
    return await status;
  }

  const until = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  while (Date.now() < until && !exited) {
    try {
      const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1_000) });
      await res.body?.cancel();
      if (res.status === 200) return { url, pid: child.pid, output: () => output, stop };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await stop("SIGKILL");
  throw new Error(`momd serve did not become ready (exit: ${exited?.code}); output:\n${output}`);
}
