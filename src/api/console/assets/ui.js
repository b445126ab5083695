// Small DOM helpers for the console's views. Text always goes in as text (never as HTML), so a
// message body or a name cannot inject markup.

/**
 * Makes an element: `attrs` become attributes (`class`, `for`, `data-*`, `aria-*`, ...), `on*`
 * functions become listeners, booleans set or omit the attribute; children are nodes or text.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Sets a text only when it changed (no needless layout work on each refresh). */
export function setText(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}

const NUMBER = new Intl.NumberFormat("en");

/** 12,345 */
export function num(n) {
  return n === undefined || n === null ? "—" : NUMBER.format(n);
}

/** 1.5 KiB */
export function bytes(n) {
  if (n === undefined || n === null) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** 45 s, 12 min, 3 h, 2 d */
export function duration(seconds) {
  if (seconds === undefined || seconds === null) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} d`;
}

/** A time as the browser's local date and time (ISO-like, sortable by eye). */
export function time(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "12 s ago" */
export function ago(iso) {
  if (!iso) return "";
  const ms = Date.now() - new Date(iso).getTime();
  return Number.isNaN(ms) ? "" : `${duration(ms / 1000)} ago`;
}

/** A rate per second, or "—" before two polls. */
export function rate(perSecond) {
  if (perSecond === undefined || perSecond === null) return "—";
  return `${perSecond < 10 ? perSecond.toFixed(1) : NUMBER.format(Math.round(perSecond))}/s`;
}

/** yes / no */
export function yesNo(v) {
  return v === undefined || v === null ? "—" : v ? "yes" : "no";
}

/**
 * Rates from counters of two successive polls: `track(key, counters)` returns per-second rates
 * since the previous call for that key (null on the first call, or when a counter went back).
 */
export function rateTracker() {
  const last = new Map();
  return function track(key, counters) {
    const now = performance.now();
    const before = last.get(key);
    // A refresh right after another (after an action) keeps the rates of the last interval.
    if (before && now - before.at < 500) return before.rates;
    let rates = null;
    if (before) {
      const seconds = (now - before.at) / 1000;
      rates = {};
      for (const [name, value] of Object.entries(counters)) {
        const prev = before.counters[name];
        if (typeof prev !== "number" || value < prev) {
          rates = null;
          break;
        }
        rates[name] = (value - prev) / seconds;
      }
    }
    last.set(key, { at: now, counters, rates });
    return rates;
  };
}

/**
 * A labelled figure ("Depth 12") whose value `set` updates in place; `testid` names the value
 * for tests.
 */
export function stat(label, testid, hint) {
  const value = h("dd", { "data-testid": testid }, "—");
  const el = h("div", { class: "stat", title: hint }, h("dt", {}, label), value);
  return {
    el,
    set(text, level, title) {
      setText(value, text);
      value.className = level ?? "";
      // Long values are cut to one line (no layout jump); the whole text is the tooltip.
      const full = title ?? String(text);
      if (value.title !== full) value.title = full;
    },
  };
}

/** A group of stats. */
export function stats(...items) {
  return h("dl", { class: "stats" }, items.map((s) => s.el));
}

/**
 * A table whose rows follow a list by key: rows stay in place between refreshes (a button being
 * clicked or a confirmation in progress is not rebuilt), only changed texts change.
 *
 * columns: [{ title, num?: boolean, text?: (item) => string, cell?: (item) => Node,
 *             cls?: (item) => string, testid?: string }]
 */
export function dataTable({ caption, captionHidden, columns, key, empty, testid }) {
  const tbody = h("tbody");
  const table = h(
    "table",
    { "data-testid": testid },
    caption ? h("caption", { class: captionHidden ? "sr-only" : "" }, caption) : null,
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : "" }, c.title)),
      ),
    ),
    tbody,
  );
  const rows = new Map();
  const emptyRow = h("tr", { class: "empty" }, h("td", { colspan: columns.length }, empty));
  tbody.append(emptyRow);

  function update(items) {
    const seen = new Set();
    const order = [];
    for (const item of items) {
      const k = key(item);
      seen.add(k);
      let row = rows.get(k);
      if (!row) {
        const cells = columns.map((c) => {
          const td = h("td", { class: c.num ? "num" : "", "data-testid": c.testid });
          if (c.cell) td.append(c.cell(item));
          return td;
        });
        row = { tr: h("tr", { "data-key": k }, cells), cells };
        rows.set(k, row);
      }
      columns.forEach((c, i) => {
        const td = row.cells[i];
        if (c.text) setText(td, c.text(item));
        if (c.cls) {
          const cls = `${c.num ? "num " : ""}${c.cls(item) ?? ""}`.trim();
          if (td.className !== cls) td.className = cls;
        }
      });
      order.push(row.tr);
    }
    for (const [k, row] of rows) {
      if (!seen.has(k)) {
        row.tr.remove();
        rows.delete(k);
      }
    }
    if (order.length === 0) {
      if (!emptyRow.isConnected) tbody.append(emptyRow);
      return;
    }
    emptyRow.remove();
    // Moves only rows out of place (moving a row would take the focus off its buttons).
    order.forEach((tr, i) => {
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] ?? null);
    });
  }

  return { el: h("div", { class: "table-wrap" }, table), update };
}

/** A form's outcome line: `error(err)` shows a problem's title and detail, `ok(text)` a success. */
export function outcome(testid) {
  const el = h("p", { class: "outcome", role: "status", "data-testid": testid });
  return {
    el,
    ok(text) {
      el.className = "outcome ok";
      setText(el, text);
    },
    error(err) {
      el.className = "outcome error";
      setText(el, describe(err));
    },
    clear() {
      el.className = "outcome";
      setText(el, "");
    },
  };
}

/** What an error says to a person: a problem's title and detail, or the message. */
export function describe(err) {
  if (err && typeof err === "object" && "title" in err) {
    return err.detail ? `${err.title}: ${err.detail}` : err.title;
  }
  return err instanceof Error ? err.message : String(err);
}

/** A labelled input; `input` is the control itself. */
export function field(label, attrs = {}) {
  const id = attrs.id ?? `f-${Math.random().toString(36).slice(2, 9)}`;
  const input = attrs.tag === "textarea"
    ? h("textarea", { ...attrs, tag: undefined, id })
    : attrs.tag === "select"
    ? h(
      "select",
      { ...attrs, tag: undefined, options: undefined, id },
      attrs.options.map(([value, text]) => h("option", { value }, text)),
    )
    : h("input", { type: "text", ...attrs, id });
  const cls = attrs.tag === "textarea" ? "field wide" : "field";
  return { el: h("div", { class: cls }, h("label", { for: id }, label), input), input };
}

/**
 * A form whose submit runs `action` (async) with the button disabled meanwhile; errors land in
 * its outcome line. `action` returns the success text (or nothing).
 */
export function actionForm({ title, fields, submit, action, testid, extra }) {
  const result = outcome(`${testid}-outcome`);
  const button = h("button", { type: "submit" }, submit);
  const form = h(
    "form",
    { class: "action-form", "aria-label": title, "data-testid": testid, method: "post" },
    fields.map((f) => f.el),
    extra,
    h("div", { class: "form-actions" }, button, result.el),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    result.clear();
    try {
      const text = await action();
      if (text) result.ok(text);
    } catch (err) {
      result.error(err);
    } finally {
      button.disabled = false;
    }
  });
  return h("section", { class: "panel" }, h("h2", {}, title), form);
}

/**
 * A button that asks before it acts: a click shows "Confirm …" and "Cancel" in its place.
 * `action` is async; `onDone(err?)` reports its outcome.
 */
export function confirmButton({ label, confirmLabel, action, onDone, danger = true, testid }) {
  const wrap = h("span", { class: "confirm" });
  const start = h("button", {
    type: "button",
    class: danger ? "danger" : "",
    "data-testid": testid,
  }, label);
  const yes = h("button", {
    type: "button",
    class: danger ? "danger" : "primary",
    "data-testid": testid ? `${testid}-confirm` : undefined,
  }, confirmLabel);
  const no = h("button", { type: "button" }, "Cancel");
  const idle = () => fill(wrap, start);
  start.addEventListener("click", () => {
    fill(wrap, yes, no);
    yes.focus();
  });
  no.addEventListener("click", () => {
    idle();
    start.focus();
  });
  yes.addEventListener("click", async () => {
    yes.disabled = true;
    no.disabled = true;
    try {
      await action();
      onDone?.();
    } catch (err) {
      onDone?.(err);
    } finally {
      yes.disabled = false;
      no.disabled = false;
      idle();
    }
  });
  idle();
  return wrap;
}

/** A button that runs `action` (async) once per click, disabled meanwhile. */
export function actionButton({ label, action, testid, cls }) {
  const button = h("button", { type: "button", "data-testid": testid, class: cls }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await action();
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

/** "key=value" lines into an object; throws on a line without "=". */
export function parseAttributes(text) {
  const out = {};
  for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const eq = line.indexOf("=");
    if (eq <= 0) throw new Error(`attribute line "${line}" is not name=value`);
    out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }
  return out;
}

/** An optional whole number from an input ("" is undefined); throws on anything else. */
export function optionalInt(input, name) {
  const text = input.value.trim();
  if (text === "") return undefined;
  if (!/^\d+$/.test(text)) throw new Error(`${name} must be a whole number`);
  return Number(text);
}

/** A definition list of settings. */
export function settings(pairs) {
  return h(
    "dl",
    { class: "settings" },
    pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

/** A link to a view. */
export function link(hash, text, attrs = {}) {
  return h("a", { href: hash, ...attrs }, text);
}
