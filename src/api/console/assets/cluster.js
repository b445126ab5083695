// The cluster page: the answering node's health and readiness for everyone; for admins also
// GET /v1/cluster: the nodes, and the owner, replicas, in-sync set, epoch and replication lag of
// every queue and topic, and the backup's recovery point.
import { seg } from "./api.js";
import { ago, bytes, dataTable, h, link, num, setText, stat, stats, time, yesNo } from "./ui.js";

function list(items) {
  return items && items.length ? items.join(", ") : "—";
}

/** Replication lag per replica ("node2 0 · node3 12"): records shipped, not yet acknowledged. */
function lagText(entity) {
  const parts = Object.entries(entity.lag ?? {}).map(([node, n]) => `${node} ${n ?? "?"}`);
  return parts.length ? parts.join(" · ") : "—";
}

function outOfSync(entity) {
  return (entity.replicas ?? []).filter((r) => !(entity.inSync ?? []).includes(r));
}

/** The cluster page. */
export function clusterView({ api }) {
  const node = stat("Answered by", "cluster-node", "the node that answered these requests");
  const ready = stat("Ready", "cluster-ready", "GET /readyz of that node");
  const version = stat("Version", "cluster-version");
  const mode = stat("Mode", "cluster-mode");
  const alive = stat("Nodes alive", "cluster-alive");
  const controller = stat("Controller", "cluster-controller");
  const entitiesCount = stat("Queues, topics", "cluster-entities");
  const recovery = stat(
    "Recovery point",
    "cluster-recovery-point",
    "what a restore from the backup Redis would bring back: the last completed backup pass",
  );
  const memory = stat("Store memory", "cluster-memory", "the answering node's local Redis");

  const nodes = dataTable({
    caption: "Nodes",
    captionHidden: true,
    testid: "nodes-table",
    key: (n) => n.id,
    empty: "No nodes.",
    columns: [
      { title: "Node", text: (n) => n.id },
      { title: "Alive", text: (n) => yesNo(n.alive), cls: (n) => n.alive ? "good" : "bad" },
      {
        title: "Ready",
        text: (n) => yesNo(n.ready),
        cls: (n) => n.ready === false ? "bad" : n.ready ? "good" : "",
      },
      { title: "Controller", text: (n) => n.isController ? "yes" : "" },
      { title: "Owns", num: true, text: (n) => num(n.owned) },
      { title: "Replicates", num: true, text: (n) => num(n.replicated) },
      { title: "HTTP", text: (n) => n.http ?? "—" },
      { title: "gRPC", text: (n) => n.grpc ?? "—" },
      { title: "Version", text: (n) => n.version ?? "—" },
      { title: "Started", text: (n) => time(n.startedAt) },
    ],
  });

  const filter = h("input", {
    id: "entity-filter",
    type: "search",
    placeholder: "name contains…",
  });
  let lastEntities = [];
  const entities = dataTable({
    caption: "Queues and topics: placement and replication",
    captionHidden: true,
    testid: "entities-table",
    key: (e) => `${e.type}/${e.name}`,
    empty: "No queues or topics.",
    columns: [
      { title: "Type", text: (e) => e.type },
      {
        title: "Name",
        cell: (e) => link(`#/${e.type === "queue" ? "queues" : "topics"}/${seg(e.name)}`, e.name),
      },
      { title: "Owner", text: (e) => e.owner },
      { title: "Replicas", text: (e) => list(e.replicas) },
      {
        title: "In sync",
        text: (e) => {
          const behind = outOfSync(e);
          return behind.length ? `${list(e.inSync)} (not: ${behind.join(", ")})` : list(e.inSync);
        },
        cls: (e) => outOfSync(e).length ? "warn" : "",
      },
      { title: "Epoch", num: true, text: (e) => num(e.epoch) },
      {
        title: "Lag (records)",
        text: lagText,
        cls: (e) => Object.values(e.lag ?? {}).some((n) => n === null || n > 0) ? "warn" : "",
      },
    ],
  });
  const showEntities = () => {
    const needle = filter.value.trim().toLowerCase();
    entities.update(
      needle ? lastEntities.filter((e) => e.name.toLowerCase().includes(needle)) : lastEntities,
    );
  };
  filter.addEventListener("input", showEntities);

  const readyNote = h("p", { class: "notice bad", role: "status", hidden: true });
  const adminOnly = h(
    "p",
    { class: "note", "data-testid": "cluster-admin-only", hidden: true },
    "The nodes and the placement of queues and topics are shown to admins only.",
  );
  const adminPart = h(
    "div",
    { hidden: true },
    h("h2", {}, "Nodes"),
    nodes.el,
    h("h2", {}, "Queues and topics"),
    h("div", { class: "field inline" }, h("label", { for: "entity-filter" }, "Filter"), filter),
    entities.el,
  );

  const el = h(
    "section",
    { "aria-labelledby": "cluster-title" },
    h("h1", { id: "cluster-title" }, "Cluster"),
    stats(node, ready, version, mode, alive, controller, entitiesCount, recovery, memory),
    readyNote,
    adminOnly,
    adminPart,
  );

  async function refresh() {
    const [health, readiness, cluster] = await Promise.all([
      api.probe("/healthz"),
      api.probe("/readyz"),
      api.isAdmin ? api.call("GET", "/v1/cluster") : Promise.resolve(null),
    ]);
    node.set(readiness.body?.node ?? health.body?.node ?? "—");
    if (readiness.status === 200) ready.set("ready", "good");
    else {
      const why = readiness.body?.detail ?? `HTTP ${readiness.status}`;
      ready.set("not ready", "bad", why);
    }
    readyNote.hidden = readiness.status === 200;
    setText(readyNote, `${readiness.body?.node ?? "This node"}: ${readiness.body?.detail ?? ""}`);
    version.set(cluster?.version ?? health.body?.version ?? "—");
    const mem = readiness.body?.memory;
    if (mem && mem.maxBytes) {
      const pct = Math.round((100 * mem.usedBytes) / mem.maxBytes);
      memory.set(
        `${pct}%${mem.refusingNewMessages ? " (refusing sends)" : ""}`,
        mem.refusingNewMessages ? "bad" : pct >= 80 ? "warn" : "",
        `${bytes(mem.usedBytes)} of ${bytes(mem.maxBytes)} (maxmemory)` +
          (mem.refusingNewMessages ? "; new messages are refused (507)" : ""),
      );
    } else {
      memory.set(mem ? "no limit" : "—");
    }
    const backup = cluster?.backup ?? health.body?.backup;
    if (backup === undefined) recovery.set("—");
    else if (backup.recoveryPoint === null) recovery.set("no backup pass yet", "warn");
    else {
      recovery.set(
        ago(backup.recoveryPoint),
        "",
        `restoring from the backup brings back the state as of ${time(backup.recoveryPoint)}`,
      );
    }

    adminOnly.hidden = cluster !== null;
    adminPart.hidden = cluster === null;
    // What only GET /v1/cluster tells (admins) is left out rather than shown empty.
    for (const s of [mode, alive, controller, entitiesCount]) s.el.hidden = cluster === null;
    recovery.el.hidden = backup === undefined && cluster === null;
    if (!cluster) return;
    mode.set(cluster.mode);
    const up = cluster.nodes.filter((n) => n.alive).length;
    alive.set(
      `${up} of ${cluster.nodes.length}`,
      up === cluster.nodes.length ? "good" : up === 0 ? "bad" : "warn",
    );
    controller.set(cluster.controller ?? "none", cluster.controller ? "" : "bad");
    entitiesCount.set(num(cluster.entities.length));
    nodes.update(cluster.nodes.map((n) => ({ ...n, isController: n.id === cluster.controller })));
    lastEntities = cluster.entities;
    showEntities();
  }

  return { title: "Cluster", el, refresh };
}
