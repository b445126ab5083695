import assert from "node:assert/strict";
import { startTestApi } from "./support/node.ts";

/** Asserts a 403 problem that names the missing right. */
function forbidden(
  res: { status: number; body: { code: string; detail: string } },
  right: string,
) {
  assert.equal(res.status, 403, JSON.stringify(res.body));
  assert.equal(res.body.code, "forbidden");
  assert.match(res.body.detail, new RegExp(`\\b${right}\\b`));
}

Deno.test("topics: access rights on a restricted topic; every refusal names the right", async (t) => {
  const api = await startTestApi();
  try {
    const alice = await api.userToken("alice"); // owner
    const bob = await api.userToken("bob"); // may publish
    const carol = await api.userToken("carol"); // may receive
    const erin = await api.userToken("erin"); // may receive
    const dave = await api.userToken("dave"); // nothing
    const admin = api.adminToken;
    const topic = "/v1/topics/secret";
    const created = await api.call("PUT", topic, {
      token: alice,
      body: { access: { restricted: true, senders: ["bob"], receivers: ["erin", "carol"] } },
    });
    assert.equal(created.status, 201);
    assert.deepEqual(created.body.config.access.receivers, ["carol", "erin"]);

    await t.step("the access lists are shown to the owner and admins only", async () => {
      const full = { restricted: true, senders: ["bob"], receivers: ["carol", "erin"] };
      for (const token of [alice, admin]) {
        assert.deepEqual((await api.call("GET", topic, { token })).body.config.access, full);
      }
      for (const token of [bob, carol, dave]) {
        const res = await api.call("GET", topic, { token });
        assert.equal(res.status, 200);
        assert.deepEqual(res.body.config.access, { restricted: true }, "no lists");
      }
      const again = await api.call("PUT", topic, { token: dave, body: { access: full } });
      assert.equal(again.status, 200, JSON.stringify(again.body));
      assert.deepEqual(again.body.config.access, { restricted: true });
    });

    await t.step("without a token: 401", async () => {
      const res = await api.call("GET", topic);
      assert.equal(res.status, 401);
    });

    await t.step("publishing needs the send right", async () => {
      const msg = { messages: [{ body: "x" }] };
      assert.equal(
        (await api.call("POST", `${topic}/messages`, { token: bob, body: msg })).status,
        201,
      );
      assert.equal(
        (await api.call("POST", `${topic}/messages`, { token: alice, body: msg })).status,
        201,
      );
      assert.equal(
        (await api.call("POST", `${topic}/messages`, { token: admin, body: msg })).status,
        201,
      );
      forbidden(await api.call("POST", `${topic}/messages`, { token: carol, body: msg }), "send");
      forbidden(await api.call("POST", `${topic}/messages`, { token: dave, body: msg }), "send");
    });

    await t.step("subscribing, receiving and peeking need the receive right", async () => {
      const sub = { start: "earliest" };
      const made = await api.call("PUT", `${topic}/subscriptions/c`, { token: carol, body: sub });
      assert.equal(made.status, 201);
      assert.equal(made.body.creator, "carol");
      forbidden(
        await api.call("PUT", `${topic}/subscriptions/b`, { token: bob, body: sub }),
        "receive",
      );
      forbidden(
        await api.call("POST", `${topic}/subscriptions/c/receive`, { token: bob, body: {} }),
        "receive",
      );
      forbidden(await api.call("GET", `${topic}/messages`, { token: dave }), "receive");
      forbidden(await api.call("GET", `${topic}/subscriptions`, { token: dave }), "receive");
      const got = await api.call("POST", `${topic}/subscriptions/c/receive`, {
        token: erin,
        body: { max: 10 },
      });
      assert.equal(got.status, 200);
      assert.equal(got.body.messages.length, 3);
      forbidden(
        await api.call("POST", `${topic}/subscriptions/c/ack`, {
          token: dave,
          body: { receipts: [got.body.messages[0].receipt] },
        }),
        "receive",
      );
      const owner = await api.call("POST", `${topic}/subscriptions/c/ack`, {
        token: alice,
        body: { receipts: [got.body.messages[0].receipt] },
      });
      assert.equal(owner.body.results[0].ok, true);
    });

    await t.step("configuring and deleting the topic need the manage right", async () => {
      forbidden(
        await api.call("PATCH", topic, { token: carol, body: { retentionSeconds: 60 } }),
        "manage",
      );
      forbidden(await api.call("DELETE", topic, { token: bob }), "manage");
    });

    await t.step(
      "a subscription is sought, deleted or redriven by its creator, the owner or an admin",
      async () => {
        const seek = (token: string) =>
          api.call("POST", `${topic}/subscriptions/c/seek`, { token, body: { offset: 0 } });
        // erin may receive from it, but a seek moves what every consumer of it gets.
        forbidden(await seek(erin), "manage");
        forbidden(await seek(bob), "manage");
        forbidden(await seek(dave), "manage");
        for (const who of [carol, alice, admin]) {
          const res = await seek(who);
          assert.equal(res.status, 200, JSON.stringify(res.body));
          assert.equal(res.body.position, 0);
        }
        forbidden(await api.call("DELETE", `${topic}/subscriptions/c`, { token: erin }), "manage");
        forbidden(
          await api.call("POST", `${topic}/subscriptions/c/redrive`, { token: erin, body: {} }),
          "manage",
        );
        const redrive = await api.call("POST", `${topic}/subscriptions/c/redrive`, {
          token: carol,
        });
        assert.equal(redrive.status, 200);
        assert.equal(
          (await api.call("DELETE", `${topic}/subscriptions/c`, { token: carol })).status,
          204,
        );
        await api.call("PUT", `${topic}/subscriptions/e`, { token: erin, body: {} });
        assert.equal(
          (await api.call("DELETE", `${topic}/subscriptions/e`, { token: alice })).status,
          204,
        );
        await api.call("PUT", `${topic}/subscriptions/e`, { token: erin, body: {} });
        assert.equal(
          (await api.call("DELETE", `${topic}/subscriptions/e`, { token: admin })).status,
          204,
        );
        assert.equal(
          (await api.call("GET", `${topic}/subscriptions/e`, { token: erin })).status,
          404,
        );
      },
    );

    await t.step(
      "on an unrestricted topic any user publishes, subscribes and receives",
      async () => {
        await api.call("PUT", "/v1/topics/open", { token: alice, body: {} });
        const pub = await api.call("POST", "/v1/topics/open/messages", {
          token: dave,
          body: { messages: [{ body: "hi" }] },
        });
        assert.equal(pub.status, 201);
        const sub = await api.call("PUT", "/v1/topics/open/subscriptions/d", {
          token: dave,
          body: { start: "earliest" },
        });
        assert.equal(sub.status, 201);
        const got = await api.call("POST", "/v1/topics/open/subscriptions/d/receive", {
          token: dave,
          body: {},
        });
        assert.equal(got.body.messages[0].body, "hi");
        assert.equal(got.body.messages[0].publisher, "dave");
        forbidden(await api.call("DELETE", "/v1/topics/open", { token: dave }), "manage");
      },
    );
  } finally {
    await api.close();
  }
});
