/**
 * The client's transport: one JSON request over `fetch`, with a timeout per attempt, retries of
 * 502/503/504 and network errors (exponential backoff with full jitter, honouring Retry-After)
 * when the caller says the request is safe to repeat, retries of any request refused with a
 * momd 503 (which means "not applied"), and problem+json answers turned into MomdError. Web-standard APIs only (fetch, AbortController, URL), for Deno, Node 18+ and
 * browsers.
 */
import { fullJitter, retryAfterMs, sleep } from "./backoff.ts";
import { MomdConnectionError, MomdError } from "./errors.ts";
import type { Problem } from "./types.ts";

/** How failed requests that are safe to repeat are retried. */
export interface RetryOptions {
  /** Retries after the first attempt (default 4; 0 turns retries off). */
  retries?: number;
  /** First backoff ceiling in ms (default 200); it doubles on every retry. */
  baseDelayMs?: number;
  /** Largest backoff ceiling in ms (default 5000). */
  maxDelayMs?: number;
  /** A Retry-After longer than this (default 30000 ms) is not waited for: the error is thrown. */
  maxRetryAfterMs?: number;
}

/** What the transport tells about a retry it is about to make. */
export interface RetryInfo {
  request: string;
  /** 1 for the first retry. */
  retry: number;
  delayMs: number;
  /** The status that caused it, or the network error. */
  reason: number | Error;
}

/** Options of the transport. */
export interface TransportOptions {
  /** Base URL of the API, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** Timeout of one attempt in ms, long-poll time not included (default 30000). */
  timeoutMs?: number;
  retry?: RetryOptions;
  /** Called before each retry (logging, metrics). */
  onRetry?: (info: RetryInfo) => void;
  /** Source of randomness for the jitter (tests). */
  random?: () => number;
  /**
   * Send owner hints (default true): the client remembers the node each answer about a queue or
   * topic names in `Momd-Owner` and sends it as `Momd-Route` with later requests about it, so
   * NGINX takes them straight to the owner instead of a node that would forward them.
   */
  ownerHints?: boolean;
}

/** How many queues and topics the client remembers an owner for. */
const MAX_OWNER_HINTS = 10_000;

/** `/v1/queues/<name>` or `/v1/topics/<name>` of a path, the key of an owner hint. */
export function entityPathOf(path: string): string | undefined {
  return /^\/v1\/(?:queues|topics)\/[^/?]+/.exec(path)?.[0];
}

/** One request. */
export interface CallSpec {
  method: "GET" | "PUT" | "POST" | "PATCH" | "DELETE";
  /** Path under the base URL, already encoded (see `path`). */
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  token?: string;
  /** True when repeating the request cannot do harm (idempotent, or de-duplicated). */
  retry: boolean;
  signal?: AbortSignal;
  /** Extra time for this attempt beyond the timeout (a long poll's wait), in ms. */
  extraTimeMs?: number;
}

/** A successful answer. */
export interface Answer<T> {
  status: number;
  body: T;
  headers: Headers;
}

const RETRY_STATUSES = new Set([502, 503, 504]);
/**
 * Refusals that mean "not applied" (momd's 503s, NGINX's when no node was reached): any request
 * may be sent again, whether or not it is safe to repeat.
 */
const NOT_APPLIED = new Set(["unavailable", "store_lost"]);

/** Builds a path from literal parts and values, encoding the values. */
export function path(strings: TemplateStringsArray, ...values: (string | number)[]): string {
  let out = strings[0];
  values.forEach((v, i) => out += encodeURIComponent(String(v)) + strings[i + 1]);
  return out;
}

class AttemptTimeout extends Error {}

function parseBody<T>(text: string, label: string): T {
  if (!text) return null as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new MomdConnectionError(
      `${label}: the answer is not JSON (is the URL a momd API?): ${text.slice(0, 80)}`,
      { request: label },
    );
  }
}

/** Sends requests to one momd API. */
export class Transport {
  readonly url: string;
  readonly #fetch: typeof fetch;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #baseMs: number;
  readonly #capMs: number;
  readonly #maxRetryAfterMs: number;
  readonly #onRetry?: (info: RetryInfo) => void;
  readonly #random: () => number;
  /** Entity path -> the node that owns it, as the last answer about it said; undefined: off. */
  readonly #owners?: Map<string, string>;

  constructor(options: TransportOptions) {
    this.url = options.url.replace(/\/+$/, "");
    // Called unbound: some fetch implementations insist on `this` being the global object.
    const f = options.fetch ?? globalThis.fetch;
    this.#fetch = (input, init) => f(input, init);
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#retries = options.retry?.retries ?? 4;
    this.#baseMs = options.retry?.baseDelayMs ?? 200;
    this.#capMs = options.retry?.maxDelayMs ?? 5_000;
    this.#maxRetryAfterMs = options.retry?.maxRetryAfterMs ?? 30_000;
    this.#onRetry = options.onRetry;
    this.#random = options.random ?? Math.random;
    if (options.ownerHints ?? true) this.#owners = new Map();
  }

  /** The owner hint the client holds for a path's queue or topic (tests, diagnostics). */
  ownerHint(path: string): string | undefined {
    const key = entityPathOf(path);
    return key === undefined ? undefined : this.#owners?.get(key);
  }

  #forgetOwner(path: string): void {
    const key = entityPathOf(path);
    if (key !== undefined) this.#owners?.delete(key);
  }

  #learnOwner(key: string, res: Response): void {
    const owners = this.#owners!;
    const owner = res.headers.get("momd-owner");
    if (owner === null) {
      if (res.status === 404) owners.delete(key); // deleted: nothing to route to
      return;
    }
    if (owners.get(key) === owner) return;
    owners.delete(key);
    if (owners.size >= MAX_OWNER_HINTS) owners.delete(owners.keys().next().value!);
    owners.set(key, owner);
  }

  /** Sends one request, retrying it when allowed; throws MomdError or MomdConnectionError. */
  async call<T>(spec: CallSpec): Promise<Answer<T>> {
    const label = `${spec.method} ${spec.path}`;
    for (let attempt = 0;; attempt++) {
      let failure: MomdError | MomdConnectionError;
      try {
        return await this.#attempt<T>(spec, label);
      } catch (err) {
        if (!(err instanceof MomdError || err instanceof MomdConnectionError)) throw err;
        failure = err;
      }
      const notApplied = failure instanceof MomdError && failure.status === 503 &&
        NOT_APPLIED.has(String(failure.problem.code));
      const retryable = failure instanceof MomdConnectionError ||
        RETRY_STATUSES.has(failure.status);
      if (retryable && !(failure instanceof MomdError && failure.status === 503)) {
        // The hinted owner may be the node that stopped answering: let NGINX choose.
        this.#forgetOwner(spec.path);
      }
      const canRetry = (spec.retry || notApplied) && attempt < this.#retries;
      if (!canRetry || !retryable) throw failure;
      let delayMs = fullJitter(attempt, {
        baseMs: this.#baseMs,
        capMs: this.#capMs,
        random: this.#random,
      });
      if (failure instanceof MomdError && failure.retryAfterSeconds !== undefined) {
        const asked = failure.retryAfterSeconds * 1000;
        if (asked > this.#maxRetryAfterMs) throw failure;
        // Honour the server's delay; a little jitter keeps clients from coming back together.
        delayMs = asked + fullJitter(0, { baseMs: 100, capMs: 100, random: this.#random });
      }
      this.#onRetry?.({
        request: label,
        retry: attempt + 1,
        delayMs,
        reason: failure instanceof MomdError ? failure.status : failure,
      });
      await sleep(delayMs, spec.signal);
    }
  }

  async #attempt<T>(spec: CallSpec, label: string): Promise<Answer<T>> {
    const url = new URL(this.url + spec.path);
    for (const [k, v] of Object.entries(spec.query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    const headers: Record<string, string> = { accept: "application/json" };
    if (spec.token) headers.authorization = `Bearer ${spec.token}`;
    const entityPath = this.#owners && entityPathOf(spec.path);
    const hint = entityPath && this.#owners!.get(entityPath);
    if (hint) headers["momd-route"] = hint;
    let body: string | undefined;
    if (spec.body !== undefined) {
      body = JSON.stringify(spec.body);
      headers["content-type"] = "application/json";
    }

    // One controller aborts on the caller's signal or on this attempt's timeout.
    const controller = new AbortController();
    const timeoutMs = this.#timeoutMs + (spec.extraTimeMs ?? 0);
    const timer = setTimeout(() => controller.abort(new AttemptTimeout()), timeoutMs);
    const onAbort = () => controller.abort(spec.signal?.reason);
    if (spec.signal?.aborted) onAbort();
    spec.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const res = await this.#fetch(url, {
        method: spec.method,
        headers,
        body,
        signal: controller.signal,
      });
      const text = await res.text();
      if (entityPath) this.#learnOwner(entityPath, res);
      if (res.ok) {
        return { status: res.status, body: parseBody<T>(text, label), headers: res.headers };
      }
      throw new MomdError(problemOf(res, text), {
        request: label,
        retryAfterSeconds: retryAfterSecondsOf(res.headers),
      });
    } catch (err) {
      if (err instanceof MomdError || err instanceof MomdConnectionError) throw err;
      if (spec.signal?.aborted) throw spec.signal.reason;
      if (controller.signal.reason instanceof AttemptTimeout) {
        throw new MomdConnectionError(
          `${label}: no answer from ${this.url} within ${timeoutMs} ms`,
          {
            request: label,
            cause: err,
          },
        );
      }
      const why = err instanceof Error ? err.message : String(err);
      throw new MomdConnectionError(`${label}: cannot reach ${this.url}: ${why}`, {
        request: label,
        cause: err,
      });
    } finally {
      clearTimeout(timer);
      spec.signal?.removeEventListener("abort", onAbort);
    }
  }
}

function retryAfterSecondsOf(headers: Headers): number | undefined {
  const ms = retryAfterMs(headers.get("retry-after"), Date.now());
  return ms === undefined ? undefined : ms / 1000;
}

/** The problem document of an error answer; one is made up when the body is not one. */
function problemOf(res: Response, text: string): Problem & Record<string, unknown> {
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed === "object" && typeof parsed.detail === "string") {
      return { type: "about:blank", title: res.statusText, ...parsed, status: res.status };
    }
  } catch {
    // not JSON (a proxy's error page): fall through
  }
  const detail = text.trim().slice(0, 200) || res.statusText || `HTTP ${res.status}`;
  return {
    type: "about:blank",
    title: res.statusText || `HTTP ${res.status}`,
    status: res.status,
    detail,
  };
}
