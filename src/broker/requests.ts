import type { Store } from "./store.ts";
import type { Notifier } from "./notifier.ts";
import { type EntityRef, NAME_PATTERN } from "./keys.ts";
import { BrokerError } from "./errors.ts";
import { type Caller, iso } from "./entities.ts";
import { encodeAttributes, messageSize, type OutgoingMessage, QUEUE_LIMITS } from "./queues.ts";
import { fromBase64url, IdMaker, MESSAGE_ID_PATTERN, toBase64url } from "./receipts.ts";

/**
 * Request/reply with deadlines over queues. A request is a message sent to a service's queue
 * whose TTL is the request's deadline; it carries its task id, deadline and reply address as
 * reserved attributes. Workers are the queue's ordinary consumers: receive, work, reply, ack.
 * The task record (requester, deadline, reply) lives beside the queue's messages, so one script
 * sends the message and creates the task atomically, and the task id names the queue.
 */

/** The states of a task; each means one thing. */
export type TaskStatus =
  /** The request message waits in the queue (ready, delayed, or awaiting redelivery). */
  | "pending"
  /** A worker holds the message (delivered, its visibility deadline not passed). */
  | "in_progress"
  /** A worker replied with a result. */
  | "completed"
  /** A worker replied with an error; or the message was dead-lettered or removed unanswered. */
  | "failed"
  /** The deadline passed: without a reply, or with one that is no longer kept. */
  | "expired"
  /** No such task, ended more than an hour ago, or not the caller's. */
  | "unknown";

/** What the API shows of a task. */
export interface TaskView {
  taskId: string;
  status: TaskStatus;
  /** When the task expires (absent when unknown). */
  deadline?: string;
  /** The worker's result (completed). */
  result?: string;
  /** The worker's error, or why the request failed without a reply (failed). */
  error?: string;
  /** When the reply came (completed, or failed by a worker's reply). */
  completedAt?: string;
}

/** A request to send. */
export interface OutgoingRequest {
  body: string;
  /** The requester's own attributes (names starting with `momd-` are reserved). */
  attributes?: Record<string, string>;
  /** Seconds from now to the deadline; default 60. */
  timeoutSeconds?: number;
  /** Same id within the queue's de-duplication window: the original request's task. */
  dedupId?: string;
}

/** Options of waiting for a task. */
export interface TaskWaitOptions {
  /** Long poll: wait up to this long while the task is pending or in progress. */
  waitSeconds?: number;
  /** Ends the wait (the client went away). */
  signal?: AbortSignal;
}

/** A worker's answer: exactly one of result and error. */
export type TaskReply = { result: string; error?: undefined } | {
  error: string;
  result?: undefined;
};

/** Limits of request/reply; the schemas and the documentation use these numbers. */
export const REQUEST_LIMITS = {
  /** Longest timeout (1 hour); also capped by the queue's retention. */
  timeoutSecondsMax: 3600,
  /** Timeout of a request that names none. */
  timeoutSecondsDefault: 60,
  /** Longest wait for a reply (on a request or a task read). */
  waitSecondsMax: QUEUE_LIMITS.waitSecondsMax,
  /** How long a task stays known after its deadline (then it is unknown). */
  tombstoneSeconds: 3600,
} as const;

/** Attributes every request message carries (names starting with `momd-` are reserved). */
export const REQUEST_ATTRIBUTES = {
  /** The task id (the correlation id): a worker replies to it. */
  taskId: "momd-task-id",
  /** The deadline, ISO 8601: a reply after it is refused. */
  deadline: "momd-deadline",
  /** The reply address: the path to POST the reply to. */
  replyTo: "momd-reply-to",
} as const;

/** Prefix of the attribute names reserved for the broker. */
export const RESERVED_ATTRIBUTE_PREFIX = "momd-";

const TASK_ID = /^[A-Za-z0-9_-]{1,300}$/;

/** The task id the API shows: base64url of `<queue>.<message id>`, so any node finds the queue. */
export function encodeTaskId(queue: string, messageId: string): string {
  return toBase64url(new TextEncoder().encode(`${queue}.${messageId}`));
}

/** The queue and message id of a task id, or null when it is not one of ours. */
export function decodeTaskId(taskId: string): { queue: string; messageId: string } | null {
  if (!TASK_ID.test(taskId)) return null;
  const text = fromBase64url(taskId);
  if (text === null) return null;
  const dot = text.lastIndexOf(".");
  if (dot < 0) return null;
  const queue = text.slice(0, dot);
  const messageId = text.slice(dot + 1);
  if (!NAME_PATTERN.test(queue) || !MESSAGE_ID_PATTERN.test(messageId)) return null;
  // One spelling per task: the canonical encoding only (no padding, no stray bits).
  if (encodeTaskId(queue, messageId) !== taskId) return null;
  return { queue, messageId };
}

/** Whether a task may still change by itself (a long poll waits while it is). */
function open(status: TaskStatus): boolean {
  return status === "pending" || status === "in_progress";
}

interface StoredTask {
  s: Exclude<TaskStatus, "unknown"> | "unknown";
  d?: number;
  p?: string;
  c?: number;
}

/**
 * Request/reply over queues. Thin like QueueService: it checks what the schemas cannot, makes
 * the message id, and runs one script per step (queue_request, queue_reply, queue_task); the
 * rules live in the scripts. Waiting for a reply is woken by the reply on this node.
 */
export class RequestService {
  readonly #ids = new IdMaker();

  constructor(readonly store: Store, readonly notifier: Notifier) {}

  #ref(queue: string): EntityRef {
    return { type: "queue", name: queue };
  }

  #taskKey(taskId: string): string {
    return `task:${taskId}`;
  }

  #parse(taskId: string): { queue: string; messageId: string } {
    const ref = decodeTaskId(taskId);
    if (!ref) throw new BrokerError("invalid", "not a task id of this broker");
    return ref;
  }

  /**
   * Sends a request to the queue and, with `waitSeconds`, waits for its reply. Answers the task
   * as it stands at the end: completed, failed or expired if it ended, else pending or
   * in_progress.
   */
  async request(
    caller: Caller,
    queue: string,
    req: OutgoingRequest,
    opts: TaskWaitOptions = {},
  ): Promise<TaskView> {
    const timeout = req.timeoutSeconds ?? REQUEST_LIMITS.timeoutSecondsDefault;
    if (!Number.isInteger(timeout) || timeout < 1 || timeout > REQUEST_LIMITS.timeoutSecondsMax) {
      throw new BrokerError(
        "invalid",
        `timeoutSeconds must be an integer of 1-${REQUEST_LIMITS.timeoutSecondsMax}`,
      );
    }
    for (const name of Object.keys(req.attributes ?? {})) {
      if (name.startsWith(RESERVED_ATTRIBUTE_PREFIX)) {
        throw new BrokerError(
          "invalid",
          `attribute '${name}': names starting with '${RESERVED_ATTRIBUTE_PREFIX}' are reserved`,
        );
      }
    }
    const now = this.store.now();
    const messageId = this.#ids.next(now);
    const taskId = encodeTaskId(queue, messageId);
    const deadline = now + timeout * 1000;
    const message: OutgoingMessage = {
      body: req.body,
      attributes: {
        ...req.attributes,
        [REQUEST_ATTRIBUTES.taskId]: taskId,
        [REQUEST_ATTRIBUTES.deadline]: iso(deadline),
        [REQUEST_ATTRIBUTES.replyTo]: `/v1/tasks/${taskId}/reply`,
      },
    };
    // The queue's size limit applies to what the requester sends, not to the broker's own
    // attributes (a few hundred bytes at most).
    const size = messageSize(req);
    if (size > QUEUE_LIMITS.messageBytesMax) {
      throw new BrokerError(
        "too_large",
        `the request has ${size} bytes; no queue accepts more than ${QUEUE_LIMITS.messageBytesMax}`,
      );
    }
    const res = await this.store.change<{ id: string; duplicate: boolean; deadline: number }>(
      this.#ref(queue),
      "queue_request",
      [
        caller.username,
        caller.role,
        "",
        message.body,
        encodeAttributes(message.attributes),
        deadline,
        messageId,
        size,
        req.dedupId ?? "",
      ],
    );
    if (!res.duplicate) this.notifier.notify(`queue:${queue}`); // as QueueService.send does
    return await this.task(caller, encodeTaskId(queue, res.id), opts);
  }

  async #read(caller: Caller, taskId: string): Promise<TaskView> {
    const { queue, messageId } = this.#parse(taskId);
    const res = await this.store.read<StoredTask>(this.#ref(queue), "queue_task", [
      caller.username,
      caller.role,
      "",
      messageId,
    ]);
    const view: TaskView = { taskId, status: res.s };
    if (res.d !== undefined) view.deadline = iso(res.d);
    if (res.s === "completed") view.result = res.p ?? "";
    if (res.s === "failed") view.error = res.p ?? "";
    if (res.c !== undefined) view.completedAt = iso(res.c);
    return view;
  }

  /**
   * The task as the caller may see it (`unknown` unless it is the caller's or the caller is an
   * admin). With `waitSeconds`, waits while it is pending or in progress: woken by the reply,
   * and at the deadline.
   */
  async task(caller: Caller, taskId: string, opts: TaskWaitOptions = {}): Promise<TaskView> {
    this.#parse(taskId);
    return await this.notifier.poll(
      this.#taskKey(taskId),
      async () => {
        const view = await this.#read(caller, taskId);
        // Open until the deadline (a few ms later on the store's clock) at the latest.
        const dueAt = Date.parse(view.deadline!) + 5;
        return { value: view, ready: !open(view.status), dueAt };
      },
      {
        waitMs: (opts.waitSeconds ?? 0) * 1000,
        signal: opts.signal,
        now: () => this.store.now(),
      },
    );
  }

  /**
   * Stores a worker's reply (the caller needs the receive right on the task's queue). Refused
   * with `conflict` once the deadline has passed or when the task already has a reply.
   */
  async reply(
    caller: Caller,
    taskId: string,
    reply: TaskReply,
  ): Promise<{ taskId: string; status: "completed" | "failed"; completedAt: string }> {
    const { queue, messageId } = this.#parse(taskId);
    const hasResult = typeof reply.result === "string";
    if (hasResult === (typeof reply.error === "string")) {
      throw new BrokerError("invalid", "a reply carries exactly one of result and error");
    }
    const res = await this.store.change<{ deadline: number; completed: number }>(
      this.#ref(queue),
      "queue_reply",
      [
        caller.username,
        caller.role,
        "",
        messageId,
        hasResult ? "c" : "f",
        (hasResult ? reply.result : reply.error) ?? "",
        taskId,
      ],
    );
    this.notifier.notify(this.#taskKey(taskId));
    return {
      taskId,
      status: hasResult ? "completed" : "failed",
      completedAt: iso(res.completed),
    };
  }
}
