// The console's only way to the broker: the public REST API the command line uses, with the
// same tokens. The token lives in sessionStorage: it stays with this tab and ends with it.

const SESSION_KEY = "momd.console.session";
const TIMEOUT_MS = 15_000;

/** A refusal of the API, carrying its problem document (title, detail, code). */
export class ApiError extends Error {
  constructor(status, problem) {
    const title = problem?.title ?? `HTTP ${status}`;
    const detail = problem?.detail ?? "";
    super(detail ? `${title}: ${detail}` : title);
    this.name = "ApiError";
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.code = problem?.code;
  }
}

/** The logged-in user of this tab ({token, username, role, expiresAt}) or null. */
export function loadSession() {
  try {
    const session = JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? "null");
    return session && typeof session.token === "string" ? session : null;
  } catch {
    return null;
  }
}

function saveSession(session) {
  if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  else sessionStorage.removeItem(SESSION_KEY);
}

async function parse(res) {
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    // NGINX or something else in front answered with a page of its own.
    return { title: `HTTP ${res.status}`, detail: text.slice(0, 200) };
  }
}

/**
 * A client of the REST API. `onUnauthorized` runs when a call answers 401 with a token (expired,
 * or revoked by a password change or a deletion): the session is gone, back to the login page.
 */
export class Api {
  constructor({ onUnauthorized }) {
    this.onUnauthorized = onUnauthorized;
    this.session = loadSession();
  }

  /** Exchanges a username and password for a token, then learns the role; throws ApiError. */
  async login(username, password) {
    const issued = await this.#fetch("POST", "/v1/auth/token", { username, password }, null);
    const me = await this.#fetch("GET", "/v1/auth/me", undefined, issued.body.token);
    this.session = {
      token: issued.body.token,
      expiresAt: issued.body.expiresAt,
      username: me.body.username,
      role: me.body.role,
    };
    saveSession(this.session);
    return this.session;
  }

  logout() {
    this.session = null;
    saveSession(null);
  }

  get isAdmin() {
    return this.session?.role === "admin";
  }

  /** A call with the session's token; the parsed body, or an ApiError. */
  async call(method, path, body) {
    return (await this.callFull(method, path, body)).body;
  }

  /** Like call, with the response's headers too. */
  async callFull(method, path, body) {
    if (!this.session) {
      this.onUnauthorized?.();
      throw new ApiError(401, { title: "Unauthorized", detail: "log in first" });
    }
    try {
      return await this.#fetch(method, path, body, this.session.token);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        this.logout();
        this.onUnauthorized?.(err);
      }
      throw err;
    }
  }

  /** A probe without a token (/healthz, /readyz): {status, body}, never throws on a status. */
  async probe(path) {
    const res = await fetch(path, { signal: AbortSignal.timeout(TIMEOUT_MS), cache: "no-store" });
    return { status: res.status, body: await parse(res) };
  }

  async #fetch(method, path, body, token) {
    const headers = { accept: "application/json" };
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (err) {
      const detail = err?.name === "TimeoutError"
        ? `no answer within ${TIMEOUT_MS / 1000} s`
        : "the broker could not be reached";
      throw new ApiError(0, { title: "Network error", detail });
    }
    const parsed = await parse(res);
    if (!res.ok) throw new ApiError(res.status, parsed);
    return { status: res.status, headers: res.headers, body: parsed };
  }
}

/** Every item of a paged listing (`next` cursors), at most `max`. */
export async function listAll(api, path, key, max = 5000) {
  const items = [];
  let after = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api.call(
      "GET",
      `${path}${sep}limit=1000${after === null ? "" : `&after=${encodeURIComponent(after)}`}`,
    );
    items.push(...page[key]);
    after = page.next;
  } while (after !== null && items.length < max);
  return items;
}

/** Runs `fn` over `items`, `limit` at a time; results in order. */
export async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** A path segment of a name. */
export function seg(name) {
  return encodeURIComponent(name);
}
