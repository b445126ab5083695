/**
 * The web console at `/console`: static files shipped in the repository (plain HTML, ES modules
 * and CSS, no build step, nothing fetched from elsewhere) that talk to the same public REST API as
 * the command line. Every node serves it; docs/console.md describes the pages.
 */
import type { Context, Env, Hono } from "hono";
import { problem } from "../problem.ts";

/** The console's files (under `assets/`, served under `/console/`) and their content types. */
export const CONSOLE_FILES: Readonly<Record<string, string>> = {
  "index.html": "text/html; charset=utf-8",
  "console.css": "text/css; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "api.js": "text/javascript; charset=utf-8",
  "ui.js": "text/javascript; charset=utf-8",
  "cluster.js": "text/javascript; charset=utf-8",
  "queues.js": "text/javascript; charset=utf-8",
  "topics.js": "text/javascript; charset=utf-8",
  "users.js": "text/javascript; charset=utf-8",
  "favicon.svg": "image/svg+xml",
};

/**
 * Only the console's own files run, and only they are fetched: no inline script or style, no
 * other origin, no plugins, no framing (clickjacking), and no form posts anywhere (the forms are
 * handled by the scripts; were those missing, a plain submit must not carry a password off).
 */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** One file of the console, read once. */
export interface ConsoleAsset {
  body: Uint8Array<ArrayBuffer>;
  contentType: string;
  /** A strong validator of the content: the same on every node running the same release. */
  etag: string;
}

/**
 * Reads the console's files. Called once when the app is built, not per request; the paths are
 * relative to this module, so `deno compile --include src/api/console/assets` embeds them.
 */
export function loadConsoleAssets(): Map<string, ConsoleAsset> {
  const assets = new Map<string, ConsoleAsset>();
  for (const [name, contentType] of Object.entries(CONSOLE_FILES)) {
    const body = Deno.readFileSync(new URL(`./assets/${name}`, import.meta.url));
    assets.set(name, { body, contentType, etag: `"${body.length.toString(16)}-${fnv1a(body)}"` });
  }
  return assets;
}

/** FNV-1a (32 bits) as hex: enough to tell two versions of a small file apart for caching. */
function fnv1a(bytes: Uint8Array): string {
  let hash = 0x811c9dc5;
  for (const byte of bytes) hash = Math.imul(hash ^ byte, 0x01000193);
  return (hash >>> 0).toString(16).padStart(8, "0");
}

function securityHeaders(): Record<string, string> {
  return {
    "content-security-policy": CONSOLE_CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
  };
}

function serve(c: Context, asset: ConsoleAsset): Response {
  // Not fingerprinted, so the browser revalidates each time (a cheap 304 by ETag): after an
  // upgrade, no page mixes old and new modules.
  const headers = { ...securityHeaders(), "cache-control": "no-cache", etag: asset.etag };
  const match = c.req.header("if-none-match");
  if (match !== undefined && match.split(",").some((tag) => tag.trim() === asset.etag)) {
    return c.body(null, 304, headers);
  }
  return c.body(asset.body, 200, { ...headers, "content-type": asset.contentType });
}

/**
 * Serves the console: the page at `/console` and `/console/`, its files under `/console/`, and a
 * 404 problem document for any other path there. `assets` defaults to the shipped files.
 */
export function registerConsoleRoutes<E extends Env>(
  app: Hono<E>,
  assets: Map<string, ConsoleAsset> = loadConsoleAssets(),
): void {
  const index = assets.get("index.html");
  if (!index) throw new Error("console: index.html is missing from its assets");
  app.get("/console", (c) => serve(c, index));
  app.get("/console/", (c) => serve(c, index));
  app.get("/console/:file{.+}", (c) => {
    const file = c.req.param("file");
    const asset = assets.get(file);
    if (asset) return serve(c, asset);
    return problem(c, 404, `the console has no file '${file}'`, { code: "not_found" }, {
      ...securityHeaders(),
      "cache-control": "no-store",
    });
  });
}
