import type { Context } from "hono";
import type { ZodError } from "zod";
import { problem } from "./problem.ts";

/** zod-openapi's hook: an invalid request becomes a 400 problem listing each issue. */
export function validationHook(
  result: { success: true } | { success: false; error: ZodError; target?: string },
  c: Context,
): Response | undefined {
  if (result.success) return undefined;
  const issues = result.error.issues.map((i) => ({
    path: i.path.join("."),
    message: i.message,
  }));
  return invalidRequest(c, issues);
}

/** One reason a request is invalid: where (a dotted path, "" for the whole) and what is wrong. */
export interface Issue {
  path: string;
  message: string;
}

/** The 400 problem of an invalid request; the detail states the first issue. */
export function invalidRequest(c: Context, issues: Issue[]): Response {
  const first = issues[0];
  const detail = first
    ? `${first.path ? `${first.path}: ` : ""}${first.message}`
    : "invalid request";
  return problem(c, 400, detail, { code: "invalid", issues });
}
