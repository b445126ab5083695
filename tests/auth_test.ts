import assert from "node:assert/strict";
import { startTestApi } from "./support/node.ts";

Deno.test("auth: login, me, and the token refusals", async (t) => {
  const api = await startTestApi();
  try {
    await t.step("a token identifies its user", async () => {
      const res = await api.call("GET", "/v1/auth/me", { token: api.adminToken });
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, { username: "admin", role: "admin" });
    });
    await t.step("no token is a 401 problem", async () => {
      const res = await api.call("GET", "/v1/auth/me");
      assert.equal(res.status, 401);
      assert.equal(res.headers.get("content-type"), "application/problem+json");
      assert.equal(res.body.status, 401);
    });
    await t.step("a tampered token is refused", async () => {
      const [h, p, s] = api.adminToken.split(".");
      const claims = JSON.parse(atob(p.replace(/-/g, "+").replace(/_/g, "/")));
      claims.sub = "someone-else";
      const forged = btoa(JSON.stringify(claims)).replace(/=+$/, "").replace(/\+/g, "-")
        .replace(/\//g, "_");
      const res = await api.call("GET", "/v1/auth/me", { token: `${h}.${forged}.${s}` });
      assert.equal(res.status, 401);
      assert.equal(res.body.code, "token_invalid");
    });
    await t.step("wrong password is a 401 problem", async () => {
      const res = await api.call("POST", "/v1/auth/token", {
        body: { username: "admin", password: "nope" },
      });
      assert.equal(res.status, 401);
      assert.equal(res.body.code, "bad_credentials");
    });
    await t.step("a deleted user's token dies", async () => {
      const token = await api.userToken("carol");
      assert.equal((await api.call("GET", "/v1/auth/me", { token })).status, 200);
      await api.users.delete("carol");
      await new Promise((r) => setTimeout(r, 100)); // the change message travels through Redis
      const res = await api.call("GET", "/v1/auth/me", { token });
      assert.equal(res.status, 401);
      assert.equal(res.body.code, "token_revoked");
    });
    await t.step("malformed JSON and unknown fields are 400 problems", async () => {
      const bad = await api.call("POST", "/v1/auth/token", { rawBody: "{nope" });
      assert.equal(bad.status, 400);
      assert.equal(bad.headers.get("content-type"), "application/problem+json");
      const extra = await api.call("POST", "/v1/auth/token", {
        body: { username: "admin", password: "x", admin: true },
      });
      assert.equal(extra.status, 400);
    });
  } finally {
    await api.close();
  }
});
