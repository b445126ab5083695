import type { Store } from "./store.ts";
import type { Notifier } from "./notifier.ts";

/** Topics: placeholder, replaced by the topic implementation. */
export class TopicService {
  constructor(readonly store: Store, readonly notifier: Notifier) {}
}
