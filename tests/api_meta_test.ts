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

/** An operation object of an OpenAPI document, as parsed JSON. */
// deno-lint-ignore no-explicit-any
type Operation = any;

/** Every operation of an OpenAPI document, as `METHOD path` with the operation object. */
function operationsOf(
  doc: { paths?: Record<string, Record<string, Operation>> },
): [string, Operation][] {
  const methods = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];
  const out: [string, Operation][] = [];
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const m of methods) if (item[m]) out.push([`${m.toUpperCase()} ${path}`, item[m]]);
  }
  return out;
}

/** Every `$ref` of a document with where it is, e.g. `paths./v1/users.post...`. */
function refsOf(node: unknown, at = "#"): [string, string][] {
  if (Array.isArray(node)) return node.flatMap((v, i) => refsOf(v, `${at}/${i}`));
  if (node === null || typeof node !== "object") return [];
  return Object.entries(node).flatMap(([k, v]) =>
    k === "$ref" && typeof v === "string" ? [[at, v] as [string, string]] : refsOf(v, `${at}/${k}`)
  );
}

/** Resolves a local JSON pointer (`#/components/schemas/Problem`); undefined when it names nothing. */
function resolvePointer(doc: unknown, ref: string): unknown {
  if (!ref.startsWith("#/")) return undefined;
  let node: unknown = doc;
  for (const raw of ref.slice(2).split("/")) {
    const key = decodeURIComponent(raw).replaceAll("~1", "/").replaceAll("~0", "~");
    if (node === null || typeof node !== "object" || !Object.hasOwn(node, key)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

Deno.test("api: every operation of both documents has a unique operationId, every $ref resolves", async () => {
  const api = await startTestApi();
  try {
    const documents = {
      momd: "/openapi.json",
      compat: "/api/v1.0.0/MomServer/openapi.json",
    };
    const seen = new Map<string, string>();
    for (const [name, path] of Object.entries(documents)) {
      const res = await api.call("GET", path);
      assert.equal(res.status, 200, `${name}: ${path}`);
      const ops = operationsOf(res.body);
      assert.ok(ops.length >= 10, `${name}: only ${ops.length} operations`);
      for (const [where, op] of ops) {
        const id = op.operationId;
        assert.equal(typeof id, "string", `${name}: ${where} has no operationId`);
        assert.match(id, /^[a-z][A-Za-z0-9]+$/, `${name}: ${where}: ${id}`);
        // Unique across both documents: a client generated for both keeps every name.
        assert.ok(!seen.has(id), `${name}: ${where} repeats ${id} of ${seen.get(id)}`);
        seen.set(id, where);
        if (name === "compat") assert.match(id, /^compat[A-Z]/, `${where}: ${id}`);
      }
      const refs = refsOf(res.body);
      assert.ok(refs.length > 0, `${name}: no $ref at all`);
      for (const [at, ref] of refs) {
        assert.notEqual(resolvePointer(res.body, ref), undefined, `${name}: ${at} -> ${ref}`);
      }
    }
    // The names a generated client is expected to have.
    for (
      const id of [
        "issueToken",
        "listQueues",
        "createQueue",
        "sendMessages",
        "receiveMessages",
        "ackMessages",
        "publishMessages",
        "receiveSubscriptionMessages",
        "getClusterStatus",
        "getServiceIndex",
        "compatLogin",
        "compatSend",
      ]
    ) {
      assert.ok(seen.has(id), `no operation ${id}`);
    }
  } finally {
    await api.close();
  }
});
