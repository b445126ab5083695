import assert from "node:assert/strict";
import { publicDetail } from "../src/api/problem.ts";
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

Deno.test("api: unknown methods are 405 and undecodable names 400, never 500 (issue 12)", async () => {
  const api = await startTestApi();
  try {
    for (const method of ["FOO", "PROPFIND", "M-SEARCH"]) {
      for (const path of ["/v1/queues/q", "/v1/queues", "/healthz", "/nothing"]) {
        const res = await api.call(method, path, { token: api.adminToken });
        assert.equal(res.status, 405, `${method} ${path}`);
        assert.equal(res.headers.get("content-type"), "application/problem+json");
        assert.equal(res.body.type, "urn:momd:problem:405");
        assert.match(res.headers.get("allow") ?? "", /GET/);
      }
    }
    for (const bad of ["%FF", "%C0%AF", "%ED%A0%80", "a%2Fb", "bad%20name%2F.."]) {
      for (const method of ["GET", "PUT", "DELETE"]) {
        const res = await api.call(method, `/v1/queues/${bad}`, { token: api.adminToken });
        assert.equal(res.status, 400, `${method} ${bad}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.code, "invalid");
      }
    }
  } finally {
    await api.close();
  }
});

Deno.test("api: a create conflict names the API's field and points to PATCH (issue 12)", async () => {
  const api = await startTestApi();
  try {
    const token = api.adminToken;
    assert.equal((await api.call("PUT", "/v1/queues/orders", { token })).status, 201);
    const queue = await api.call("PUT", "/v1/queues/orders", {
      token,
      body: { visibilityTimeoutSeconds: 99 },
    });
    assert.equal(queue.status, 409);
    assert.equal(queue.body.code, "already_exists");
    assert.match(queue.body.detail, /visibilityTimeoutSeconds/);
    assert.match(queue.body.detail, /PATCH \/v1\/queues\/orders/);
    assert.doesNotMatch(queue.body.detail, /\(vis\)|\(maxlen\)/);
    const length = await api.call("PUT", "/v1/queues/orders", { token, body: { maxLength: 7 } });
    assert.match(length.body.detail, /different maxLength/);

    assert.equal((await api.call("PUT", "/v1/topics/news", { token })).status, 201);
    const topic = await api.call("PUT", "/v1/topics/news", {
      token,
      body: { retentionMaxMessages: 5 },
    });
    assert.equal(topic.status, 409);
    assert.match(topic.body.detail, /different retentionMaxMessages/);
    assert.match(topic.body.detail, /PATCH \/v1\/topics\/news/);
    const access = await api.call("PUT", "/v1/topics/news", {
      token,
      body: { access: { restricted: true } },
    });
    assert.match(access.body.detail, /different access/);
  } finally {
    await api.close();
  }
});

Deno.test("api: a 5xx detail keeps its reason, not the internals it came with", () => {
  assert.equal(
    publicDetail("forward to 127.0.0.1:41234: UNAVAILABLE No connection established"),
    "forward to another node: UNAVAILABLE No connection established",
  );
  assert.equal(
    publicDetail("ZooKeeper: getData /momd/entities/queue/q: connection loss"),
    "ZooKeeper: getData (internal): connection loss",
  );
  assert.equal(
    publicDetail("snapshot from momd2:9090 failed\n    at x (y.ts:1:2)"),
    "snapshot from another node failed",
  );
  assert.equal(publicDetail("too few in-sync copies (1 of 2)"), "too few in-sync copies (1 of 2)");
});
