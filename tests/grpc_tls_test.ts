/**
 * Inter-node gRPC over mutual TLS (MOMD_GRPC_TLS_CERT/KEY/CA), with certificates made by openssl
 * for each run: a peer with a certificate of the cluster's CA and the cluster secret is served;
 * an insecure channel, a certificate of another CA, no certificate, or a wrong secret is refused;
 * a server whose certificate is for another address, or of another CA, is refused by the client.
 * Then a two-node cluster of real processes replicates and forwards over TLS.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Redis } from "ioredis";
import grpc from "@grpc/grpc-js";
import { BrokerError } from "../src/broker/errors.ts";
import { type ForwardHandler, ReplicationServer } from "../src/replication/server.ts";
import { PeerClients } from "../src/replication/peers.ts";
import { momdProto } from "../src/replication/proto.ts";
import { startRedis } from "./support/services.ts";
import { makeTlsFiles, readTls } from "./support/tls.ts";
import { withCluster } from "./support/cluster.ts";

const SECRET = "cluster-secret-cluster-secret-0123456789";
const QUEUE = { type: "queue" as const, name: "orders" };

/** Asserts that `p` fails as unreachable (503) with a detail matching `detail`. */
async function refused(p: Promise<unknown>, detail: RegExp): Promise<void> {
  await assert.rejects(p, (err) => {
    assert.ok(err instanceof BrokerError, `expected a BrokerError, got ${err}`);
    assert.equal(err.code, "unavailable");
    assert.match(err.detail, detail);
    return true;
  });
}

Deno.test({
  name: "gRPC TLS: only peers with a certificate of the cluster's CA and the secret are served",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const files = await makeTlsFiles();
    const redis = await startRedis();
    const conn = new Redis(redis.url);
    let forwarded = 0;
    const forward: ForwardHandler = ({ request, principal }) => {
      forwarded++;
      return Promise.resolve(
        Response.json({ path: new URL(request.url).pathname, user: principal?.username }),
      );
    };
    const start = async (tls: Awaited<ReturnType<typeof readTls>>) =>
      await ReplicationServer.start({
        listen: "127.0.0.1:0",
        secret: SECRET,
        tls,
        redis: conn,
        applier: { apply: () => Promise.resolve("applied" as const) },
        forward,
      });
    const server = await start(await readTls(files.node1, files.ca));
    const clients: PeerClients[] = [];
    const peers = (secret: string, tls?: Awaited<ReturnType<typeof readTls>>) => {
      const p = new PeerClients({ secret, tls });
      clients.push(p);
      return p;
    };
    const node2 = peers(SECRET, await readTls(files.node2, files.ca));
    const viaLocalhost = `localhost:${server.port}`;
    const get = (p: PeerClients, address = server.address) =>
      p.forwardHttp(address, new Request("http://x/v1/queues/orders"), {
        username: "alice",
        role: "user",
      }, { deadlineMs: 10_000 });
    try {
      await t.step("a node of the cluster with the secret is served", async () => {
        // By IP (the certificate's IP address is checked) and by name (its DNS name is).
        const pos = await node2.position(server.address, QUEUE, 10_000);
        assert.deepEqual(pos, { seq: 0, epoch: 0, exists: false, store: "" });
        const res = await get(node2);
        assert.equal(res.status, 200);
        assert.deepEqual(await res.json(), { path: "/v1/queues/orders", user: "alice" });
        assert.equal((await get(node2, viaLocalhost)).status, 200);
        assert.equal(forwarded, 2);
      });

      await t.step("an insecure channel is refused, even with the secret", async () => {
        const insecure = peers(SECRET);
        await refused(get(insecure), /UNAVAILABLE/);
        await refused(insecure.position(server.address, QUEUE), /UNAVAILABLE/);
      });

      await t.step("a certificate signed by another CA is refused", async () => {
        const rogue = peers(SECRET, {
          ...await readTls(files.rogue, files.otherCa),
          ca: await Deno.readFile(files.ca), // it trusts our server: only its own cert is wrong
        });
        await refused(get(rogue), /UNAVAILABLE/);
        await refused(get(rogue, viaLocalhost), /UNAVAILABLE/);
      });

      await t.step("a TLS client without a certificate is refused", async () => {
        const { Forward } = momdProto();
        const bare = new Forward(
          viaLocalhost,
          grpc.credentials.createSsl(Buffer.from(await Deno.readFile(files.ca))),
        );
        try {
          const err = await new Promise<grpc.ServiceError | null>((resolve) =>
            bare.Http(
              { method: "GET", path: "/healthz" },
              new grpc.Metadata(),
              { deadline: Date.now() + 10_000 },
              (e: grpc.ServiceError | null) => resolve(e),
            )
          );
          assert.equal(err?.code, grpc.status.UNAVAILABLE, String(err));
        } finally {
          bare.close();
        }
      });

      await t.step("a node of the cluster with a wrong secret is UNAUTHENTICATED", async () => {
        const wrong = peers(
          "not-the-cluster-secret-not-the-cluster",
          await readTls(files.node2, files.ca),
        );
        await refused(get(wrong), /UNAUTHENTICATED/);
        await refused(wrong.position(server.address, QUEUE), /UNAUTHENTICATED/);
      });

      await t.step(
        "the client refuses a server whose certificate is not for its address",
        async () => {
          const elsewhere = await start(await readTls(files.elsewhere, files.ca));
          try {
            await refused(get(node2, elsewhere.address), /UNAVAILABLE.*(altnames|10\.9\.9\.9)/s);
            await refused(get(node2, `localhost:${elsewhere.port}`), /UNAVAILABLE/);
          } finally {
            await elsewhere.stop();
          }
        },
      );

      await t.step("the client refuses a server with a certificate of another CA", async () => {
        const rogue = await start(await readTls(files.rogue, files.otherCa));
        try {
          await refused(get(node2, rogue.address), /UNAVAILABLE/);
        } finally {
          await rogue.stop();
        }
      });

      // None of the refused calls reached the handler.
      assert.equal(forwarded, 2);
    } finally {
      for (const p of clients) p.close();
      await server.stop();
      conn.disconnect();
      await redis.stop();
      await files.remove();
    }
  },
});

Deno.test({
  name: "gRPC TLS: a two-node cluster replicates and forwards over mutual TLS",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const files = await makeTlsFiles();
    try {
      // One certificate for both nodes: they share the address 127.0.0.1.
      const env = {
        MOMD_GRPC_TLS_CERT: files.node1.cert,
        MOMD_GRPC_TLS_KEY: files.node1.key,
        MOMD_GRPC_TLS_CA: files.ca,
        MOMD_REPLICATION_FACTOR: "2",
        MOMD_MIN_IN_SYNC_REPLICAS: "2",
      };
      await withCluster({ nodes: 2, env }, async (c) => {
        const created = await c.call("PUT", "/v1/queues/tls-orders", { body: {} });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        const entity = await c.waitFor(
          "the queue and its replica",
          async () =>
            (await c.cluster()).entities.find((e) =>
              e.name === "tls-orders" && e.replicas.length === 1
            ),
        );
        const owner = entity.owner;
        const other = c.nodeIds.find((id) => id !== owner)!;

        // Acknowledged only once the replica holds it: replication runs over TLS.
        const sent = await c.call("POST", "/v1/queues/tls-orders/messages", {
          base: c.nodeUrl(other),
          body: { messages: [{ body: "over tls" }] },
        });
        assert.equal(sent.status, 201, JSON.stringify(sent.body));
        const status = await c.cluster({ via: c.nodeUrl(owner) });
        const held = status.entities.find((e) => e.name === "tls-orders")!;
        assert.deepEqual(held.inSync, [other]);

        // Through the node that does not own it: forwarded over TLS.
        const got = await c.call("POST", "/v1/queues/tls-orders/receive", {
          base: c.nodeUrl(other),
          body: { max: 1 },
        });
        assert.equal(got.status, 200, JSON.stringify(got.body));
        assert.equal(got.body.messages[0].body, "over tls");
      });
    } finally {
      await files.remove();
    }
  },
});
