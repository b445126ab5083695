/** Every way a broker operation can be refused. The API maps each code to HTTP in one place. */
export const BROKER_ERROR_CODES = [
  "not_found", // entity, subscription or user does not exist
  "already_exists", // create with a different configuration, or a taken name
  "conflict", // state does not allow the operation now
  "forbidden", // the caller lacks a right; detail names it
  "invalid", // input passed the schema but breaks a rule (e.g. delay above the limit)
  "too_large", // message or batch above the configured size
  "queue_full", // max length reached with the reject policy
  "stale_receipt", // receipt of an earlier delivery attempt, or unknown
  "stale_epoch", // a write fenced by a newer ownership epoch
  "unavailable", // this node cannot serve the entity right now; nothing was changed (retry)
  "store_lost", // the node's local store lost its data; nothing was changed (retry)
  "outcome_unknown", // a change was made but not confirmed in time: it may or may not last
  "memory_full", // the owner's store is above its memory high watermark: new messages refused
] as const;

/** One of BROKER_ERROR_CODES. */
export type BrokerErrorCode = typeof BROKER_ERROR_CODES[number];

/** A refusal with a stable code and a human-readable detail. */
export class BrokerError extends Error {
  constructor(
    readonly code: BrokerErrorCode,
    readonly detail: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(`${code}: ${detail}`);
    this.name = "BrokerError";
  }
}

const CODES = new Set<string>(BROKER_ERROR_CODES);

/**
 * Lua scripts refuse with `redis.error_reply("MOMD <code> <detail>")`; this turns such a reply
 * into a BrokerError and leaves every other error alone.
 */
export function fromScriptError(err: unknown): unknown {
  const message = err instanceof Error ? err.message : String(err);
  const match = /MOMD (\w+) ?(.*)$/s.exec(message);
  if (match && CODES.has(match[1])) {
    // Redis appends where the error was raised ("script: <sha>, on @user_script:<line>.").
    const detail = match[2].replace(/\s*script: [0-9a-f]{40}, on @user_script:\d+\.?$/, "");
    return new BrokerError(match[1] as BrokerErrorCode, detail || match[1]);
  }
  return err;
}

/**
 * Whether an error means Redis could not be reached (connection refused or closed, retries
 * exhausted), as opposed to a reply Redis gave. Such a request may succeed later: 503.
 */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === "MaxRetriesPerRequestError" || err.name === "AbortError") return true;
  return /Connection is closed|ECONNREFUSED|ECONNRESET|EPIPE|Stream isn't writeable/.test(
    err.message,
  );
}
