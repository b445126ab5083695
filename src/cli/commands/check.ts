/** `momd check`: the consistency check of a live cluster (GET /v1/cluster/check). */
import type { CheckReport } from "../../client/mod.ts";
import { need, seconds, UsageError } from "../args.ts";
import { CliExit, type Command, EXIT } from "../context.ts";
import { oneLine, table } from "../output.ts";

/** The report as text: a verdict line, the nodes, and the problems. */
export function renderCheck(report: CheckReport): string {
  const verdict = report.consistent ? "consistent" : "INCONSISTENT";
  const where = report.mode === "single"
    ? `single node '${report.node}'`
    : `cluster of ${report.nodes.length} nodes, checked by '${report.node}'`;
  let out = `${verdict}: ${where} in ${(report.durationMs / 1000).toFixed(1)} s; ` +
    `${report.entities} queues and topics, ${report.errors} errors, ${report.warnings} warnings\n`;
  if (report.mode === "cluster") {
    const { copies, verified } = report.replicaCopies;
    out += `replica copies: ${verified} of ${copies} equal to their owner's at the same seq\n`;
  }
  for (const n of report.notApplicable) out += `not checked: ${n}\n`;
  out += "\n" + table(
    ["NODE", "REACHED", "STORE", "COPIES", "KEYS"],
    report.nodes.map((n) => [
      n.id,
      n.reached ? "yes" : "NO",
      n.store === null ? null : n.store.slice(0, 8),
      n.copies,
      n.keys,
    ]),
  );
  if (report.problems.length === 0) return out + "\nno problems found\n";
  return out + "\n" + table(
    ["SEVERITY", "KIND", "ENTITY", "NODE", "DETAIL"],
    report.problems.map((p) => [p.severity, p.kind, p.entity, p.node, oneLine(p.detail, 200)]),
  );
}

/** `momd check`. */
export const check: Command = {
  name: "check",
  summary: "check that the cluster's copies, views, backups and keys agree (admins)",
  usage: "momd check [--wait S] [--timeout S] [--strict]",
  help: `Runs the consistency check (GET /v1/cluster/check) on a live cluster, without stopping it:
for every queue and topic, ZooKeeper's owner and epoch against each node's view; each replica's
sequence number and content digest against its owner's; the backup against the owner; keys in
any node's Redis that belong to nothing it holds; listed entities without a ZooKeeper record. A
node that does not answer is an error: the cluster cannot be verified. A single node checks its
store and backups. What each problem means and what to do about it: docs/check.md.

Prints a verdict, the nodes and a table of problems (errors first). Exits with 0 when the
cluster is consistent (warnings, such as a replica a few records behind, are allowed), and with
5 when an error was found.

Options:
  --wait S      seconds to look again at what may resolve by itself, such as a replica
                behind by the records in flight (default 2, at most 10)
  --timeout S   seconds each node has to answer (default 3, at most 60)
  --strict      exit with 5 on warnings too`,
  options: {
    wait: { type: "string" },
    timeout: { type: "string" },
    strict: { type: "boolean" },
  },
  async run(ctx) {
    need(ctx.positionals, [], "check");
    const waitSeconds = seconds(ctx.values, "wait", 10);
    const timeoutSeconds = seconds(ctx.values, "timeout", 60);
    if (timeoutSeconds !== undefined && timeoutSeconds < 0.5) {
      throw new UsageError(`--timeout must be at least 0.5 seconds (got '${timeoutSeconds}')`);
    }
    const client = await ctx.client();
    const report = await client.checkCluster({ waitSeconds, timeoutSeconds });
    if (ctx.json) await ctx.printJson(report);
    else await ctx.out(renderCheck(report));
    if (!report.consistent) {
      throw new CliExit(
        EXIT.degraded,
        `the cluster is inconsistent: ${report.errors} error${report.errors === 1 ? "" : "s"}`,
      );
    }
    if (ctx.values.strict === true && report.warnings > 0) {
      throw new CliExit(
        EXIT.degraded,
        `${report.warnings} warning${report.warnings === 1 ? "" : "s"} (--strict)`,
      );
    }
  },
};
