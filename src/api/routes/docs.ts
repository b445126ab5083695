import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../context.ts";

// A self-contained page (no CDN: nodes often run without Internet access) that renders
// /openapi.json as a readable list of operations with their schemas.
const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>momd API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;color:#222}
h1{margin-bottom:0}.op{border:1px solid #ddd;border-radius:6px;margin:.6rem 0;padding:.2rem .8rem}
.m{display:inline-block;min-width:4.5rem;font-weight:700;text-transform:uppercase}
.get{color:#1565c0}.post{color:#2e7d32}.put{color:#ef6c00}.delete{color:#c62828}
code,pre{background:#f6f6f6;border-radius:4px}pre{padding:.6rem;overflow:auto;font-size:13px}
summary{cursor:pointer;padding:.3rem 0}
</style></head><body><h1>momd API</h1><p id="d"></p><div id="ops">Loading…</div>
<script>
fetch(location.pathname.replace(/docs\\/?$/, "openapi.json")).then(r => r.json()).then(doc => {
  document.getElementById("d").textContent = doc.info.description || "";
  const out = [];
  const esc = s => String(s).replace(/[&<>]/g, ch => ({"&":"&amp;","<":"&lt;",">":"&gt;"}[ch]));
  for (const [path, ops] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(ops)) {
      const body = op.requestBody ? JSON.stringify(op.requestBody.content, null, 2) : "";
      const res = JSON.stringify(op.responses, null, 2);
      out.push('<details class="op"><summary><span class="m ' + method + '">' + method +
        '</span><code>' + esc(path) + '</code> ' + esc(op.summary || "") + '</summary>' +
        (op.parameters ? '<h4>Parameters</h4><pre>' + esc(JSON.stringify(op.parameters, null, 2)) + '</pre>' : '') +
        (body ? '<h4>Request body</h4><pre>' + esc(body) + '</pre>' : '') +
        '<h4>Responses</h4><pre>' + esc(res) + '</pre></details>');
    }
  }
  document.getElementById("ops").innerHTML = out.join("") +
    '<h2>Schemas</h2><pre>' + esc(JSON.stringify((doc.components || {}).schemas || {}, null, 2)) + '</pre>';
});
</script></body></html>`;

/** A docs page for an OpenAPI document served beside it. */
export function registerDocsRoutes(app: OpenAPIHono<AppEnv>, path = "/docs"): void {
  app.get(path, (c) => c.html(PAGE));
}
