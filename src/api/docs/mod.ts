/**
 * API documentation pages: Swagger UI over an OpenAPI document, served with its files by the
 * node itself (no CDN: nodes often run without Internet access, and a CSP of `'self'` keeps it
 * that way). momd's own page is `/docs`; the compatibility API registers its own beside its
 * document. The files are read once when the app is built (see assets.ts).
 */
import type { Context, Env, Hono } from "hono";
import { type DocsAsset, type DocsAssets, etagOf, loadDocsAssets } from "./assets.ts";
import { type DocsLink, type DocsLogin, type DocsPageContent, renderDocsPage } from "./page.ts";

export { type DocsAsset, type DocsAssets, loadDocsAssets } from "./assets.ts";
export type { DocsLink, DocsLogin } from "./page.ts";

/**
 * The pages' policy: only this origin's scripts (no inline script: the initializer is a file),
 * Swagger UI's inline styles and `data:` images, requests to this origin only, no framing.
 */
export const DOCS_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** How long a browser keeps Swagger UI's files before it revalidates them (by ETag). */
export const ASSET_CACHE_CONTROL = "public, max-age=86400";

/** Options of a docs page; the defaults are momd's own page. */
export interface DocsOptions {
  /** Where the page is served (default `/docs`); its files are under `${path}/assets/`. */
  path?: string;
  /** The OpenAPI document it renders (default `/openapi.json`). */
  specUrl?: string;
  /** The page's title and heading. */
  title?: string;
  /** One paragraph under the heading; trusted HTML (a constant, never request data). */
  introHtml?: string;
  links?: readonly DocsLink[];
  /** The login operation, whose token a successful "Try it out" puts into "Authorize". */
  login?: DocsLogin;
  /** The files, loaded once by the caller to share them between pages (default: loaded here). */
  assets?: DocsAssets;
}

const MOMD_DOCS: Omit<DocsPageContent, "specUrl"> = {
  title: "momd API",
  introHtml: "Queues and topics over REST. To try the calls: open <code>POST /v1/auth/token" +
    "</code> (auth), <em>Try it out</em> with a username and password, and <em>Execute</em>: " +
    "its token goes into <em>Authorize</em> (kept across reloads in this browser). Or paste a " +
    "token there yourself (<code>momd login</code> keeps one too). Errors are " +
    "<code>application/problem+json</code>.",
  links: [
    { href: "/openapi.json", label: "OpenAPI document" },
    { href: "/console", label: "Console" },
    { href: "/", label: "Service index" },
  ],
  login: { path: "/v1/auth/token", tokenField: "token", scheme: "bearer" },
};

/**
 * Serves a docs page at `path` and its files under `${path}/assets/`, and answers the paths it
 * registered (an unknown file under `assets/` is left to the app's own 404).
 */
export function registerDocsRoutes<E extends Env>(
  app: Hono<E>,
  opts: DocsOptions = {},
): string[] {
  const path = (opts.path ?? "/docs").replace(/\/+$/, "");
  const assets = opts.assets ?? loadDocsAssets();
  const assetBase = `${path}/assets`;
  const html = new TextEncoder().encode(renderDocsPage(
    {
      title: opts.title ?? MOMD_DOCS.title,
      introHtml: opts.introHtml ?? MOMD_DOCS.introHtml,
      links: opts.links ?? MOMD_DOCS.links,
      login: opts.login ?? MOMD_DOCS.login,
      specUrl: opts.specUrl ?? "/openapi.json",
    },
    assetBase,
    assets,
  ));
  // The page is small and names the files' versions: revalidated on every load.
  const page: DocsAsset = {
    body: html,
    contentType: "text/html; charset=utf-8",
    etag: etagOf(html),
  };
  const pageHeaders = {
    "content-security-policy": DOCS_CSP,
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
  };

  const paths = [path];
  app.get(path, (c) => serve(c, page, pageHeaders));
  for (const [name, asset] of assets) {
    const assetPath = `${assetBase}/${name}`;
    paths.push(assetPath);
    app.get(assetPath, (c) => serve(c, asset, { "cache-control": ASSET_CACHE_CONTROL }));
  }
  return paths;
}

/** True when an If-None-Match header names this ETag (or `*`); weak tags compare equal. */
export function matchesEtag(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(",").some((tag) => {
    const t = tag.trim();
    return t === "*" || t.replace(/^W\//, "") === etag;
  });
}

function serve(c: Context, asset: DocsAsset, extra: Record<string, string>): Response {
  const headers = { ...extra, "x-content-type-options": "nosniff", etag: asset.etag };
  if (matchesEtag(c.req.header("if-none-match"), asset.etag)) {
    return c.body(null, 304, headers);
  }
  return c.body(asset.body, 200, { ...headers, "content-type": asset.contentType });
}
