/**
 * What the broker counts as it serves: per queue and subscription, messages sent, received
 * (redelivered: received again after an earlier attempt), acknowledged and released. The
 * services report here and the metrics (src/metrics/) keep the counts; the broker does not
 * know how they are exposed.
 */

/** A message event of a queue or subscription. */
export type MessageEvent = "sent" | "received" | "redelivered" | "acked" | "nacked";

/** Every message event (a queue's or subscription's counts are forgotten event by event). */
export const MESSAGE_EVENTS: readonly MessageEvent[] = [
  "sent",
  "received",
  "redelivered",
  "acked",
  "nacked",
];

/** Where the services report message events (`n` > 0). */
export interface MessageCounters {
  queue(name: string, event: MessageEvent, n: number): void;
  published(topic: string, n: number): void;
  subscription(topic: string, sub: string, event: MessageEvent, n: number): void;
  /** The entity (or subscription) was deleted: its counts are dropped. */
  forget(entity: { queue: string } | { topic: string; subscription?: string }): void;
}

/** Counts nothing (tests, tools). */
export const NO_COUNTERS: MessageCounters = {
  queue() {},
  published() {},
  subscription() {},
  forget() {},
};

/** Counts `received` and, among them, `redelivered` (an attempt after the first). */
export function countDeliveries(
  deliveries: readonly { deliveryCount: number }[],
  report: (event: MessageEvent, n: number) => void,
): void {
  if (deliveries.length === 0) return;
  report("received", deliveries.length);
  let again = 0;
  for (const d of deliveries) if (d.deliveryCount > 1) again++;
  if (again > 0) report("redelivered", again);
}

/** Counts the receipts that settled (ok) as `event`. */
export function countSettled(
  results: readonly { ok: boolean }[],
  event: MessageEvent,
  report: (event: MessageEvent, n: number) => void,
): void {
  let n = 0;
  for (const r of results) if (r.ok) n++;
  if (n > 0) report(event, n);
}
