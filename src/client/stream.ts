/**
 * The client's side of a momd stream: opening a WebSocket to a producer or consumer endpoint
 * with the token as a subprotocol (`bearer.<token>`, which browsers allow where they do not
 * allow headers), finding out why an upgrade was refused, and reading and writing JSON frames.
 * Web-standard APIs only (WebSocket, fetch, URL).
 */
import { retryAfterMs } from "./backoff.ts";
import { MomdConnectionError, MomdError } from "./errors.ts";
import type { RetryOptions } from "./http.ts";
import {
  CLOSE,
  type ErrorFrame,
  MAX_FRAME_BYTES,
  type ServerFrame,
  STREAM_SUBPROTOCOL,
} from "./stream_protocol.ts";

/** Opens a WebSocket; `headers` are extras only runtimes that allow them send (Deno). */
export type WebSocketFactory = (
  url: string,
  protocols: string[],
  headers: Record<string, string>,
) => WebSocket;

/** What a stream needs from its client. */
export interface StreamDeps {
  /** Base URL of the API (`http://...` or `https://...`). */
  url: string;
  /** The token to connect with (renewed by the client when it holds credentials). */
  token(): Promise<string | undefined>;
  /** Logs in again after the server refused the token as expired; false when it cannot. */
  renewToken(): Promise<boolean>;
  /**
   * When (epoch ms) the token a connect gets now will be renewed, for a client that can renew
   * it; undefined otherwise. The server ends a stream whose token expired (4401).
   */
  renewAt?(): number | undefined;
  /** The owner hint the client holds for a path's queue or topic. */
  ownerHint(path: string): string | undefined;
  fetch: typeof fetch;
  webSocket: WebSocketFactory;
  /** How long a connect may take, in ms. */
  timeoutMs: number;
  retry: Required<RetryOptions>;
  random: () => number;
}

/**
 * The server has no stream endpoint here (an older momd: 404 without a momd code, 405), or
 * something between refuses WebSocket upgrades (426): use the REST calls instead.
 */
export class MomdStreamUnsupportedError extends Error {
  /** The status the plain request to the endpoint got (404, 405, 426, ...). */
  readonly status: number;

  constructor(status: number, request: string) {
    super(`${request}: the server does not take streams here (HTTP ${status})`);
    this.name = "MomdStreamUnsupportedError";
    this.status = status;
  }
}

/** True in Deno, whose WebSocket takes request headers. */
function takesHeaders(): boolean {
  return typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";
}

/** The default factory: the global WebSocket; headers only where the runtime takes them. */
export function defaultWebSocket(
  url: string,
  protocols: string[],
  headers: Record<string, string>,
): WebSocket {
  if (takesHeaders() && Object.keys(headers).length > 0) {
    // Deno's WebSocket takes `{ protocols, headers }` in place of the protocol list.
    return new WebSocket(url, { protocols, headers } as unknown as string[]);
  }
  return new WebSocket(url, protocols);
}

/** A MomdError from an error frame (the REST problem's fields). */
export function errorFromFrame(frame: ErrorFrame, request: string): MomdError {
  const { type: _type, context: _context, retryAfterSeconds, ...fields } = frame;
  const status = Number(frame.status) || 500;
  return new MomdError({
    ...fields,
    type: `urn:momd:problem:${frame.code ?? status}`,
    title: typeof frame.title === "string" ? frame.title : `HTTP ${status}`,
    detail: typeof frame.detail === "string" ? frame.detail : "",
    status,
  }, { request, retryAfterSeconds });
}

/** A MomdError made on the client's side (a close code, a frame too large to send). */
export function localError(
  status: number,
  code: string,
  detail: string,
  request: string,
): MomdError {
  return new MomdError(
    { type: `urn:momd:problem:${code}`, title: code, status, detail, code },
    { request },
  );
}

/** How a stream's end is to be taken. */
export interface CloseVerdict {
  /** The stream cannot come back: fail what waits on it. */
  fatal: boolean;
  /** The token expired and the client may log in again, then reconnect. */
  renew: boolean;
  error: MomdError | MomdConnectionError;
}

/**
 * What a close code means: 4401 (token no longer valid), 4403 (forbidden) and 4404 (the queue or
 * topic is gone) end the stream, as protocol errors (1002, 1003, 1007, 1008) do; anything else
 * (1001 node shutting down, 1006 connection lost, 1011, 1012, ...) is worth a reconnect.
 */
export function closeVerdict(
  code: number,
  reason: string,
  lastError: ErrorFrame | undefined,
  request: string,
): CloseVerdict {
  const why = reason ? `: ${reason}` : "";
  if (code === CLOSE.unauthorized) {
    const error = lastError?.status === 401
      ? errorFromFrame(lastError, request)
      : localError(401, "token_expired", `the server ended the stream (4401${why})`, request);
    return { fatal: true, renew: error.code === "token_expired", error };
  }
  if (code === CLOSE.forbidden) {
    const error = lastError?.status === 403
      ? errorFromFrame(lastError, request)
      : localError(403, "forbidden", `the server ended the stream (4403${why})`, request);
    return { fatal: true, renew: false, error };
  }
  if (code === CLOSE.gone) {
    const error = lastError?.status === 404
      ? errorFromFrame(lastError, request)
      : localError(404, "not_found", `the server ended the stream (4404${why})`, request);
    return { fatal: true, renew: false, error };
  }
  if ([1002, 1003, 1007, 1008].includes(code)) {
    const error = localError(
      400,
      "invalid",
      `the server ended the stream (${code}${why})`,
      request,
    );
    return { fatal: true, renew: false, error };
  }
  return {
    fatal: false,
    renew: false,
    error: new MomdConnectionError(`${request}: the stream closed (${code}${why})`, { request }),
  };
}

/** Whether a refused connect is an expired token, which one renewal may fix. */
export function tokenExpired(err: unknown): boolean {
  return err instanceof MomdError && err.status === 401 && err.code === "token_expired";
}

/**
 * Whether a failed connect may be tried again: the connection failed, the server was busy or
 * unavailable (5xx, 429), or it answered that it has no streams after one was open (a node of
 * an older version in a rolling upgrade). Anything else is a refusal for good.
 */
export function transientConnectError(err: unknown, everOpen: boolean): boolean {
  return err instanceof MomdConnectionError ||
    (err instanceof MomdError && (err.status >= 500 || err.status === 429)) ||
    (err instanceof MomdStreamUnsupportedError && everOpen);
}

/** Bytes of a frame's JSON text (exact only when it might be near the limit). */
export function frameTooLarge(text: string): boolean {
  if (text.length * 3 <= MAX_FRAME_BYTES) return false;
  return new TextEncoder().encode(text).length > MAX_FRAME_BYTES;
}

/**
 * What a FrameSocket tells its owner. `onOpen` runs as the socket opens, before any frame can
 * arrive (the owner sets its state there); `onFrame` and `onClose` only after it.
 */
export interface FrameHandlers {
  onOpen(socket: FrameSocket): void;
  onFrame(frame: ServerFrame, socket: FrameSocket): void;
  onClose(code: number, reason: string, socket: FrameSocket): void;
}

/** One stream socket: JSON frames out, parsed frames and the close in. */
export class FrameSocket {
  readonly #ws: WebSocket;
  #closed = false;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
  }

  /**
   * Opens a stream to `path` (with `query`), resolving once the server accepted it. A refused
   * upgrade is asked about with a plain GET of the same URL, whose answer says why: a
   * MomdError (401, 403, 404 not_found, 400, 429, 5xx), a MomdStreamUnsupportedError, or a
   * MomdConnectionError when nothing answers.
   */
  static async open(
    deps: StreamDeps,
    path: string,
    query: Record<string, string | number | undefined>,
    handlers: FrameHandlers,
  ): Promise<FrameSocket> {
    const token = await deps.token();
    const search = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) search.set(k, String(v));
    const qs = search.size > 0 ? `?${search}` : "";
    const base = deps.url.replace(/\/+$/, "");
    const wsUrl = base.replace(/^http/, "ws") + path + qs;
    const protocols = [STREAM_SUBPROTOCOL, ...(token ? [`bearer.${token}`] : [])];
    const hint = deps.ownerHint(path);
    const request = `GET ${path} (stream)`;
    let ws: WebSocket;
    try {
      ws = deps.webSocket(wsUrl, protocols, hint ? { "momd-route": hint } : {});
    } catch (err) {
      throw new MomdConnectionError(`${request}: cannot open a WebSocket to ${wsUrl}: ${err}`, {
        request,
        cause: err,
      });
    }
    const socket = new FrameSocket(ws);
    let open = false;
    const opened = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        resolve(false);
        try {
          ws.close();
        } catch {
          // not open yet
        }
      }, deps.timeoutMs);
      ws.onopen = () => {
        clearTimeout(timer);
        open = true;
        handlers.onOpen(socket);
        resolve(true);
      };
      ws.onerror = () => {}; // the close event follows
      ws.onmessage = (e: MessageEvent) => {
        if (typeof e.data !== "string") return;
        let frame: ServerFrame;
        try {
          frame = JSON.parse(e.data);
        } catch {
          return; // not the protocol: nothing to do with it
        }
        if (frame && typeof frame === "object" && typeof frame.type === "string") {
          handlers.onFrame(frame, socket);
        }
      };
      ws.onclose = (e: CloseEvent) => {
        clearTimeout(timer);
        socket.#closed = true;
        if (open) handlers.onClose(e.code, e.reason, socket);
        else resolve(false);
      };
    });
    if (!opened) throw await probe(deps, base + path + qs, token, request);
    return socket;
  }

  /** True once the socket closed (either side). */
  get closed(): boolean {
    return this.#closed || this.#ws.readyState >= 2;
  }

  /** Bytes written but not yet sent (back-pressure). */
  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  /** Writes one frame (its JSON text); false when the socket is closing or closed. */
  send(text: string): boolean {
    if (this.closed) return false;
    this.#ws.send(text);
    return true;
  }

  /** Closes the socket (the owner's onClose still runs). */
  close(code: number = CLOSE.normal, reason = ""): void {
    if (this.#ws.readyState >= 2) return;
    try {
      this.#ws.close(code, reason);
    } catch {
      // already closing
    }
  }
}

/** Why an upgrade was refused: the endpoint's answer to a plain GET. */
async function probe(
  deps: StreamDeps,
  url: string,
  token: string | undefined,
  request: string,
): Promise<Error> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), deps.timeoutMs);
  let res: Response;
  let text: string;
  try {
    const headers: Record<string, string> = { accept: "application/json" };
    if (token) headers.authorization = `Bearer ${token}`;
    res = await deps.fetch(url, { headers, signal: controller.signal });
    text = await res.text();
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return new MomdConnectionError(`${request}: cannot reach ${deps.url}: ${why}`, {
      request,
      cause: err,
    });
  } finally {
    clearTimeout(timer);
  }
  let body: Record<string, unknown> | undefined;
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed === "object") body = parsed;
  } catch {
    // not JSON (a proxy's page)
  }
  const code = typeof body?.code === "string" ? body.code : undefined;
  // No such route (an older momd answers an unknown path 404 without a code), no such method,
  // or the upgrade got lost on the way (426, or a 2xx to a request that should have upgraded).
  if (
    (res.status === 404 && code === undefined) || res.status === 405 || res.status === 426 ||
    res.ok
  ) {
    return new MomdStreamUnsupportedError(res.status, request);
  }
  const retryAfter = retryAfterMs(res.headers.get("retry-after"), Date.now());
  const detail = typeof body?.detail === "string"
    ? body.detail
    : text.trim().slice(0, 200) || `HTTP ${res.status}`;
  return new MomdError({
    type: "about:blank",
    title: res.statusText || `HTTP ${res.status}`,
    ...body,
    detail,
    status: res.status,
  }, {
    request,
    retryAfterSeconds: retryAfter === undefined ? undefined : retryAfter / 1000,
  });
}
