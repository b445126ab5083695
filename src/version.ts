/**
 * What this build of momd is. `VERSION` follows semantic versioning and changes with releases;
 * `BUILD` names the commit the binary was built from (scripts/compile.ts writes build.json for
 * the binary; a source checkout run with `deno run` reports "source").
 */
import build from "./build.json" with { type: "json" };

export const VERSION = "0.14.0";

/** The commit and time of the build ("source" and null when run from a checkout). */
export const BUILD: { commit: string; builtAt: string | null } = build;

/**
 * The layout of what momd keeps in Redis (messages, users, backups). A node refuses to start on a
 * Redis that holds a later format: it would misread it. Raise it with a change that an earlier
 * build cannot read, and note the upgrade path in docs/operations.md.
 */
export const DATA_FORMAT = 1;

/** `momd 0.14.0 (build 1a2b3c4, data format 1)`. */
export function versionLine(): string {
  return `momd ${VERSION} (build ${BUILD.commit}, data format ${DATA_FORMAT})`;
}
