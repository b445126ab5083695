import assert from "node:assert/strict";
import { sign } from "hono/jwt";
import { Redis } from "ioredis";
import { startTestApi } from "./support/node.ts";
import { TokenService, watchUserChanges } from "../src/auth/tokens.ts";
import { userKeys } from "../src/broker/keys.ts";

const SECRET = "test-secret-test-secret-test-secret-0123";

function b64url(text: string): string {
  return btoa(text).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

function claimsOf(token: string): Record<string, unknown> {
  const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(payload));
}

Deno.test("auth: login, me, and the token refusals", async (t) => {
  let clock = Date.now();
  const api = await startTestApi({ tokenNow: () => clock, tokenTtlSeconds: 600 });
  try {
    await t.step("a token identifies its user", async () => {
      const res = await api.call("GET", "/v1/auth/me", { token: api.adminToken });
      assert.equal(res.status, 200);
      assert.deepEqual(res.body, { username: "admin", role: "admin" });
    });

    await t.step("login answers a token and its expiry", async () => {
      const res = await api.call("POST", "/v1/auth/token", {
        body: { username: "admin", password: "admin-password" },
      });
      assert.equal(res.status, 200);
      assert.equal(typeof res.body.token, "string");
      assert.equal(Date.parse(res.body.expiresAt), (Math.floor(clock / 1000) + 600) * 1000);
    });

    await t.step("no token is a 401 problem", async () => {
      const res = await api.call("GET", "/v1/auth/me");
      assert.equal(res.status, 401);
      assert.equal(res.headers.get("content-type"), "application/problem+json");
      assert.equal(res.body.status, 401);
      assert.equal(res.body.code, "unauthenticated");
      assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/);
    });

    await t.step("a tampered token is refused", async () => {
      const [h, , s] = api.adminToken.split(".");
      const claims = claimsOf(api.adminToken);
      claims.sub = "someone-else";
      const forged = `${h}.${b64url(JSON.stringify(claims))}.${s}`;
      const res = await api.call("GET", "/v1/auth/me", { token: forged });
      assert.equal(res.status, 401);
      assert.equal(res.body.code, "token_invalid");
    });

    await t.step("a token signed with another secret, or unsigned, is refused", async () => {
      const claims = claimsOf(api.adminToken);
      const other = await sign(claims, "another-secret-another-secret-0123456", "HS256");
      const res = await api.call("GET", "/v1/auth/me", { token: other });
      assert.equal(res.body.code, "token_invalid");
      const none = `${b64url('{"alg":"none","typ":"JWT"}')}.${b64url(JSON.stringify(claims))}.`;
      const res2 = await api.call("GET", "/v1/auth/me", { token: none });
      assert.equal(res2.status, 401);
      assert.equal(res2.body.code, "token_invalid");
    });

    await t.step("a forged token that is also expired is invalid, not expired", async () => {
      const claims = { ...claimsOf(api.adminToken), exp: 1 };
      const forged = `${api.adminToken.split(".")[0]}.${b64url(JSON.stringify(claims))}.AAAA`;
      const res = await api.call("GET", "/v1/auth/me", { token: forged });
      assert.equal(res.body.code, "token_invalid");
    });

    await t.step("a token past its expiry is 401 token_expired", async () => {
      const token = await api.userToken("erin");
      assert.equal((await api.call("GET", "/v1/auth/me", { token })).status, 200);
      clock += 599_000;
      assert.equal((await api.call("GET", "/v1/auth/me", { token })).status, 200);
      clock += 1_000;
      const res = await api.call("GET", "/v1/auth/me", { token });
      assert.equal(res.status, 401);
      assert.equal(res.body.code, "token_expired");
      clock = Date.now();
    });

    await t.step("a token issued in the future (beyond clock skew) is invalid", async () => {
      const claims = { ...claimsOf(api.adminToken) };
      claims.iat = Math.floor(clock / 1000) + 3600;
      claims.exp = Math.floor(clock / 1000) + 7200;
      const token = await sign(claims, SECRET, "HS256");
      const res = await api.call("GET", "/v1/auth/me", { token });
      assert.equal(res.body.code, "token_invalid");
    });

    await t.step("wrong password and unknown user are the same 401 problem", async () => {
      const wrong = await api.call("POST", "/v1/auth/token", {
        body: { username: "admin", password: "nope" },
      });
      assert.equal(wrong.status, 401);
      assert.equal(wrong.body.code, "bad_credentials");
      const unknown = await api.call("POST", "/v1/auth/token", {
        body: { username: "nobody-here", password: "nope" },
      });
      assert.equal(unknown.status, 401);
      assert.deepEqual(unknown.body, wrong.body);
    });

    await t.step("a deleted user's token dies at once (deleted through the API)", async () => {
      const token = await api.userToken("carol");
      assert.equal((await api.call("GET", "/v1/auth/me", { token })).status, 200);
      const del = await api.call("DELETE", "/v1/users/carol", { token: api.adminToken });
      assert.equal(del.status, 204);
      const res = await api.call("GET", "/v1/auth/me", { token });
      assert.equal(res.status, 401);
      assert.equal(res.body.code, "token_revoked");
    });

    await t.step(
      "a user created again under a deleted name does not revive old tokens",
      async () => {
        const old = await api.userToken("dave", "dave-password-1");
        await api.call("DELETE", "/v1/users/dave", { token: api.adminToken });
        const created = await api.call("POST", "/v1/users", {
          token: api.adminToken,
          body: { username: "dave", password: "dave-password-2" },
        });
        assert.equal(created.status, 201);
        const res = await api.call("GET", "/v1/auth/me", { token: old });
        assert.equal(res.body.code, "token_revoked");
        const fresh = await api.login("dave", "dave-password-2");
        assert.equal((await api.call("GET", "/v1/auth/me", { token: fresh })).status, 200);
      },
    );

    await t.step("a password change kills the old token at once", async () => {
      const token = await api.userToken("frank", "frank-password-1");
      const res = await api.call("PUT", "/v1/users/frank/password", {
        token: api.adminToken,
        body: { password: "frank-password-2" },
      });
      assert.equal(res.status, 204);
      const after = await api.call("GET", "/v1/auth/me", { token });
      assert.equal(after.status, 401);
      assert.equal(after.body.code, "token_revoked");
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

Deno.test("auth: tokens die on another node through the change channel", async () => {
  const api = await startTestApi();
  // A second node: its own TokenService and change subscriber over the same users Redis.
  const events = new Redis(`${api.redis.url}/1`);
  const otherTokens = new TokenService(api.users, { secret: SECRET, ttlSeconds: 600 });
  try {
    await watchUserChanges(events, otherTokens);
    const token = await api.userToken("gina");
    assert.equal((await otherTokens.verify(token)).username, "gina"); // cached there now
    const heard = new Promise<string>((resolve) =>
      events.on("message", (channel: string, name: string) => {
        if (channel === userKeys.changes && name === "gina") resolve(name);
      })
    );
    const del = await api.call("DELETE", "/v1/users/gina", { token: api.adminToken });
    assert.equal(del.status, 204);
    await heard; // the other node has processed the change message (its listener ran first)
    await assert.rejects(otherTokens.verify(token), { name: "TokenError", reason: "revoked" });
  } finally {
    events.disconnect();
    await api.close();
  }
});
