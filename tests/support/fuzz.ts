/**
 * A seeded HTTP fuzzer of momd's APIs (tests/fuzz_test.ts): it reads the OpenAPI documents
 * (`/openapi.json` and the compatibility API's) and sends valid, near-valid and hostile requests
 * to every route: bad percent-escapes, long names, deep and huge JSON, wrong types, wrong and
 * unknown methods, missing or garbage credentials, chunked bodies cut short or malformed over a
 * raw TCP socket, CR/LF in paths. Every answer is checked (`checkAnswer`) and counted.
 *
 * The same seed gives the same sequence of requests (the answers, and so the receipts and task
 * ids it reuses, may differ between runs).
 */

/** A small, fast, seeded PRNG (mulberry32). */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }
}

/** One route of an OpenAPI document. */
export interface FuzzRoute {
  method: string;
  /** With `{param}` placeholders. */
  path: string;
  params: { name: string; in: string; schema: JsonSchema; required: boolean }[];
  body?: JsonSchema;
  /** The compatibility API (FastAPI-shaped errors). */
  compat: boolean;
}

// deno-lint-ignore no-explicit-any
export type JsonSchema = Record<string, any>;

/** The routes of an OpenAPI 3.1 document, with `$ref`s resolved against it. */
export function routesOf(doc: JsonSchema, compat: boolean): FuzzRoute[] {
  const routes: FuzzRoute[] = [];
  for (const [path, ops] of Object.entries(doc.paths ?? {})) {
    for (const [method, op] of Object.entries(ops as Record<string, JsonSchema>)) {
      if (!["get", "put", "post", "patch", "delete", "head"].includes(method)) continue;
      const params = ((op.parameters ?? []) as JsonSchema[]).map((p) => ({
        name: p.name as string,
        in: p.in as string,
        schema: resolve(doc, p.schema ?? {}),
        required: p.required === true,
      }));
      const raw = op.requestBody?.content?.["application/json"]?.schema;
      routes.push({
        method: method.toUpperCase(),
        path,
        params,
        body: raw ? resolve(doc, raw) : undefined,
        compat,
      });
    }
  }
  return routes;
}

/** Resolves `$ref`s (depth-limited: the schemas of momd are not recursive). */
function resolve(doc: JsonSchema, schema: JsonSchema, depth = 0): JsonSchema {
  if (depth > 20 || schema === null || typeof schema !== "object") return schema;
  if (typeof schema.$ref === "string") {
    const target = schema.$ref.replace(/^#\//, "").split("/").reduce(
      (o: JsonSchema | undefined, k: string) => o?.[k],
      doc,
    );
    return resolve(doc, { ...target, ...schema, $ref: undefined }, depth + 1);
  }
  if (Array.isArray(schema)) return schema.map((s) => resolve(doc, s, depth + 1));
  const out: JsonSchema = {};
  for (const [k, v] of Object.entries(schema)) {
    out[k] = v !== null && typeof v === "object" ? resolve(doc, v, depth + 1) : v;
  }
  return out;
}

/** Strings the fuzzer sends, drawn so that no answer can contain a forbidden marker by echo. */
const SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
const SAFE_TEXT = SAFE + " .,;!?éü€漢😀\"'\\<>{}[]=&+#";

/** What the generators draw names, receipts and ids from. */
export interface FuzzPools {
  /** Names of queues and topics the fuzzer may touch (never the canaries). */
  names: string[];
  subs: string[];
  /** Usernames the fuzzer may touch (never the admin or the fuzzer's own user). */
  users: string[];
  receipts: string[];
  taskIds: string[];
  messageIds: string[];
}

/** One request to send. `raw` requests go over a plain TCP socket as they are. */
export type FuzzRequest =
  | {
    kind: "http";
    method: string;
    path: string;
    headers: Record<string, string>;
    body?: string | Uint8Array<ArrayBuffer>;
    /** Direct to a node (index) instead of NGINX. */
    node?: number;
    compat: boolean;
    label: string;
  }
  | {
    kind: "raw";
    bytes: Uint8Array<ArrayBuffer>;
    /** The request is cut short: the socket is closed for writing after it. */
    truncated: boolean;
    node?: number;
    compat: boolean;
    label: string;
  };

/** Generates requests from the routes, the pools and a seed. */
export class FuzzGenerator {
  constructor(
    readonly rng: Rng,
    readonly routes: FuzzRoute[],
    readonly pools: FuzzPools,
    readonly tokens: { admin: string; user: string },
    readonly nodes: number,
  ) {}

  text(max = 24, alphabet = SAFE): string {
    const n = this.rng.int(0, max);
    let s = "";
    for (let i = 0; i < n; i++) s += this.rng.pick([...alphabet]);
    return s;
  }

  /** A path segment for a name: mostly valid and known, sometimes hostile. */
  name(pool: string[]): string {
    const r = this.rng;
    const roll = r.next();
    if (roll < 0.55) return r.pick(pool);
    if (roll < 0.7) return `fz-${this.text(10) || "x"}`;
    return r.pick([
      "%FF",
      "%C0%AF",
      "%ED%A0%80",
      "%",
      "%G1",
      "%E2%82",
      "a%2Fb",
      "bad%20name%2F..",
      "..",
      "%2E%2E",
      "a%0D%0Ab",
      "a%0Ab",
      "a%20b",
      "a%00b",
      "%C3%A9t%C3%A9",
      "x".repeat(129),
      "y".repeat(r.int(200, 6000)),
      encodeURIComponent(this.text(40, SAFE_TEXT)) || "z",
      "a%252Fb",
      "a;b",
      "a:b",
      "a@b",
      "__proto__",
      "constructor",
    ]);
  }

  /** A value for a JSON schema: `mode` 0 valid, 1 near-valid (one thing wrong), 2 hostile. */
  value(schema: JsonSchema | undefined, mode: number, depth = 0): unknown {
    const r = this.rng;
    if (!schema || depth > 6) return null;
    if (mode === 2 && r.chance(0.3)) return this.hostileValue();
    if (mode === 1 && r.chance(0.25)) return this.wrongType(schema);
    const options = schema.anyOf ?? schema.oneOf;
    if (Array.isArray(options)) return this.value(r.pick(options), mode, depth + 1);
    if (Array.isArray(schema.allOf)) {
      return this.value(Object.assign({}, ...schema.allOf), mode, depth + 1);
    }
    if (Array.isArray(schema.enum)) return r.pick(schema.enum);
    const type = Array.isArray(schema.type) ? r.pick(schema.type) : schema.type;
    switch (type) {
      case "object": {
        const out: Record<string, unknown> = {};
        const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
        const required = new Set<string>(schema.required ?? []);
        for (const [k, s] of Object.entries(props)) {
          if (required.has(k) || r.chance(0.5)) out[k] = this.field(k, s, mode, depth);
        }
        if (mode === 1 && r.chance(0.3)) out[`extra${r.int(0, 9)}`] = r.int(0, 9);
        if (mode === 1 && required.size > 0 && r.chance(0.3)) delete out[r.pick([...required])];
        if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
          for (let i = r.int(0, 3); i > 0; i--) {
            out[this.text(8) || "k"] = this.value(schema.additionalProperties, mode, depth + 1);
          }
        }
        return out;
      }
      case "array": {
        const min = schema.minItems ?? 0;
        const max = Math.min(schema.maxItems ?? 5, 5);
        let n = r.int(min, Math.max(min, max));
        if (mode === 1 && r.chance(0.3)) n = r.chance(0.5) ? 0 : (schema.maxItems ?? 5) + 1;
        const items: unknown[] = [];
        for (let i = 0; i < Math.min(n, 150); i++) {
          items.push(this.value(schema.items, mode, depth + 1));
        }
        return items;
      }
      case "integer":
      case "number": {
        const lo = schema.minimum ?? (schema.exclusiveMinimum ?? -1) + 1;
        const hi = Math.min(schema.maximum ?? lo + 1000, lo + 1_000_000);
        if (mode === 1 && r.chance(0.4)) {
          return r.pick([lo - 1, (schema.maximum ?? 1e9) + 1, 1.5, -0, 1e308, -1e308]);
        }
        return r.int(lo, hi);
      }
      case "boolean":
        return r.chance(0.5);
      case "null":
        return null;
      case "string": {
        if (schema.format === "date-time") {
          return mode === 1 && r.chance(0.5)
            ? "2026-13-45T99:99:99Z"
            : new Date(Date.now() - r.int(-1e7, 1e8)).toISOString();
        }
        const min = schema.minLength ?? 0;
        const max = Math.min(schema.maxLength ?? 32, 64);
        let s = this.text(max, mode === 0 ? SAFE : SAFE_TEXT);
        while (s.length < min) s += "a";
        if (mode === 1 && r.chance(0.3)) s = "x".repeat((schema.maxLength ?? 64) + 1);
        return s;
      }
      default:
        return this.text(8);
    }
  }

  /** A field of an object, drawn from the pools where its name says what it holds. */
  field(key: string, schema: JsonSchema, mode: number, depth: number): unknown {
    const r = this.rng;
    const valid = mode === 0 || r.chance(0.6);
    if (valid) {
      if (key === "receipts" && this.pools.receipts.length > 0) {
        return Array.from({ length: r.int(1, 3) }, () => r.pick(this.pools.receipts));
      }
      if (key === "receipt" && this.pools.receipts.length > 0) return r.pick(this.pools.receipts);
      if (key === "waitSeconds") return r.chance(0.9) ? 0 : r.int(0, 2);
      if (key === "name" && schema.type === "string") return this.plainName(this.pools.names);
      if (key === "username") return this.plainName(this.pools.users);
      if (key === "type" && Array.isArray(schema.enum)) return r.pick(schema.enum);
      if (key === "ids" && this.pools.messageIds.length > 0) {
        return Array.from({ length: r.int(1, 3) }, () => r.pick(this.pools.messageIds));
      }
    }
    return this.value(schema, mode, depth + 1);
  }

  plainName(pool: string[]): string {
    return this.rng.chance(0.8) ? this.rng.pick(pool) : this.text(30, SAFE_TEXT);
  }

  wrongType(schema: JsonSchema): unknown {
    const r = this.rng;
    const t = Array.isArray(schema.type) ? schema.type[0] : schema.type;
    const kind = (v: unknown) =>
      v === null
        ? "null"
        : Array.isArray(v)
        ? "array"
        : typeof v === "number"
        ? "number"
        : typeof v;
    const want = t === "integer" ? "number" : t;
    const all = [1, -1, 0.5, "1", "", true, null, [], {}, [1, "a"], { a: 1 }, "NaN"];
    return r.pick(all.filter((v) => kind(v) !== want));
  }

  hostileValue(): unknown {
    const r = this.rng;
    switch (r.int(0, 7)) {
      case 0:
        return deepArray(r.int(100, 3000));
      case 1:
        return deepObject(r.int(100, 3000));
      case 2:
        return "s".repeat(r.int(1000, 300_000));
      case 3:
        return Array.from({ length: r.int(100, 5000) }, (_, i) => i);
      case 4:
        return 1e308 * 10; // Infinity: JSON.stringify gives null
      case 5:
        return -9007199254740993;
      case 6:
        return { __proto__: { polluted: true }, constructor: { prototype: { x: 1 } } };
      default:
        return "\u0000\u0001\ud800\udfff\u2028";
    }
  }

  /** The next request. */
  next(): FuzzRequest {
    const r = this.rng;
    const node = r.chance(0.25) ? r.int(0, this.nodes - 1) : undefined;
    if (r.chance(0.04)) return this.rawRequest(node);
    const route = r.pick(this.routes);
    const mode = r.pick([0, 0, 0, 1, 1, 2]);
    let method = route.method;
    if (r.chance(0.06)) {
      // (TRACE and CONNECT: fetch refuses to send them; the raw requests do.)
      method = r.pick([
        "GET",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "HEAD",
        "OPTIONS",
        "FOO",
        "PROPFIND",
      ]);
    }
    let path = route.path.replace(/\{([^}]+)\}/g, (_all, p: string) => {
      if (p === "username" || (p === "name" && route.path.startsWith("/v1/users"))) {
        return this.name(this.pools.users);
      }
      if (p === "sub") return this.name(this.pools.subs);
      if (p === "taskId") {
        return this.pools.taskIds.length > 0 && r.chance(0.6)
          ? r.pick(this.pools.taskIds)
          : this.name(["dGFzaw", "x"]);
      }
      return this.name(this.pools.names);
    });
    if (route.compat && r.chance(0.1)) {
      // The same path without (or with another) trailing slash: a redirect, or 404.
      path = path.endsWith("/") ? path.slice(0, -1) : `${path}/`;
      if (r.chance(0.5)) path += r.pick(["%0D%0A", "%20x", "%0A", "a%20b/"]);
    }
    const query: string[] = [];
    for (const p of route.params.filter((p) => p.in === "query")) {
      if (p.required || r.chance(0.5)) {
        const v = mode === 2 && r.chance(0.3)
          ? r.pick(["%FF", "%", "-1", "1e999", "x".repeat(3000), "%0D%0A", "[]"])
          : encodeURIComponent(String(this.value(p.schema, Math.min(mode, 1))).slice(0, 3000));
        query.push(`${p.name}=${v}`);
      }
    }
    if (mode === 2 && r.chance(0.2)) query.push(`${this.text(5) || "q"}=${r.pick(["%FF", "1"])}`);
    if (query.length > 0) path += `?${query.join("&")}`;

    const headers: Record<string, string> = {};
    const auth = r.next();
    if (auth < 0.6) headers.authorization = `Bearer ${this.tokens.admin}`;
    else if (auth < 0.8) headers.authorization = `Bearer ${this.tokens.user}`;
    else if (auth < 0.88) {
      headers.authorization = r.pick([
        "Bearer",
        "Bearer garbage",
        `Basic ${btoa("a:b")}`,
        `Bearer ${this.tokens.admin.slice(0, -3)}abc`,
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.",
        `bearer  ${this.tokens.user}`,
        "Bearer " + "x".repeat(5000),
      ]);
    }
    if (r.chance(0.1)) headers["momd-route"] = r.pick(["node1", "node2", "node3", "nodeX", ""]);

    let body: string | Uint8Array<ArrayBuffer> | undefined;
    const wantsBody = route.body !== undefined || (mode === 2 && r.chance(0.3));
    if (wantsBody && method !== "GET" && method !== "HEAD") {
      headers["content-type"] = r.chance(0.92) ? "application/json" : r.pick([
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin1",
        "",
      ]);
      body = this.body(route.body, mode);
    } else if (mode === 2 && r.chance(0.05) && method === "GET") {
      headers["content-type"] = "application/json";
    }
    return {
      kind: "http",
      method,
      path,
      headers,
      body,
      node,
      compat: route.compat,
      label: `${route.method} ${route.path} m${mode}`,
    };
  }

  body(schema: JsonSchema | undefined, mode: number): string | Uint8Array<ArrayBuffer> {
    const r = this.rng;
    if (mode === 2) {
      switch (r.int(0, 9)) {
        case 0:
          return "[".repeat(20_000) + "]".repeat(20_000);
        case 1:
          return `{"name":${"[".repeat(20_000)}${"]".repeat(20_000)},"type":"queue","message":"x"}`;
        case 2:
          return `{"a":`.repeat(5000) + "1" + "}".repeat(5000);
        case 3:
          return "{not json";
        case 4:
          return "";
        case 5:
          return new Uint8Array([0xff, 0xfe, 0x00, 0x7b, 0x22]);
        case 6:
          // Above the nodes' 4 MiB body limit.
          return JSON.stringify({ messages: [{ body: "b".repeat(r.int(4, 6) * 1024 * 1024) }] });
        case 7:
          return JSON.stringify({ messages: Array.from({ length: 5000 }, () => ({ body: "x" })) });
        case 8:
          return "null";
        default:
          return JSON.stringify(this.value(schema, 2));
      }
    }
    return JSON.stringify(this.value(schema, mode) ?? {});
  }

  /** A request written by hand on a socket: broken framing NGINX or a node must refuse. */
  rawRequest(node?: number): FuzzRequest {
    const r = this.rng;
    const auth = `Authorization: Bearer ${this.tokens.admin}\r\n`;
    const target = `/v1/queues/${r.pick(this.pools.names)}/messages`;
    const compatTarget = "/api/v1.0.0/MomServer/queue_topic/send/";
    const path = r.chance(0.3) ? compatTarget : target;
    const head = (te = "Transfer-Encoding: chunked\r\n") =>
      `POST ${path} HTTP/1.1\r\nHost: fuzz\r\n${auth}Content-Type: application/json\r\n${te}`;
    const truncated = [
      // A chunked body cut short (the socket is closed for writing after it).
      () => `${head()}\r\n40\r\n{"messages":[{"bo`,
      // A chunk size far beyond what follows, then the end.
      () => `${head()}\r\n7FFFFFFF\r\n${"a".repeat(r.int(10, 5000))}`,
      // Content-Length larger than the body sent.
      () => `${head(`Content-Length: ${r.int(100, 100000)}\r\n`)}\r\n{"messages":[`,
    ];
    const whole = [
      // A chunk size that overflows.
      () => `${head()}\r\nFFFFFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n`,
      // Not a chunk size at all.
      () => `${head()}\r\nzz\r\nabc\r\n0\r\n\r\n`,
      // Both Content-Length and chunked.
      () =>
        `${head("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n")}\r\n5\r\nabcde\r\n0\r\n\r\n`,
      // A valid chunked body (the control).
      () => {
        const b = JSON.stringify({ messages: [{ body: "chunked" }] });
        return `${head()}\r\n${b.length.toString(16)}\r\n${b}\r\n0\r\n\r\n`;
      },
      // Methods and request lines.
      () => `TRACE ${target} HTTP/1.1\r\nHost: fuzz\r\n${auth}\r\n`,
      () => `FOO ${target} HTTP/1.1\r\nHost: fuzz\r\n${auth}Content-Length: 0\r\n\r\n`,
      () => `GET /v1/queues/a\rb HTTP/1.1\r\nHost: fuzz\r\n${auth}\r\n`,
      () => `GET /v1/queues/a b HTTP/1.1\r\nHost: fuzz\r\n${auth}\r\n`,
      () =>
        `GET /api/v1.0.0/MomServer/admin/queue_topic/delete/a b HTTP/1.1\r\nHost: fuzz\r\n${auth}\r\n`,
      () => `GARBAGE\r\n\r\n`,
      () => `GET ${target} HTTP/1.1\r\nHost: fuzz\r\nX-Bad: a\rb\r\n\r\n`,
      () => `GET /${"x".repeat(r.int(9000, 20000))} HTTP/1.1\r\nHost: fuzz\r\n\r\n`,
      () => `GET ${target} HTTP/1.1\r\nHost: fuzz\r\n${`X-Long: ${"h".repeat(9000)}\r\n`}\r\n`,
      () => `GET ${target} HTTP/9.9\r\nHost: fuzz\r\n\r\n`,
    ];
    const cut = r.chance(0.4);
    const text = r.pick(cut ? truncated : whole)();
    return {
      kind: "raw",
      bytes: new TextEncoder().encode(text),
      truncated: cut,
      node,
      compat: path === compatTarget,
      label: `raw ${text.slice(0, 40).replace(/\r\n/g, "|")}`,
    };
  }
}

function deepArray(depth: number): unknown {
  let v: unknown = [];
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

function deepObject(depth: number): unknown {
  let v: unknown = {};
  for (let i = 0; i < depth; i++) v = { a: v };
  return v;
}

/** An answer as the checks see it. */
export interface FuzzAnswer {
  status: number;
  contentType: string;
  body: string;
}

/** Sends bytes on a new TCP connection, half-closes it and reads the answer (or gives up). */
export async function rawExchange(
  hostname: string,
  port: number,
  bytes: Uint8Array,
  opts: { halfClose?: boolean; timeoutMs?: number } = {},
): Promise<FuzzAnswer | null> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const conn = await Deno.connect({ hostname, port });
  let text = "";
  const timer = setTimeout(() => {
    try {
      conn.close();
    } catch {
      // closed already
    }
  }, timeoutMs);
  try {
    await conn.write(bytes).catch(() => 0);
    // Closing the writing side tells the server no more comes (a body cut short); NGINX takes
    // it for a client that went away, so a whole request keeps it open.
    if (opts.halfClose) await conn.closeWrite().catch(() => {});
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (!n) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
      // One answer is enough (keep-alive servers may not close).
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) {
        const length = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end));
        if (length && text.length >= end + 4 + Number(length[1])) break;
      }
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // closed by the timer
    }
  }
  if (!text.startsWith("HTTP/")) return null;
  const end = text.indexOf("\r\n\r\n");
  const head = text.slice(0, end < 0 ? text.length : end);
  const status = Number(head.split(" ")[1]);
  const type = /\r\ncontent-type:\s*([^\r\n]*)/i.exec(head)?.[1] ?? "";
  return { status, contentType: type, body: end < 0 ? "" : text.slice(end + 4) };
}

/** What no answer may contain, whatever its status. */
export interface Forbidden {
  /** gRPC addresses of the nodes (`host:port`). */
  grpc: string[];
  /** The ZooKeeper root, e.g. `/momd/`. */
  znodeRoot: string;
}

/** The problems of one answer (empty: fine) and whether it is a tolerated 503/504. */
export function checkAnswer(
  req: { method: string; compat: boolean; addressesAllowed?: boolean },
  answer: FuzzAnswer,
  forbidden: Forbidden,
): { problems: string[]; unavailable: boolean } {
  const problems: string[] = [];
  const { status, body } = answer;
  const type = answer.contentType.split(";")[0].trim().toLowerCase();
  let unavailable = false;
  let parsed: Record<string, unknown> | null = null;
  try {
    parsed = body ? JSON.parse(body) : null;
  } catch {
    parsed = null;
  }
  if (status >= 500) {
    const code = parsed?.code;
    const compatDetail = req.compat && typeof parsed?.detail === "string";
    const tolerated = (status === 503 && (code === "unavailable" || compatDetail)) ||
      (status === 504 && code === "outcome_unknown");
    if (tolerated) unavailable = true;
    else problems.push(`status ${status}`);
  }
  if (status >= 400 && req.method !== "HEAD") {
    const isProblem = type === "application/problem+json" && parsed !== null &&
      typeof parsed.type === "string" && parsed.type.startsWith("urn:momd:problem:") &&
      typeof parsed.title === "string" && parsed.status === status &&
      typeof parsed.detail === "string";
    const isCompat = req.compat && type === "application/json" && parsed !== null &&
      (typeof parsed.detail === "string" || Array.isArray(parsed.detail));
    if (!isProblem && !isCompat) {
      problems.push(`error body is not ${req.compat ? "FastAPI-shaped or " : ""}problem+json`);
    }
  }
  if (body.includes(forbidden.znodeRoot)) problems.push("body names a znode");
  for (const address of req.addressesAllowed ? [] : forbidden.grpc) {
    if (body.includes(address)) problems.push(`body names the gRPC address ${address}`);
  }
  if (/\n\s+at \S/.test(body) || /^\s*at .+:\d+:\d+\)?$/m.test(body)) {
    problems.push("body holds a stack");
  }
  if (body.includes("Error:")) problems.push("body holds 'Error:'");
  return { problems, unavailable };
}
