import assert from "node:assert/strict";
import { Hono } from "hono";
import { clientIp, type ClientIpOptions } from "../src/api/middleware/client_ip.ts";
import {
  isTrustedProxyEntry,
  normalizeAddress,
  trustedProxyMatcher,
} from "../src/config/addresses.ts";
import type { AppEnv } from "../src/api/context.ts";
import { startTestApi } from "./support/node.ts";

/** A tiny app that answers the client address the middleware decided on. */
function echoApp(trusted: string[], opts?: ClientIpOptions) {
  const app = new Hono<AppEnv>();
  app.use("*", clientIp(trusted, opts));
  app.get("/", (c) => c.text(c.get("clientIp")));
  return async (peer: string | undefined, xff?: string | string[]) => {
    const headers = new Headers();
    for (const v of [xff ?? []].flat()) headers.append("x-forwarded-for", v);
    // Deno.serve hands the connection to Hono as the env; getConnInfo reads it from there.
    const env = peer === undefined ? undefined : {
      remoteAddr: { hostname: peer, port: 50000, transport: "tcp" },
    };
    const res = await app.request("/", { headers }, env);
    return await res.text();
  };
}

Deno.test("client ip: addresses are normalised", () => {
  assert.equal(normalizeAddress("203.0.113.9"), "203.0.113.9");
  assert.equal(normalizeAddress(" 203.0.113.9:4711 "), "203.0.113.9");
  assert.equal(normalizeAddress("[2001:DB8::1]:443"), "2001:db8::1");
  assert.equal(normalizeAddress("2001:db8::1"), "2001:db8::1");
  assert.equal(normalizeAddress("fe80::1%eth0"), "fe80::1");
  assert.equal(normalizeAddress("::ffff:10.1.2.3"), "10.1.2.3");
  assert.equal(normalizeAddress("unknown"), null);
  assert.equal(normalizeAddress("999.1.1.1"), null);
  assert.equal(normalizeAddress(""), null);
});

Deno.test("client ip: trusted proxies are addresses or CIDR ranges", () => {
  const trusted = trustedProxyMatcher(["127.0.0.1", "10.0.0.0/8", "fd00::/8"]);
  assert.equal(trusted("127.0.0.1"), true);
  assert.equal(trusted("127.0.0.2"), false);
  assert.equal(trusted("10.200.3.4"), true);
  assert.equal(trusted("11.0.0.1"), false);
  assert.equal(trusted("fd12::7"), true);
  assert.equal(trusted("fe80::1"), false);
  assert.equal(trusted("unknown"), false);
  for (const bad of ["nginx", "10.0.0.0/33", "::/129", "1.2.3.4:80", "10.0.0.0/8/8", "10/8"]) {
    assert.equal(isTrustedProxyEntry(bad), false, bad);
    assert.throws(() => trustedProxyMatcher([bad]), TypeError);
  }
});

Deno.test("client ip: X-Forwarded-For counts only from a trusted proxy", async (t) => {
  const ip = echoApp(["10.0.0.1", "10.0.0.2"]);

  await t.step("a direct client is its connection's address; its header is ignored", async () => {
    assert.equal(await ip("203.0.113.5"), "203.0.113.5");
    assert.equal(await ip("203.0.113.5", "198.51.100.1"), "203.0.113.5");
  });

  await t.step("behind the proxy, the hop the proxy appended is the client", async () => {
    assert.equal(await ip("10.0.0.1", "198.51.100.1"), "198.51.100.1");
  });

  await t.step("a client's forged entries left of the real hop are ignored", async () => {
    assert.equal(await ip("10.0.0.1", "10.0.0.2, 1.1.1.1, 198.51.100.1"), "198.51.100.1");
  });

  await t.step("a chain of trusted proxies is walked from the right", async () => {
    assert.equal(await ip("10.0.0.1", "198.51.100.1, 10.0.0.2"), "198.51.100.1");
    assert.equal(await ip("10.0.0.1", ["198.51.100.1", "10.0.0.2"]), "198.51.100.1");
  });

  await t.step("only trusted hops: the leftmost is the client", async () => {
    assert.equal(await ip("10.0.0.1", "10.0.0.2"), "10.0.0.2");
  });

  await t.step("the proxy with no header, or garbage, leaves the last trusted hop", async () => {
    assert.equal(await ip("10.0.0.1"), "10.0.0.1");
    assert.equal(await ip("10.0.0.1", "unknown"), "10.0.0.1");
    assert.equal(await ip("10.0.0.1", "198.51.100.1, garbage, 10.0.0.2"), "10.0.0.2");
  });

  await t.step("ports, brackets and IPv4-mapped addresses are normalised", async () => {
    assert.equal(await ip("::ffff:10.0.0.1", "[2001:db8::7]:1234"), "2001:db8::7");
    assert.equal(await ip("::ffff:203.0.113.5"), "203.0.113.5");
  });

  await t.step("no connection information is 'unknown'", async () => {
    assert.equal(await ip(undefined, "198.51.100.1"), "unknown");
  });

  await t.step("the peer may come from a getter (other runtimes, tests)", async () => {
    const viaGetter = echoApp(["10.0.0.1"], { peerAddress: () => "10.0.0.1" });
    assert.equal(await viaGetter(undefined, "198.51.100.1"), "198.51.100.1");
  });
});

Deno.test("client ip: login throttling follows the real client behind the proxy", async (t) => {
  const api = await startTestApi({ trustedProxies: ["127.0.0.1"], loginFailuresPerMinute: 1 });
  const login = (password: string, peer: string, xff?: string) =>
    api.call("POST", "/v1/auth/token", {
      body: { username: "admin", password },
      peer,
      headers: xff ? { "x-forwarded-for": xff } : {},
    });
  try {
    await t.step("two clients behind the proxy have their own failure budgets", async () => {
      assert.equal((await login("wrong", "127.0.0.1", "198.51.100.1")).status, 401);
      assert.equal((await login("wrong", "127.0.0.1", "198.51.100.1")).status, 429);
      assert.equal((await login("admin-password", "127.0.0.1", "198.51.100.2")).status, 200);
    });

    await t.step("a direct client cannot pick its address with the header", async () => {
      assert.equal((await login("wrong", "203.0.113.5", "198.51.100.3")).status, 401);
      // Another forged address does not help: the limit is on 203.0.113.5.
      assert.equal((await login("wrong", "203.0.113.5", "198.51.100.4")).status, 429);
      // And the forged address was never charged.
      assert.equal((await login("admin-password", "127.0.0.1", "198.51.100.3")).status, 200);
    });
  } finally {
    await api.close();
  }
});
