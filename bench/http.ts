/**
 * HTTP for the benchmark. Two clients with one interface:
 *
 * - `raw` (the default): HTTP/1.1 over `Deno.connect`, one keep-alive connection per worker, the
 *   request bytes encoded once where they do not change, and just enough parsing of the answer
 *   (status, Content-Length or chunked). On these machines it drives about three times as many
 *   requests per CPU second as `fetch`, which is what keeps the load generator off the critical
 *   path (see bench/README.md, "Is the load generator the bottleneck?").
 * - `fetch`: Deno's fetch with keep-alive (its own connection pool), for comparison.
 *
 * Only plain `http://` URLs: the benchmark talks to loopback addresses only.
 *
 * Like momd's client (src/client/http.ts), both send owner hints unless told not to: the node
 * an answer about a queue or topic names in `Momd-Owner` goes back as `Momd-Route` with the next
 * requests about it, and NGINX takes those straight to the owner.
 */
import { entityPathOf } from "../src/client/http.ts";

/** A non-expected HTTP answer. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly method: string,
    readonly path: string,
    body: string,
  ) {
    super(`${method} ${path}: ${status} ${body.slice(0, 200)}`);
    this.name = "HttpError";
  }
}

/** Which HTTP client a benchmark uses. */
export type ClientKind = "raw" | "fetch";

/** An encoded request that can be sent many times (re-encoded when its owner hint changes). */
export interface PreparedRequest {
  method: string;
  path: string;
  bytes: Uint8Array;
  body?: string;
  /** `/v1/queues/<name>` or `/v1/topics/<name>`: the key of its owner hint. */
  entity?: string;
  /** The owner hint encoded in `bytes`. */
  route?: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A momd API (or something answering like it) at a base URL. */
export class Api {
  readonly base: string;
  readonly kind: ClientKind;
  token = "";
  readonly #host: string;
  readonly #hostname: string;
  readonly #port: number;
  readonly #idle: RawConnection[] = [];
  readonly #all = new Set<RawConnection>();
  #fetchClient: Deno.HttpClient | undefined;
  /** Entity path -> its owner, as the last answer said; undefined: no owner hints. */
  readonly #owners?: Map<string, string>;

  constructor(base: string, kind: ClientKind = "raw", opts: { ownerHints?: boolean } = {}) {
    this.base = base.replace(/\/$/, "");
    this.kind = kind;
    if (opts.ownerHints ?? true) this.#owners = new Map();
    const url = new URL(this.base);
    if (url.protocol !== "http:") throw new Error(`only http:// URLs are supported: ${base}`);
    this.#host = url.host;
    this.#hostname = url.hostname;
    this.#port = Number(url.port || 80);
  }

  /** The owner hint held for a path's queue or topic. */
  ownerOf(path: string): string | undefined {
    const entity = entityPathOf(path);
    return entity ? this.#owners?.get(entity) : undefined;
  }

  /** Encodes a request once (headers, token and body) for `send`. */
  prepare(method: string, path: string, body?: string | unknown): PreparedRequest {
    const payload = body === undefined
      ? undefined
      : typeof body === "string"
      ? body
      : JSON.stringify(body);
    const entity = this.#owners && entityPathOf(path);
    const route = entity ? this.#owners!.get(entity) : undefined;
    let head = `${method} ${path} HTTP/1.1\r\nhost: ${this.#host}\r\n`;
    if (this.token) head += `authorization: Bearer ${this.token}\r\n`;
    if (route) head += `momd-route: ${route}\r\n`;
    let bytes: Uint8Array;
    if (payload !== undefined) {
      const b = encoder.encode(payload);
      head += `content-type: application/json\r\ncontent-length: ${b.length}\r\n\r\n`;
      const h = encoder.encode(head);
      bytes = new Uint8Array(h.length + b.length);
      bytes.set(h);
      bytes.set(b, h.length);
    } else {
      bytes = encoder.encode(head + "content-length: 0\r\n\r\n");
    }
    return { method, path, bytes, body: payload, entity, route };
  }

  /** Sends a prepared request; resolves with the answer's text, or throws HttpError. */
  async send(req: PreparedRequest, expect: readonly number[] = [200, 201]): Promise<string> {
    if (req.entity && this.#owners!.get(req.entity) !== req.route) {
      Object.assign(req, this.prepare(req.method, req.path, req.body));
    }
    let status: number;
    let text: string;
    let owner: string | null | undefined;
    if (this.kind === "fetch") {
      const headers: Record<string, string> = {};
      if (this.token) headers.authorization = `Bearer ${this.token}`;
      if (req.route) headers["momd-route"] = req.route;
      if (req.body !== undefined) headers["content-type"] = "application/json";
      this.#fetchClient ??= Deno.createHttpClient({ poolIdleTimeout: 60_000 });
      const res = await fetch(this.base + req.path, {
        method: req.method,
        headers,
        body: req.body,
        client: this.#fetchClient,
      });
      status = res.status;
      owner = res.headers.get("momd-owner");
      text = await res.text();
    } else {
      let conn = this.#idleConnection() ?? await this.#open();
      let answer: RawAnswer;
      try {
        answer = await conn.exchange(req.bytes);
      } catch (err) {
        this.#drop(conn);
        // A kept-alive connection the server closed while it was idle: the request never
        // reached it, so send it once more on a new connection (as browsers do).
        if (!(err instanceof StaleConnection)) throw err;
        conn = await this.#open();
        try {
          answer = await conn.exchange(req.bytes);
        } catch (again) {
          this.#drop(conn);
          throw again;
        }
      }
      if (answer.keepAlive) this.#idle.push(conn);
      else this.#drop(conn);
      status = answer.status;
      owner = answer.owner;
      text = decoder.decode(answer.body);
    }
    if (req.entity && owner) this.#owners!.set(req.entity, owner);
    if (!expect.includes(status)) throw new HttpError(status, req.method, req.path, text);
    return text;
  }

  /** Sends a request; resolves with the parsed JSON answer (null when empty). */
  async call(
    method: string,
    path: string,
    body?: string | unknown,
    expect: readonly number[] = [200, 201],
  ): Promise<unknown> {
    const text = await this.send(this.prepare(method, path, body), expect);
    return text === "" ? null : JSON.parse(text);
  }

  /** Logs in and keeps the token for later requests (prepare again after this). */
  async login(username: string, password: string): Promise<void> {
    this.token = "";
    const res = await this.call("POST", "/v1/auth/token", { username, password }, [200]) as {
      token: string;
    };
    this.token = res.token;
  }

  /** The Server header of a GET (NGINX says "nginx"; a node says nothing). */
  async serverHeader(path = "/healthz"): Promise<string> {
    const res = await fetch(this.base + path);
    await res.body?.cancel();
    return res.headers.get("server") ?? "";
  }

  /** Closes every connection. */
  close(): void {
    for (const c of this.#all) c.close();
    this.#all.clear();
    this.#idle.length = 0;
    this.#fetchClient?.close();
    this.#fetchClient = undefined;
  }

  /** An idle pooled connection, leaving out those idle long enough for the server to close. */
  #idleConnection(): RawConnection | undefined {
    const now = performance.now();
    while (this.#idle.length > 0) {
      const conn = this.#idle.pop()!;
      if (now - conn.lastUsed < IDLE_MS) return conn;
      this.#drop(conn);
    }
    return undefined;
  }

  async #open(): Promise<RawConnection> {
    const tcp = await Deno.connect({ hostname: this.#hostname, port: this.#port });
    tcp.setNoDelay(true);
    const conn = new RawConnection(tcp);
    this.#all.add(conn);
    return conn;
  }

  #drop(conn: RawConnection): void {
    conn.close();
    this.#all.delete(conn);
  }
}

interface RawAnswer {
  status: number;
  body: Uint8Array;
  keepAlive: boolean;
  /** The Momd-Owner header. */
  owner?: string;
}

/** Pooled connections idle longer than this are closed rather than reused. */
const IDLE_MS = 20_000;

/** The server closed a reused connection before answering anything. */
class StaleConnection extends Error {}

const CR = 13;
const LF = 10;

/** One keep-alive HTTP/1.1 connection; one exchange at a time. */
class RawConnection {
  readonly #tcp: Deno.TcpConn;
  #buf = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;
  #closed = false;
  #exchanges = 0;
  /** `performance.now()` of the end of the last exchange. */
  lastUsed = performance.now();

  constructor(tcp: Deno.TcpConn) {
    this.#tcp = tcp;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#tcp.close();
    } catch {
      // already closed
    }
  }

  async exchange(request: Uint8Array): Promise<RawAnswer> {
    const reused = this.#exchanges++ > 0;
    let headEnd: number;
    try {
      let written = 0;
      while (written < request.length) {
        written += await this.#tcp.write(request.subarray(written));
      }
      headEnd = await this.#until(() => this.#find(CR, LF, CR, LF));
    } catch (err) {
      if (reused && this.#start === this.#end) throw new StaleConnection((err as Error).message);
      throw err;
    }
    const head = decoder.decode(this.#buf.subarray(this.#start, headEnd));
    this.#start = headEnd + 4;
    const lines = head.split("\r\n");
    const status = Number(lines[0].split(" ")[1]);
    let length = -1;
    let chunked = false;
    let keepAlive = true;
    let owner: string | undefined;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i];
      const colon = line.indexOf(":");
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === "content-length") length = Number(value);
      else if (name === "transfer-encoding") chunked = value.toLowerCase().includes("chunked");
      else if (name === "connection") keepAlive = !value.toLowerCase().includes("close");
      else if (name === "momd-owner") owner = value;
    }
    let body: Uint8Array;
    if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
      body = new Uint8Array(0);
    } else if (chunked) {
      body = await this.#readChunked();
    } else if (length >= 0) {
      await this.#until(() => this.#end - this.#start >= length ? 0 : -1);
      body = this.#buf.slice(this.#start, this.#start + length);
      this.#start += length;
    } else {
      throw new Error("HTTP answer without Content-Length or chunked encoding");
    }
    this.lastUsed = performance.now();
    return { status, body, keepAlive, owner };
  }

  async #readChunked(): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let total = 0;
    while (true) {
      const lineEnd = await this.#until(() => this.#find(CR, LF));
      const size = parseInt(decoder.decode(this.#buf.subarray(this.#start, lineEnd)), 16);
      this.#start = lineEnd + 2;
      if (size === 0) {
        // No trailers are expected: the last chunk is followed by an empty line.
        await this.#until(() => this.#end - this.#start >= 2 ? 0 : -1);
        this.#start += 2;
        break;
      }
      await this.#until(() => this.#end - this.#start >= size + 2 ? 0 : -1);
      parts.push(this.#buf.slice(this.#start, this.#start + size));
      total += size;
      this.#start += size + 2;
    }
    const body = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      body.set(p, at);
      at += p.length;
    }
    return body;
  }

  /** Index where `bytes` start in the unread data, or -1. */
  #find(...bytes: number[]): number {
    const buf = this.#buf;
    const last = this.#end - bytes.length;
    outer: for (let i = this.#start; i <= last; i++) {
      for (let j = 0; j < bytes.length; j++) if (buf[i + j] !== bytes[j]) continue outer;
      return i;
    }
    return -1;
  }

  /** Reads until `found()` is not -1; returns its value. */
  async #until(found: () => number): Promise<number> {
    while (true) {
      const at = found();
      if (at >= 0) return at;
      if (this.#start === this.#end) {
        this.#start = this.#end = 0;
      } else if (this.#end === this.#buf.length) {
        // Compact, and grow when the unread data fills the buffer.
        const unread = this.#buf.subarray(this.#start, this.#end);
        const next = unread.length > this.#buf.length / 2
          ? new Uint8Array(this.#buf.length * 2)
          : this.#buf;
        next.set(unread);
        this.#buf = next;
        this.#start = 0;
        this.#end = unread.length;
      }
      const n = await this.#tcp.read(this.#buf.subarray(this.#end));
      if (n === null) throw new Error("connection closed by the server");
      this.#end += n;
    }
  }
}
