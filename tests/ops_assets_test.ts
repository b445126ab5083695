/**
 * The operations assets stay true to the code: the Grafana dashboard (deploy/grafana/), the
 * Prometheus alerts and scrape config (deploy/prometheus/) and docs/operations.md. Every PromQL
 * expression may only name metrics that src/metrics/metrics.ts defines (or prom-client's default
 * metrics, prefix `momd_`), with labels those metrics have; every alert links to a runbook section
 * that exists. No services needed.
 */
import assert from "node:assert/strict";
import { Metrics } from "../src/metrics/metrics.ts";

const ROOT = new URL("../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, ROOT));

// ---------------------------------------------------------------------------------------------
// What the code defines

interface MetricDef {
  type: "counter" | "gauge" | "histogram" | "summary";
  /** Label names, or null when any label may appear (prom-client's default metrics). */
  labels: Set<string> | null;
}

/** Labels every scraped series has: the registry's default label, and Prometheus' own. */
const COMMON_LABELS = ["node", "instance", "job"];
const HISTOGRAM_SUFFIXES = ["_bucket", "_sum", "_count"];

/** The metrics of src/metrics/metrics.ts, read from its `name: "..."` and `labelNames`. */
function metricsOfSource(source: string): Map<string, MetricDef> {
  const defs = new Map<string, MetricDef>();
  const parts = source.split(/new (Counter|Gauge|Histogram|Summary)\(\{/);
  for (let i = 1; i < parts.length; i += 2) {
    const type = parts[i].toLowerCase() as MetricDef["type"];
    const body = parts[i + 1];
    const name = body.match(/^\s*name: "([a-zA-Z_:][a-zA-Z0-9_:]*)"/)?.[1];
    assert.ok(name, `a ${parts[i]} in metrics.ts without a literal name first`);
    const labelList = body.match(/labelNames: \[([^\]]*)\]/)?.[1] ?? "";
    const labels = [...labelList.matchAll(/"([^"]+)"/g)].map((m) => m[1]);
    defs.set(name, { type, labels: new Set([...labels, ...COMMON_LABELS]) });
  }
  return defs;
}

/** Every series name a cluster node registers (with prom-client's defaults), and its type. */
async function registeredMetrics(): Promise<Map<string, string>> {
  const text = await new Metrics({ nodeId: "n1", cluster: true }).render();
  return new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]] as const));
}

/**
 * Every metric a node exposes: those metrics.ts names (with their labels), prom-client's default
 * metrics as the node registers them (prefix `momd_`; any label), and Prometheus' `up` (labelled
 * `node` by prometheus.yml).
 */
async function knownMetrics(): Promise<Map<string, MetricDef>> {
  const source = metricsOfSource(await read("src/metrics/metrics.ts"));
  const defaults = [...await registeredMetrics()]
    .filter(([name]) => !source.has(name))
    .map(([name, type]) => [name, { type: type as MetricDef["type"], labels: null }] as const);
  return new Map([
    ...defaults,
    ...source,
    ["up", { type: "gauge", labels: new Set(COMMON_LABELS) }],
  ]);
}

/** The definition a series name belongs to (`x_bucket` belongs to histogram `x`). */
function lookup(
  known: Map<string, MetricDef>,
  name: string,
): { def: MetricDef; bucket: boolean } | undefined {
  const def = known.get(name);
  if (def) return { def, bucket: false };
  for (const suffix of HISTOGRAM_SUFFIXES) {
    if (!name.endsWith(suffix)) continue;
    const base = known.get(name.slice(0, -suffix.length));
    if (base?.type === "histogram") return { def: base, bucket: suffix === "_bucket" };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// A small PromQL reader: enough to find the metric names, label matchers and grouping labels

const KEYWORDS = new Set([
  "and",
  "or",
  "unless",
  "bool",
  "offset",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "inf",
  "nan",
]);

interface PromqlParts {
  metrics: string[];
  /** Label names used in selectors, per metric. */
  matchers: { metric: string; label: string }[];
  /** Label names of by/without/on/ignoring/group_x clauses. */
  grouping: string[];
  /** Labels label_replace() makes. */
  made: string[];
}

/** The metric names, matchers and grouping labels of a PromQL expression (Grafana's $vars kept). */
function promqlParts(expr: string): PromqlParts {
  const parts: PromqlParts = { metrics: [], matchers: [], grouping: [], made: [] };
  for (const m of expr.matchAll(/label_replace\([^"]*"([a-zA-Z_][a-zA-Z0-9_]*)"/g)) {
    parts.made.push(m[1]);
  }
  // Selectors with a name: `metric{label op "value", ...}`.
  for (
    const m of expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{((?:[^}"]|"(?:[^"\\]|\\.)*")*)\}/g)
  ) {
    for (const l of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"/g)) {
      parts.matchers.push({ metric: m[1], label: l[1] });
    }
  }
  let rest = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // strings (label values, regexes)
    .replace(/\{[^}]*\}/g, " ") // matchers
    .replace(/\[[^\]]*\]/g, " "); // ranges and subqueries
  assert.ok(!/[{}[\]]/.test(rest), `unbalanced braces or brackets in: ${expr}`);
  rest = rest.replace(
    /\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g,
    (_, labels: string) => {
      for (const l of labels.split(",").map((s) => s.trim()).filter(Boolean)) {
        parts.grouping.push(l);
      }
      return " ";
    },
  );
  rest = rest
    .replace(/""/g, " ")
    .replace(/(?<![a-zA-Z0-9_:])(?:\d+(?:ms|[smhdwy]))+(?![a-zA-Z0-9_:])/g, " ") // durations
    .replace(/(?<![a-zA-Z0-9_:])\d+(?:\.\d+)?(?:e[+-]?\d+)?/gi, " ");
  for (const m of rest.matchAll(/(?<![$a-zA-Z0-9_:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    if (m[2] || KEYWORDS.has(m[1].toLowerCase())) continue; // a function or an operator
    parts.metrics.push(m[1]);
  }
  return parts;
}

/** What is wrong with an expression: unknown metrics, or labels its metrics do not have. */
function promqlProblems(expr: string, known: Map<string, MetricDef>): string[] {
  const problems: string[] = [];
  const parts = promqlParts(expr);
  if (parts.metrics.length === 0) problems.push(`no metric in: ${expr}`);
  const labelsOf = (name: string): Set<string> | null | undefined => {
    const found = lookup(known, name);
    if (!found) return undefined;
    if (!found.def.labels) return null;
    return found.bucket ? new Set([...found.def.labels, "le"]) : found.def.labels;
  };
  for (const name of parts.metrics) {
    if (!lookup(known, name)) problems.push(`unknown metric ${name} in: ${expr}`);
  }
  for (const { metric, label } of parts.matchers) {
    const labels = labelsOf(metric);
    if (labels && !labels.has(label)) problems.push(`${metric} has no label ${label}: ${expr}`);
  }
  const all = parts.metrics.map(labelsOf);
  if (!all.includes(null)) {
    const available = new Set([...parts.made, ...all.flatMap((s) => s ? [...s] : [])]);
    for (const label of parts.grouping) {
      if (!available.has(label)) problems.push(`no metric here has label ${label}: ${expr}`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// A small YAML reader: block mappings and sequences, plain/quoted scalars, block scalars and
// flow sequences of scalars. Anything else (anchors, tags, flow mappings, tabs) is refused, so
// the files stay in what Prometheus and this reader both read the same way.

type Yaml = string | Yaml[] | { [key: string]: Yaml };

interface Line {
  n: number;
  indent: number;
  text: string;
  raw: string;
}

/** Parses `text` (the subset above); throws naming the line it cannot read. */
function parseYaml(text: string): Yaml {
  const lines: Line[] = text.split("\n").map((raw, i) => {
    if (raw.match(/^\s*/)![0].includes("\t")) throw new Error(`line ${i + 1}: tab indentation`);
    return { n: i + 1, indent: raw.length - raw.trimStart().length, text: raw.trim(), raw };
  });
  let pos = 0;
  const significant = (l: Line) => l.text !== "" && !l.text.startsWith("#");
  const skip = () => {
    while (pos < lines.length && !significant(lines[pos])) pos++;
  };

  function stripComment(s: string): string {
    let quote = "";
    for (let i = 0; i < s.length; i++) {
      const c = s[i];
      if (quote) {
        if (c === "\\" && quote === '"') i++;
        else if (c === quote) quote = "";
      } else if (c === '"' || c === "'") quote = c;
      else if (c === "#" && (i === 0 || s[i - 1] === " ")) return s.slice(0, i).trimEnd();
    }
    return s;
  }

  function scalar(s: string, n: number): Yaml {
    if (s.startsWith('"')) {
      if (!s.endsWith('"') || s.length < 2) throw new Error(`line ${n}: unclosed string`);
      return JSON.parse(s) as string;
    }
    if (s.startsWith("'")) {
      if (!s.endsWith("'") || s.length < 2) throw new Error(`line ${n}: unclosed string`);
      return s.slice(1, -1).replaceAll("''", "'");
    }
    if (s.startsWith("[")) {
      if (!s.endsWith("]")) throw new Error(`line ${n}: a flow sequence on one line only`);
      const inner = s.slice(1, -1).trim();
      return inner === "" ? [] : inner.split(",").map((item) => scalar(item.trim(), n));
    }
    if (/^[{&*!%@`|>]/.test(s)) throw new Error(`line ${n}: unsupported YAML: ${s}`);
    return s;
  }

  function blockScalar(header: string, parentIndent: number): string {
    const folded = header[0] === ">";
    const strip = header.endsWith("-");
    const body: string[] = [];
    let indent = -1;
    while (pos < lines.length) {
      const l = lines[pos];
      if (l.text !== "" && l.indent <= parentIndent) break;
      if (l.text !== "" && indent < 0) indent = l.indent;
      body.push(l.text === "" ? "" : l.raw.slice(indent));
      pos++;
    }
    while (body.length && body[body.length - 1] === "") body.pop();
    const joined = folded ? body.join("\n").replace(/([^\n])\n(?=[^\n])/g, "$1 ") : body.join("\n");
    return strip ? joined : joined + "\n";
  }

  // The value after `key:` or `- ` (empty: a nested block follows).
  function value(rest: string, indent: number, n: number): Yaml {
    if (rest === "") {
      skip();
      if (pos >= lines.length || lines[pos].indent < indent) return "";
      const next = lines[pos];
      if (next.indent > indent) return block(next.indent);
      // `key:` then a sequence at the same indent.
      if (next.text.startsWith("- ") || next.text === "-") return block(indent);
      return "";
    }
    if (/^[|>][-+]?$/.test(rest)) return blockScalar(rest, indent);
    if (/^[|>]/.test(rest)) throw new Error(`line ${n}: unsupported block scalar header`);
    return scalar(rest, n);
  }

  function block(indent: number): Yaml {
    skip();
    const first = lines[pos];
    if (first.text === "-" || first.text.startsWith("- ")) {
      const items: Yaml[] = [];
      while (true) {
        skip();
        if (pos >= lines.length || lines[pos].indent !== indent) break;
        const l = lines[pos];
        if (!(l.text === "-" || l.text.startsWith("- "))) break;
        const rest = stripComment(l.text.slice(1).trim());
        if (/^[^"'[{][^:]*:( |$)/.test(rest)) {
          // `- key: value`: a mapping whose first key sits after the dash.
          const itemIndent = l.indent + (l.text.length - l.text.slice(1).trimStart().length);
          lines[pos] = { ...l, indent: itemIndent, text: rest };
          items.push(block(itemIndent));
        } else {
          pos++;
          items.push(value(rest, indent + 1, l.n));
        }
      }
      return items;
    }
    const map: { [key: string]: Yaml } = {};
    while (true) {
      skip();
      if (pos >= lines.length || lines[pos].indent !== indent) break;
      const l = lines[pos];
      if (l.text.startsWith("- ")) break;
      const m = stripComment(l.text).match(/^([A-Za-z0-9_.-]+|"[^"]*"):(?: (.*))?$/);
      if (!m) throw new Error(`line ${l.n}: expected "key: value", found: ${l.text}`);
      const key = m[1].startsWith('"') ? JSON.parse(m[1]) as string : m[1];
      if (key in map) throw new Error(`line ${l.n}: duplicate key ${key}`);
      pos++;
      map[key] = value((m[2] ?? "").trim(), indent, l.n);
    }
    return map;
  }

  skip();
  if (pos < lines.length && lines[pos].indent !== 0) throw new Error("the document is indented");
  const doc = block(0);
  skip();
  if (pos < lines.length) {
    throw new Error(`line ${lines[pos].n}: not read (indentation?): ${lines[pos].text}`);
  }
  return doc;
}

function asMap(v: Yaml | undefined, what: string): { [key: string]: Yaml } {
  assert.ok(v !== undefined && typeof v === "object" && !Array.isArray(v), `${what}: a mapping`);
  return v;
}

function asList(v: Yaml | undefined, what: string): Yaml[] {
  assert.ok(Array.isArray(v), `${what}: a list`);
  return v;
}

function asText(v: Yaml | undefined, what: string): string {
  assert.ok(typeof v === "string" && v.trim() !== "", `${what}: a non-empty string`);
  return v;
}

// ---------------------------------------------------------------------------------------------
// docs/operations.md

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes. */
function slug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  let fenced = false;
  for (const line of markdown.split("\n")) {
    if (line.startsWith("```")) fenced = !fenced;
    const m = !fenced && line.match(/^#{1,6} (.+)$/);
    if (m) anchors.add(slug(m[1]));
  }
  return anchors;
}

// ---------------------------------------------------------------------------------------------
// The tests

interface Panel {
  type: string;
  id: number;
  title: string;
  description?: string;
  datasource?: { type: string; uid: string };
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: { expr: string; refId: string; datasource?: { uid: string } }[];
}

const DASHBOARD = "deploy/grafana/momd-dashboard.json";
const ALERTS = "deploy/prometheus/alerts.yaml";
const PROMETHEUS = "deploy/prometheus/prometheus.yml";
const OPERATIONS = "docs/operations.md";

/** The alerts the operations brief asks for, one per thing an operator must act on. */
const REQUIRED_ALERTS = [
  "MomdNodeDown",
  "MomdNodeNotReady",
  "MomdUnderReplicated",
  "MomdReplicaLagGrowing",
  "MomdZooKeeperSessionLost",
  "MomdBackupRecoveryPointOld",
  "MomdBackupPendingGrowing",
  "MomdRedisMemoryCritical",
  "MomdDeadLettersGrowing",
  "MomdOldestMessageOld",
  "MomdHttp5xxRatioHigh",
  "MomdHttpLatencyHigh",
  "MomdRateLimitStorm",
  "MomdOwnershipChurn",
];

Deno.test("ops assets: the PromQL reader finds metrics, matchers and grouping labels", async () => {
  const parts = promqlParts(
    'histogram_quantile(0.99, sum by (le, route) (rate(momd_http_request_duration_seconds_bucket{node=~"$node", route!~".*/(receive|x)"}[$__rate_interval]))) > 1 and on (node) up == 0',
  );
  assert.deepEqual(parts.metrics, ["momd_http_request_duration_seconds_bucket", "up"]);
  assert.deepEqual(parts.matchers, [
    { metric: "momd_http_request_duration_seconds_bucket", label: "node" },
    { metric: "momd_http_request_duration_seconds_bucket", label: "route" },
  ]);
  assert.deepEqual(parts.grouping, ["le", "route", "node"]);
  assert.deepEqual(promqlParts("time() - 1e3 * momd_x offset 5m").metrics, ["momd_x"]);

  const known = await knownMetrics();
  assert.deepEqual(
    promqlProblems("sum by (queue) (rate(momd_queue_messages_total[5m]))", known),
    [],
  );
  assert.deepEqual(promqlProblems("momd_queue_depth", known), [
    "unknown metric momd_queue_depth in: momd_queue_depth",
  ]);
  assert.equal(promqlProblems('momd_entities_owned{queue="q"}', known).length, 1);
  assert.equal(promqlProblems("sum by (queue) (momd_entities_owned)", known).length, 1);
  assert.equal(promqlProblems("momd_build_info_bucket", known).length, 1, "not a histogram");
  assert.deepEqual(promqlProblems("rate(momd_process_cpu_seconds_total[1m])", known), []);
});

Deno.test("ops assets: the metric list read from metrics.ts is what a node registers", async () => {
  const source = metricsOfSource(await read("src/metrics/metrics.ts"));
  assert.ok(source.size >= 20, `only ${source.size} metrics read from metrics.ts`);
  const registered = await registeredMetrics();
  for (const [name, def] of source) {
    assert.equal(registered.get(name), def.type, `${name} is registered as a ${def.type}`);
  }
  // What the node registers beyond metrics.ts's own are prom-client's defaults.
  const others = [...registered.keys()].filter((name) => !source.has(name));
  assert.ok(
    others.length > 0 && others.every((n) => /^momd_(process|nodejs)_/.test(n)),
    `${others}`,
  );
});

Deno.test("ops assets: the Grafana dashboard is importable and uses only known metrics", async () => {
  const dashboard = JSON.parse(await read(DASHBOARD));
  const known = await knownMetrics();
  assert.ok(dashboard.schemaVersion >= 39, "schemaVersion 39 or later");
  assert.equal(typeof dashboard.title, "string");
  assert.equal(typeof dashboard.uid, "string");
  assert.equal(dashboard.id, undefined, "no instance-specific id: importable anywhere");

  const vars = new Map<string, { type: string; query: unknown; definition?: string }>(
    dashboard.templating.list.map((v: { name: string }) => [v.name, v]),
  );
  assert.equal(vars.get("datasource")?.type, "datasource");
  assert.equal(vars.get("datasource")?.query, "prometheus");
  for (const name of ["node", "queue", "topic"]) {
    const v = vars.get(name);
    assert.equal(v?.type, "query", `template variable ${name}`);
    const m = v!.definition?.match(/^label_values\((.+), ([a-z_]+)\)$/);
    assert.ok(m, `${name}: label_values(metric, label)`);
    assert.equal(m[2], name);
    assert.deepEqual(promqlProblems(`${m[1]}{${m[2]}="x"}`, known), []);
  }

  const panels: Panel[] = dashboard.panels;
  const rows = panels.filter((p) => p.type === "row").map((p) => p.title);
  assert.deepEqual(rows, [
    "Overview",
    "Traffic",
    "Queues",
    "Subscriptions",
    "Replication",
    "Backup",
    "Resources",
  ]);
  assert.equal(new Set(panels.map((p) => p.id)).size, panels.length, "panel ids are unique");

  const problems: string[] = [];
  const exprs: string[] = [];
  for (const p of panels) {
    assert.ok(p.gridPos.x >= 0 && p.gridPos.x + p.gridPos.w <= 24, `${p.title}: fits the grid`);
    if (p.type === "row") continue;
    assert.ok(p.description, `${p.title}: says what it shows`);
    assert.equal(p.datasource?.uid, "${datasource}", `${p.title}: the datasource variable`);
    assert.ok(p.targets?.length, `${p.title}: has queries`);
    for (const t of p.targets!) {
      assert.equal(t.datasource?.uid, "${datasource}", `${p.title} ${t.refId}: datasource`);
      exprs.push(t.expr);
      problems.push(...promqlProblems(t.expr, known).map((e) => `${p.title}: ${e}`));
    }
  }
  assert.deepEqual(problems, []);
  // The brief's panels: each of these appears in some query.
  const all = exprs.join("\n");
  for (
    const needed of [
      "momd_build_info",
      "momd_entities_owned",
      "momd_under_replicated_entities",
      "momd_zookeeper_session_up",
      "momd_queue_messages_total",
      "momd_topic_published_total",
      "momd_subscription_messages_total",
      "momd_http_requests_total",
      "momd_http_request_duration_seconds_bucket",
      "momd_rate_limited_total",
      "momd_queue_messages{",
      "momd_queue_oldest_message_age_seconds",
      "momd_subscription_messages{",
      "momd_replication_lag_records",
      "momd_in_sync_replicas",
      "momd_replicas",
      "momd_ownership_changes_total",
      "momd_ownership_epoch",
      "momd_forwards_total",
      "momd_forward_duration_seconds_bucket",
      "time() - momd_backup_recovery_point_timestamp_seconds",
      "momd_backup_pending_records",
      "momd_redis_used_memory_bytes",
      "momd_redis_max_memory_bytes",
      "momd_process_cpu_seconds_total",
      "momd_process_resident_memory_bytes",
      "momd_nodejs_eventloop_lag_p99_seconds",
    ]
  ) {
    assert.ok(all.includes(needed), `the dashboard shows ${needed}`);
  }
});

Deno.test("ops assets: the alert rules parse, name known metrics and link to their runbook", async () => {
  const known = await knownMetrics();
  const anchors = anchorsOf(await read(OPERATIONS));
  const doc = asMap(parseYaml(await read(ALERTS)), ALERTS);
  assert.deepEqual(Object.keys(doc), ["groups"]);
  const names: string[] = [];
  const problems: string[] = [];
  for (const g of asList(doc.groups, "groups")) {
    const group = asMap(g, "a group");
    asText(group.name, "group name");
    for (const r of asList(group.rules, `group ${group.name} rules`)) {
      const rule = asMap(r, "a rule");
      const alert = asText(rule.alert, "alert name");
      names.push(alert);
      for (const key of Object.keys(rule)) {
        assert.ok(
          ["alert", "expr", "for", "labels", "annotations"].includes(key),
          `${alert}: unknown key ${key}`,
        );
      }
      problems.push(
        ...promqlProblems(asText(rule.expr, `${alert} expr`), known).map((e) => `${alert}: ${e}`),
      );
      assert.match(asText(rule.for, `${alert} for`), /^\d+[smh]$/);
      const severity = asMap(rule.labels, `${alert} labels`).severity;
      assert.ok(severity === "warning" || severity === "critical", `${alert}: severity`);
      const notes = asMap(rule.annotations, `${alert} annotations`);
      asText(notes.summary, `${alert} summary`);
      asText(notes.description, `${alert} description`);
      const runbook = asText(notes.runbook_url, `${alert} runbook_url`);
      const anchor = runbook.match(/^docs\/operations\.md#([a-z0-9_-]+)$/)?.[1];
      assert.ok(anchor, `${alert}: runbook_url is docs/operations.md#<anchor>: ${runbook}`);
      assert.ok(anchors.has(anchor), `${alert}: no heading for #${anchor} in ${OPERATIONS}`);
    }
  }
  assert.deepEqual(problems, []);
  assert.equal(new Set(names).size, names.length, "alert names are unique");
  for (const name of REQUIRED_ALERTS) assert.ok(names.includes(name), `alert ${name}`);
  // Every alert is named in the runbook (most have a section of their own).
  const text = await read(OPERATIONS);
  for (const name of names) assert.ok(text.includes(name), `${OPERATIONS} names ${name}`);
});

Deno.test("ops assets: prometheus.yml scrapes each node directly and loads the alerts", async () => {
  const config = asMap(parseYaml(await read(PROMETHEUS)), PROMETHEUS);
  const files = asList(config.rule_files, "rule_files");
  assert.deepEqual(files, ["alerts.yaml"]);
  await Deno.stat(new URL("deploy/prometheus/alerts.yaml", ROOT));
  const jobs = asList(config.scrape_configs, "scrape_configs").map((j) => asMap(j, "a job"));
  const momd = jobs.find((j) => j.job_name === "momd");
  assert.ok(momd, 'a job named momd (the alerts select job="momd")');
  assert.equal(momd.metrics_path, "/metrics");
  const statics = asList(momd.static_configs, "static_configs").map((s) => asMap(s, "targets"));
  const targets = statics.flatMap((s) => asList(s.targets, "targets"));
  assert.deepEqual(targets, ["momd1:8080", "momd2:8080", "momd3:8080"]);
  // Each target names its node, and keeps the node's own `node` label (see the file).
  const nodes = statics.map((s) => asMap(s.labels, "labels").node);
  assert.deepEqual(nodes, ["node1", "node2", "node3"]);
  assert.equal(momd.honor_labels, "true");
  assert.ok(!targets.some((t) => String(t).includes("nginx")), "never through NGINX");
});

Deno.test("ops assets: the YAML reader reads what it claims and refuses the rest", () => {
  assert.deepEqual(
    parseYaml(
      [
        "# comment",
        "a: 1 # trailing",
        'b: "x # not a comment"',
        "c:",
        "  - d: e",
        "    f: >-",
        "      one",
        "      two",
        "  - [g, 'h''s']",
        "i:",
        "- j",
        "k: |",
        "  line 1",
        "  line 2",
      ].join("\n"),
    ),
    {
      a: "1",
      b: "x # not a comment",
      c: [{ d: "e", f: "one two" }, ["g", "h's"]],
      i: ["j"],
      k: "line 1\nline 2\n",
    },
  );
  assert.throws(() => parseYaml("a: &x 1"), /unsupported/);
  assert.throws(() => parseYaml("a: {b: 1}"), /unsupported/);
  assert.throws(() => parseYaml("a:\n  b: 1\n c: 2"), /not read/);
  assert.throws(() => parseYaml("a: 1\na: 2"), /duplicate/);
});

Deno.test("ops assets: docs/operations.md is linked and its links resolve", async () => {
  assert.ok((await read("README.md")).includes("](docs/operations.md)"), "README links it");
  const architecture = await read("docs/architecture.md");
  assert.ok(architecture.includes("](operations.md)"), "docs/architecture.md links it");
  const doc = await read(OPERATIONS);
  const missing: string[] = [];
  for (const m of doc.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
    const target = m[1];
    if (/^[a-z]+:/.test(target)) continue; // http:, https:, mailto:
    try {
      await Deno.stat(new URL(target, new URL(OPERATIONS, ROOT)));
    } catch {
      missing.push(target);
    }
  }
  assert.deepEqual(missing, []);
  // Same-page links name a heading that exists.
  const anchors = anchorsOf(doc);
  const broken = [...doc.matchAll(/\]\(#([^)]+)\)/g)].map((m) => m[1]).filter((a) =>
    !anchors.has(a)
  );
  assert.deepEqual(broken, []);
});
