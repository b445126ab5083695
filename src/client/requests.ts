import { type Caller, type SignalOption, WAIT_SECONDS_MAX } from "./caller.ts";
import { path } from "./http.ts";
import type { ReplyInput, ReplyOutput, RequestInput, Task } from "./types.ts";

/** The attribute of a request message that carries its task id (the correlation id). */
export const TASK_ID_ATTRIBUTE = "momd-task-id";

/** Options of `client.request`. */
export interface RequestOptions extends SignalOption {
  /** Seconds from now to the request's deadline (1-3600, default 60). */
  timeoutSeconds?: number;
  /**
   * How long `request` waits for the reply, in seconds (default: until the deadline). When the
   * task has not ended by then, the pending task is returned: read it later with
   * `client.tasks.get(taskId)`.
   */
  waitSeconds?: number;
  /** The requester's own attributes (names starting with `momd-` are reserved). */
  attributes?: Record<string, string>;
  /**
   * De-duplication id. With one, a request that got no answer is retried (the queue stores it
   * once); without one it is never retried, since a retry could ask the service twice.
   */
  dedupId?: string;
}

/** The outcome of `client.request`: the task, ended or (waited less than the deadline) not. */
export type TaskResult = Task;

const ENDED = new Set<Task["status"]>(["completed", "failed", "expired"]);

/** Request/reply calls (`client.tasks`): send a request, read a task, reply to one. */
export class RequestsApi {
  readonly #call: Caller;

  constructor(call: Caller) {
    this.#call = call;
  }

  /**
   * Sends a request to a service's queue; waits up to `waitSeconds` (0-20) for the reply.
   * Retried only with a `dedupId`.
   */
  async send(service: string, request: RequestInput & SignalOption): Promise<Task> {
    const { signal, ...body } = request;
    return (await this.#call<Task>({
      method: "POST",
      path: path`/v1/queues/${service}/requests`,
      body,
      retry: body.dedupId !== undefined,
      signal,
      extraTimeMs: (body.waitSeconds ?? 0) * 1000,
    })).body;
  }

  /** A task's status and result (the requester or an admin); waits while it is open. */
  async get(taskId: string, options: { waitSeconds?: number } & SignalOption = {}): Promise<Task> {
    return (await this.#call<Task>({
      method: "GET",
      path: path`/v1/tasks/${taskId}`,
      query: { waitSeconds: options.waitSeconds },
      retry: true,
      signal: options.signal,
      extraTimeMs: (options.waitSeconds ?? 0) * 1000,
    })).body;
  }

  /**
   * A worker's reply to a task, by task id or by the request message itself (its
   * `momd-task-id` attribute). Reply before acking the message; 409 means the deadline passed
   * or the task has a reply already: just ack.
   */
  async reply(
    task: string | { attributes: Record<string, string> },
    reply: ReplyInput,
  ): Promise<ReplyOutput> {
    const taskId = typeof task === "string" ? task : task.attributes[TASK_ID_ATTRIBUTE];
    if (!taskId) throw new TypeError(`the message has no ${TASK_ID_ATTRIBUTE} attribute`);
    return (await this.#call<ReplyOutput>({
      method: "POST",
      path: path`/v1/tasks/${taskId}/reply`,
      body: reply,
      retry: true, // a repeat of a stored reply is refused (409), never stored twice
    })).body;
  }

  /**
   * Sends a request and waits for its reply: a long-polled request, then long-polled reads of
   * the task until it ends or `waitSeconds` (default: the timeout) has passed.
   */
  async request(service: string, payload: unknown, options: RequestOptions = {}): Promise<Task> {
    const timeoutSeconds = options.timeoutSeconds ?? 60;
    const waitMs = (options.waitSeconds ?? timeoutSeconds) * 1000;
    const until = Date.now() + waitMs;
    const slice = () =>
      Math.max(0, Math.min(WAIT_SECONDS_MAX, Math.ceil((until - Date.now()) / 1000)));
    let task = await this.send(service, {
      body: typeof payload === "string" ? payload : JSON.stringify(payload),
      attributes: options.attributes,
      timeoutSeconds,
      dedupId: options.dedupId,
      waitSeconds: slice(),
      signal: options.signal,
    });
    while (!ENDED.has(task.status) && Date.now() < until) {
      task = await this.get(task.taskId, { waitSeconds: slice(), signal: options.signal });
    }
    return task;
  }
}
