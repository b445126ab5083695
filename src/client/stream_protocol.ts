/**
 * The frames of momd's streaming protocol v1 (WebSocket, one JSON object per text frame) as the
 * client writes and reads them (docs/streaming.md). What the server writes comes as types from
 * its zod schemas (src/api/stream/protocol.ts, `import type` only); the constants are repeated
 * here so that no server module ends up in the client's JavaScript.
 */

/** The subprotocol both sides speak; `bearer.<token>` beside it carries the token. */
export const STREAM_SUBPROTOCOL = "momd.v1";

/** Largest frame the server takes (larger ones close the socket with 1009). */
export const MAX_FRAME_BYTES = 1024 * 1024;

/** Most credits one permit frame may add, and most a consumer may ask for up front. */
export const MAX_PERMITS = 1000;

/** Longest `context` the server echoes. */
export const MAX_CONTEXT_CHARS = 128;

/** Close codes of the protocol. */
export const CLOSE = {
  normal: 1000,
  goingAway: 1001,
  tooBig: 1009,
  unauthorized: 4401,
  forbidden: 4403,
  gone: 4404,
} as const;

/** A queue producer's send. */
export interface QueueSendFrame {
  type: "send";
  context: string;
  body: string;
  attributes?: Record<string, string>;
  delaySeconds?: number;
  ttlSeconds?: number;
  dedupId?: string;
}

/** A topic producer's send. */
export interface TopicSendFrame {
  type: "send";
  context: string;
  body: string;
  attributes?: Record<string, string>;
  key?: string;
}

/** A consumer's frames: credits, and the settling of its deliveries. */
export type ConsumerFrame =
  | { type: "permit"; n: number }
  | { type: "ack"; receipts: string[]; context?: string }
  | { type: "nack"; receipts: string[]; delaySeconds?: number; context?: string }
  | { type: "visibility"; receipts: string[]; visibilitySeconds: number; context?: string };

// What the server writes: its own schemas' types (type-only: nothing of the server is bundled).
export type {
  ErrorFrame,
  QueueMessageFrame,
  ResultsFrame,
  SentFrame,
  ServerFrame,
  TopicMessageFrame,
} from "../api/stream/protocol.ts";
