import assert from "node:assert/strict";
import { ASSET_CACHE_CONTROL, matchesEtag } from "../src/api/docs/mod.ts";
import { swaggerUiDir } from "../src/api/docs/assets.ts";
import { prefersHtml } from "../src/api/docs/root.ts";
import { COMPAT_BASE_PATH } from "../src/api/compat/routes.ts";
import { VERSION } from "../src/version.ts";
import { serveNode, startTestApi, type TestApi } from "./support/node.ts";
import { withBrowser } from "./support/browser.ts";

/** The `src` and `href` URLs of a page. */
function urlsOf(html: string): string[] {
  return [...html.matchAll(/\s(?:src|href)="([^"]*)"/g)].map((m) => m[1].replaceAll("&#38;", "&"));
}

/** Checks a docs page and every file it loads; answers the page's HTML. */
async function checkDocsPage(api: TestApi, path: string): Promise<string> {
  const res = await api.app.request(path);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
  const csp = res.headers.get("content-security-policy") ?? "";
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self'(;|$)/, "no inline or foreign script may run");
  assert.match(csp, /connect-src 'self'/);
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  const html = await res.text();

  assert.doesNotMatch(html, /https?:\/\//, "the page references another origin");
  const scripts = [...html.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)];
  assert.equal(scripts.length, 2, "Swagger UI's bundle and our initializer");
  for (const [, attrs, body] of scripts) {
    assert.match(attrs, /\ssrc="/, "every script is a file");
    assert.equal(body.trim(), "", "no inline script");
  }
  assert.doesNotMatch(html, /\son[a-z]+=/i, "no inline event handler");

  // Every file the page loads is served from under the page, cached for a day and revalidated by
  // its ETag.
  const assets = urlsOf(html).filter((u) => u.includes("/assets/"));
  assert.deepEqual(
    assets.map((u) => u.replace(/^.*\/assets\//, "").replace(/\?.*$/, "")).sort(),
    ["docs.css", "docs_init.js", "favicon-32x32.png", "swagger-ui-bundle.js", "swagger-ui.css"],
  );
  const types: Record<string, string> = {
    js: "text/javascript; charset=utf-8",
    css: "text/css; charset=utf-8",
    png: "image/png",
  };
  for (const url of assets) {
    assert.ok(url.startsWith(`${path}/assets/`), url);
    const asset = await api.app.request(url);
    assert.equal(asset.status, 200, url);
    const ext = url.replace(/\?.*$/, "").split(".").pop()!;
    assert.equal(asset.headers.get("content-type"), types[ext], url);
    assert.equal(asset.headers.get("cache-control"), ASSET_CACHE_CONTROL);
    const etag = asset.headers.get("etag");
    assert.match(etag ?? "", /^"[A-Za-z0-9_-]+"$/, url);
    const body = new Uint8Array(await asset.arrayBuffer());
    assert.ok(body.length > 0, url);

    const again = await api.app.request(url, { headers: { "if-none-match": etag! } });
    assert.equal(again.status, 304, url);
    assert.equal(again.headers.get("etag"), etag);
    assert.equal((await again.arrayBuffer()).byteLength, 0);
    const weak = await api.app.request(url, { headers: { "if-none-match": `"x", W/${etag}` } });
    assert.equal(weak.status, 304, `${url} with a weak tag among others`);
    const other = await api.app.request(url, { headers: { "if-none-match": '"other"' } });
    assert.equal(other.status, 200, url);
    await other.body?.cancel();
  }

  // The page itself: revalidated each time (it names the files' versions).
  assert.equal(res.headers.get("cache-control"), "no-cache");
  const page304 = await api.app.request(path, {
    headers: { "if-none-match": res.headers.get("etag")! },
  });
  assert.equal(page304.status, 304);
  return html;
}

Deno.test("docs: momd's page is Swagger UI from local files, with its own initializer", async (t) => {
  const api = await startTestApi();
  try {
    let html = "";
    await t.step("the page and each of its files, with types, CSP and caching", async () => {
      html = await checkDocsPage(api, "/docs");
    });
    await t.step("it renders /openapi.json and authorizes with momd's login", () => {
      assert.match(html, /<title>momd API<\/title>/);
      assert.match(html, /data-url="\/openapi\.json"/);
      assert.match(html, /data-login-path="\/v1\/auth\/token"/);
      assert.match(html, /data-token-field="token"/);
      assert.match(html, /data-scheme="bearer"/);
      assert.match(html, /POST \/v1\/auth\/token/, "the page says how to get a token");
    });
    await t.step("the files are the package's, as installed", async () => {
      const url = urlsOf(html).find((u) => u.includes("swagger-ui-bundle.js"))!;
      const served = new Uint8Array(await (await api.app.request(url)).arrayBuffer());
      assert.deepEqual(served, Deno.readFileSync(`${swaggerUiDir()}/swagger-ui-bundle.js`));
      const init = await (await api.app.request("/docs/assets/docs_init.js")).text();
      assert.match(init, /persistAuthorization: true/);
      assert.match(init, /tryItOutEnabled: true/);
      assert.match(init, /validatorUrl: null/);
    });
    await t.step("an unknown file is a 404 problem; HEAD answers without a body", async () => {
      const missing = await api.call("GET", "/docs/assets/nothing.js");
      assert.equal(missing.status, 404);
      assert.equal(missing.headers.get("content-type"), "application/problem+json");
      const head = await api.app.request("/docs/assets/swagger-ui.css", { method: "HEAD" });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get("content-type"), "text/css; charset=utf-8");
      assert.equal((await head.arrayBuffer()).byteLength, 0);
    });
    await t.step("the security scheme says where a token comes from", async () => {
      const doc = await api.call("GET", "/openapi.json");
      assert.match(doc.body.components.securitySchemes.bearer.description, /\/v1\/auth\/token/);
    });
  } finally {
    await api.close();
  }
});

Deno.test("docs: the compatibility API's page says what it is, in the API's own shapes", async (t) => {
  const api = await startTestApi();
  const docs = `${COMPAT_BASE_PATH}/docs`;
  try {
    let html = "";
    await t.step("the page and each of its files, with types, CSP and caching", async () => {
      html = await checkDocsPage(api, docs);
    });
    await t.step("titled as the earlier server's compatibility API, over its own document", () => {
      const title = html.match(/<title>([^<]*)<\/title>/)?.[1] ?? "";
      assert.match(title, /compatibility API of the earlier MOM server/);
      assert.ok(html.includes(`data-url="${COMPAT_BASE_PATH}/openapi.json"`));
      assert.ok(html.includes(`data-login-path="${COMPAT_BASE_PATH}/login/"`));
      assert.match(html, /data-token-field="access_token"/);
      assert.match(html, /data-scheme="HTTPBearer"/);
      assert.match(html, /href="\/docs"/, "it links to momd's own API");
    });
    await t.step(
      "an unknown file and another method answer as the earlier server did",
      async () => {
        const missing = await api.call("GET", `${docs}/assets/nothing.js`);
        assert.equal(missing.status, 404);
        assert.deepEqual(missing.body, { detail: "Not Found" });
        const post = await api.call("POST", `${docs}/assets/swagger-ui.css`);
        assert.equal(post.status, 405);
        assert.deepEqual(post.body, { detail: "Method Not Allowed" });
        assert.equal(post.headers.get("allow"), "GET");
      },
    );
  } finally {
    await api.close();
  }
});

Deno.test("docs: GET / names the service and links to everything a visitor needs", async (t) => {
  const api = await startTestApi();
  try {
    const links = {
      docs: "/docs",
      openapi: "/openapi.json",
      console: "/console",
      healthz: "/healthz",
      readyz: "/readyz",
      metrics: "/metrics",
      compatDocs: `${COMPAT_BASE_PATH}/docs`,
      compatOpenapi: `${COMPAT_BASE_PATH}/openapi.json`,
    };
    await t.step("JSON by default (curl, no Accept, or asking for JSON)", async () => {
      for (const accept of [undefined, "*/*", "application/json", "application/json, text/html"]) {
        const res = await api.call("GET", "/", { headers: accept ? { accept } : {} });
        assert.equal(res.status, 200, String(accept));
        assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
        assert.equal(res.headers.get("vary"), "accept");
        assert.equal(res.body.service, "momd");
        assert.equal(res.body.version, VERSION);
        assert.deepEqual(res.body.links, links);
        assert.match(res.body.description, /POST \/v1\/auth\/token/);
      }
    });
    await t.step("a browser gets the same links as a page without scripts", async () => {
      const res = await api.app.request("/", {
        headers: { accept: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8" },
      });
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /^text\/html/);
      assert.match(res.headers.get("content-security-policy") ?? "", /default-src 'none'/);
      const html = await res.text();
      assert.ok(html.includes(VERSION));
      assert.doesNotMatch(html, /<script/);
      for (const href of Object.values(links)) assert.ok(html.includes(`href="${href}"`), href);
    });
    await t.step(
      "the links answer (all but /metrics, which this test node does not serve)",
      async () => {
        for (const [name, href] of Object.entries(links)) {
          if (name === "metrics") continue;
          const res = await api.app.request(href);
          assert.equal(res.status, 200, `${name}: ${href}`);
          await res.body?.cancel();
        }
      },
    );
    await t.step("it is in the OpenAPI document", async () => {
      const doc = await api.call("GET", "/openapi.json");
      assert.equal(doc.body.paths["/"].get.operationId, "getServiceIndex");
    });
  } finally {
    await api.close();
  }
});

Deno.test("docs: Accept negotiation and If-None-Match matching", () => {
  assert.equal(prefersHtml(undefined), false);
  assert.equal(prefersHtml("*/*"), false);
  assert.equal(prefersHtml("text/html"), true);
  assert.equal(prefersHtml("text/html;q=0.5, application/json"), false);
  assert.equal(prefersHtml("application/json;q=0.5, text/*"), true);
  assert.equal(prefersHtml("text/html;q=0, */*"), false);
  assert.equal(matchesEtag(undefined, '"a"'), false);
  assert.equal(matchesEtag('"a"', '"a"'), true);
  assert.equal(matchesEtag('W/"a"', '"a"'), true);
  assert.equal(matchesEtag('"b", "a"', '"a"'), true);
  assert.equal(matchesEtag("*", '"a"'), true);
  assert.equal(matchesEtag('"b"', '"a"'), false);
});

Deno.test("docs: Swagger UI renders every operation, logs in by try-it-out and keeps the token", async () => {
  const node = await serveNode();
  try {
    await withBrowser(async (browser) => {
      const { page, problems } = await browser.newPage();
      const foreign: string[] = [];
      page.on("request", (req) => {
        const u = req.url();
        if (!u.startsWith(node.url) && !u.startsWith("data:")) foreign.push(u);
      });
      const count = async (docPath: string) => {
        const doc = await (await fetch(`${node.url}${docPath}`)).json();
        return Object.values(doc.paths).flatMap((item) => Object.keys(item as object)).length;
      };
      const opblocks = () => page.$$eval(".opblock", (els) => els.length);

      await page.goto(`${node.url}/docs`, { waitUntil: "load" });
      const expected = await count("/openapi.json");
      await page.waitForFunction(
        `document.querySelectorAll(".opblock").length === ${expected}`,
        { timeout: 30_000 },
      );
      assert.equal(await opblocks(), expected);
      assert.equal(await page.$(".errors-wrapper"), null, "Swagger UI reports errors");

      // Try it out: log in, and the token fills in Authorize.
      const login = "#operations-auth-issueToken";
      await page.click(`${login} .opblock-summary`);
      const body = `${login} textarea.body-param__text`;
      await page.waitForSelector(body);
      await page.click(body);
      await page.keyboard.down("Control");
      await page.keyboard.press("KeyA");
      await page.keyboard.up("Control");
      await page.keyboard.press("Backspace");
      await page.keyboard.type('{"username":"admin","password":"admin-password"}');
      await page.click(`${login} .execute`);
      await page.waitForSelector(`${login} .live-responses-table tbody .response-col_status`);
      const status = await page.$eval(
        `${login} .live-responses-table tbody .response-col_status`,
        (el) => el.textContent?.trim(),
      );
      assert.equal(status, "200");
      await page.waitForSelector(".btn.authorize.locked", { timeout: 10_000 });

      // An authenticated call from the page carries it.
      const me = "#operations-auth-getCurrentUser";
      await page.click(`${me} .opblock-summary`);
      await page.waitForSelector(`${me} .execute`);
      await page.click(`${me} .execute`);
      await page.waitForSelector(`${me} .live-responses-table tbody .response-col_status`);
      const meText = await page.$eval(`${me} .live-responses-table`, (el) => el.textContent ?? "");
      assert.match(meText, /200/);
      assert.match(meText, /"username": "admin"/);

      // persistAuthorization: still authorized after a reload.
      await page.reload({ waitUntil: "load" });
      await page.waitForSelector(".opblock");
      await page.waitForSelector(".btn.authorize.locked", { timeout: 10_000 });

      // The compatibility API's page renders its own document the same way.
      await page.goto(`${node.url}${COMPAT_BASE_PATH}/docs`, { waitUntil: "load" });
      const compat = await count(`${COMPAT_BASE_PATH}/openapi.json`);
      await page.waitForFunction(
        `document.querySelectorAll(".opblock").length === ${compat}`,
        { timeout: 30_000 },
      );
      assert.match(await page.title(), /compatibility API of the earlier MOM server/);

      assert.deepEqual(problems, [], "console errors or CSP refusals");
      assert.deepEqual(foreign, [], "requests to another origin");
    });
  } finally {
    await node.close();
  }
});
