/** `momd user ...`: create, list, delete users; change a password; rate limits. */
import { MomdClient } from "../../client/mod.ts";
import { int, need, str, UsageError } from "../args.ts";
import type { Command, Ctx, Group } from "../context.ts";
import { saveCredentials } from "../credentials.ts";
import { table, time } from "../output.ts";
import { stdinLines } from "../stdin.ts";

/** Reads passwords: `count` lines of standard input, or prompts (new ones asked twice). */
async function passwords(ctx: Ctx, prompts: string[], helpFor: string): Promise<string[]> {
  if (ctx.values["password-stdin"]) {
    const lines = await stdinLines(ctx.io, prompts.length);
    if (lines.length < prompts.length || lines.some((l) => l === "")) {
      throw new UsageError(
        `--password-stdin expects ${prompts.length} line(s): ${prompts.join(", ")}`,
        helpFor,
      );
    }
    return lines;
  }
  if (!ctx.io.stdinIsTerminal) {
    throw new UsageError(
      "no password: use --password-stdin, or run in a terminal to be asked for it",
      helpFor,
    );
  }
  const out: string[] = [];
  for (const p of prompts) {
    const answer = await ctx.io.promptSecret(`${p[0].toUpperCase()}${p.slice(1)}: `);
    if (!answer) throw new UsageError("no password given");
    if (p.startsWith("new")) {
      const again = await ctx.io.promptSecret("Again: ");
      if (again !== answer) throw new UsageError("the two passwords differ");
    }
    out.push(answer);
  }
  return out;
}

const create: Command = {
  name: "create",
  summary: "create a user (admin)",
  usage: "momd user create NAME [--role user|admin] [--password-stdin]",
  help: `Creates a user. The password is read from standard input with --password-stdin (first
line), or asked for twice without echo on a terminal.

Options:
  --role ROLE        user (default) or admin
  --password-stdin   read the password from the first line of standard input

Example:
  echo "a-long-password" | momd user create alice --password-stdin`,
  options: { role: { type: "string" }, "password-stdin": { type: "boolean" } },
  async run(ctx) {
    const [name] = need(ctx.positionals, ["NAME"], "user create");
    const role = str(ctx.values, "role") ?? "user";
    if (role !== "user" && role !== "admin") {
      throw new UsageError(`--role must be user or admin (got '${role}')`);
    }
    const [password] = await passwords(ctx, ["new password"], "user create");
    const user = await (await ctx.client()).users.create({ username: name, password, role });
    if (ctx.json) return void await ctx.printJson(user);
    await ctx.out(`created ${user.role} '${user.username}'\n`);
  },
};

const list: Command = {
  name: "list",
  summary: "list users (admin)",
  usage: "momd user list [--prefix PREFIX] [--limit N]",
  help: `Lists users by name.

Options:
  --prefix PREFIX   only names starting with PREFIX
  --limit N         at most N users (default: all)`,
  options: { prefix: { type: "string" }, limit: { type: "string" } },
  async run(ctx) {
    need(ctx.positionals, [], "user list");
    const max = int(ctx.values, "limit", { min: 1 }) ?? Infinity;
    const client = await ctx.client();
    const users = [];
    for await (const u of client.users.listAll({ prefix: str(ctx.values, "prefix") })) {
      if (users.length >= max) break;
      users.push(u);
    }
    if (ctx.json) return void await ctx.printJson({ users });
    await ctx.out(
      table(
        ["USERNAME", "ROLE", "CREATED"],
        users.map((u) => [u.username, u.role, time(u.createdAt)]),
      ),
    );
  },
};

const del: Command = {
  name: "delete",
  summary: "delete a user; its tokens stop working (admin)",
  usage: "momd user delete NAME",
  help: "Deletes a user. Its tokens stop working at once. Admins cannot delete themselves.",
  async run(ctx) {
    const [name] = need(ctx.positionals, ["NAME"], "user delete");
    await (await ctx.client()).users.delete(name);
    if (ctx.json) return void await ctx.printJson({ deleted: name });
    await ctx.out(`deleted user '${name}'\n`);
  },
};

const passwd: Command = {
  name: "passwd",
  summary: "change your password (or, as admin, another user's)",
  usage: "momd user passwd [NAME] [--password-stdin]",
  help: `Changes a password; every token of that user stops working. Without NAME, or with your
own name, it changes yours: it asks for the current password, then the new one (with
--password-stdin: two lines, current then new), and logs you in again with the new one.
Admins set another user's password with one line (the new password).

Options:
  --password-stdin   read the password(s) from standard input`,
  options: { "password-stdin": { type: "boolean" } },
  async run(ctx) {
    if (ctx.positionals.length > 1) {
      throw new UsageError(`unexpected argument '${ctx.positionals[1]}'`, "user passwd");
    }
    const client = await ctx.client();
    const me = await client.me();
    const name = ctx.positionals[0] ?? me.username;
    const self = name === me.username;
    if (self) {
      const [currentPassword, password] = await passwords(
        ctx,
        ["current password", "new password"],
        "user passwd",
      );
      await client.users.setPassword(name, { password, currentPassword });
      // The old token is revoked: log in again and keep the new one.
      const creds = await ctx.credentials();
      const fresh = new MomdClient({ url: client.url, fetch: ctx.io.fetch });
      const token = await fresh.login(name, password);
      if (creds && creds.username === name) {
        await saveCredentials(ctx.io, { ...creds, token: token.token, expiresAt: token.expiresAt });
      }
    } else {
      const [password] = await passwords(ctx, ["new password"], "user passwd");
      await client.users.setPassword(name, { password });
    }
    if (ctx.json) return void await ctx.printJson({ changed: name });
    await ctx.out(`changed the password of '${name}'\n`);
  },
};

const limit: Command = {
  name: "limit",
  summary: "show or set a user's rate limit (setting needs admin)",
  usage: "momd user limit NAME [--rate N [--burst N] | --unlimited | --default]",
  help: `Shows the rate limit in force for a user, or sets it. Each user's calls are counted in a
token bucket across the cluster: it refills N calls a second up to its burst, and every call
takes one. Acks, nacks and visibility changes are never counted. Users without their own limit
have the cluster default.

Options:
  --rate N      calls per second (fractions allowed, e.g. 0.5)
  --burst N     calls allowed at once after a quiet spell (default: two seconds' worth)
  --unlimited   no limit for this user
  --default     back to the cluster default

Examples:
  momd user limit alice
  momd user limit reporting --rate 50 --burst 200
  momd user limit ingest --unlimited`,
  options: {
    rate: { type: "string" },
    burst: { type: "string" },
    unlimited: { type: "boolean" },
    default: { type: "boolean" },
  },
  async run(ctx) {
    const [name] = need(ctx.positionals, ["NAME"], "user limit");
    const rateText = str(ctx.values, "rate");
    const burst = int(ctx.values, "burst", { min: 1 });
    const unlimited = ctx.values.unlimited === true;
    const reset = ctx.values.default === true;
    const chosen = [rateText !== undefined, unlimited, reset].filter(Boolean).length;
    if (chosen > 1) {
      throw new UsageError("give one of --rate, --unlimited, --default", "user limit");
    }
    if (burst !== undefined && rateText === undefined) {
      throw new UsageError("--burst goes with --rate", "user limit");
    }
    const rate = rateText === undefined ? undefined : Number(rateText);
    if (rate !== undefined && (!Number.isFinite(rate) || rate <= 0 || rateText?.trim() === "")) {
      throw new UsageError(`--rate must be a number above 0 (got '${rateText}')`, "user limit");
    }
    const users = (await ctx.client()).users;
    const setting = unlimited
      ? await users.setRateLimit(name, { unlimited: true })
      : reset
      ? await users.clearRateLimit(name)
      : rate !== undefined
      ? await users.setRateLimit(name, { requestsPerSecond: rate, burst })
      : await users.rateLimit(name);
    if (ctx.json) return void await ctx.printJson({ username: name, ...setting });
    const text = setting.limit === null
      ? "no limit"
      : `${setting.limit.requestsPerSecond} calls/s, burst ${setting.limit.burst}`;
    const source = setting.source === "user" ? "its own" : "the cluster default";
    await ctx.out(`${name}: ${text} (${source})\n`);
  },
};

/** The `user` command group. */
export const userGroup: Group = {
  name: "user",
  summary: "manage users and passwords",
  help: "Users, their passwords and rate limits. Creating, listing and deleting users and " +
    "setting limits need the admin role.",
  commands: [create, list, del, passwd, limit],
};
