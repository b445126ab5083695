// The topic pages: the list with sizes and publish rates, and one topic with its
// subscriptions (lag, in flight, dead letters and their redrive), peek and publish.
import { listAll, mapLimit, seg } from "./api.js";
import {
  actionButton,
  actionForm,
  bytes,
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

/** Topics whose counts the list fetches on each refresh (one request each). */
const STATS_LIMIT = 200;

function offsets(s) {
  return s ? `${num(s.firstOffset)} – ${num(s.nextOffset)}` : "—";
}

/** The list of topics. */
export function topicsView({ api, refresh: refreshNow }) {
  const track = rateTracker();
  const note = h("p", { class: "note", hidden: true });
  const table = dataTable({
    caption: "Topics (retained messages, dead letters of all subscriptions, publish rate " +
      "between two refreshes)",
    testid: "topics-table",
    key: (t) => t.name,
    empty: "No topics yet.",
    columns: [
      { title: "Name", cell: (t) => link(`#/topics/${seg(t.name)}`, t.name) },
      { title: "Owner", text: (t) => t.owner },
      { title: "Messages", num: true, text: (t) => num(t.stats?.messages) },
      { title: "Size", num: true, text: (t) => bytes(t.stats?.bytes) },
      { title: "Offsets", num: true, text: (t) => offsets(t.stats) },
      { title: "Subscriptions", num: true, text: (t) => num(t.stats?.subscriptions) },
      {
        title: "Dead letters",
        num: true,
        testid: "dead",
        text: (t) => num(t.dead),
        cls: (t) => t.dead > 0 ? "warn" : "",
      },
      { title: "Published", num: true, text: (t) => rate(t.rates?.published) },
      { title: "", text: (t) => t.error ?? "", cls: (t) => t.error ? "error" : "" },
    ],
  });

  const name = field("Name", { required: true, pattern: "[A-Za-z0-9_\\-]{1,128}", id: "t-name" });
  const retention = field("Retention (s, 0: no age limit)", {
    inputmode: "numeric",
    placeholder: "server default",
    id: "t-retention",
  });
  const create = actionForm({
    title: "Create a topic",
    testid: "create-topic",
    submit: "Create topic",
    fields: [name, retention],
    async action() {
      const body = {};
      const r = optionalInt(retention.input, "the retention");
      if (r !== undefined) body.retentionSeconds = r;
      const topic = name.input.value.trim();
      const res = await api.callFull("PUT", `/v1/topics/${seg(topic)}`, body);
      refreshNow();
      return res.status === 201
        ? `Topic '${topic}' created.`
        : `Topic '${topic}' already existed with this configuration.`;
    },
  });

  const el = h(
    "section",
    { "aria-labelledby": "topics-title" },
    h("h1", { id: "topics-title" }, "Topics"),
    create,
    table.el,
    note,
  );

  async function refresh() {
    const topics = await listAll(api, "/v1/topics", "topics");
    const rows = await mapLimit(topics.slice(0, STATS_LIMIT), 8, async (t) => {
      try {
        const [detail, subs] = await Promise.all([
          api.call("GET", `/v1/topics/${seg(t.name)}`),
          // A restricted topic may not list its subscriptions to this user: counts stay "—".
          api.call("GET", `/v1/topics/${seg(t.name)}/subscriptions`).catch(() => null),
        ]);
        const rates = track(t.name, { published: detail.stats.nextOffset });
        // A topic's dead letters are its subscriptions' (each has its own).
        const dead = subs?.subscriptions.reduce((n, s) => n + s.stats.deadLettered, 0);
        return { ...t, stats: detail.stats, rates, dead };
      } catch (err) {
        return { ...t, error: err.title ?? String(err) };
      }
    });
    note.hidden = topics.length <= STATS_LIMIT;
    setText(note, `Counts of the first ${STATS_LIMIT} of ${num(topics.length)} topics shown.`);
    table.update(rows);
  }

  return { title: "Topics", el, refresh };
}

/** One topic. */
export function topicView({ api, refresh: refreshNow }, name) {
  const path = `/v1/topics/${seg(name)}`;
  const track = rateTracker();

  const messages = stat("Messages", "topic-messages", "retained in the log");
  const size = stat("Size", "topic-bytes");
  const range = stat("Offsets", "topic-offsets", "oldest retained – next");
  const subsCount = stat("Subscriptions", "topic-subscriptions");
  const published = stat("Published", "topic-rate");
  const ownerNode = stat("Served by", "topic-owner-node", "the node that owns this topic");

  const subResult = outcome("subscription-outcome");
  // Dead letters of one subscription, shown when asked for.
  let deadOf = null;
  const deadTitle = h("h3", {});
  const deadTable = dataTable({
    testid: "dead-table",
    key: (m) => m.id,
    empty: "No dead letters.",
    columns: [
      { title: "Offset", num: true, text: (m) => num(m.offset) },
      { title: "ID", text: (m) => m.id, cls: () => "mono" },
      { title: "Body", text: (m) => m.body.length > 200 ? `${m.body.slice(0, 200)}…` : m.body },
      { title: "Deliveries", num: true, text: (m) => num(m.deliveryCount) },
      { title: "Dead since", text: (m) => time(m.deadLetteredAt) },
    ],
  });
  const deadPart = h("div", { hidden: true }, deadTitle, deadTable.el);
  let deadSeq = 0;
  async function showDead() {
    const seq = ++deadSeq;
    const r = await api.call(
      "GET",
      `${path}/subscriptions/${seg(deadOf)}/messages?state=dead&limit=50`,
    );
    if (seq !== deadSeq) return;
    setText(deadTitle, `Dead letters of '${deadOf}' (${num(r.total)})`);
    deadTable.update(r.messages);
    deadPart.hidden = false;
  }

  const subs = dataTable({
    caption: "Subscriptions",
    captionHidden: true,
    testid: "subscriptions-table",
    key: (s) => s.name,
    empty: "No subscriptions.",
    columns: [
      { title: "Name", text: (s) => s.name },
      { title: "Creator", text: (s) => s.creator },
      { title: "Position", num: true, text: (s) => num(s.stats.position) },
      { title: "Lag", num: true, text: (s) => num(s.stats.lag) },
      { title: "In flight", num: true, text: (s) => num(s.stats.inFlight) },
      { title: "Pending redelivery", num: true, text: (s) => num(s.stats.pendingRedelivery) },
      {
        title: "Dead letters",
        num: true,
        testid: "dead",
        text: (s) => num(s.stats.deadLettered),
        cls: (s) => s.stats.deadLettered > 0 ? "warn" : "",
      },
      { title: "Skipped", num: true, text: (s) => num(s.stats.skipped) },
      {
        title: "Actions",
        cell: (s) =>
          h(
            "span",
            { class: "actions" },
            actionButton({
              label: "Redrive",
              testid: "subscription-redrive",
              async action() {
                subResult.clear();
                try {
                  const r = await api.call(
                    "POST",
                    `${path}/subscriptions/${seg(s.name)}/redrive`,
                    {},
                  );
                  subResult.ok(
                    `'${s.name}': moved ${num(r.moved)} dead letter(s) back; ` +
                      `${num(r.remaining)} left.`,
                  );
                  refreshNow();
                } catch (err) {
                  subResult.error(err);
                }
              },
            }),
            actionButton({
              label: "Dead letters",
              testid: "subscription-dead",
              async action() {
                subResult.clear();
                deadOf = s.name;
                try {
                  await showDead();
                } catch (err) {
                  subResult.error(err);
                }
              },
            }),
          ),
      },
    ],
  });

  const publishBody = field("Body", { tag: "textarea", rows: 2, id: "publish-body" });
  const key = field("Key", { id: "publish-key" });
  const attrs = field("Attributes (name=value per line)", {
    tag: "textarea",
    rows: 1,
    id: "publish-attributes",
  });
  const publish = actionForm({
    title: "Publish a message",
    testid: "publish-message",
    submit: "Publish",
    fields: [publishBody, key, attrs],
    async action() {
      const message = { body: publishBody.input.value };
      if (key.input.value.trim()) message.key = key.input.value.trim();
      const attributes = parseAttributes(attrs.input.value);
      if (Object.keys(attributes).length) message.attributes = attributes;
      const r = await api.call("POST", `${path}/messages`, { messages: [message] });
      refreshNow();
      return `Published at offset ${num(r.messages[0].offset)}.`;
    },
  });

  const subName = field("Name", { required: true, id: "sub-name" });
  const start = field("Start at", {
    tag: "select",
    id: "sub-start",
    options: [["latest", "the next message published"], ["earliest", "the oldest retained"]],
  });
  const subscribe = actionForm({
    title: "Create a subscription",
    testid: "create-subscription",
    submit: "Subscribe",
    fields: [subName, start],
    async action() {
      const sub = subName.input.value.trim();
      const res = await api.callFull("PUT", `${path}/subscriptions/${seg(sub)}`, {
        start: start.input.value,
      });
      refreshNow();
      return res.status === 201 ? `Subscription '${sub}' created.` : `'${sub}' already existed.`;
    },
  });

  // Peek at the log: shown once asked for, then refreshed with the page.
  let peekFrom = undefined;
  let peeking = false;
  const peekResult = outcome("peek-outcome");
  const from = field("From offset", {
    inputmode: "numeric",
    placeholder: "oldest",
    id: "peek-from",
  });
  const limit = field("How many", { inputmode: "numeric", value: "10", id: "peek-limit" });
  const peekTable = dataTable({
    caption: "Messages (not consumed by looking)",
    testid: "peek-table",
    key: (m) => String(m.offset),
    empty: "No retained messages from there.",
    columns: [
      { title: "Offset", num: true, text: (m) => num(m.offset) },
      { title: "ID", text: (m) => m.id, cls: () => "mono" },
      { title: "Key", text: (m) => m.key ?? "—" },
      { title: "Body", text: (m) => m.body.length > 200 ? `${m.body.slice(0, 200)}…` : m.body },
      { title: "Publisher", text: (m) => m.publisher },
      { title: "Published", text: (m) => time(m.publishedAt) },
    ],
  });
  peekTable.el.hidden = true;
  let peekSeq = 0;
  async function peek() {
    const seq = ++peekSeq;
    const n = optionalInt(limit.input, "how many") ?? 10;
    const q = peekFrom === undefined ? "" : `&from=${peekFrom}`;
    const r = await api.call("GET", `${path}/messages?limit=${n}${q}`);
    // An answer for an earlier choice that arrives late does not overwrite the current one.
    if (seq !== peekSeq) return;
    peekTable.update(r.messages);
    peekTable.el.hidden = false;
  }
  const peekForm = h(
    "form",
    { class: "action-form inline", "aria-label": "Peek at messages", method: "post" },
    from.el,
    limit.el,
    h("div", { class: "form-actions" }, h("button", { type: "submit" }, "Peek"), peekResult.el),
  );
  peekForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    peekResult.clear();
    try {
      peekFrom = optionalInt(from.input, "the offset");
      peeking = true;
      await peek();
    } catch (err) {
      peekResult.error(err);
    }
  });

  const config = h("div", { "data-testid": "topic-config" });
  let shownConfig = "";

  const el = h(
    "section",
    { "aria-labelledby": "topic-title" },
    h("p", { class: "crumbs" }, link("#/topics", "Topics"), " / "),
    h("h1", { id: "topic-title" }, `Topic ${name}`),
    stats(messages, size, range, subsCount, published, ownerNode),
    h(
      "section",
      { class: "panel", "aria-labelledby": "subs-title" },
      h("h2", { id: "subs-title" }, "Subscriptions"),
      subs.el,
      subResult.el,
      deadPart,
    ),
    h("div", { class: "columns" }, publish, subscribe),
    h(
      "section",
      { class: "panel", "aria-labelledby": "peek-title" },
      h("h2", { id: "peek-title" }, "Peek"),
      peekForm,
      peekTable.el,
    ),
    h(
      "section",
      { class: "panel", "aria-labelledby": "config-title" },
      h("h2", { id: "config-title" }, "Configuration"),
      config,
    ),
  );

  async function refresh() {
    const [res, list] = await Promise.all([
      api.callFull("GET", path),
      api.call("GET", `${path}/subscriptions`),
    ]);
    const t = res.body;
    const s = t.stats;
    messages.set(num(s.messages));
    size.set(bytes(s.bytes));
    range.set(offsets(s));
    subsCount.set(num(s.subscriptions));
    published.set(rate(track(name, { published: s.nextOffset })?.published));
    ownerNode.set(res.headers.get("momd-owner") ?? "—");
    subs.update(list.subscriptions);
    const c = t.config;
    const text = JSON.stringify(c);
    if (text !== shownConfig) {
      shownConfig = text;
      config.replaceChildren(settings([
        ["Retention by age", c.retentionSeconds ? duration(c.retentionSeconds) : "no limit"],
        ["Retention by count", c.retentionMaxMessages ? num(c.retentionMaxMessages) : "no limit"],
        ["Retention by size", c.retentionMaxBytes ? bytes(c.retentionMaxBytes) : "no limit"],
        ["Max message size", bytes(c.maxMessageBytes)],
        ["Visibility timeout (new subscriptions)", `${num(c.visibilityTimeoutSeconds)} s`],
        ["Max deliveries (new subscriptions)", num(c.maxDeliveries)],
        ["Restricted", yesNo(c.access?.restricted)],
        ["Senders", c.access?.senders?.join(", ") || "—"],
        ["Receivers", c.access?.receivers?.join(", ") || "—"],
        ["Owner", t.owner],
        ["Created", time(t.createdAt)],
      ]));
    }
    if (deadOf !== null) await showDead().catch((err) => subResult.error(err));
    if (peeking) await peek().catch((err) => peekResult.error(err));
  }

  return { title: `Topic ${name}`, el, refresh };
}
