/**
 * The consistency check's API (`GET /v1/cluster/check`): its query, its answer, and what the
 * route needs from the checker (src/cluster/check.ts implements it). docs/check.md explains
 * every problem kind and what an operator does about it.
 */
import { z } from "@hono/zod-openapi";

/** What a problem is about; docs/check.md says what to do about each. */
export const PROBLEM_KINDS = [
  "unreachable",
  "zookeeper_unreachable",
  "backup_unreachable",
  "no_owner",
  "view_mismatch",
  "missing_copy",
  "store_mismatch",
  "epoch_mismatch",
  "incarnation_mismatch",
  "ahead",
  "digest_mismatch",
  "orphan_keys",
  "unrecorded_entity",
  "registry_mismatch",
  "backup_ahead",
  "backup_deleted",
  "lagging",
  "out_of_sync",
  "unverified",
  "under_replicated",
  "claimed",
  "backup_behind",
  "backup_missing",
] as const;

/** How long the check may take. */
export const CheckQuery = z.object({
  wait: z.coerce.number().min(0).max(10).default(2).openapi({
    description: "seconds to look again at what may resolve by itself on a live cluster (a " +
      "replica behind by the records in flight, a view a watch behind); what is left is reported",
  }),
  timeout: z.coerce.number().min(0.5).max(60).default(3).openapi({
    description: "seconds each node has to answer; one that does not is `unreachable`",
  }),
}).strict();

/** One problem found. */
export const CheckProblemSchema = z.object({
  severity: z.enum(["error", "warning"]).openapi({
    description: "an error makes the cluster inconsistent; a warning is reported only",
  }),
  kind: z.enum(PROBLEM_KINDS),
  entity: z.string().optional().openapi({ description: "`queue/<name>` or `topic/<name>`" }),
  node: z.string().optional().openapi({ description: "the node whose copy, view or store" }),
  detail: z.string(),
}).openapi("CheckProblem");

/** One node as the check saw it. */
export const CheckedNodeSchema = z.object({
  id: z.string(),
  reached: z.boolean().openapi({ description: "it answered every time it was asked" }),
  store: z.string().nullable().openapi({ description: "its store's incarnation" }),
  copies: z.number().int().openapi({ description: "copies it holds of the entities checked" }),
  keys: z.number().int().openapi({ description: "momd keys in its store" }),
}).openapi("CheckedNode");

/** The check's answer. */
export const CheckReportSchema = z.object({
  consistent: z.boolean().openapi({ description: "no error was found (warnings allowed)" }),
  checkedAt: z.string(),
  node: z.string().openapi({ description: "the node that ran the check" }),
  mode: z.enum(["single", "cluster"]),
  durationMs: z.number().int(),
  entities: z.number().int().openapi({ description: "queues and topics checked" }),
  replicaCopies: z.object({
    copies: z.number().int().openapi({ description: "replica copies on nodes that answered" }),
    verified: z.number().int().openapi({
      description: "of those, copies whose digest equals their owner's at the same sequence " +
        "number (the others are reported: lagging, unverified or an error)",
    }),
  }),
  nodes: z.array(CheckedNodeSchema),
  errors: z.number().int(),
  warnings: z.number().int(),
  notApplicable: z.array(z.string()).openapi({
    description: "what was not checked, and why (a single node has no replicas)",
  }),
  problems: z.array(CheckProblemSchema).openapi({ description: "errors first" }),
}).openapi("CheckReport");

/** What `GET /v1/cluster/check` answers. */
export type CheckReport = z.output<typeof CheckReportSchema>;
/** One problem of a report. */
export type CheckProblem = z.output<typeof CheckProblemSchema>;
/** One node of a report. */
export type CheckedNode = z.output<typeof CheckedNodeSchema>;
/** One of PROBLEM_KINDS. */
export type ProblemKind = typeof PROBLEM_KINDS[number];

/** How long the check may take. */
export interface CheckOptions {
  /** How long findings that may resolve by themselves are looked at again (default 2000 ms). */
  settleMs?: number;
  /** How long a node has to answer (default 3000 ms); one that does not is unreachable. */
  timeoutMs?: number;
}

/** What the route needs from the checker. */
export interface ConsistencyChecker {
  check(opts?: CheckOptions): Promise<CheckReport>;
}
