/** `momd cluster status`: nodes, controller, and who owns what. */
import { type ClusterStatus, MomdError } from "../../client/mod.ts";
import { need } from "../args.ts";
import type { Command, Group } from "../context.ts";
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

/** The cluster status as text: a summary line, the nodes, and the ownership of every entity. */
export function renderClusterStatus(status: ClusterStatus): string {
  let out = status.mode === "single"
    ? `single node '${status.node}' (no cluster): it owns every queue and topic\n`
    : `cluster seen from '${status.node}': ${status.nodes.filter((n) => n.alive).length} of ` +
      `${status.nodes.length} nodes alive, controller ${status.controller ?? "none"}\n`;
  out += "\n" + table(
    ["NODE", "ALIVE", "CONTROLLER", "OWNS", "REPLICAS", "HTTP", "GRPC", "STARTED"],
    status.nodes.map((n) => [
      n.id,
      yes(n.alive),
      yes(n.id === status.controller),
      n.owned,
      n.replicated,
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
    if (ctx.json) return void await ctx.printJson(body);
    await ctx.out(renderClusterStatus(body));
  },
};

/** The `cluster` command group. */
export const clusterGroup: Group = {
  name: "cluster",
  summary: "look at the cluster",
  help: "The cluster's nodes and the ownership of queues and topics.",
  commands: [status],
};
