import type { ParseArgsOptionsConfig } from "node:util";
import { MomdClient } from "../client/mod.ts";
import { str, UsageError, type Values } from "./args.ts";
import { type Credentials, loadCredentials } from "./credentials.ts";
import type { CliIo } from "./io.ts";

/** Exit codes of the command line. */
export const EXIT = {
  ok: 0,
  /** A bug or an unexpected local failure. */
  internal: 1,
  /** The command was called wrongly (unknown command or option, bad value, missing input). */
  usage: 2,
  /** The server refused the request (4xx: not logged in, forbidden, not found, conflict...). */
  refused: 3,
  /** The server could not be reached, or failed (5xx, 503 unavailable). */
  unavailable: 4,
  /**
   * The server answered, and what it says is unhealthy: a node down or entities
   * under-replicated (`cluster status`), or inconsistencies found (`check`).
   */
  degraded: 5,
} as const;

/**
 * Where the token commands send comes from: MOMD_TOKEN when set (it overrides the saved login),
 * otherwise the login saved by `momd login`. Messages about a bad token name it.
 */
export function tokenSource(io: Pick<CliIo, "env">): "env" | "saved" {
  return io.env("MOMD_TOKEN") ? "env" : "saved";
}

/** What a command gets: its parsed arguments and ways to reach the user and the server. */
export interface Ctx {
  io: CliIo;
  values: Values;
  positionals: string[];
  /** `--json` was given. */
  json: boolean;
  /** The full command name, for messages (`momd queue send`). */
  command: string;
  out(text: string): Promise<void>;
  err(text: string): Promise<void>;
  /** One JSON document, pretty-printed. */
  printJson(value: unknown): Promise<void>;
  /** One JSON value on one line (streaming commands). */
  printJsonLine(value: unknown): Promise<void>;
  /** The saved login, if any. */
  credentials(): Promise<Credentials | undefined>;
  /** The server URL: --url, then MOMD_URL, then the saved login's. */
  url(): Promise<string>;
  /** A client for that URL with the saved token (or MOMD_TOKEN). */
  client(): Promise<MomdClient>;
}

/** One command: `momd login`, `momd queue send`... */
export interface Command {
  name: string;
  /** One line for the listing of its group. */
  summary: string;
  /** The usage line, e.g. `momd queue send NAME [BODY...] [options]`. */
  usage: string;
  /** Description and options, shown by --help. */
  help: string;
  options?: ParseArgsOptionsConfig;
  run(ctx: Ctx): Promise<number | void>;
}

/** A group of subcommands: `momd queue ...`. */
export interface Group {
  name: string;
  summary: string;
  /** Shown above the subcommand list by --help. */
  help: string;
  commands: Command[];
}

/** Ends a command with a given exit code after its message was printed. */
export class CliExit extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
    this.name = "CliExit";
  }
}

/** Builds the context of one command run. */
export function makeContext(
  io: CliIo,
  parsed: { values: Values; positionals: string[] },
  command: string,
): Ctx {
  let creds: Promise<Credentials | undefined> | undefined;
  const ctx: Ctx = {
    io,
    values: parsed.values,
    positionals: parsed.positionals,
    json: parsed.values.json === true,
    command,
    out: (text) => io.stdout(text),
    err: (text) => io.stderr(text),
    printJson: (value) => io.stdout(JSON.stringify(value, null, 2) + "\n"),
    printJsonLine: (value) => io.stdout(JSON.stringify(value) + "\n"),
    credentials: () => creds ??= loadCredentials(io),
    async url() {
      const url = str(parsed.values, "url") ?? io.env("MOMD_URL") ?? (await ctx.credentials())?.url;
      if (!url) {
        throw new UsageError("no server URL: run 'momd login', or give --url or MOMD_URL");
      }
      if (!/^https?:\/\/[^/]/.test(url)) {
        throw new UsageError(`the server URL must start with http:// or https:// (got '${url}')`);
      }
      return url;
    },
    async client() {
      const url = await ctx.url();
      const token = tokenSource(io) === "env"
        ? io.env("MOMD_TOKEN")
        : (await ctx.credentials())?.token;
      return new MomdClient({
        url,
        token,
        fetch: io.fetch,
        retry: { retries: 3, baseDelayMs: 200, maxDelayMs: 2000 },
      });
    },
  };
  return ctx;
}
