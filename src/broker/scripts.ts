import type { Redis } from "ioredis";
import { fromScriptError } from "./errors.ts";

/** A Lua script with its includes inlined, called by SHA once loaded. */
export interface LoadedScript {
  name: string;
  source: string;
  sha: string;
}

const SCRIPT_DIR = new URL("./scripts/", import.meta.url);
const INCLUDE = /^--\s*@include\s+"([\w-]+)"\s*$/gm;

async function sha1(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function readScript(name: string, seen: Set<string>): Promise<string> {
  const text = await Deno.readTextFile(new URL(`${name}.lua`, SCRIPT_DIR));
  const parts: string[] = [];
  let last = 0;
  for (const m of text.matchAll(INCLUDE)) {
    parts.push(text.slice(last, m.index));
    const inc = `includes/${m[1]}`;
    if (!seen.has(inc)) {
      seen.add(inc);
      parts.push(await readScript(inc, seen));
    }
    last = m.index! + m[0].length;
  }
  parts.push(text.slice(last));
  return parts.join("");
}

/** Reads every named script once at start-up (files are embedded by `deno compile --include`). */
export async function loadScripts<N extends string>(
  names: readonly N[],
): Promise<Record<N, LoadedScript>> {
  const out = {} as Record<N, LoadedScript>;
  for (const name of names) {
    const source = await readScript(name, new Set());
    out[name] = { name, source, sha: await sha1(source) };
  }
  return out;
}

/** Runs a script by SHA, loading it on the first NOSCRIPT (a restarted or fresh Redis). */
export async function runScript(
  redis: Redis,
  script: LoadedScript,
  keys: readonly string[],
  args: readonly (string | number)[],
): Promise<unknown> {
  try {
    return await redis.evalsha(script.sha, keys.length, ...keys, ...args);
  } catch (err) {
    if (err instanceof Error && err.message.startsWith("NOSCRIPT")) {
      try {
        return await redis.eval(script.source, keys.length, ...keys, ...args);
      } catch (inner) {
        throw fromScriptError(inner);
      }
    }
    throw fromScriptError(err);
  }
}

/** Loads scripts into Redis's script cache, so the first calls find them by SHA. */
export async function preloadScripts(
  redis: Redis,
  scripts: Iterable<LoadedScript>,
): Promise<void> {
  const pipeline = redis.pipeline();
  for (const script of scripts) pipeline.script("LOAD", script.source);
  await pipeline.exec();
}
