import type { Answer, CallSpec } from "./http.ts";
import type { ReceiptLike } from "./types.ts";

/** A request as the API groups make it; the client adds the token. */
export type RequestSpec = Omit<CallSpec, "token">;

/** Sends an authenticated request (the client's, with token renewal). */
export type Caller = <T>(spec: RequestSpec) => Promise<Answer<T>>;

/** Options every call that may wait accepts. */
export interface SignalOption {
  /** Aborts the request (the promise rejects with the signal's reason). */
  signal?: AbortSignal;
}

/** Receipt strings of receipts or deliveries. */
export function receiptsOf(items: readonly ReceiptLike[]): string[] {
  return items.map((r) => typeof r === "string" ? r : r.receipt);
}

/** Most messages in one send or publish, and receipts in one ack (the server's limits). */
export const BATCH_MAX = 100;

/** Longest long poll the server allows, in seconds. */
export const WAIT_SECONDS_MAX = 20;
