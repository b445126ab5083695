/** What the `queue` and `topic` command groups share: access options, listing, delete, ack. */
import type { MomdClient } from "../client/mod.ts";
import { int, need, str, UsageError, type Values } from "./args.ts";
import type { Command, Ctx } from "./context.ts";
import { table, time } from "./output.ts";

/**
 * Who may use a queue or topic besides its owner and the admins (the lists are shown to the
 * owner and the admins only).
 */
export interface Access {
  restricted: boolean;
  senders?: string[];
  receivers?: string[];
}

/** The access fields given by --restricted, --unrestricted, --sender and --receiver. */
export function accessFrom(values: Values): Partial<Access> {
  if (values.restricted && values.unrestricted) {
    throw new UsageError("give --restricted or --unrestricted, not both");
  }
  const access: Partial<Access> = {};
  if (values.restricted) access.restricted = true;
  if (values.unrestricted) access.restricted = false;
  if (Array.isArray(values.sender)) access.senders = values.sender;
  if (Array.isArray(values.receiver)) access.receivers = values.receiver;
  return access;
}

/** The access line of `get`. */
export function showAccess(access: Access): string {
  if (!access.restricted) return "any authenticated user";
  if (!access.senders || !access.receivers) {
    return "restricted (the lists are shown to the owner and admins)";
  }
  return `restricted; senders: ${access.senders.join(", ") || "-"}; receivers: ${
    access.receivers.join(", ") || "-"
  }`;
}

/** What `list` and `delete` need to know about a kind of entity. */
export interface EntityKind {
  /** "queue" or "topic": the group name and the word in messages. */
  name: "queue" | "topic";
  /** Every entity, a page at a time. */
  listAll(
    client: MomdClient,
    opts: { prefix?: string },
  ): AsyncIterable<{ name: string; owner: string; createdAt: string }>;
  delete(client: MomdClient, name: string): Promise<void>;
}

/** `momd <kind> list`: names, owners and creation times (`{"<kind>s": [...]}` with --json). */
export function listCommand(kind: EntityKind): Command {
  const plural = `${kind.name}s`;
  return {
    name: "list",
    summary: `list ${plural}`,
    usage: `momd ${kind.name} list [--prefix PREFIX] [--limit N]`,
    help: `Lists ${plural} by name.

Options:
  --prefix PREFIX   only names starting with PREFIX
  --limit N         at most N ${plural} (default: all)`,
    options: { prefix: { type: "string" }, limit: { type: "string" } },
    async run(ctx) {
      need(ctx.positionals, [], `${kind.name} list`);
      const max = int(ctx.values, "limit", { min: 1 }) ?? Infinity;
      const client = await ctx.client();
      const items = [];
      for await (const item of kind.listAll(client, { prefix: str(ctx.values, "prefix") })) {
        if (items.length >= max) break;
        items.push(item);
      }
      if (ctx.json) return void await ctx.printJson({ [plural]: items });
      if (items.length === 0) return void await ctx.out(`no ${plural}\n`);
      await ctx.out(
        table(["NAME", "OWNER", "CREATED"], items.map((e) => [e.name, e.owner, time(e.createdAt)])),
      );
    },
  };
}

/** `momd <kind> delete NAME`. */
export function deleteCommand(kind: EntityKind, text: { summary: string; help: string }): Command {
  return {
    name: "delete",
    summary: text.summary,
    usage: `momd ${kind.name} delete NAME`,
    help: text.help,
    async run(ctx) {
      const [name] = need(ctx.positionals, ["NAME"], `${kind.name} delete`);
      await kind.delete(await ctx.client(), name);
      if (ctx.json) return void await ctx.printJson({ deleted: name });
      await ctx.out(`deleted ${kind.name} '${name}'\n`);
    },
  };
}

/** Prints the outcome of an ack; exit code 3 when some receipts were stale (with --json too). */
export async function reportAck(
  ctx: Ctx,
  results: readonly { ok: boolean }[],
): Promise<number | void> {
  const stale = results.filter((r) => !r.ok).length;
  if (ctx.json) await ctx.printJson({ results });
  else await ctx.out(`acknowledged ${results.length - stale} message(s)\n`);
  if (stale) {
    await ctx.err(`momd: ${stale} receipt(s) stale: not the current delivery of a message\n`);
    return 3;
  }
}
