import assert from "node:assert/strict";
import { startTestApi } from "./support/node.ts";
import { startRedis } from "./support/services.ts";

Deno.test("api: an unreachable Redis is a 503 with Retry-After, and service resumes", async () => {
  const api = await startTestApi();
  const t = api.adminToken;
  try {
    assert.equal((await api.call("PUT", "/v1/queues/jobs", { token: t, body: {} })).status, 201);
    const sent = await api.call("POST", "/v1/queues/jobs/messages", {
      token: t,
      body: { messages: [{ body: "kept" }] },
    });
    assert.equal(sent.status, 201);

    await api.redis.stop();
    // Once the node knows its store is unreachable, a change is refused before it is sent: 503,
    // not applied. (A change sent just as the connection broke answers 504: outcome unknown.)
    while (api.local.status === "ready") await new Promise((r) => setTimeout(r, 10));
    const down = await api.call("POST", "/v1/queues/jobs/receive", { token: t, body: {} });
    assert.equal(down.status, 503);
    assert.equal(down.headers.get("content-type"), "application/problem+json");
    assert.equal(down.headers.get("retry-after"), "1");
    assert.equal(down.body.code, "unavailable");

    // Same port, same data directory: the append-only file brings the message back.
    const again = await startRedis({ port: api.redis.port, dir: api.redis.dir });
    api.redis.stop = again.stop;
    let got;
    for (let i = 0; i < 50; i++) {
      got = await api.call("POST", "/v1/queues/jobs/receive", { token: t, body: {} });
      if (got.status === 200) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(got!.status, 200);
    assert.equal(got!.body.messages[0].body, "kept");
  } finally {
    await api.close();
  }
});
