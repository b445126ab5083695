/**
 * The earlier MOM server's API (/api/v1.0.0/MomServer) driven over HTTP the way its Python
 * client did, against a real Redis, with the compatibility routes mounted into the node's app
 * exactly as createApp does.
 */
import assert from "node:assert/strict";
import { COMPAT_BASE_PATH } from "../src/api/compat/routes.ts";
import { Notifier } from "../src/broker/notifier.ts";
import { encodeTopicReceipt } from "../src/broker/receipts.ts";
import { DEFAULT_TOPIC_CONFIG, TopicService } from "../src/broker/topics.ts";
import { startTestApi, type TestApi, type TestApiOptions } from "./support/node.ts";

const BASE = COMPAT_BASE_PATH;

// deno-lint-ignore no-explicit-any
type Body = any;
type Reply = { status: number; headers: Headers; body: Body };

interface CallOptions {
  token?: string;
  body?: unknown;
  rawBody?: string;
  headers?: Record<string, string>;
}

interface Compat {
  api: TestApi;
  topics: TopicService;
  /** A request to the node's app (paths as given). */
  raw(method: string, path: string, o?: CallOptions): Promise<Reply>;
  /** A request under the compatibility base path. */
  mom(method: string, path: string, o?: CallOptions): Promise<Reply>;
  /** Logs in through the compatibility API (throws unless 200). */
  login(username: string, password: string): Promise<string>;
  /** Creates a plain user through the compatibility API and logs it in. */
  user(username: string): Promise<string>;
  close(): Promise<void>;
}

/** The node's app (with the compatibility API mounted) over the test Redis of startTestApi. */
async function startCompat(opts: TestApiOptions = {}): Promise<Compat> {
  const api = await startTestApi(opts);
  const app = api.app;
  const topics = new TopicService(api.store, new Notifier());

  async function raw(method: string, path: string, o: CallOptions = {}): Promise<Reply> {
    const headers: Record<string, string> = { ...o.headers };
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    let body: string | undefined = o.rawBody;
    if (o.body !== undefined) body = JSON.stringify(o.body);
    if (body !== undefined) headers["content-type"] ??= "application/json";
    const res = await app.request(path, { method, headers, body, redirect: "manual" });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status, headers: res.headers, body: parsed };
  }
  const mom = (method: string, path: string, o?: CallOptions) => raw(method, BASE + path, o);

  async function login(username: string, password: string): Promise<string> {
    const res = await mom("POST", "/login/", { body: { username, password } });
    if (res.status !== 200) throw new Error(`login ${username}: ${res.status}`);
    return res.body.access_token;
  }

  const admin = () => api.adminToken;
  return {
    api,
    topics,
    raw,
    mom,
    login,
    async user(username: string) {
      const res = await mom("PUT", "/admin/users/create/", {
        token: admin(),
        body: { username, password: `${username}-password` },
      });
      if (res.status !== 200) throw new Error(`create ${username}: ${res.status}`);
      return login(username, `${username}-password`);
    },
    close: () => api.close(),
  };
}

function mq(name: string, type: "queue" | "topic") {
  return { name, type };
}

Deno.test("compat: root, login, protected greetings, docs", async (t) => {
  const c = await startCompat();
  try {
    await t.step("GET / answers the welcome string", async () => {
      const res = await c.mom("GET", "/");
      assert.equal(res.status, 200);
      assert.equal(res.body, "Welcome to MOM TET API!");
    });

    await t.step("login answers access_token and token_type Bearer", async () => {
      const res = await c.mom("POST", "/login/", {
        body: { username: "admin", password: "admin-password" },
      });
      assert.equal(res.status, 200);
      assert.equal(res.body.token_type, "Bearer");
      assert.equal(typeof res.body.access_token, "string");
      assert.deepEqual(Object.keys(res.body).sort(), ["access_token", "token_type"]);
    });

    await t.step("wrong credentials: 401 Invalid username or password", async () => {
      for (
        const body of [{ username: "admin", password: "nope" }, { username: "x", password: "y" }]
      ) {
        const res = await c.mom("POST", "/login/", { body });
        assert.equal(res.status, 401);
        assert.deepEqual(res.body, { detail: "Invalid username or password" });
      }
    });

    await t.step("protected routes greet the user by name", async () => {
      const admin = await c.login("admin", "admin-password");
      const p = await c.mom("GET", "/protected/", { token: admin });
      assert.equal(p.status, 200);
      assert.equal(p.body, "This is a protected endpoint. Welcome, admin!");
      const a = await c.mom("GET", "/admin/protected/", { token: admin });
      assert.equal(a.status, 200);
      assert.equal(a.body, "This is the protected admin endpoint. Welcome, admin!");
    });

    await t.step("tokens are interchangeable between the two APIs", async () => {
      const compatToken = await c.login("admin", "admin-password");
      const me = await c.raw("GET", "/v1/auth/me", { token: compatToken });
      assert.equal(me.status, 200);
      assert.equal(me.body.username, "admin");
      const p = await c.mom("GET", "/protected/", { token: c.api.adminToken });
      assert.equal(p.status, 200);
    });

    await t.step("the OpenAPI description and docs page are under the base path", async () => {
      const doc = await c.mom("GET", "/openapi.json");
      assert.equal(doc.status, 200);
      assert.equal(doc.body.openapi, "3.1.0");
      for (
        const p of [
          "/",
          "/login/",
          "/protected/",
          "/admin/protected/",
          "/admin/users/create/",
          "/admin/users/remove/{username}",
          "/admin/queue_topic/create/",
          "/admin/queue_topic/delete/{name}",
          "/queue_topic/subscribe/",
          "/queue_topic/unsubscribe/",
          "/queue_topic/send/",
          "/queue_topic/receive/",
        ]
      ) {
        assert.ok(doc.body.paths[BASE + p], `missing ${p}`);
      }
      assert.ok(doc.body.components.securitySchemes.HTTPBearer);
      const main = await c.raw("GET", "/openapi.json");
      assert.equal(main.status, 200);
      assert.ok(!Object.keys(main.body.paths).some((p) => p.startsWith(BASE)));
      const page = await c.mom("GET", "/docs");
      assert.equal(page.status, 200);
      assert.match(String(page.body), /<!doctype html>/);
    });
  } finally {
    await c.close();
  }
});

Deno.test("compat: trailing slashes, 404 and 405 as FastAPI answered them", async (t) => {
  const c = await startCompat();
  try {
    await t.step("a missing trailing slash is a 307 to the slashed path, query kept", async () => {
      const root = await c.raw("GET", BASE);
      assert.equal(root.status, 307);
      assert.equal(root.headers.get("location"), `${BASE}/`);
      const login = await c.mom("POST", "/login?x=1&y=2", {
        body: { username: "admin", password: "admin-password" },
      });
      assert.equal(login.status, 307);
      assert.equal(login.headers.get("location"), `${BASE}/login/?x=1&y=2`);
      // Before authentication, like FastAPI's router.
      const send = await c.mom("POST", "/queue_topic/send");
      assert.equal(send.status, 307);
      assert.equal(send.headers.get("location"), `${BASE}/queue_topic/send/`);
      const del = await c.mom("DELETE", "/admin/queue_topic/delete/jobs?mom_type=queue");
      assert.equal(del.status, 403); // that route has no trailing slash: it is matched
    });

    await t.step(
      "an extra trailing slash on the removal routes redirects to the bare one",
      async () => {
        const res = await c.mom("DELETE", "/admin/users/remove/bob/");
        assert.equal(res.status, 307);
        assert.equal(res.headers.get("location"), `${BASE}/admin/users/remove/bob`);
      },
    );

    await t.step("following the redirect reaches the route", async () => {
      const first = await c.mom("POST", "/login", {
        body: { username: "admin", password: "admin-password" },
      });
      const res = await c.raw("POST", first.headers.get("location")!, {
        body: { username: "admin", password: "admin-password" },
      });
      assert.equal(res.status, 200);
      assert.equal(res.body.token_type, "Bearer");
    });

    await t.step("unknown path 404, known path with another method 405", async () => {
      const nf = await c.mom("GET", "/nothing/here/");
      assert.equal(nf.status, 404);
      assert.deepEqual(nf.body, { detail: "Not Found" });
      const na = await c.mom("GET", "/login/");
      assert.equal(na.status, 405);
      assert.deepEqual(na.body, { detail: "Method Not Allowed" });
      assert.equal(na.headers.get("allow"), "POST");
    });
  } finally {
    await c.close();
  }
});

Deno.test("compat: authentication and authorization errors", async (t) => {
  const clock = { ms: Date.now() };
  const c = await startCompat({ tokenNow: () => clock.ms });
  try {
    const bob = await c.user("bobby");

    await t.step("no Authorization header: 403 Not authenticated", async () => {
      for (const path of ["/protected/", "/admin/protected/", "/queue_topic/send/"]) {
        const method = path.startsWith("/queue") ? "POST" : "GET";
        const res = await c.mom(method, path);
        assert.equal(res.status, 403, path);
        assert.deepEqual(res.body, { detail: "Not authenticated" });
      }
      const empty = await c.mom("GET", "/protected/", { headers: { authorization: "Bearer" } });
      assert.equal(empty.status, 403);
      assert.deepEqual(empty.body, { detail: "Not authenticated" });
      const basic = await c.mom("GET", "/protected/", { headers: { authorization: "Basic YTpi" } });
      assert.equal(basic.status, 403);
      assert.deepEqual(basic.body, { detail: "Invalid authentication credentials" });
    });

    await t.step("bad signature or malformed token: 401 Invalid token", async () => {
      const [h, p] = bob.split(".");
      for (const token of ["garbage", `${h}.${p}.AAAA`, "a.b.c"]) {
        const res = await c.mom("GET", "/protected/", { token });
        assert.equal(res.status, 401);
        assert.deepEqual(res.body, { detail: "Invalid token" });
      }
    });

    await t.step("not an admin on an admin route: 403 Forbidden: access denied", async () => {
      const routes: [string, string, unknown][] = [
        ["GET", "/admin/protected/", undefined],
        ["PUT", "/admin/users/create/", { username: "carol", password: "carol-password" }],
        ["DELETE", "/admin/users/remove/admin", undefined],
        ["PUT", "/admin/queue_topic/create/", mq("jobs", "queue")],
        ["DELETE", "/admin/queue_topic/delete/jobs?mom_type=queue", undefined],
      ];
      for (const [method, path, body] of routes) {
        const res = await c.mom(method, path, { token: bob, body });
        assert.equal(res.status, 403, path);
        assert.deepEqual(res.body, { detail: "Forbidden: access denied" });
      }
    });

    await t.step("expired token: 401 Token has expired", async () => {
      clock.ms += 3600_000;
      const res = await c.mom("GET", "/protected/", { token: bob });
      assert.equal(res.status, 401);
      assert.deepEqual(res.body, { detail: "Token has expired" });
      clock.ms -= 3600_000;
    });

    await t.step("a removed user's token: 401 Invalid token", async () => {
      const dave = await c.user("daveX");
      const removed = await c.mom("DELETE", "/admin/users/remove/daveX", {
        token: c.api.adminToken,
      });
      assert.equal(removed.body, "User daveX removed successfully.");
      const res = await c.mom("GET", "/protected/", { token: dave });
      assert.equal(res.status, 401);
      assert.deepEqual(res.body, { detail: "Invalid token" });
    });
  } finally {
    await c.close();
  }
});

Deno.test("compat: body validation is a FastAPI 422", async (t) => {
  const c = await startCompat();
  const admin = c.api.adminToken;
  try {
    await t.step("a missing field", async () => {
      const res = await c.mom("POST", "/queue_topic/send/", {
        token: admin,
        body: { name: "jobs", type: "queue" },
      });
      assert.equal(res.status, 422);
      assert.equal(res.body.detail.length, 1);
      assert.deepEqual(res.body.detail[0].loc, ["body", "message"]);
      assert.equal(res.body.detail[0].type, "missing");
      assert.equal(res.body.detail[0].msg, "Field required");
    });

    await t.step("a bad name, a bad type, a non-string", async () => {
      const res = await c.mom("POST", "/queue_topic/subscribe/", {
        token: admin,
        body: { name: "no spaces!", type: "stack" },
      });
      assert.equal(res.status, 422);
      const byField = Object.fromEntries(
        res.body.detail.map((d: Body) => [d.loc.join("."), d.type]),
      );
      assert.equal(byField["body.name"], "string_pattern_mismatch");
      assert.equal(byField["body.type"], "literal_error");
      const num = await c.mom("POST", "/queue_topic/receive/", {
        token: admin,
        body: { name: 5, type: "queue" },
      });
      assert.equal(num.status, 422);
      assert.deepEqual(num.body.detail[0].loc, ["body", "name"]);
      assert.equal(num.body.detail[0].type, "string_type");
    });

    await t.step("not JSON, or no body at all", async () => {
      const bad = await c.mom("POST", "/login/", { rawBody: "{nope" });
      assert.equal(bad.status, 422);
      assert.equal(bad.body.detail[0].type, "json_invalid");
      const none = await c.mom("POST", "/queue_topic/receive/", {
        token: admin,
        headers: { "content-type": "application/json" },
      });
      assert.equal(none.status, 422);
    });

    await t.step("delete without mom_type, or with an unknown one", async () => {
      const res = await c.mom("DELETE", "/admin/queue_topic/delete/jobs", { token: admin });
      assert.equal(res.status, 422);
      assert.deepEqual(res.body.detail[0].loc, ["query", "mom_type"]);
      const other = await c.mom("DELETE", "/admin/queue_topic/delete/jobs?mom_type=x", {
        token: admin,
      });
      assert.equal(other.status, 422);
    });

    await t.step("usernames of 5 to 20 characters; momd's password policy", async () => {
      for (
        const body of [
          { username: "abcd", password: "long-enough" },
          { username: "a".repeat(21), password: "long-enough" },
          { username: "bad name", password: "long-enough" },
          { username: "goodname", password: "short" },
        ]
      ) {
        const res = await c.mom("PUT", "/admin/users/create/", { token: admin, body });
        assert.equal(res.status, 422, JSON.stringify(body));
        assert.ok(Array.isArray(res.body.detail));
      }
    });
  } finally {
    await c.close();
  }
});

Deno.test("compat: admin user management", async (t) => {
  const c = await startCompat();
  const admin = c.api.adminToken;
  try {
    await t.step("create answers a string; the user is a plain user of momd", async () => {
      const res = await c.mom("PUT", "/admin/users/create/", {
        token: admin,
        body: { username: "noadmin", password: "noadmin-password" },
      });
      assert.equal(res.status, 200);
      assert.equal(res.body, "User noadmin created successfully.");
      const v1 = await c.raw("GET", "/v1/users/noadmin", { token: admin });
      assert.equal(v1.status, 200);
      assert.equal(v1.body.role, "user");
      const token = await c.login("noadmin", "noadmin-password");
      assert.equal((await c.mom("GET", "/protected/", { token })).status, 200);
      assert.equal((await c.mom("GET", "/admin/protected/", { token })).status, 403);
    });

    await t.step("an existing name: 403 Username already exists", async () => {
      const res = await c.mom("PUT", "/admin/users/create/", {
        token: admin,
        body: { username: "noadmin", password: "other-password" },
      });
      assert.equal(res.status, 403);
      assert.deepEqual(res.body, { detail: "Username already exists" });
      // Also a user made through /v1.
      await c.raw("POST", "/v1/users", {
        token: admin,
        body: { username: "viauser", password: "viauser-password" },
      });
      const again = await c.mom("PUT", "/admin/users/create/", {
        token: admin,
        body: { username: "viauser", password: "viauser-password" },
      });
      assert.equal(again.status, 403);
    });

    await t.step("remove answers removed, then not found (both 200)", async () => {
      const first = await c.mom("DELETE", "/admin/users/remove/noadmin", { token: admin });
      assert.equal(first.status, 200);
      assert.equal(first.body, "User noadmin removed successfully.");
      const second = await c.mom("DELETE", "/admin/users/remove/noadmin", { token: admin });
      assert.equal(second.status, 200);
      assert.equal(second.body, "User noadmin not found.");
      const odd = await c.mom("DELETE", "/admin/users/remove/a%20b", { token: admin });
      assert.equal(odd.body, "User a b not found.");
      assert.equal((await c.raw("GET", "/v1/users/noadmin", { token: admin })).status, 404);
    });

    await t.step("an admin cannot remove itself (the cluster keeps an admin)", async () => {
      const res = await c.mom("DELETE", "/admin/users/remove/admin", { token: admin });
      assert.equal(res.status, 403);
      assert.equal(typeof res.body.detail, "string");
    });
  } finally {
    await c.close();
  }
});

Deno.test("compat: queues as the old client used them", async (t) => {
  const c = await startCompat();
  const admin = c.api.adminToken;
  try {
    const alice = await c.user("alice");
    const bobby = await c.user("bobby");
    const op = (path: string, token: string, body: unknown) =>
      c.mom("POST", `/queue_topic/${path}/`, { token, body });

    await t.step("an admin creates a queue; the name taken again is success false", async () => {
      const res = await c.mom("PUT", "/admin/queue_topic/create/", {
        token: admin,
        body: mq("jobs", "queue"),
      });
      assert.equal(res.status, 200);
      assert.equal(res.body.success, true);
      assert.equal(typeof res.body.message, "string");
      const again = await c.mom("PUT", "/admin/queue_topic/create/", {
        token: admin,
        body: mq("jobs", "queue"),
      });
      assert.equal(again.status, 200);
      assert.equal(again.body.success, false);
    });

    await t.step("sending needs no subscription; receiving does", async () => {
      const sent = await op("send", alice, { ...mq("jobs", "queue"), message: "m1" });
      assert.deepEqual(sent.body.success, true);
      const notSub = await op("receive", alice, mq("jobs", "queue"));
      assert.equal(notSub.status, 200);
      assert.equal(notSub.body.success, false);
    });

    await t.step("subscribe, subscribe again (false), receive FIFO, empty is null", async () => {
      const sub = await op("subscribe", alice, mq("jobs", "queue"));
      assert.equal(sub.body.success, true);
      assert.equal((await op("subscribe", alice, mq("jobs", "queue"))).body.success, false);
      await op("send", bobby, { ...mq("jobs", "queue"), message: "m2" });
      await op("send", bobby, { ...mq("jobs", "queue"), message: "m3" });
      for (const expected of ["m1", "m2", "m3"]) {
        const res = await op("receive", alice, mq("jobs", "queue"));
        assert.deepEqual(res.body, { success: true, message: expected });
      }
      const empty = await op("receive", alice, mq("jobs", "queue"));
      assert.deepEqual(empty.body, { success: true, message: null });
      // Received means gone: nothing left in flight on momd's side either.
      const stats = await c.raw("GET", "/v1/queues/jobs", { token: admin });
      assert.equal(stats.body.stats.depth, 0);
      assert.equal(stats.body.stats.inFlight, 0);
    });

    await t.step("the owner is subscribed from the start and cannot unsubscribe", async () => {
      await op("send", bobby, { ...mq("jobs", "queue"), message: "for-owner" });
      const res = await op("receive", admin, mq("jobs", "queue"));
      assert.deepEqual(res.body, { success: true, message: "for-owner" });
      assert.equal((await op("unsubscribe", admin, mq("jobs", "queue"))).body.success, false);
    });

    await t.step("unsubscribe, then receiving is refused; unsubscribe again is false", async () => {
      assert.equal((await op("unsubscribe", alice, mq("jobs", "queue"))).body.success, true);
      assert.equal((await op("receive", alice, mq("jobs", "queue"))).body.success, false);
      assert.equal((await op("unsubscribe", alice, mq("jobs", "queue"))).body.success, false);
    });

    await t.step("a queue that does not exist: success false everywhere", async () => {
      for (const path of ["subscribe", "unsubscribe", "receive"]) {
        const res = await op(path, alice, mq("ghost", "queue"));
        assert.equal(res.status, 200);
        assert.equal(res.body.success, false, path);
      }
      const sent = await op("send", alice, { ...mq("ghost", "queue"), message: "x" });
      assert.equal(sent.body.success, false);
      const del = await c.mom("DELETE", "/admin/queue_topic/delete/ghost?mom_type=queue", {
        token: admin,
      });
      assert.equal(del.body.success, false);
    });

    await t.step("only the owner deletes: another admin is success false", async () => {
      await c.raw("POST", "/v1/users", {
        token: admin,
        body: { username: "admin2", password: "admin2-password", role: "admin" },
      });
      const admin2 = await c.login("admin2", "admin2-password");
      const refused = await c.mom("DELETE", "/admin/queue_topic/delete/jobs?mom_type=queue", {
        token: admin2,
      });
      assert.equal(refused.status, 200);
      assert.equal(refused.body.success, false);
      const wrongType = await c.mom("DELETE", "/admin/queue_topic/delete/jobs?mom_type=topic", {
        token: admin,
      });
      assert.equal(wrongType.body.success, false);
      const ok = await c.mom("DELETE", "/admin/queue_topic/delete/jobs?mom_type=queue", {
        token: admin,
      });
      assert.equal(ok.body.success, true);
      assert.equal((await c.raw("GET", "/v1/queues/jobs", { token: admin })).status, 404);
    });

    await t.step("a re-created queue starts without the old subscribers", async () => {
      await c.mom("PUT", "/admin/queue_topic/create/", { token: admin, body: mq("jobs", "queue") });
      await op("subscribe", bobby, mq("jobs", "queue"));
      await c.mom("DELETE", "/admin/queue_topic/delete/jobs?mom_type=queue", { token: admin });
      await c.mom("PUT", "/admin/queue_topic/create/", { token: admin, body: mq("jobs", "queue") });
      assert.equal((await op("receive", bobby, mq("jobs", "queue"))).body.success, false);
    });
  } finally {
    await c.close();
  }
});

Deno.test("compat: queue receivers compete; no message reaches two of them", async () => {
  const c = await startCompat();
  const admin = c.api.adminToken;
  try {
    await c.mom("PUT", "/admin/queue_topic/create/", { token: admin, body: mq("work", "queue") });
    const workers = await Promise.all(["worker1", "worker2", "worker3"].map((u) => c.user(u)));
    for (const w of workers) {
      const res = await c.mom("POST", "/queue_topic/subscribe/", {
        token: w,
        body: mq("work", "queue"),
      });
      assert.equal(res.body.success, true);
    }
    const total = 60;
    for (let i = 0; i < total; i++) {
      await c.mom("POST", "/queue_topic/send/", {
        token: admin,
        body: { ...mq("work", "queue"), message: `job-${i}` },
      });
    }
    const got: string[][] = await Promise.all(workers.map(async (w) => {
      const mine: string[] = [];
      while (true) {
        const res = await c.mom("POST", "/queue_topic/receive/", {
          token: w,
          body: mq("work", "queue"),
        });
        assert.equal(res.body.success, true);
        if (res.body.message === null) return mine;
        mine.push(res.body.message);
      }
    }));
    const all = got.flat();
    assert.equal(all.length, total);
    assert.equal(new Set(all).size, total);
    for (const mine of got) {
      // Each receiver sees its share in sending order (FIFO).
      const order = mine.map((m) => Number(m.slice(4)));
      assert.deepEqual(order, [...order].sort((a, b) => a - b));
    }
  } finally {
    await c.close();
  }
});

Deno.test("compat: topics as the old client used them", async (t) => {
  const c = await startCompat();
  const admin = c.api.adminToken;
  try {
    const alice = await c.user("alice");
    const bobby = await c.user("bobby");
    const op = (path: string, token: string, body: unknown) =>
      c.mom("POST", `/queue_topic/${path}/`, { token, body });
    const send = (token: string, message: string) =>
      op("send", token, { ...mq("news", "topic"), message });
    const receiveAll = async (token: string) => {
      const out: string[] = [];
      while (true) {
        const res = await op("receive", token, mq("news", "topic"));
        assert.equal(res.body.success, true, JSON.stringify(res.body));
        if (res.body.message === null) return out;
        out.push(res.body.message);
      }
    };

    await t.step(
      "create (owner subscribed from the earliest); the name taken is false",
      async () => {
        const res = await c.mom("PUT", "/admin/queue_topic/create/", {
          token: admin,
          body: mq("news", "topic"),
        });
        assert.equal(res.body.success, true);
        const again = await c.mom("PUT", "/admin/queue_topic/create/", {
          token: admin,
          body: mq("news", "topic"),
        });
        assert.equal(again.body.success, false);
        // A queue and a topic are separate kinds: the same name as a queue is free.
        const q = await c.mom("PUT", "/admin/queue_topic/create/", {
          token: admin,
          body: mq("news", "queue"),
        });
        assert.equal(q.body.success, true);
      },
    );

    await t.step("others start at the end; nobody receives its own messages", async () => {
      assert.equal((await send(alice, "a0")).body.success, true); // before bobby subscribes
      assert.equal((await op("subscribe", bobby, mq("news", "topic"))).body.success, true);
      assert.equal((await op("subscribe", bobby, mq("news", "topic"))).body.success, false);
      assert.equal((await op("subscribe", alice, mq("news", "topic"))).body.success, true);
      await send(alice, "a1");
      await send(bobby, "b1");
      await send(alice, "a2");
      await send(admin, "o1");
      assert.deepEqual(await receiveAll(bobby), ["a1", "a2", "o1"]);
      assert.deepEqual(await receiveAll(alice), ["b1", "o1"]);
      // The owner reads from the very first message, except its own.
      assert.deepEqual(await receiveAll(admin), ["a0", "a1", "b1", "a2"]);
    });

    await t.step("receiving without a subscription is success false", async () => {
      const carol = await c.user("carol");
      assert.equal((await op("receive", carol, mq("news", "topic"))).body.success, false);
      assert.equal((await op("unsubscribe", carol, mq("news", "topic"))).body.success, false);
    });

    await t.step("subscribing again after unsubscribing starts at the end", async () => {
      assert.equal((await op("unsubscribe", bobby, mq("news", "topic"))).body.success, true);
      assert.equal((await op("receive", bobby, mq("news", "topic"))).body.success, false);
      await send(alice, "missed");
      assert.equal((await op("subscribe", bobby, mq("news", "topic"))).body.success, true);
      assert.deepEqual(await receiveAll(bobby), []);
      await send(alice, "after");
      assert.deepEqual(await receiveAll(bobby), ["after"]);
    });

    await t.step("the owner cannot unsubscribe", async () => {
      const res = await op("unsubscribe", admin, mq("news", "topic"));
      assert.equal(res.status, 200);
      assert.equal(res.body.success, false);
      assert.deepEqual(await receiveAll(admin), ["missed", "after"]);
    });

    await t.step("more than a script call's worth of own messages is passed over", async () => {
      const me = { username: "alice", role: "user" as const };
      for (let i = 0; i < 11; i++) {
        const batch = Array.from({ length: 100 }, (_, j) => ({ body: `own-${i * 100 + j}` }));
        await c.topics.publish(me, "news", batch);
      }
      await send(bobby, "from-bobby");
      assert.deepEqual(await receiveAll(alice), ["from-bobby"]);
    });

    await t.step("a topic that does not exist: success false", async () => {
      for (const path of ["subscribe", "unsubscribe", "receive"]) {
        const res = await op(path, alice, mq("ghost", "topic"));
        assert.equal(res.body.success, false, path);
      }
      assert.equal(
        (await op("send", alice, { ...mq("ghost", "topic"), message: "x" })).body.success,
        false,
      );
    });

    await t.step("only the owner deletes the topic", async () => {
      await c.raw("POST", "/v1/users", {
        token: admin,
        body: { username: "admin2", password: "admin2-password", role: "admin" },
      });
      const admin2 = await c.login("admin2", "admin2-password");
      const del = (token: string) =>
        c.mom("DELETE", "/admin/queue_topic/delete/news?mom_type=topic", { token });
      assert.equal((await del(admin2)).body.success, false);
      assert.equal((await del(admin)).body.success, true);
      assert.equal((await c.raw("GET", "/v1/topics/news", { token: admin })).status, 404);
      // The queue of the same name is untouched.
      assert.equal((await c.raw("GET", "/v1/queues/news", { token: admin })).status, 200);
    });
  } finally {
    await c.close();
  }
});

Deno.test("compat: one set of entities behind both APIs", async (t) => {
  const c = await startCompat();
  const admin = c.api.adminToken;
  try {
    const alice = await c.user("alice");

    await t.step("a queue created here is momd's queue at /v1, owned by the admin", async () => {
      await c.mom("PUT", "/admin/queue_topic/create/", {
        token: admin,
        body: mq("orders", "queue"),
      });
      const v1 = await c.raw("GET", "/v1/queues/orders", { token: admin });
      assert.equal(v1.status, 200);
      assert.equal(v1.body.owner, "admin");
      await c.mom("POST", "/queue_topic/send/", {
        token: alice,
        body: { ...mq("orders", "queue"), message: "via-compat" },
      });
      const got = await c.raw("POST", "/v1/queues/orders/receive", { token: alice, body: {} });
      assert.equal(got.status, 200);
      assert.equal(got.body.messages[0].body, "via-compat");
    });

    await t.step("a queue created at /v1 is usable here; its name is taken here", async () => {
      const made = await c.raw("PUT", "/v1/queues/billing", { token: alice, body: {} });
      assert.equal(made.status, 201);
      const taken = await c.mom("PUT", "/admin/queue_topic/create/", {
        token: admin,
        body: mq("billing", "queue"),
      });
      assert.equal(taken.body.success, false);
      await c.raw("POST", "/v1/queues/billing/messages", {
        token: alice,
        body: { messages: [{ body: "via-v1" }] },
      });
      // alice owns it (created at /v1): subscribed without asking.
      const res = await c.mom("POST", "/queue_topic/receive/", {
        token: alice,
        body: mq("billing", "queue"),
      });
      assert.deepEqual(res.body, { success: true, message: "via-v1" });
    });

    await t.step("a topic created here shows the owner's subscription at /v1", async () => {
      await c.mom("PUT", "/admin/queue_topic/create/", {
        token: admin,
        body: mq("events", "topic"),
      });
      const subs = await c.raw("GET", "/v1/topics/events/subscriptions", { token: admin });
      assert.equal(subs.status, 200);
      const names = (subs.body.subscriptions as Body[]).map((s) => s.name);
      assert.deepEqual(names, ["mom-admin"]);
      await c.mom("POST", "/queue_topic/subscribe/", { token: alice, body: mq("events", "topic") });
      const sub = await c.raw("GET", "/v1/topics/events/subscriptions/mom-alice", { token: alice });
      assert.equal(sub.status, 200);
      assert.equal(sub.body.config.start, "latest");
      assert.equal(sub.body.creator, "alice");
    });

    await t.step("a message published at /v1 is received here", async () => {
      const pub = await c.raw("POST", "/v1/topics/events/messages", {
        token: admin,
        body: { messages: [{ body: "from-v1" }] },
      });
      assert.equal(pub.status, 201);
      const res = await c.mom("POST", "/queue_topic/receive/", {
        token: alice,
        body: mq("events", "topic"),
      });
      assert.deepEqual(res.body, { success: true, message: "from-v1" });
    });
  } finally {
    await c.close();
  }
});

Deno.test("compat: the per-user rate limit answers 429", async () => {
  const c = await startCompat({ rateLimit: { requestsPerSecond: 0.01, burst: 3 } });
  try {
    const token = c.api.adminToken;
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      statuses.push((await c.mom("GET", "/protected/", { token })).status);
    }
    assert.ok(statuses.includes(429), String(statuses));
    const last = await c.mom("GET", "/protected/", { token });
    assert.equal(last.status, 429);
    assert.equal(last.body.detail, "Too many requests.");
    assert.ok(Number(last.headers.get("retry-after")) >= 1);
    assert.equal(last.headers.get("ratelimit-limit"), "3");
  } finally {
    await c.close();
  }
});

Deno.test("compat: failed logins are throttled like /v1 logins (429)", async () => {
  const c = await startCompat({ loginFailuresPerMinute: 2 });
  try {
    const body = { username: "admin", password: "wrong-password" };
    assert.equal((await c.mom("POST", "/login/", { body })).status, 401);
    assert.equal((await c.mom("POST", "/login/", { body })).status, 401);
    const third = await c.mom("POST", "/login/", { body });
    assert.equal(third.status, 429);
    assert.equal(typeof third.body.detail, "string");
    // The same pair is throttled on /v1 too: one throttle for both APIs.
    const v1 = await c.raw("POST", "/v1/auth/token", {
      body: { username: "admin", password: "admin-password" },
    });
    assert.equal(v1.status, 429);
  } finally {
    await c.close();
  }
});

Deno.test("topic_receive 'own': passes over the caller's messages, bounded per call", async (t) => {
  const api = await startTestApi();
  const topics = new TopicService(api.store, new Notifier());
  const alice = { username: "alice", role: "user" as const };
  const bob = { username: "bob", role: "user" as const };
  const ref = { type: "topic" as const, name: "log" };
  // deno-lint-ignore no-explicit-any
  const receiveOnce = (caller: typeof alice, sub: string, extra: string[]): Promise<any> =>
    api.store.change(ref, "topic_receive", [
      caller.username,
      caller.role,
      sub,
      1,
      "",
      "tok0tok0tok0tok0",
      ...extra,
    ]);
  try {
    await topics.create(alice, "log", DEFAULT_TOPIC_CONFIG);
    await topics.subscribe(alice, "log", "s", { start: "earliest" });

    await t.step("without the argument the result is what it always was", async () => {
      await topics.publish(alice, "log", [{ body: "own-0" }]);
      const res = await receiveOnce(alice, "s", []);
      assert.deepEqual(Object.keys(res).sort(), ["messages", "wakeAt"]);
      assert.equal(res.messages[0].body, "own-0");
      assert.equal(res.messages[0].publisher, "alice");
    });

    await t.step("a released delivery of an own message is dropped, not delivered", async () => {
      const [nacked] = await topics.nack(alice, "log", "s", [
        encodeTopicReceipt(0, "tok0tok0tok0tok0"),
      ]);
      assert.equal(nacked.ok, true);
      const before = await topics.getSubscription(alice, "log", "s");
      assert.equal(before.stats.pendingRedelivery, 1);
      const res = await receiveOnce(alice, "s", ["own"]);
      assert.equal(res.messages.length ?? 0, 0);
      assert.equal(res.more, false);
      const after = await topics.getSubscription(alice, "log", "s");
      assert.equal(after.stats.position, 1);
      assert.equal(after.stats.pendingRedelivery, 0);
      assert.equal(after.stats.inFlight, 0);
    });

    await t.step("at most 1000 own messages per call, then `more`", async () => {
      for (let i = 0; i < 11; i++) {
        await topics.publish(alice, "log", Array.from({ length: 100 }, () => ({ body: "own" })));
      }
      await topics.publish(bob, "log", [{ body: "bob's" }]);
      const first = await receiveOnce(alice, "s", ["own"]);
      assert.equal(first.messages.length ?? 0, 0);
      assert.equal(first.more, true);
      const second = await receiveOnce(alice, "s", ["own"]);
      assert.equal(second.messages[0].body, "bob's");
      assert.equal(second.more, false);
    });

    await t.step("an unknown exclusion is refused", async () => {
      await assert.rejects(() => receiveOnce(alice, "s", ["others"]), /invalid/);
    });
  } finally {
    await api.close();
  }
});

Deno.test("compat: hostile input is a 4xx, never a 500 (issue 12)", async (t) => {
  const c = await startCompat();
  const token = c.api.adminToken;
  try {
    await t.step("a 20,000-deep body is a 422 whose echo is cut short", async () => {
      const deep = `{"name":${"[".repeat(20_000)}${"]".repeat(20_000)},"type":"queue",` +
        `"message":"x"}`;
      const res = await c.mom("POST", "/queue_topic/send/", { token, rawBody: deep });
      assert.equal(res.status, 422);
      assert.deepEqual(res.body.detail[0].loc, ["body", "name"]);
      assert.ok(JSON.stringify(res.body).length < 2000, JSON.stringify(res.body));
      const wide = await c.mom("POST", "/queue_topic/send/", {
        token,
        body: { name: Array.from({ length: 10_000 }, (_, i) => i), type: "queue", message: "x" },
      });
      assert.equal(wide.status, 422);
      assert.ok(JSON.stringify(wide.body).length < 2000, "a wide input is cut short too");
    });
    await t.step("a redirect keeps CR, LF and spaces percent-encoded in its Location", async () => {
      for (const tail of ["a%0D%0Ab", "a%0Ab", "a%20b"]) {
        const res = await c.mom("DELETE", `/admin/queue_topic/delete/${tail}/?mom_type=queue`, {
          token,
        });
        assert.equal(res.status, 307, `${tail}: ${JSON.stringify(res.body)}`);
        assert.equal(
          res.headers.get("location"),
          `${BASE}/admin/queue_topic/delete/${tail}?mom_type=queue`,
        );
      }
    });
    await t.step("a delete with a bad percent-escape is a 422", async () => {
      for (const bad of ["%FF", "%C0%AF", "%ED%A0%80", "a%2Fb"]) {
        const res = await c.mom("DELETE", `/admin/queue_topic/delete/${bad}?mom_type=queue`, {
          token,
        });
        assert.equal(res.status, 422, `${bad}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.detail[0].type, "string_pattern_mismatch");
      }
    });
    await t.step("unknown methods are 405 in the API's own shape", async () => {
      for (const method of ["FOO", "PROPFIND"]) {
        const res = await c.mom(method, "/protected/", { token });
        assert.equal(res.status, 405, method);
        assert.deepEqual(res.body, { detail: "Method Not Allowed" });
      }
    });
  } finally {
    await c.close();
  }
});
