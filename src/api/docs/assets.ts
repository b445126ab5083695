/**
 * The files the docs pages load: Swagger UI's bundle and stylesheet from the `swagger-ui-dist`
 * npm package, and our own initializer and stylesheet (under `assets/` beside this module).
 */
import { createHash } from "node:crypto";
// The package's own helper: it answers the folder it was loaded from. Importing it statically
// puts the package in the module graph, which is what `deno compile` embeds: the whole package
// folder goes into the binary's virtual file system (seen with `deno compile` 2.9.6: "Embedded
// Files ... swagger-ui-dist/5.35.0/*"), where the helper's `__dirname` points and where reads
// (Deno.readFileSync or node:fs) find the files. No CDN and no file beside the binary.
import swaggerUiPath from "swagger-ui-dist/absolute-path.js";

/** One file of the docs pages, read once. */
export interface DocsAsset {
  body: Uint8Array<ArrayBuffer>;
  contentType: string;
  /** A strong validator of the content: the same on every node running the same release. */
  etag: string;
}

/** The docs pages' files by the name they are served under. */
export type DocsAssets = ReadonlyMap<string, DocsAsset>;

const JS = "text/javascript; charset=utf-8";
const CSS = "text/css; charset=utf-8";

/** Swagger UI's files that the pages use, taken as they are from the package. */
const SWAGGER_UI_FILES: Readonly<Record<string, string>> = {
  "swagger-ui-bundle.js": JS,
  "swagger-ui.css": CSS,
  "favicon-32x32.png": "image/png",
};

/**
 * Our own files (`deno compile` embeds them through `--include src/api/docs/assets`, as the
 * console's). The initializer is a file, not an inline script, so the page's CSP allows no inline
 * script at all.
 */
const OWN_FILES: Readonly<Record<string, string>> = {
  "docs_init.js": JS,
  "docs.css": CSS,
};

/** The folder of the installed `swagger-ui-dist` package. */
export function swaggerUiDir(): string {
  return (swaggerUiPath as () => string)();
}

/** A strong ETag of a body: its SHA-256, shortened (a cache validator, not a signature). */
export function etagOf(body: Uint8Array): string {
  return `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
}

/**
 * Reads the docs pages' files. Called once when the app is built (a few MB; every request is
 * then answered from memory), never per request.
 */
export function loadDocsAssets(): DocsAssets {
  const assets = new Map<string, DocsAsset>();
  const add = (name: string, contentType: string, body: Uint8Array<ArrayBuffer>) =>
    assets.set(name, { body, contentType, etag: etagOf(body) });
  const dir = swaggerUiDir();
  for (const [name, contentType] of Object.entries(SWAGGER_UI_FILES)) {
    add(name, contentType, Deno.readFileSync(`${dir}/${name}`));
  }
  for (const [name, contentType] of Object.entries(OWN_FILES)) {
    add(name, contentType, Deno.readFileSync(new URL(`./assets/${name}`, import.meta.url)));
  }
  return assets;
}
