/**
 * The node's log: JSON lines on standard output (pino), one object a line with `time` (ISO 8601),
 * `level` (a name), `node`, and where one applies `reqId` (the request's id, which the response's
 * `X-Request-Id` carries and forwards pass on) and `event` (the cluster's typed events below).
 * Levels below the configured one cost a comparison. Lines are written synchronously: the last
 * lines before an exit (a fatal error, a drain) are the ones an operator needs.
 */
import pino from "pino";

export type Logger = pino.Logger;
export type LogLevel = "debug" | "info" | "warn" | "error";

/** A logger for one node. `destination` replaces standard output (tests). */
export function createLogger(
  opts: { nodeId: string; level: LogLevel; destination?: pino.DestinationStream },
): Logger {
  return pino(
    {
      level: opts.level,
      base: { node: opts.nodeId },
      timestamp: pino.stdTimeFunctions.isoTime,
      messageKey: "msg",
      formatters: { level: (label) => ({ level: label }) },
      // Tokens and passwords never reach the log, even when a request object is logged whole.
      redact: ["req.headers.authorization", "password", "token"],
    },
    opts.destination ?? pino.destination({ fd: 1, sync: true }),
  );
}

/** A logger that writes nothing (tests and tools that build parts of a node). */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}

/**
 * The cluster's events an operator follows (and alerts on): each is logged with `event` set to
 * its kind, so `jq 'select(.event)'` shows a node's history of ownership and recovery.
 */
export type ClusterEvent =
  | { event: "take_over"; entity: string; epoch: number; reason: string }
  | { event: "hand_over"; entity: string; to: string }
  | { event: "hand_over_failed"; entity: string; to: string; error: string }
  | { event: "resign"; entity: string; reason: string }
  | { event: "fenced"; entity: string; detail: string }
  | { event: "store_lost"; previous: string; incarnation: string }
  | { event: "store_down" }
  | { event: "store_up" }
  | { event: "replica_resync"; entity: string; replica: string; reason: string }
  | { event: "in_sync_change"; entity: string; inSync: string[] }
  | { event: "backup_restore"; entity: string; seq: number; epoch: number }
  | { event: "controller"; role: "elected" | "resigned" };

/** Logs a cluster event at its level (trouble at warn, the rest at info). */
export function logEvent(log: Logger, e: ClusterEvent, msg: string): void {
  const trouble = e.event === "fenced" || e.event === "store_lost" || e.event === "store_down" ||
    e.event === "hand_over_failed";
  if (trouble) log.warn(e, msg);
  else log.info(e, msg);
}

/** Warnings and errors on standard error, for parts built without a node's logger (tests, tools). */
export function fallbackLogger(): Logger {
  return pino(
    {
      level: "warn",
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (l) => ({ level: l }) },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}
