import type { Redis } from "ioredis";
import { type LoadedScript, runScript } from "../broker/scripts.ts";

/** The Lua scripts of users and login throttling; each file is `src/auth/scripts/<name>.lua`. */
export const AUTH_SCRIPT_NAMES = [
  "user_create",
  "user_delete",
  "user_set_password",
  "user_rehash",
  "user_set_rate_limit",
  "login_attempt",
  "rate_sync",
] as const;

/** The name of one auth script. */
export type AuthScriptName = typeof AUTH_SCRIPT_NAMES[number];

const SCRIPT_DIR = new URL("./scripts/", import.meta.url);

async function sha1(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function load(): Promise<Record<AuthScriptName, LoadedScript>> {
  const out = {} as Record<AuthScriptName, LoadedScript>;
  for (const name of AUTH_SCRIPT_NAMES) {
    const source = await Deno.readTextFile(new URL(`${name}.lua`, SCRIPT_DIR));
    out[name] = { name, source, sha: await sha1(source) };
  }
  return out;
}

let loaded: Promise<Record<AuthScriptName, LoadedScript>> | undefined;

/**
 * Reads every auth script once per process (embedded by `deno compile --include src/auth/scripts`).
 * A failed read is not cached, so the next call tries again.
 */
export function loadAuthScripts(): Promise<Record<AuthScriptName, LoadedScript>> {
  if (!loaded) {
    loaded = load();
    loaded.catch(() => loaded = undefined);
  }
  return loaded;
}

/**
 * Runs an auth script by SHA (loading it into Redis on NOSCRIPT). A `MOMD <code> <detail>` error
 * reply becomes a BrokerError.
 */
export async function runAuthScript(
  redis: Redis,
  name: AuthScriptName,
  keys: readonly string[],
  args: readonly (string | number)[],
): Promise<unknown> {
  const scripts = await loadAuthScripts();
  return runScript(redis, scripts[name], keys, args);
}
