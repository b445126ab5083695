/**
 * What producer and consumer sockets share: reading frames (size, JSON, type), writing frames,
 * error frames from REST problems, the close codes, and watching the token while the socket is
 * open.
 */
import { TokenError, type TokenService } from "../../auth/tokens.ts";
import type { RateLimiter } from "../../auth/rate_limit.ts";
import type { Principal } from "../../auth/users.ts";
import { problemBody } from "../problem.ts";
import type { HubMember, StreamHub } from "./hub.ts";
import { CLOSE, type ErrorFrame, MAX_CONTEXT_CHARS, MAX_FRAME_BYTES } from "./protocol.ts";
import type { InProcessRest, RestAnswer } from "./rest.ts";
import type { Logger } from "../../log/logger.ts";

/** How often an open socket checks that its token still holds (expiry, user deleted). */
export const TOKEN_CHECK_MS = 2_000;

/** What every stream socket is given. */
export interface SessionDeps {
  socket: WebSocket;
  /** The socket's REST calls (in-process, with its token and client address). */
  rest: InProcessRest;
  /** Who opened the socket (its token, verified at the upgrade). */
  principal: Principal;
  token: string;
  tokens: Pick<TokenService, "verify">;
  limiter: RateLimiter;
  hub: StreamHub;
  /**
   * REST path (percent-encoded) of what the socket serves: `/v1/queues/{name}`,
   * `/v1/topics/{name}` (a producer) or `/v1/topics/{name}/subscriptions/{sub}` (a consumer).
   */
  base: string;
  kind: "queue" | "topic";
  /** Largest REST request body the node takes (MOMD_MAX_BODY_BYTES). */
  maxBodyBytes: number;
  /** Token check interval (default TOKEN_CHECK_MS). */
  tokenCheckMs?: number;
  /** Where failures go, with the upgrade request's id. */
  log: Logger;
}

/** The close code that ends a stream refused with `status` for good, if any. */
export function closeCodeOf(status: number): number | undefined {
  if (status === 401) return CLOSE.unauthorized;
  if (status === 403) return CLOSE.forbidden;
  if (status === 404) return CLOSE.gone;
  return undefined;
}

/** An error frame from a problem document (its `type` URN gives way to the frame's type). */
export function errorFrame(
  problem: Record<string, unknown>,
  context?: string,
  retryAfterSeconds?: number,
): ErrorFrame {
  const { type: _urn, ...fields } = problem;
  const frame: ErrorFrame = {
    type: "error",
    ...(context !== undefined ? { context } : {}),
    status: 500,
    title: "Error",
    detail: "",
    ...fields,
  } as ErrorFrame;
  if (retryAfterSeconds !== undefined) frame.retryAfterSeconds = retryAfterSeconds;
  return frame;
}

/** The error frame of a REST call's refusal. */
export function answerError(answer: RestAnswer, context?: string): ErrorFrame {
  const body = answer.body && typeof answer.body === "object" && !Array.isArray(answer.body)
    ? answer.body
    : {};
  const problem = typeof body.status === "number" && typeof body.title === "string"
    ? body
    : problemBody(
      answer.status === 0 ? 503 : answer.status,
      typeof body.detail === "string" ? body.detail : `HTTP ${answer.status}`,
      { code: answer.status === 0 ? "unavailable" : undefined },
    );
  return errorFrame(problem, context, answer.retryAfterSeconds);
}

/** The frame's context when it has a usable one (to name it in an error frame). */
export function contextOf(frame: unknown): string | undefined {
  if (!frame || typeof frame !== "object") return undefined;
  const context = (frame as { context?: unknown }).context;
  return typeof context === "string" && context.length <= MAX_CONTEXT_CHARS ? context : undefined;
}

/** A 400 error frame: a frame that is not the protocol. */
export function badFrame(detail: string, context?: string, extra = {}): ErrorFrame {
  return errorFrame(problemBody(400, detail, { code: "invalid", ...extra }), context);
}

/** The 400 error frame of a frame its schema refused (the first issue in the detail). */
export function invalidFrame(
  issues: readonly { path: PropertyKey[]; message: string }[],
  context?: string,
): ErrorFrame {
  const list = issues.map((i) => ({ path: i.path.map(String).join("."), message: i.message }));
  const first = list[0];
  const detail = first ? `${first.path ? `${first.path}: ` : ""}${first.message}` : "bad frame";
  return badFrame(detail, context, { issues: list });
}

const utf8 = new TextEncoder();

/** One open stream socket: reads and checks frames, writes frames, ends with a close code. */
export abstract class StreamSession implements HubMember {
  protected readonly deps: SessionDeps;
  readonly done: Promise<void>;
  #finish!: () => void;
  #ended = false;
  #tokenTimer?: ReturnType<typeof setInterval>;

  constructor(deps: SessionDeps) {
    this.deps = deps;
    this.done = new Promise((resolve) => this.#finish = resolve);
    const socket = deps.socket;
    socket.binaryType = "arraybuffer";
    deps.hub.add(this);
    socket.onopen = () => {
      if (this.#ended) return;
      this.#tokenTimer = setInterval(() => this.#checkToken(), deps.tokenCheckMs ?? TOKEN_CHECK_MS);
      this.start();
    };
    socket.onmessage = (e: MessageEvent) => this.#onMessage(e.data);
    socket.onerror = () => {}; // the close event follows
    socket.onclose = () => this.#stop();
  }

  /** True once the socket is closing or closed (nothing is written any more). */
  get ended(): boolean {
    return this.#ended;
  }

  /** Starts the work of an open socket (a consumer's first receives). */
  protected abstract start(): void;

  /** Handles one frame: a JSON object with a string `type`. */
  protected abstract handle(frame: Record<string, unknown>): void;

  /** Releases what the socket holds, once it closed (best effort). */
  protected abstract cleanup(): Promise<void>;

  /** Writes a frame (nothing once the socket is closing). */
  protected write(frame: object): void {
    this.writeText(JSON.stringify(frame));
  }

  /** Writes a frame's JSON text (nothing once the socket is closing). */
  protected writeText(text: string): void {
    if (this.#ended || this.deps.socket.readyState !== WebSocket.OPEN) return;
    this.deps.socket.send(text);
  }

  /**
   * Ends the stream for good after a refusal that no frame can change (401, 403, 404): the
   * error frame, then the close code that names it.
   */
  protected fail(frame: ErrorFrame): void {
    this.write(frame);
    this.end(closeCodeOf(frame.status) ?? CLOSE.normal, frame.code ?? frame.title);
  }

  /** Closes the socket with `code` and releases what it holds. */
  end(code: number, reason: string): void {
    if (this.deps.socket.readyState < WebSocket.CLOSING) {
      try {
        this.deps.socket.close(code, reason.slice(0, 120));
      } catch {
        // closed under us
      }
    }
    this.#stop();
  }

  #stop(): void {
    if (this.#ended) return;
    this.#ended = true;
    clearInterval(this.#tokenTimer);
    this.cleanup()
      .catch((err) => this.deps.log.warn({ err }, `stream ${this.deps.base}: releasing failed`))
      .finally(() => {
        this.deps.hub.delete(this);
        this.#finish();
      });
  }

  #onMessage(data: unknown): void {
    if (this.#ended) return;
    if (typeof data !== "string") {
      const size = data instanceof ArrayBuffer ? data.byteLength : 0;
      if (size > MAX_FRAME_BYTES) return this.end(CLOSE.tooBig, "frame larger than 1 MiB");
      return this.handleBad(badFrame("binary frames are not part of the protocol: send JSON text"));
    }
    if (data.length * 3 > MAX_FRAME_BYTES && utf8.encode(data).length > MAX_FRAME_BYTES) {
      return this.end(CLOSE.tooBig, "frame larger than 1 MiB");
    }
    let frame: unknown;
    try {
      frame = JSON.parse(data);
    } catch {
      return this.handleBad(badFrame("the frame is not JSON"));
    }
    if (!frame || typeof frame !== "object" || Array.isArray(frame)) {
      return this.handleBad(badFrame("a frame is a JSON object"));
    }
    const type = (frame as { type?: unknown }).type;
    if (typeof type !== "string") {
      return this.handleBad(badFrame("type: a frame needs a string type", contextOf(frame)));
    }
    this.handle(frame as Record<string, unknown>);
  }

  /** Answers a frame that is not the protocol (a producer answers it in turn with its sends). */
  protected handleBad(frame: ErrorFrame): void {
    this.write(frame);
  }

  async #checkToken(): Promise<void> {
    try {
      await this.deps.tokens.verify(this.deps.token);
    } catch (err) {
      if (!(err instanceof TokenError) || this.#ended) return;
      this.fail(errorFrame(problemBody(401, err.message, { code: `token_${err.reason}` })));
    }
  }
}
