import type { Problem } from "./types.ts";

/**
 * The server refused a request: an HTTP error answer. Carries the problem+json fields
 * (`type`, `title`, `status`, `detail`, `code`) and, on 429/503, the `Retry-After` delay.
 */
export class MomdError extends Error {
  /** HTTP status (400-599). */
  readonly status: number;
  /** Problem type URI. */
  readonly type: string;
  /** Short summary of the status. */
  readonly title: string;
  /** What went wrong, for a human. */
  readonly detail: string;
  /** Stable machine-readable code (`not_found`, `forbidden`, `token_expired`, ...), when given. */
  readonly code?: string;
  /** Seconds the server asked to wait (Retry-After), when given. */
  readonly retryAfterSeconds?: number;
  /** The whole problem document, extra fields (e.g. `issues`) included. */
  readonly problem: Problem & Record<string, unknown>;
  /** Method and path of the refused request. */
  readonly request: string;

  constructor(
    problem: Problem & Record<string, unknown>,
    options: { request: string; retryAfterSeconds?: number },
  ) {
    super(`${problem.status} ${problem.code ?? problem.title}: ${problem.detail}`);
    this.name = "MomdError";
    this.status = problem.status;
    this.type = problem.type;
    this.title = problem.title;
    this.detail = problem.detail;
    this.code = problem.code;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.problem = problem;
    this.request = options.request;
  }
}

/**
 * No answer from the server: connection refused or reset, DNS failure, or no answer within the
 * request timeout (after the retries the request allowed).
 */
export class MomdConnectionError extends Error {
  /** Method and path of the request. */
  readonly request: string;

  constructor(message: string, options: { request: string; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.name = "MomdConnectionError";
    this.request = options.request;
  }
}

/**
 * A send of more messages than one request carries failed part way: the requests before the
 * failure were stored (each all or none, in order), the rest was not sent. `sent` holds the
 * outcomes of the stored messages (the first `sent.length` of the input); `cause` is the
 * failure (a MomdError or a MomdConnectionError). Only thrown once something was stored: a
 * failure of the first request throws that failure itself.
 */
export class MomdPartialSendError<T = unknown> extends Error {
  /** Outcomes of the messages stored before the failure, in input order. */
  readonly sent: T[];

  constructor(sent: T[], total: number, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super(`${sent.length} of ${total} message(s) stored before a failure: ${why}`, { cause });
    this.name = "MomdPartialSendError";
    this.sent = sent;
  }
}
