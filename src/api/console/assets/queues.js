// The queue pages: the list with counts and rates, and one queue with its counts, peek, send,
// purge and redrive of dead letters.
import { listAll, mapLimit, seg } from "./api.js";
import {
  actionButton,
  actionForm,
  bytes,
  confirmButton,
  dataTable,
  duration,
  field,
  h,
  link,
  num,
  optionalInt,
  outcome,
  parseAttributes,
  rate,
  rateTracker,
  setText,
  settings,
  stat,
  stats,
  time,
  yesNo,
} from "./ui.js";

/** Queues whose counts the list fetches on each refresh (one request each). */
const STATS_LIMIT = 200;

/** The counters of a queue whose rates the pages show. */
function counters(stats) {
  const t = stats.totals;
  return { sent: t.sent, delivered: t.delivered, acked: t.acked };
}

/** The list of queues. */
export function queuesView({ api, refresh: refreshNow }) {
  const track = rateTracker();
  const note = h("p", { class: "note", hidden: true });
  const table = dataTable({
    caption: "Queues (counts of each, rates between two refreshes)",
    testid: "queues-table",
    key: (q) => q.name,
    empty: "No queues yet.",
    columns: [
      { title: "Name", cell: (q) => link(`#/queues/${seg(q.name)}`, q.name) },
      { title: "Owner", text: (q) => q.owner },
      { title: "Depth", num: true, testid: "depth", text: (q) => num(q.stats?.depth) },
      { title: "In flight", num: true, text: (q) => num(q.stats?.inFlight) },
      { title: "Delayed", num: true, text: (q) => num(q.stats?.delayed) },
      {
        title: "Dead letters",
        num: true,
        testid: "dead",
        text: (q) => num(q.stats?.deadLettered),
        cls: (q) => q.stats?.deadLettered > 0 ? "warn" : "",
      },
      { title: "Oldest", num: true, text: (q) => duration(q.stats?.oldestMessageAgeSeconds) },
      { title: "Sent", num: true, text: (q) => rate(q.rates?.sent) },
      { title: "Acked", num: true, text: (q) => rate(q.rates?.acked) },
      {
        title: "",
        text: (q) => q.error ?? "",
        cls: (q) => q.error ? "error" : "",
      },
    ],
  });

  const name = field("Name", { required: true, pattern: "[A-Za-z0-9_\\-]{1,128}", id: "q-name" });
  const visibility = field("Visibility timeout (s)", {
    inputmode: "numeric",
    placeholder: "default 30",
    id: "q-visibility",
  });
  const maxDeliveries = field("Max deliveries", {
    inputmode: "numeric",
    placeholder: "default 5",
    id: "q-max-deliveries",
  });
  const create = actionForm({
    title: "Create a queue",
    testid: "create-queue",
    submit: "Create queue",
    fields: [name, visibility, maxDeliveries],
    async action() {
      const body = {};
      const v = optionalInt(visibility.input, "the visibility timeout");
      const m = optionalInt(maxDeliveries.input, "max deliveries");
      if (v !== undefined) body.visibilityTimeoutSeconds = v;
      if (m !== undefined) body.maxDeliveries = m;
      const queue = name.input.value.trim();
      const res = await api.callFull("PUT", `/v1/queues/${seg(queue)}`, body);
      refreshNow();
      return res.status === 201
        ? `Queue '${queue}' created.`
        : `Queue '${queue}' already existed with this configuration.`;
    },
  });

  const el = h(
    "section",
    { "aria-labelledby": "queues-title" },
    h("h1", { id: "queues-title" }, "Queues"),
    create,
    table.el,
    note,
  );

  async function refresh() {
    const queues = await listAll(api, "/v1/queues", "queues");
    const shown = queues.slice(0, STATS_LIMIT);
    const rows = await mapLimit(shown, 8, async (q) => {
      try {
        const detail = await api.call("GET", `/v1/queues/${seg(q.name)}`);
        return { ...q, stats: detail.stats, rates: track(q.name, counters(detail.stats)) };
      } catch (err) {
        // One queue that cannot answer now (moving to another node) leaves the others shown.
        return { ...q, error: err.title ?? String(err) };
      }
    });
    note.hidden = queues.length <= STATS_LIMIT;
    setText(note, `Counts of the first ${STATS_LIMIT} of ${num(queues.length)} queues shown.`);
    table.update(rows);
  }

  return { title: "Queues", el, refresh };
}

/** One queue. */
export function queueView({ api, refresh: refreshNow }, name) {
  const path = `/v1/queues/${seg(name)}`;
  const track = rateTracker();

  const depth = stat("Depth", "queue-depth", "ready for delivery");
  const inFlight = stat("In flight", "queue-inflight", "delivered, waiting for an ack");
  const delayed = stat("Delayed", "queue-delayed");
  const dead = stat("Dead letters", "queue-dead");
  const oldest = stat("Oldest message", "queue-oldest");
  const sent = stat("Sent", "queue-rate-sent");
  const delivered = stat("Delivered", "queue-rate-delivered");
  const acked = stat("Acked", "queue-rate-acked");
  const ownerNode = stat("Served by", "queue-owner-node", "the node that owns this queue");

  const actionResult = outcome("queue-action-outcome");
  const alsoDead = h("input", { type: "checkbox", id: "purge-dead" });
  const actions = h(
    "section",
    { class: "panel", "aria-labelledby": "actions-title" },
    h("h2", { id: "actions-title" }, "Actions"),
    h(
      "div",
      { class: "actions" },
      actionButton({
        label: "Redrive dead letters",
        testid: "queue-redrive",
        async action() {
          actionResult.clear();
          try {
            const r = await api.call("POST", `${path}/redrive`, {});
            actionResult.ok(
              `Moved ${num(r.moved)} dead letter(s) back to ready` +
                (r.expired ? `, ${num(r.expired)} had expired` : "") +
                `; ${num(r.remaining)} left.`,
            );
            refreshNow();
          } catch (err) {
            actionResult.error(err);
          }
        },
      }),
      h(
        "span",
        { class: "purge" },
        confirmButton({
          label: "Purge…",
          confirmLabel: "Confirm purge",
          testid: "queue-purge",
          action: async () => {
            actionResult.clear();
            const r = await api.call("POST", `${path}/purge`, { deadLetters: alsoDead.checked });
            actionResult.ok(`Purged ${num(r.purged)} message(s).`);
            refreshNow();
          },
          onDone: (err) => err && actionResult.error(err),
        }),
        h("label", { for: "purge-dead" }, alsoDead, " also the dead letters"),
      ),
    ),
    h(
      "p",
      { class: "hint" },
      "Purge drops the ready, delayed and in-flight messages; redrive moves dead letters back " +
        "to ready with their delivery count reset.",
    ),
    actionResult.el,
  );

  const body = field("Body", { tag: "textarea", rows: 2, id: "send-body" });
  const attrs = field("Attributes (name=value per line)", {
    tag: "textarea",
    rows: 1,
    id: "send-attributes",
  });
  const delay = field("Delay (s)", { inputmode: "numeric", placeholder: "0", id: "send-delay" });
  const dedup = field("De-duplication id", { id: "send-dedup" });
  const send = actionForm({
    title: "Send a message",
    testid: "send-message",
    submit: "Send",
    fields: [body, attrs, delay, dedup],
    async action() {
      const message = { body: body.input.value };
      const attributes = parseAttributes(attrs.input.value);
      if (Object.keys(attributes).length) message.attributes = attributes;
      const d = optionalInt(delay.input, "the delay");
      if (d !== undefined) message.delaySeconds = d;
      if (dedup.input.value.trim()) message.dedupId = dedup.input.value.trim();
      const r = await api.call("POST", `${path}/messages`, { messages: [message] });
      refreshNow();
      const m = r.messages[0];
      return m.duplicate ? `Duplicate of message ${m.id}: stored once.` : `Sent message ${m.id}.`;
    },
  });

  // Peek: the ready messages first, refreshed with the page; the form picks another state.
  let peekState = "ready";
  const peekResult = outcome("peek-outcome");
  const state = field("Messages", {
    tag: "select",
    id: "peek-state",
    options: [["ready", "ready"], ["delayed", "delayed"], ["inflight", "in flight"], [
      "dead",
      "dead letters",
    ]],
  });
  const limit = field("How many", { inputmode: "numeric", value: "10", id: "peek-limit" });
  const peekTable = dataTable({
    caption: "Messages (not consumed by looking)",
    testid: "peek-table",
    key: (m) => m.id,
    empty: "No messages in this state.",
    columns: [
      { title: "ID", text: (m) => m.id, cls: () => "mono" },
      { title: "Body", text: (m) => m.body.length > 200 ? `${m.body.slice(0, 200)}…` : m.body },
      {
        title: "Attributes",
        text: (m) =>
          Object.entries(m.attributes ?? {}).map(([k, v]) => `${k}=${v}`).join(", ") || "—",
      },
      { title: "Deliveries", num: true, text: (m) => num(m.deliveryCount) },
      { title: "Sent", text: (m) => time(m.enqueuedAt) },
      { title: "Expires", text: (m) => time(m.expiresAt) },
      { title: "Visible at", text: (m) => time(m.visibleAt) },
    ],
  });
  const peekForm = h(
    "form",
    { class: "action-form inline", "aria-label": "Peek at messages", method: "post" },
    state.el,
    limit.el,
    h("div", { class: "form-actions" }, h("button", { type: "submit" }, "Peek"), peekResult.el),
  );
  let peekSeq = 0;
  async function peek() {
    const seq = ++peekSeq;
    const n = optionalInt(limit.input, "how many") ?? 10;
    const r = await api.call("GET", `${path}/messages?state=${peekState}&limit=${n}`);
    // An answer for an earlier choice that arrives late does not overwrite the current one.
    if (seq === peekSeq) peekTable.update(r.messages);
  }
  peekForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    peekResult.clear();
    peekState = state.input.value;
    try {
      await peek();
    } catch (err) {
      peekResult.error(err);
    }
  });
  const peekPanel = h(
    "section",
    { class: "panel", "aria-labelledby": "peek-title" },
    h("h2", { id: "peek-title" }, "Peek"),
    peekForm,
    peekTable.el,
  );

  const config = h("div", { "data-testid": "queue-config" });
  const configPanel = h(
    "section",
    { class: "panel", "aria-labelledby": "config-title" },
    h("h2", { id: "config-title" }, "Configuration"),
    config,
  );
  let shownConfig = "";

  const el = h(
    "section",
    { "aria-labelledby": "queue-title" },
    h("p", { class: "crumbs" }, link("#/queues", "Queues"), " / "),
    h("h1", { id: "queue-title" }, `Queue ${name}`),
    stats(depth, inFlight, delayed, dead, oldest, sent, delivered, acked, ownerNode),
    peekPanel,
    h("div", { class: "columns" }, actions, send),
    configPanel,
  );

  async function refresh() {
    const res = await api.callFull("GET", path);
    const q = res.body;
    const s = q.stats;
    depth.set(num(s.depth));
    inFlight.set(num(s.inFlight));
    delayed.set(num(s.delayed));
    dead.set(num(s.deadLettered), s.deadLettered > 0 ? "warn" : "");
    oldest.set(duration(s.oldestMessageAgeSeconds));
    const rates = track(name, counters(s));
    sent.set(rate(rates?.sent));
    delivered.set(rate(rates?.delivered));
    acked.set(rate(rates?.acked));
    ownerNode.set(res.headers.get("momd-owner") ?? "—");
    const c = q.config;
    const text = JSON.stringify(c);
    if (text !== shownConfig) {
      shownConfig = text;
      config.replaceChildren(settings([
        ["Visibility timeout", `${num(c.visibilityTimeoutSeconds)} s`],
        ["Max deliveries", num(c.maxDeliveries)],
        ["Retention", duration(c.retentionSeconds)],
        [
          "Max length",
          `${num(c.maxLength)} (${c.overflow === "dropHead" ? "drop oldest" : "reject"})`,
        ],
        ["Delay", `${num(c.delaySeconds)} s`],
        ["Max message size", bytes(c.maxMessageBytes)],
        ["De-duplication window", `${num(c.dedupWindowSeconds)} s`],
        ["Restricted", yesNo(c.access?.restricted)],
        ["Senders", c.access?.senders?.join(", ") || "—"],
        ["Receivers", c.access?.receivers?.join(", ") || "—"],
        ["Owner", q.owner],
        ["Created", time(q.createdAt)],
      ]));
    }
    await peek().catch((err) => peekResult.error(err));
  }

  return { title: `Queue ${name}`, el, refresh };
}
