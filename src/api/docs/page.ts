/** The HTML of a docs page: a header of ours, then Swagger UI, all from this origin. */
import type { DocsAssets } from "./assets.ts";

/** A link in the page's header. */
export interface DocsLink {
  href: string;
  label: string;
}

/** The login operation of the documented API: its token authorizes the page. */
export interface DocsLogin {
  /** The operation's path, e.g. `/v1/auth/token`. */
  path: string;
  /** The field of its JSON answer that holds the token. */
  tokenField: string;
  /** The name of the bearer security scheme in the document. */
  scheme: string;
}

/** What a page shows. */
export interface DocsPageContent {
  title: string;
  /** One paragraph under the title; trusted HTML (a constant of ours, never request data). */
  introHtml: string;
  links: readonly DocsLink[];
  /** The OpenAPI document to render. */
  specUrl: string;
  login?: DocsLogin;
}

/** Escapes text for HTML content and double-quoted attributes. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/**
 * Renders the page. Asset URLs are absolute under `assetBase` and carry their content's tag, so
 * a browser that cached them for a day still loads the new ones after an upgrade.
 */
export function renderDocsPage(
  content: DocsPageContent,
  assetBase: string,
  assets: DocsAssets,
): string {
  const url = (name: string) => {
    const asset = assets.get(name);
    if (!asset) throw new Error(`docs: asset ${name} is missing`);
    return escapeHtml(`${assetBase}/${name}?v=${asset.etag.replaceAll('"', "").slice(0, 12)}`);
  };
  const links = content.links
    .map((l) => `<a href="${escapeHtml(l.href)}">${escapeHtml(l.label)}</a>`)
    .join("\n      ");
  const login = content.login
    ? ` data-login-path="${escapeHtml(content.login.path)}"` +
      ` data-token-field="${escapeHtml(content.login.tokenField)}"` +
      ` data-scheme="${escapeHtml(content.login.scheme)}"`
    : "";
  const title = escapeHtml(content.title);
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>${title}</title>
    <link rel="icon" type="image/png" href="${url("favicon-32x32.png")}">
    <link rel="stylesheet" href="${url("swagger-ui.css")}">
    <link rel="stylesheet" href="${url("docs.css")}">
  </head>
  <body>
    <header class="docs-header">
      <h1>${title}</h1>
      <p>${content.introHtml}</p>
      <nav>
      ${links}
      </nav>
    </header>
    <div id="swagger-ui" data-url="${escapeHtml(content.specUrl)}"${login}></div>
    <script src="${url("swagger-ui-bundle.js")}"></script>
    <script src="${url("docs_init.js")}"></script>
  </body>
</html>
`;
}
