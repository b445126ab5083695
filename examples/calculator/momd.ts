/**
 * The little of momd's REST API the calculator needs, with plain fetch: log in (again when the
 * token expires), create a queue, send a request, read a task, receive, reply, ack and nack.
 */

/** A refusal from momd (its problem+json), or an unexpected answer. */
export class MomdError extends Error {
  constructor(readonly status: number, readonly code: string, readonly detail: string) {
    super(`momd answered ${status} ${code}: ${detail}`);
    this.name = "MomdError";
  }
}

/** A task as momd shows it (GET /v1/tasks/{taskId}). */
export interface Task {
  taskId: string;
  status: "pending" | "in_progress" | "completed" | "failed" | "expired";
  deadline: string;
  result?: string;
  error?: string;
  completedAt?: string;
}

/** A delivered message (POST /v1/queues/{name}/receive). */
export interface Delivery {
  id: string;
  body: string;
  attributes: Record<string, string>;
  receipt: string;
  deliveryCount: number;
}

/** Where momd is and who to be there. */
export interface MomdOptions {
  url: string;
  username: string;
  password: string;
}

/** A momd user's session over REST. */
export class MomdClient {
  readonly #opts: MomdOptions;
  #token: string | undefined;

  constructor(opts: MomdOptions) {
    this.#opts = { ...opts, url: opts.url.replace(/\/+$/, "") };
  }

  async #login(): Promise<string> {
    const res = await fetch(`${this.#opts.url}/v1/auth/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username: this.#opts.username, password: this.#opts.password }),
    });
    const body = await res.json();
    if (res.status !== 200) {
      throw new MomdError(res.status, body.code ?? "error", body.detail ?? "login failed");
    }
    return this.#token = body.token as string;
  }

  /** One call; logs in first and again once on a 401. Throws MomdError unless 2xx. */
  async call(
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
    // deno-lint-ignore no-explicit-any
  ): Promise<{ status: number; body: any }> {
    for (let attempt = 0;; attempt++) {
      const token = this.#token ?? await this.#login();
      const res = await fetch(`${this.#opts.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
      const text = await res.text();
      const parsed = text ? JSON.parse(text) : null;
      if (res.status === 401 && attempt === 0) {
        this.#token = undefined; // expired or revoked: log in again
        continue;
      }
      if (res.status >= 400) {
        throw new MomdError(res.status, parsed?.code ?? "error", parsed?.detail ?? text);
      }
      return { status: res.status, body: parsed };
    }
  }

  /** Creates the queue unless it exists (with any configuration). */
  async ensureQueue(name: string, config: Record<string, unknown> = {}): Promise<void> {
    try {
      await this.call("PUT", `/v1/queues/${name}`, config);
    } catch (err) {
      if (!(err instanceof MomdError && err.code === "already_exists")) throw err;
    }
  }

  /** Sends a request; `ended` when the task ended within `waitSeconds`. */
  async request(
    queue: string,
    req: { body: string; timeoutSeconds: number; waitSeconds: number },
  ): Promise<{ ended: boolean; task: Task }> {
    const res = await this.call("POST", `/v1/queues/${queue}/requests`, req);
    return { ended: res.status === 200, task: res.body };
  }

  /** The task, or null when it is unknown (404). */
  async task(taskId: string, waitSeconds = 0): Promise<Task | null> {
    try {
      return (await this.call("GET", `/v1/tasks/${taskId}?waitSeconds=${waitSeconds}`)).body;
    } catch (err) {
      if (err instanceof MomdError && err.status === 404) return null;
      throw err;
    }
  }

  /** Receives up to `max` messages, waiting up to `waitSeconds` for one. */
  async receive(
    queue: string,
    opts: { max: number; waitSeconds: number; signal?: AbortSignal },
  ): Promise<Delivery[]> {
    const body = { max: opts.max, waitSeconds: opts.waitSeconds };
    return (await this.call("POST", `/v1/queues/${queue}/receive`, body, opts.signal)).body
      .messages;
  }

  /** Posts a task's reply: a result, or an error. */
  async reply(taskId: string, reply: { result: string } | { error: string }): Promise<void> {
    await this.call("POST", `/v1/tasks/${taskId}/reply`, reply);
  }

  /** Acknowledges a delivery (the message is done). */
  async ack(queue: string, receipt: string): Promise<void> {
    await this.call("POST", `/v1/queues/${queue}/ack`, { receipts: [receipt] });
  }

  /** Releases a delivery for another attempt after `delaySeconds`. */
  async nack(queue: string, receipt: string, delaySeconds: number): Promise<void> {
    await this.call("POST", `/v1/queues/${queue}/nack`, { receipts: [receipt], delaySeconds });
  }
}
