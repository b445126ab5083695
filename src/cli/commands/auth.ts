/** `momd login`, `momd logout`, `momd whoami`. */
import { MomdClient } from "../../client/mod.ts";
import { need, str, UsageError } from "../args.ts";
import { type Command, type Ctx, tokenSource } from "../context.ts";
import { credentialsPath, deleteCredentials, saveCredentials } from "../credentials.ts";
import { keyValues, time } from "../output.ts";
import { firstLine } from "../stdin.ts";

const DEFAULT_URL = "http://127.0.0.1:8080";

async function ask(ctx: Ctx, question: string, fallback?: string): Promise<string | undefined> {
  if (!ctx.io.stdinIsTerminal) return fallback;
  const hint = fallback ? ` [${fallback}]` : "";
  const answer = (await ctx.io.prompt(`${question}${hint}: `))?.trim();
  return answer || fallback;
}

export const login: Command = {
  name: "login",
  summary: "log in and keep the token in your config directory",
  usage: "momd login [--url URL] [--username NAME] [--password-stdin]",
  help: `Logs in to a momd server and saves the server URL, your username and a token (never the
password) in $XDG_CONFIG_HOME/momd/credentials.json (or ~/.config/momd/credentials.json),
readable by you only (mode 0600). Later commands use them until the token expires; then
log in again.

The URL comes from --url, MOMD_URL, or a prompt (default ${DEFAULT_URL}); the username from
--username or a prompt. The password is read from standard input with --password-stdin (its
first line), or asked for without echo when standard input is a terminal.

Options:
  --url URL           server URL
  --username NAME     your username
  --password-stdin    read the password from the first line of standard input

Example:
  echo "$MOMD_PASSWORD" | momd login --url http://127.0.0.1:8080 --username admin --password-stdin`,
  options: {
    username: { type: "string", short: "u" },
    "password-stdin": { type: "boolean" },
  },
  async run(ctx) {
    need(ctx.positionals, [], "login");
    const saved = await ctx.credentials();
    const url = str(ctx.values, "url") ?? ctx.io.env("MOMD_URL") ??
      await ask(ctx, "Server URL", saved?.url ?? DEFAULT_URL);
    if (!url) throw new UsageError("no server URL: give --url or set MOMD_URL", "login");
    if (!/^https?:\/\/[^/]/.test(url)) {
      throw new UsageError(`the server URL must start with http:// or https:// (got '${url}')`);
    }
    const username = str(ctx.values, "username") ?? await ask(ctx, "Username", saved?.username);
    if (!username) throw new UsageError("no username: give --username", "login");

    let password: string | null;
    if (ctx.values["password-stdin"]) {
      password = await firstLine(ctx.io);
    } else if (ctx.io.stdinIsTerminal) {
      password = await ctx.io.promptSecret("Password: ");
    } else {
      throw new UsageError(
        "no password: use --password-stdin, or run in a terminal to be asked for it",
        "login",
      );
    }
    if (!password) throw new UsageError("no password given", "login");

    const client = new MomdClient({ url, fetch: ctx.io.fetch, retry: { retries: 2 } });
    const token = await client.login(username, password);
    const path = await saveCredentials(ctx.io, {
      url: client.url,
      username,
      token: token.token,
      expiresAt: token.expiresAt,
    });
    if (ctx.json) {
      await ctx.printJson({ url: client.url, username, expiresAt: token.expiresAt, saved: path });
    } else {
      await ctx.out(
        `logged in to ${client.url} as ${username} until ${time(token.expiresAt)}\n` +
          `token saved in ${path}\n`,
      );
    }
  },
};

export const logout: Command = {
  name: "logout",
  summary: "forget the saved login",
  usage: "momd logout",
  help: `Deletes the saved login (the token file). The token itself stays valid on the server until
it expires; change your password (momd user passwd) to revoke every token at once.`,
  async run(ctx) {
    need(ctx.positionals, [], "logout");
    const deleted = await deleteCredentials(ctx.io);
    if (ctx.json) await ctx.printJson({ loggedOut: deleted });
    else {await ctx.out(
        deleted ? `logged out (${credentialsPath(ctx.io)} deleted)\n` : "not logged in\n",
      );}
  },
};

/** The expiry (`exp`) a JWT states, as ISO 8601, or null when it cannot be read. */
function jwtExpiry(token: string): string | null {
  try {
    const payload = token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
    const exp = JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "="))).exp;
    return typeof exp === "number" ? new Date(exp * 1000).toISOString() : null;
  } catch {
    return null;
  }
}

export const whoami: Command = {
  name: "whoami",
  summary: "show whose token the commands use, and where it comes from",
  usage: "momd whoami",
  help: `Asks the server whose token this is (GET /v1/auth/me). The token is MOMD_TOKEN when it is
set, otherwise the one 'momd login' saved.`,
  async run(ctx) {
    need(ctx.positionals, [], "whoami");
    const client = await ctx.client();
    const me = await client.me();
    const fromEnv = tokenSource(ctx.io) === "env";
    const expiresAt = fromEnv
      ? jwtExpiry(ctx.io.env("MOMD_TOKEN")!)
      : (await ctx.credentials())?.expiresAt ?? null;
    const source = fromEnv ? "MOMD_TOKEN" : credentialsPath(ctx.io);
    if (ctx.json) {
      await ctx.printJson({ ...me, url: client.url, expiresAt, tokenFrom: source });
      return;
    }
    await ctx.out(keyValues([
      ["user", me.username],
      ["role", me.role],
      ["server", client.url],
      ["token from", fromEnv ? "MOMD_TOKEN (environment)" : `saved login (${source})`],
      ["token expires", time(expiresAt)],
    ]));
  },
};
