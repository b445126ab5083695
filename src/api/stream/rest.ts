/**
 * How a stream socket does its work: by calling the app's own REST routes in-process, with the
 * socket's token and client address. Every operation so gets the same authentication, rights,
 * validation, rate rules and owner routing (a forward to the owner) as the REST call it stands
 * for, and refusals come back as the same problem documents.
 */

/** The app's fetch (Hono's `app.fetch`): a request and the env Deno.serve passed. */
export type AppFetch = (request: Request, env?: unknown) => Response | Promise<Response>;

/** What an in-process REST call answered. */
export interface RestAnswer {
  status: number;
  /** The parsed JSON body (a problem document when status >= 400); null when there is none. */
  // deno-lint-ignore no-explicit-any
  body: any;
  /** Retry-After, in seconds, when the answer carries one. */
  retryAfterSeconds?: number;
}

/** Options of an InProcessRest. */
export interface InProcessRestOptions {
  /** Origin of the upgrade request (`http://host:port`): the in-process requests use it too. */
  origin: string;
  /** Headers every call carries: the token, the client address the proxy gave. */
  headers: Record<string, string>;
  /**
   * The env of the upgrade request (Deno.serve's connection info): the client-address
   * middleware reads the TCP peer from it, as for any request on that connection.
   */
  env: unknown;
}

/** The REST calls of one socket, made in-process. */
export class InProcessRest {
  readonly #fetch: AppFetch;
  readonly #origin: string;
  readonly #headers: Headers;
  readonly #env: unknown;

  constructor(fetch: AppFetch, opts: InProcessRestOptions) {
    this.#fetch = fetch;
    this.#origin = opts.origin;
    // Built once: a Request copies a Headers object faster than it converts a record.
    this.#headers = new Headers({ ...opts.headers, "content-type": "application/json" });
    this.#env = opts.env;
  }

  /**
   * Calls `path` (already percent-encoded) with a JSON body; `signal` ends a long poll. A call
   * that throws (the signal aborted) answers status 0.
   */
  async call(
    method: "GET" | "POST",
    path: string,
    body?: string,
    signal?: AbortSignal,
  ): Promise<RestAnswer> {
    let res: Response;
    try {
      res = await this.#fetch(
        new Request(this.#origin + path, { method, headers: this.#headers, body, signal }),
        this.#env,
      );
    } catch (err) {
      return { status: 0, body: { detail: err instanceof Error ? err.message : String(err) } };
    }
    const text = await res.text();
    let parsed: unknown = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = { detail: text.slice(0, 200) };
      }
    }
    const retry = res.headers.get("retry-after");
    const retryAfterSeconds = retry !== null && /^\d+$/.test(retry) ? Number(retry) : undefined;
    return { status: res.status, body: parsed, retryAfterSeconds };
  }
}
