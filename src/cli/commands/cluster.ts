/** `momd cluster status`: nodes, controller, and who owns what. */
import { type ClusterStatus, MomdError } from "../../client/mod.ts";
import { need } from "../args.ts";
import { CliExit, type Command, EXIT, type Group } from "../context.ts";
import { table, time } from "../output.ts";

function yes(v: boolean): string {
  return v ? "yes" : "no";
}

function list(items: string[]): string {
  return items.length ? items.join(",") : "-";
}

/** Replication lag per replica, e.g. `n2:0 n3:12` (records not yet acknowledged). */
function lag(entries: Record<string, number | null>): string {
  const parts = Object.entries(entries).map(([node, n]) => `${node}:${n ?? "?"}`);
  return parts.length ? parts.join(" ") : "-";
}

/**
 * What makes the cluster degraded: nodes down, not ready or not answering, under-replicated
 * entities. `local`: the status holds only the answering node's view (peers' readiness unknown).
 */
export function clusterProblems(status: ClusterStatus, opts: { local?: boolean } = {}): string[] {
  const problems: string[] = [];
  const down = status.nodes.filter((n) => !n.alive).map((n) => n.id);
  if (down.length) problems.push(`node${down.length > 1 ? "s" : ""} down: ${down.join(", ")}`);
  const unready = status.nodes.filter((n) => n.alive && n.ready === false).map((n) => n.id);
  if (unready.length) problems.push(`not ready: ${unready.join(", ")}`);
  // A live member that did not say whether it is ready (hung, paused, overloaded). A node of a
  // version that publishes none (version null) predates readiness in the status: not counted.
  const silent = opts.local ? [] : status.nodes
    .filter((n) => n.alive && n.ready === null && n.version !== null).map((n) => n.id);
  if (silent.length) problems.push(`not answering: ${silent.join(", ")}`);
  const under = status.entities.filter((e) => e.replicas.some((r) => !e.inSync.includes(r)));
  if (under.length) {
    const names = under.slice(0, 5).map((e) => `${e.type}/${e.name}`).join(", ");
    problems.push(
      `${under.length} under-replicated (${names}${under.length > 5 ? ", ..." : ""})`,
    );
  }
  return problems;
}

/** The cluster status as text: a summary line, the nodes, and the ownership of every entity. */
export function renderClusterStatus(status: ClusterStatus): string {
  let out = status.mode === "single"
    ? `single node '${status.node}' (no cluster): it owns every queue and topic\n`
    : `cluster seen from '${status.node}': ${status.nodes.filter((n) => n.alive).length} of ` +
      `${status.nodes.length} nodes alive, controller ${status.controller ?? "none"}, ` +
      `backup recovery point ${time(status.backup?.recoveryPoint ?? null)}\n`;
  out += "\n" + table(
    [
      "NODE",
      "ALIVE",
      "READY",
      "CONTROLLER",
      "OWNS",
      "REPLICAS",
      "VERSION",
      "HTTP",
      "GRPC",
      "STARTED",
    ],
    status.nodes.map((n) => [
      n.id,
      yes(n.alive),
      n.ready === null ? "-" : yes(n.ready),
      yes(n.id === status.controller),
      n.owned,
      n.replicated,
      n.version ?? "-",
      n.http,
      n.grpc,
      time(n.startedAt),
    ]),
  );
  if (status.entities.length === 0) return out + "\nno queues or topics\n";
  return out + "\n" + table(
    ["ENTITY", "OWNER", "REPLICAS", "IN SYNC", "EPOCH", "LAG"],
    status.entities.map((e) => [
      `${e.type}/${e.name}`,
      e.owner,
      list(e.replicas),
      list(e.inSync),
      e.epoch,
      lag(e.lag),
    ]),
  );
}

const status: Command = {
  name: "status",
  summary: "show the nodes, the controller and who owns what",
  usage: "momd cluster status [--local]",
  help: `Shows the cluster as one node sees it (GET /v1/cluster): its nodes (alive or not, which is
the controller, how many queues and topics each owns and replicates) and, for every queue and
topic, its owner, replicas, the replicas in sync, the ownership epoch and the replication lag
(records shipped to a replica and not yet acknowledged). A single node says so.

Exits with 5 when a node is down or not ready, or an entity has a replica outside its in-sync
set (under-replicated), so scripts and monitors can use it as a check.

Options:
  --local   this node's view only, without asking its peers for their lag`,
  options: { local: { type: "boolean" } },
  async run(ctx) {
    need(ctx.positionals, [], "cluster status");
    const client = await ctx.client();
    let body: ClusterStatus;
    try {
      body = await client.cluster({ local: ctx.values.local === true });
    } catch (err) {
      // A server from before the cluster status existed.
      if (err instanceof MomdError && err.status === 404 && !err.code) {
        const detail = `${client.url} has no cluster status (GET /v1/cluster answered 404): ` +
          "it runs a single node";
        if (ctx.json) return void await ctx.printJson({ mode: "single", detail });
        return void await ctx.out(detail + "\n");
      }
      throw err;
    }
    if (ctx.json) await ctx.printJson(body);
    else await ctx.out(renderClusterStatus(body));
    const problems = clusterProblems(body, { local: ctx.values.local === true });
    if (problems.length) {
      throw new CliExit(EXIT.degraded, `the cluster is degraded: ${problems.join("; ")}`);
    }
  },
};

const forget: Command = {
  name: "forget",
  summary: "forget a node removed from the cluster for good",
  usage: "momd cluster forget NODE",
  help: `A node that joined once stays part of the cluster: while it does not run it shows as down
and 'momd cluster status' exits 5. When it was removed for good, forget it (DELETE
/v1/cluster/nodes/NODE). A live node is refused (409): stop it first. If it starts again later
it joins as a new member.`,
  options: {},
  async run(ctx) {
    const [id] = need(ctx.positionals, ["NODE"], "cluster forget");
    const client = await ctx.client();
    await client.forgetNode(id);
    if (ctx.json) return void await ctx.printJson({ forgotten: id });
    await ctx.out(`forgot node '${id}'\n`);
  },
};

/** The `cluster` command group. */
export const clusterGroup: Group = {
  name: "cluster",
  summary: "look at the cluster",
  help: "The cluster's nodes and the ownership of queues and topics.",
  commands: [status, forget],
};
