import type { Redis } from "ioredis";
import { fromScriptError } from "./errors.ts";

/** A Lua script with its includes inlined, called by SHA once loaded. */
export interface LoadedScript {
  name: string;
  source: string;
  sha: string;
  /** Where the script's own code starts in `source`, after its includes. */
  bodyAt?: number;
}

const SCRIPT_DIR = new URL("./scripts/", import.meta.url);
const INCLUDE = /^--\s*@include\s+"([\w-]+)"\s*$/gm;

async function sha1(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A script's text with its includes inlined, and where the text after the last include starts. */
async function readScript(
  name: string,
  seen: Set<string>,
): Promise<{ source: string; bodyAt: number }> {
  const text = await Deno.readTextFile(new URL(`${name}.lua`, SCRIPT_DIR));
  const parts: string[] = [];
  let last = 0;
  for (const m of text.matchAll(INCLUDE)) {
    parts.push(text.slice(last, m.index));
    const inc = `includes/${m[1]}`;
    if (!seen.has(inc)) {
      seen.add(inc);
      parts.push((await readScript(inc, seen)).source);
    }
    last = m.index! + m[0].length;
  }
  const head = parts.join("");
  return { source: head + text.slice(last), bodyAt: head.length };
}

/** Reads every named script once at start-up (files are embedded by `deno compile --include`). */
export async function loadScripts<N extends string>(
  names: readonly N[],
): Promise<Record<N, LoadedScript>> {
  const out = {} as Record<N, LoadedScript>;
  for (const name of names) {
    const { source, bodyAt } = await readScript(name, new Set());
    out[name] = { name, source, sha: await sha1(source), bodyAt };
  }
  return out;
}

// The lines of the includes a group script changes: the state its calls share, and the caller,
// which is each call's own (every other value the includes take from ARGV is the group's).
const GROUP_LINE = "local GROUP = false\n";
const CALLER_LINES = "local CALLER = ARGV[4]\nlocal IS_ADMIN = ARGV[5] == 'admin'\n";

// Runs the calls of a group in order, each as the plain script would run alone, and returns
// `{ seq, { ok1, result1, ok2, result2, ... } }`: seq is the group's one sequence number (0 when
// no call changed anything), ok 1 with the call's JSON payload or 0 with its error. ARGV (the
// group's, GROUP_ARGV here): epoch, expected seq, time, '', '', subscription, the number of calls,
// then per call its argument count and arguments (caller, role, subscription, own arguments), as
// Store.change builds them.
const GROUP_DRIVER = `
if redis.call('EXISTS', KEYS[#KEYS]) == 0 then
  return redis.error_reply('MOMD store_lost the local store lost its data')
end
if EXPECTED ~= '' and tonumber(EXPECTED) <= known_seq() then
  return { -1, {} }
end
local out, pos = {}, 8
for _ = 1, tonumber(GROUP_ARGV[7]) do
  local argc = tonumber(GROUP_ARGV[pos])
  local argv = { GROUP_ARGV[1], GROUP_ARGV[2], GROUP_ARGV[3] }
  for i = 1, argc do argv[3 + i] = GROUP_ARGV[pos + i] end
  pos = pos + argc + 1
  local ok, res = pcall(run_call, argv)
  local err = not ok and (type(res) == 'table' and tostring(res.err) or tostring(res)) or nil
  if ok then
    out[#out + 1] = 1
    out[#out + 1] = res[2] or 'null'
  elseif GROUP_SHARED.fenced then
    -- Refused before the group's first write (begin_change fences first): nothing was changed.
    return redis.error_reply(err)
  elseif not string.find(err, 'MOMD ', 1, true) then
    -- Redis failed mid-call (scripts do not roll back): the group's record must not ship, as a
    -- lone call's would not; the replica then meets a gap in the sequence and resyncs.
    return redis.error_reply(err)
  else
    -- The call's own refusal, made before any write of it.
    out[#out + 1] = 0
    out[#out + 1] = err
  end
end
return { GROUP_SHARED.seq or 0, out }
`;

/**
 * The group commit variant of a broker script (`group:<name>`): several calls of it on one
 * entity (and subscription) run in one script call, in order, each seeing what the previous ones
 * did, and yield one record with one sequence number. A replica replays the group as it replays
 * any record, so every call gets the same outcome there.
 *
 * The includes run once per group (their functions and constants are the same for every call);
 * each call sets ARGV and the caller, then runs the script's own code.
 */
export async function groupScript(script: LoadedScript): Promise<LoadedScript> {
  const head = script.source.slice(0, script.bodyAt ?? 0);
  if (!head.includes(GROUP_LINE) || !head.includes(CALLER_LINES)) {
    throw new Error(`script ${script.name} lacks the prologue or access: it cannot run in a group`);
  }
  const source = "local GROUP_SHARED = { seq = false, fenced = false }\n" +
    "local GROUP_ARGV = ARGV\n" +
    "local ARGV = { ARGV[1], ARGV[2], ARGV[3], '', '', ARGV[6] }\n" +
    head.replace(GROUP_LINE, "local GROUP = GROUP_SHARED\n") +
    "local function run_call(argv)\n" +
    "ARGV = argv\nCALLER = ARGV[4]\nIS_ADMIN = ARGV[5] == 'admin'\n" +
    script.source.slice(script.bodyAt) +
    "\nend\n" + GROUP_DRIVER;
  return { name: `group:${script.name}`, source, sha: await sha1(source) };
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
