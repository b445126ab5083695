/**
 * A request forwarded over gRPC carries the caller the forwarding node authenticated. The node
 * that serves it (the real HTTP app behind a real gRPC server) checks that caller against the
 * user as it is now: a user deleted while its request was on its way, or deleted and created
 * again under the same name, is refused like its token would be.
 */
import assert from "node:assert/strict";
import { ReplicationServer } from "../src/replication/server.ts";
import { PeerClients } from "../src/replication/peers.ts";
import type { Principal } from "../src/auth/users.ts";
import { startTestApi } from "./support/node.ts";

const SECRET = "forward-test-secret-9f3a1c7e5b2d8f4a6c0e";

Deno.test({
  name: "forwarding: a forwarded caller must exist now, with its token's version",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const api = await startTestApi();
    const server = await ReplicationServer.start({
      listen: "127.0.0.1:0",
      secret: SECRET,
      redis: api.local,
      applier: { apply: () => Promise.resolve("applied" as const) },
      forward: async ({ request, principal }) =>
        await api.app.fetch(request, { forwarded: { principal } }),
    });
    const peers = new PeerClients({ secret: SECRET });
    const forward = async (method: string, path: string, principal: Principal | null) => {
      const res = await peers.forwardHttp(
        server.address,
        new Request(`http://node1${path}`, { method }),
        principal,
      );
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : null };
    };
    try {
      const token = await api.userToken("bob");
      // The principal the receiving node got from bob's token (what it forwards).
      const bob = await api.tokens.verify(token);
      assert.equal(typeof bob.tokenVersion, "number");
      assert.equal(
        (await api.call("PUT", "/v1/queues/jobs", { token: api.adminToken })).status,
        201,
      );

      await t.step("an existing user with its token's version is served", async () => {
        const res = await forward("GET", "/v1/queues/jobs", bob);
        assert.equal(res.status, 200, JSON.stringify(res.body));
        assert.equal(res.body.name, "jobs");
        const me = await forward("GET", "/v1/auth/me", bob);
        assert.deepEqual(me.body, { username: "bob", role: "user" }, "no token version shown");
      });

      await t.step(
        "a user that never existed is refused (401), on /v1 and the compat API",
        async () => {
          const ghost: Principal = { username: "ghost", role: "admin" };
          const res = await forward("GET", "/v1/queues/jobs", ghost);
          assert.equal(res.status, 401, JSON.stringify(res.body));
          assert.equal(res.body.code, "token_revoked");
          const compat = await forward("GET", "/api/v1.0.0/MomServer/protected/", ghost);
          assert.equal(compat.status, 401, JSON.stringify(compat.body));
          assert.equal(compat.body.detail, "Invalid token");
        },
      );

      await t.step("a user deleted while its request was forwarded is refused", async () => {
        assert.equal(
          (await api.call("DELETE", "/v1/users/bob", { token: api.adminToken })).status,
          204,
        );
        const res = await forward("GET", "/v1/queues/jobs", bob);
        assert.equal(res.status, 401, JSON.stringify(res.body));
        assert.equal(res.body.code, "token_revoked");
        const send = await forward("GET", "/v1/queues/jobs/messages", bob);
        assert.equal(send.status, 401);
      });

      await t.step("created again under the same name: the old version is refused", async () => {
        await api.users.create("bob", "user-password", "user");
        // A create publishes nothing: this node still remembers (5 s) that bob did not exist.
        api.tokens.invalidate("bob");
        const again = await api.tokens.verify(await api.login("bob", "user-password"));
        assert.notEqual(again.tokenVersion, bob.tokenVersion);
        assert.equal((await forward("GET", "/v1/queues/jobs", bob)).status, 401);
        assert.equal((await forward("GET", "/v1/queues/jobs", again)).status, 200);
        // From a node of an earlier version (no token version): the user must exist.
        const plain = { username: "bob", role: "user" } as const;
        assert.equal((await forward("GET", "/v1/queues/jobs", plain)).status, 200);
      });
    } finally {
      peers.close();
      await server.stop();
      await api.close();
    }
  },
});
