/**
 * The frames of momd's streaming protocol v1 (WebSocket, one JSON object per text frame) as the
 * client writes and reads them (docs/streaming.md). What the server writes comes as types from
 * its zod schemas (src/api/stream/protocol.ts, `import type` only). The constants live here, and
 * the server imports them, so that no server module ends up in the client's JavaScript.
 */

/** The subprotocol both sides speak; `bearer.<token>` beside it carries the token. */
export const STREAM_SUBPROTOCOL = "momd.v1";

/** Largest frame the server takes; a larger one closes the socket with CLOSE.tooBig. */
export const MAX_FRAME_BYTES = 1024 * 1024;

/** Most credits one permit frame adds, and most a consumer may ask for up front. */
export const MAX_PERMITS = 1000;

/** Longest `context` a client may attach to a frame (the server echoes it). */
export const MAX_CONTEXT_CHARS = 128;

/** Close codes of the protocol. */
export const CLOSE = {
  normal: 1000,
  /** The node is shutting down: connect again (NGINX picks another node). */
  goingAway: 1001,
  /** A frame larger than MAX_FRAME_BYTES. */
  tooBig: 1009,
  /** The token is no longer valid (expired, user deleted, password changed). */
  unauthorized: 4401,
  /** The caller lost its right on the queue or topic. */
  forbidden: 4403,
  /** The queue, topic or subscription was deleted. */
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
