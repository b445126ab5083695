import assert from "node:assert/strict";
import { startTestApi } from "./support/node.ts";
import { UserStore } from "../src/auth/users.ts";
import { hashPassword, needsRehash, verifyPassword } from "../src/auth/passwords.ts";
import { userKeys } from "../src/broker/keys.ts";

Deno.test("users: create, get, list, delete through the API", async (t) => {
  const api = await startTestApi();
  const admin = api.adminToken;
  try {
    await t.step("an admin creates a user: 201, the user without any hash", async () => {
      const res = await api.call("POST", "/v1/users", {
        token: admin,
        body: { username: "alice", password: "alice-password" },
      });
      assert.equal(res.status, 201);
      assert.equal(res.headers.get("location"), "/v1/users/alice");
      assert.deepEqual(Object.keys(res.body).sort(), ["createdAt", "role", "username"]);
      assert.equal(res.body.username, "alice");
      assert.equal(res.body.role, "user");
      assert.ok(!Number.isNaN(Date.parse(res.body.createdAt)));
      assert.equal(
        (await api.call("GET", "/v1/auth/me", {
          token: await api.login("alice", "alice-password"),
        })).body.role,
        "user",
      );
    });

    await t.step("the stored user is complete and its password only hashed", async () => {
      const fields = await api.usersRedis.hgetall(userKeys.user("alice"));
      assert.deepEqual(Object.keys(fields).sort(), [
        "createdAt",
        "hash",
        "passwordChangedAt",
        "role",
        "tokenVersion",
      ]);
      assert.match(fields.hash, /^\$scrypt\$ln=\d+,r=8,p=1\$/);
      assert.ok(!fields.hash.includes("alice-password"));
      assert.equal(await api.usersRedis.zscore(userKeys.index, "alice"), "0");
    });

    await t.step("an admin may create an admin", async () => {
      const res = await api.call("POST", "/v1/users", {
        token: admin,
        body: { username: "root2", password: "root2-password", role: "admin" },
      });
      assert.equal(res.status, 201);
      assert.equal(res.body.role, "admin");
    });

    await t.step("a taken name is 409 already_exists and changes nothing", async () => {
      const before = await api.usersRedis.hgetall(userKeys.user("alice"));
      const res = await api.call("POST", "/v1/users", {
        token: admin,
        body: { username: "alice", password: "another-password", role: "admin" },
      });
      assert.equal(res.status, 409);
      assert.equal(res.body.code, "already_exists");
      assert.deepEqual(await api.usersRedis.hgetall(userKeys.user("alice")), before);
    });

    await t.step("bad input is a 400 problem and creates nothing", async () => {
      const bodies: unknown[] = [
        { username: "al", password: "long-enough" }, // name too short
        { username: "a".repeat(65), password: "long-enough" }, // name too long
        { username: "bad name", password: "long-enough" }, // space
        { username: "bad:name", password: "long-enough" },
        { username: "shorty", password: "1234567" }, // 7 characters
        { username: "huge", password: "x".repeat(1025) },
        { username: "role-x", password: "long-enough", role: "root" },
        { username: "extra", password: "long-enough", admin: true }, // unknown field
        { username: "nopass" },
        "just a string",
      ];
      for (const body of bodies) {
        const res = await api.call("POST", "/v1/users", { token: admin, body });
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.equal(res.headers.get("content-type"), "application/problem+json");
        assert.equal(res.body.code, "invalid");
      }
      const malformed = await api.call("POST", "/v1/users", { token: admin, rawBody: "{" });
      assert.equal(malformed.status, 400);
      const page = await api.call("GET", "/v1/users", { token: admin });
      assert.deepEqual(page.body.users.map((u: { username: string }) => u.username), [
        "admin",
        "alice",
        "root2",
      ]);
    });

    await t.step("exactly 8 and 1024 character passwords are accepted", async () => {
      for (const [name, password] of [["eight", "12345678"], ["kilo", "k".repeat(1024)]]) {
        const res = await api.call("POST", "/v1/users", {
          token: admin,
          body: { username: name, password },
        });
        assert.equal(res.status, 201);
        await api.login(name, password);
      }
    });

    await t.step("listing pages through every user in name order", async () => {
      for (const name of ["bob-1", "bob-2", "bob-3", "bobby", "carl"]) {
        await api.users.create(name, "some-password", "user");
      }
      const seen: string[] = [];
      let after: string | null = null;
      let pages = 0;
      do {
        const query: string = after ? `?limit=3&after=${after}` : "?limit=3";
        const res = await api.call("GET", `/v1/users${query}`, { token: admin });
        assert.equal(res.status, 200);
        assert.ok(res.body.users.length <= 3);
        seen.push(...res.body.users.map((u: { username: string }) => u.username));
        after = res.body.next;
        pages++;
      } while (after);
      assert.deepEqual(seen, [
        "admin",
        "alice",
        "bob-1",
        "bob-2",
        "bob-3",
        "bobby",
        "carl",
        "eight",
        "kilo",
        "root2",
      ]);
      assert.equal(pages, 4);
    });

    await t.step("a full last page says next: null", async () => {
      const res = await api.call("GET", "/v1/users?prefix=bob-", { token: admin });
      assert.deepEqual(res.body.users.map((u: { username: string }) => u.username), [
        "bob-1",
        "bob-2",
        "bob-3",
      ]);
      assert.equal(res.body.next, null);
      const exact = await api.call("GET", "/v1/users?prefix=bob-&limit=3", { token: admin });
      assert.equal(exact.body.next, null);
    });

    await t.step("prefix and after combine", async () => {
      const res = await api.call("GET", "/v1/users?prefix=bob&after=bob-2&limit=10", {
        token: admin,
      });
      assert.deepEqual(res.body.users.map((u: { username: string }) => u.username), [
        "bob-3",
        "bobby",
      ]);
      const before = await api.call("GET", "/v1/users?prefix=bob&after=alice", { token: admin });
      assert.equal(before.body.users[0].username, "bob-1");
      const none = await api.call("GET", "/v1/users?prefix=zz", { token: admin });
      assert.deepEqual(none.body, { users: [], next: null });
    });

    await t.step("bad list queries are 400", async () => {
      for (const q of ["limit=0", "limit=1001", "limit=x", "prefix=a:b", "sort=name"]) {
        const res = await api.call("GET", `/v1/users?${q}`, { token: admin });
        assert.equal(res.status, 400, q);
      }
    });

    await t.step("get: an admin reads anyone, a user itself, 404 when absent", async () => {
      const token = await api.login("alice", "alice-password");
      const byAdmin = await api.call("GET", "/v1/users/alice", { token: admin });
      assert.equal(byAdmin.status, 200);
      assert.equal(byAdmin.body.username, "alice");
      const self = await api.call("GET", "/v1/users/alice", { token });
      assert.deepEqual(self.body, byAdmin.body);
      const other = await api.call("GET", "/v1/users/carl", { token });
      assert.equal(other.status, 403);
      assert.match(other.body.detail, /admin role/);
      const absent = await api.call("GET", "/v1/users/nobody", { token: admin });
      assert.equal(absent.status, 404);
      assert.equal(absent.body.code, "not_found");
      const badName = await api.call("GET", "/v1/users/x", { token: admin });
      assert.equal(badName.status, 400);
    });

    await t.step("a plain user gets 403 naming the admin role on admin routes", async () => {
      const token = await api.login("alice", "alice-password");
      const attempts: [string, string, unknown][] = [
        ["POST", "/v1/users", { username: "mallory", password: "mallory-password" }],
        ["POST", "/v1/users", { bad: "body" }], // refused before the body is looked at
        ["GET", "/v1/users", undefined],
        ["DELETE", "/v1/users/carl", undefined],
      ];
      for (const [method, path, body] of attempts) {
        const res = await api.call(method, path, { token, body });
        assert.equal(res.status, 403, `${method} ${path}`);
        assert.equal(res.headers.get("content-type"), "application/problem+json");
        assert.equal(res.body.code, "forbidden");
        assert.match(res.body.detail, /admin role/);
      }
      assert.equal(await api.users.get("mallory"), null);
      assert.ok(await api.users.get("carl"));
    });

    await t.step("no token on user routes is 401", async () => {
      assert.equal((await api.call("GET", "/v1/users")).status, 401);
      assert.equal((await api.call("DELETE", "/v1/users/carl")).status, 401);
    });

    await t.step("delete: 204, then 404; the user is gone from the listing", async () => {
      const del = await api.call("DELETE", "/v1/users/carl", { token: admin });
      assert.equal(del.status, 204);
      assert.equal(await api.users.get("carl"), null);
      assert.equal(await api.usersRedis.zscore(userKeys.index, "carl"), null);
      const again = await api.call("DELETE", "/v1/users/carl", { token: admin });
      assert.equal(again.status, 404);
      assert.equal(again.body.code, "not_found");
    });

    await t.step("an admin cannot delete itself: 409 with a clear detail", async () => {
      const res = await api.call("DELETE", "/v1/users/admin", { token: admin });
      assert.equal(res.status, 409);
      assert.equal(res.body.code, "conflict");
      assert.match(res.body.detail, /cannot delete itself/);
      assert.ok(await api.users.get("admin"));
      assert.equal((await api.call("GET", "/v1/auth/me", { token: admin })).status, 200);
    });

    await t.step("an admin deletes another admin", async () => {
      const other = await api.login("root2", "root2-password");
      const res = await api.call("DELETE", "/v1/users/root2", { token: admin });
      assert.equal(res.status, 204);
      assert.equal((await api.call("GET", "/v1/auth/me", { token: other })).status, 401);
    });
  } finally {
    await api.close();
  }
});

Deno.test("users: password changes", async (t) => {
  const api = await startTestApi({ loginFailuresPerMinute: 3 });
  const admin = api.adminToken;
  try {
    await api.users.create("olga", "olga-password-1", "user");
    await api.users.create("pete", "pete-password-1", "user");

    await t.step("changing your own password needs currentPassword: 400 without", async () => {
      const token = await api.login("olga", "olga-password-1");
      const res = await api.call("PUT", "/v1/users/olga/password", {
        token,
        body: { password: "olga-password-2" },
      });
      assert.equal(res.status, 400);
      assert.match(res.body.detail, /currentPassword/);
    });

    await t.step("a wrong currentPassword is 403 bad_credentials; nothing changes", async () => {
      const token = await api.login("olga", "olga-password-1");
      const res = await api.call("PUT", "/v1/users/olga/password", {
        token,
        body: { password: "olga-password-2", currentPassword: "not-it" },
      });
      assert.equal(res.status, 403);
      assert.equal(res.body.code, "bad_credentials");
      assert.equal((await api.call("GET", "/v1/auth/me", { token })).status, 200);
      await api.login("olga", "olga-password-1");
    });

    await t.step("a good change: 204, old token dead, new password works", async () => {
      const token = await api.login("olga", "olga-password-1");
      const res = await api.call("PUT", "/v1/users/olga/password", {
        token,
        body: { password: "olga-password-2", currentPassword: "olga-password-1" },
      });
      assert.equal(res.status, 204);
      const me = await api.call("GET", "/v1/auth/me", { token });
      assert.equal(me.status, 401);
      assert.equal(me.body.code, "token_revoked");
      const old = await api.call("POST", "/v1/auth/token", {
        body: { username: "olga", password: "olga-password-1" },
      });
      assert.equal(old.status, 401);
      await api.login("olga", "olga-password-2");
    });

    await t.step("a user cannot change another user's password: 403", async () => {
      const token = await api.login("olga", "olga-password-2");
      const res = await api.call("PUT", "/v1/users/pete/password", {
        token,
        body: { password: "hacked-password", currentPassword: "olga-password-2" },
      });
      assert.equal(res.status, 403);
      assert.match(res.body.detail, /admin role/);
      await api.login("pete", "pete-password-1");
    });

    await t.step("an admin sets anyone's password without the current one", async () => {
      const token = await api.login("pete", "pete-password-1");
      const res = await api.call("PUT", "/v1/users/pete/password", {
        token: admin,
        body: { password: "pete-password-2" },
      });
      assert.equal(res.status, 204);
      assert.equal((await api.call("GET", "/v1/auth/me", { token })).status, 401);
      await api.login("pete", "pete-password-2");
    });

    await t.step("an admin changing its own password also gives currentPassword", async () => {
      const res = await api.call("PUT", "/v1/users/admin/password", {
        token: admin,
        body: { password: "admin-password-2" },
      });
      assert.equal(res.status, 400);
    });

    await t.step("unknown user 404, short password 400, unknown field 400", async () => {
      const absent = await api.call("PUT", "/v1/users/nobody/password", {
        token: admin,
        body: { password: "long-enough" },
      });
      assert.equal(absent.status, 404);
      const short = await api.call("PUT", "/v1/users/pete/password", {
        token: admin,
        body: { password: "short" },
      });
      assert.equal(short.status, 400);
      const extra = await api.call("PUT", "/v1/users/pete/password", {
        token: admin,
        body: { password: "long-enough", role: "admin" },
      });
      assert.equal(extra.status, 400);
      await api.login("pete", "pete-password-2");
    });

    await t.step("guessing the current password is throttled like logins", async () => {
      const token = await api.login("pete", "pete-password-2");
      const guess = (currentPassword: string) =>
        api.call("PUT", "/v1/users/pete/password", {
          token,
          body: { password: "pete-password-3", currentPassword },
        });
      for (let i = 0; i < 3; i++) assert.equal((await guess(`guess-${i}`)).status, 403);
      const res = await guess("pete-password-2"); // right, but the pair is throttled
      assert.equal(res.status, 429);
      assert.ok(Number(res.headers.get("retry-after")) >= 1);
      assert.equal((await api.call("GET", "/v1/auth/me", { token })).status, 200);
    });
  } finally {
    await api.close();
  }
});

Deno.test("users: this node revokes tokens itself, without the change channel", async () => {
  const api = await startTestApi({ watchUserChanges: false });
  try {
    const a = await api.userToken("quinn");
    const b = await api.userToken("rita", "rita-password");
    assert.equal((await api.call("GET", "/v1/auth/me", { token: a })).status, 200); // cached
    assert.equal((await api.call("GET", "/v1/auth/me", { token: b })).status, 200);
    await api.call("DELETE", "/v1/users/quinn", { token: api.adminToken });
    assert.equal((await api.call("GET", "/v1/auth/me", { token: a })).body.code, "token_revoked");
    await api.call("PUT", "/v1/users/rita/password", {
      token: b,
      body: { password: "rita-password-2", currentPassword: "rita-password" },
    });
    assert.equal((await api.call("GET", "/v1/auth/me", { token: b })).body.code, "token_revoked");
  } finally {
    await api.close();
  }
});

Deno.test("users: the store keeps at least the acting admin", async () => {
  const api = await startTestApi();
  try {
    await api.users.create("ann", "ann-password", "admin");
    await api.users.create("ben", "ben-password", "admin");
    // ann and ben delete each other "at once": the second finds its actor gone.
    assert.equal(await api.users.delete("ben", { by: "ann" }), true);
    await assert.rejects(api.users.delete("ann", { by: "ben" }), { code: "forbidden" });
    assert.ok(await api.users.get("ann"));
    await assert.rejects(api.users.delete("ann", { by: "ann" }), { code: "conflict" });
    // A plain user is no actor for deletions either.
    await api.users.create("cid", "cid-password", "user");
    await assert.rejects(api.users.delete("ann", { by: "cid" }), { code: "forbidden" });
    // Without an actor (tools, tests) the store just deletes.
    assert.equal(await api.users.delete("cid"), true);
    assert.equal(await api.users.delete("cid"), false);
  } finally {
    await api.close();
  }
});

Deno.test("users: a password change checks the version it verified (compare-and-set)", async () => {
  const api = await startTestApi();
  try {
    await api.users.create("dora", "dora-password", "user");
    const found = await api.users.authenticate("dora", "dora-password");
    assert.ok(found);
    await api.users.setPassword("dora", "changed-elsewhere"); // another request got there first
    await assert.rejects(
      api.users.setPassword("dora", "dora-password-2", { expectTokenVersion: found.tokenVersion }),
      { code: "conflict" },
    );
    assert.ok(await api.users.authenticate("dora", "changed-elsewhere"));
    await assert.rejects(api.users.setPassword("nobody", "long-enough"), { code: "not_found" });
    // The store checks its rules too, whoever calls it.
    await assert.rejects(api.users.setPassword("dora", "short"), { code: "invalid" });
    await assert.rejects(api.users.create("shorty", "short", "user"), { code: "invalid" });
    await assert.rejects(api.users.create("a:b", "long-enough", "user"), { code: "invalid" });
  } finally {
    await api.close();
  }
});

Deno.test("passwords: scrypt hashes verify, normalise, and upgrade on login", async () => {
  const hash = await hashPassword("correct horse", 10);
  assert.match(hash, /^\$scrypt\$ln=10,r=8,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
  assert.notEqual(await hashPassword("correct horse", 10), hash); // salted
  assert.equal(await verifyPassword("correct horse", hash), true);
  assert.equal(await verifyPassword("correct horsE", hash), false);
  assert.equal(await verifyPassword("x", "garbage"), false);
  assert.equal(await verifyPassword("x", "$scrypt$ln=30,r=8,p=1$AAAA$AAAA"), false); // cost capped
  // "é" precomposed and decomposed are the same password.
  const accented = await hashPassword("caf\u00e9-caf\u00e9", 10);
  assert.equal(await verifyPassword("cafe\u0301-cafe\u0301", accented), true);
  assert.equal(needsRehash(hash, 10), false);
  assert.equal(needsRehash(hash, 11), true);

  const api = await startTestApi();
  try {
    await api.users.create("eve", "eve-password", "user"); // cost 10
    const stronger = new UserStore(api.usersRedis, { hashCost: 11 });
    const before = await api.usersRedis.hget(userKeys.user("eve"), "hash");
    const found = await stronger.authenticate("eve", "eve-password");
    assert.ok(found);
    const after = await api.usersRedis.hget(userKeys.user("eve"), "hash");
    assert.notEqual(after, before);
    assert.match(after!, /^\$scrypt\$ln=11,/);
    // The upgrade keeps the user's tokens: same version.
    assert.equal(
      (await stronger.authenticate("eve", "eve-password"))?.tokenVersion,
      found.tokenVersion,
    );
  } finally {
    await api.close();
  }
});
