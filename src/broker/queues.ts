import type { Store } from "./store.ts";
import type { Notifier } from "./notifier.ts";

/** Queues: placeholder, replaced by the queue implementation. */
export class QueueService {
  constructor(readonly store: Store, readonly notifier: Notifier) {}
}
