/**
 * The momd command line: `momd <command>` talks to a momd server through its REST API (the
 * same binary runs a node with `momd serve`, which main.ts handles).
 *
 * `runCli(args, io)` runs one command and resolves with its exit code; `io` replaces the
 * process's streams, environment and prompts (tests run commands in-process).
 */
import { MomdConnectionError, MomdError } from "../client/mod.ts";
import { parse, UsageError } from "./args.ts";
import { CliExit, type Command, EXIT, type Group, makeContext, tokenSource } from "./context.ts";
import { type CliIo, denoIo } from "./io.ts";
import { versionLine } from "../version.ts";
import { login, logout, whoami } from "./commands/auth.ts";
import { queueGroup } from "./commands/queue.ts";
import { topicGroup } from "./commands/topic.ts";
import { userGroup } from "./commands/user.ts";
import { clusterGroup } from "./commands/cluster.ts";
import { check } from "./commands/check.ts";

export type { CliIo } from "./io.ts";
export { EXIT } from "./context.ts";

const ENTRIES: (Command | Group)[] = [
  login,
  logout,
  whoami,
  queueGroup,
  topicGroup,
  userGroup,
  clusterGroup,
  check,
];

function isGroup(e: Command | Group): e is Group {
  return "commands" in e;
}

const GLOBAL_HELP = `Global options (every command):
  --url URL    server URL (default: MOMD_URL, then the URL saved by 'momd login')
  --json       JSON output instead of tables; commands that stream (send, publish,
               receive) print one JSON object per line
  -h, --help   help of any command or group
  --version    print the version, build and data format of this momd`;

const EXIT_HELP = `Exit codes:
  0  success
  1  internal error (a bug: please report it)
  2  usage error: unknown command or option, bad value, missing input
  3  the server refused the request (4xx: not logged in, token expired, forbidden,
     not found, conflict, too large, rate limited)
  4  the server is unreachable, or failed (5xx, 503 unavailable)
  5  the cluster is degraded: a node down or entities under-replicated
     (cluster status), or the consistency check found problems (check)`;

function pad(names: string[]): (s: string) => string {
  const w = Math.max(...names.map((n) => n.length)) + 2;
  return (s) => s.padEnd(w);
}

/** The top-level help. */
export function topHelp(): string {
  const p = pad(ENTRIES.map((e) => e.name));
  return `momd — message-oriented middleware: queues and topics over REST

Usage:
  momd serve [settings]        run a node (momd serve --help lists the settings)
  momd <command> [options]     talk to a momd server through its REST API

Commands:
${ENTRIES.map((e) => `  ${p(e.name)}${e.summary}`).join("\n")}

${GLOBAL_HELP}

Environment:
  MOMD_URL          server URL
  MOMD_TOKEN        a token to use instead of the saved one
  XDG_CONFIG_HOME   the login is saved in $XDG_CONFIG_HOME/momd/credentials.json
                    (default ~/.config/momd/credentials.json)

${EXIT_HELP}

Run 'momd <command> --help' for the options of a command.
`;
}

function groupHelp(g: Group): string {
  const p = pad(g.commands.map((c) => c.name));
  return `Usage: momd ${g.name} <command> [options]

${g.help}

Commands:
${g.commands.map((c) => `  ${p(c.name)}${c.summary}`).join("\n")}

Run 'momd ${g.name} <command> --help' for the options of a command.
`;
}

function commandHelp(c: Command): string {
  return `Usage: ${c.usage}

${c.help}

${GLOBAL_HELP}
`;
}

/** The command words at the start of the arguments (global options may come before them). */
function commandWords(args: string[]): string[] {
  const words: string[] = [];
  for (let i = 0; i < args.length && words.length < 2; i++) {
    const a = args[i];
    if (a === "--") break;
    if (a.startsWith("-")) {
      if (a === "--url") i++; // its value
      continue;
    }
    words.push(a);
  }
  return words;
}

/** Removes the first occurrences of the command words from the positionals. */
function withoutWords(positionals: string[], words: string[]): string[] {
  const rest = [...positionals];
  for (const w of words) {
    const i = rest.indexOf(w);
    if (i >= 0) rest.splice(i, 1);
  }
  return rest;
}

function problemLines(err: MomdError): string {
  const issues = err.problem.issues;
  if (!Array.isArray(issues) || issues.length < 2) return "";
  return issues.map((i: { path?: string; message?: string }) =>
    `  ${i.path ? `${i.path}: ` : ""}${i.message}\n`
  ).join("");
}

function hintFor(err: MomdError, source: "env" | "saved"): string {
  if (source === "env") {
    // MOMD_TOKEN overrides the saved login: logging in again would not change what is sent.
    const fix = "set MOMD_TOKEN to a new token, or unset it to use the saved login";
    switch (err.code) {
      case "token_expired":
        return `the token in MOMD_TOKEN has expired: ${fix}`;
      case "token_revoked":
        return `the token in MOMD_TOKEN was revoked (password changed or user deleted): ${fix}`;
      case "token_invalid":
        return `the token in MOMD_TOKEN is not valid for this server: ${fix}`;
    }
  }
  switch (err.code) {
    case "unauthenticated":
      return "not logged in: run 'momd login'";
    case "token_expired":
      return "your login has expired: run 'momd login' again";
    case "token_revoked":
      return "your token was revoked (password changed or user deleted): run 'momd login'";
    case "token_invalid":
      return "the saved token is not valid for this server: run 'momd login'";
  }
  return err.detail;
}

/** Prints an error and gives its exit code. */
async function report(io: CliIo, err: unknown, command?: string): Promise<number> {
  if (err instanceof UsageError) {
    const helpFor = err.helpFor ?? command;
    const where = helpFor ? `momd ${helpFor} --help` : "momd --help";
    await io.stderr(`momd: ${err.message}\nRun '${where}' for usage.\n`);
    return EXIT.usage;
  }
  if (err instanceof CliExit) {
    if (err.message) await io.stderr(`momd: ${err.message}\n`);
    return err.code;
  }
  if (err instanceof MomdError) {
    const code = err.code ? ` ${err.code}` : "";
    const hint = hintFor(err, tokenSource(io));
    await io.stderr(`momd: ${hint} (${err.status}${code})\n${problemLines(err)}`);
    if (err.retryAfterSeconds !== undefined && err.status === 429) {
      await io.stderr(`momd: try again in ${Math.ceil(err.retryAfterSeconds)} s\n`);
    }
    return err.status >= 500 ? EXIT.unavailable : EXIT.refused;
  }
  if (err instanceof MomdConnectionError) {
    await io.stderr(`momd: ${err.message}\n`);
    return EXIT.unavailable;
  }
  if (err instanceof Deno.errors.BrokenPipe) return EXIT.ok; // e.g. `| head`
  const detail = err instanceof Error ? (io.env("MOMD_DEBUG") ? err.stack : err.message) : err;
  await io.stderr(`momd: internal error: ${detail}\n`);
  return EXIT.internal;
}

/**
 * Runs one command of the momd command line (everything but `serve`) and resolves with its
 * exit code: 0 ok, 2 usage error, 3 refused by the server (4xx), 4 unreachable or 5xx.
 */
export async function runCli(args: string[], io: Partial<CliIo> = {}): Promise<number> {
  const full: CliIo = { ...denoIo(), ...io };
  let current: string | undefined;
  try {
    const words = commandWords(args);
    const wantsHelp = args.includes("--help") || args.includes("-h");
    const first: string | undefined = words[0];
    let second: string | undefined = words[1];
    if (first === "help") {
      // `momd help queue send` is `momd queue send --help`
      const rest = [...args];
      rest.splice(args.indexOf("help"), 1);
      return await runCli([...rest, "--help"], io);
    }
    if (!first && args.includes("--version")) {
      await full.stdout(`${versionLine()}\n`);
      return EXIT.ok;
    }
    if (!first) {
      if (wantsHelp || args.length === 0) {
        await (args.length === 0 ? full.stderr : full.stdout)(topHelp());
        return args.length === 0 ? EXIT.usage : EXIT.ok;
      }
      parse(args, {}, ""); // reports the unknown option
      throw new UsageError("missing command");
    }
    if (first === "serve") {
      throw new UsageError("'momd serve' runs a node: start it through main.ts");
    }
    const entry = ENTRIES.find((e) => e.name === first);
    if (!entry) throw new UsageError(`unknown command '${first}'`);

    let command: Command;
    let name: string;
    if (isGroup(entry)) {
      if (!second) {
        if (wantsHelp) {
          await full.stdout(groupHelp(entry));
          return EXIT.ok;
        }
        await full.stderr(`momd: missing ${entry.name} command\n\n${groupHelp(entry)}`);
        return EXIT.usage;
      }
      const sub = entry.commands.find((c) => c.name === second);
      if (!sub) throw new UsageError(`unknown ${entry.name} command '${second}'`, entry.name);
      command = sub;
      name = `${entry.name} ${sub.name}`;
    } else {
      command = entry;
      name = entry.name;
      second = undefined;
    }
    if (wantsHelp) {
      await full.stdout(commandHelp(command));
      return EXIT.ok;
    }
    current = name;
    const parsed = parse(args, command.options ?? {}, name);
    parsed.positionals = withoutWords(parsed.positionals, second ? [first, second] : [first]);
    const ctx = makeContext(full, parsed, `momd ${name}`);
    const code = await command.run(ctx);
    return code ?? EXIT.ok;
  } catch (err) {
    return await report(full, err, current);
  }
}

/** Every command as typed after `momd` (`["login"]`, `["queue", "send"]`, ...). */
export function commandPaths(): string[][] {
  return ENTRIES.flatMap((e) => isGroup(e) ? e.commands.map((c) => [e.name, c.name]) : [[e.name]]);
}
