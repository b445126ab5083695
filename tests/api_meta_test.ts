import assert from "node:assert/strict";
import { startTestApi } from "./support/node.ts";

Deno.test("api: health, readiness, OpenAPI document and docs page", async (t) => {
  const api = await startTestApi();
  try {
    await t.step("healthz and readyz answer without a token", async () => {
      const live = await api.call("GET", "/healthz");
      assert.equal(live.status, 200);
      assert.equal(live.body.status, "ok");
      const ready = await api.call("GET", "/readyz");
      assert.equal(ready.status, 200);
      assert.equal(ready.body.checks.localRedis, true);
    });
    await t.step("the OpenAPI 3.1 document lists the v1 routes with their schemas", async () => {
      const doc = await api.call("GET", "/openapi.json");
      assert.equal(doc.status, 200);
      assert.equal(doc.body.openapi, "3.1.0");
      for (
        const path of [
          "/v1/auth/token",
          "/v1/queues/{name}",
          "/v1/queues/{name}/receive",
          "/v1/topics/{name}/subscriptions/{sub}/receive",
          "/v1/users",
        ]
      ) {
        assert.ok(doc.body.paths[path], `OpenAPI document lacks ${path}`);
      }
      const credentials = doc.body.components.schemas.Credentials;
      assert.deepEqual(Object.keys(credentials.properties).sort(), ["password", "username"]);
    });
    await t.step("the docs page is served and points at the document", async () => {
      const res = await api.app.request("/docs");
      assert.equal(res.status, 200);
      assert.match(await res.text(), /openapi\.json/);
    });
    await t.step("an unknown route is a 404 problem", async () => {
      const res = await api.call("GET", "/v1/nothing-here", { token: api.adminToken });
      assert.equal(res.status, 404);
      assert.equal(res.headers.get("content-type"), "application/problem+json");
    });
  } finally {
    await api.close();
  }
});
