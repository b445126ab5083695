/**
 * Authentication of inter-node gRPC.
 *
 * - The cluster secret, always: every call carries it in its metadata
 *   (`authorization: Bearer <secret>`). The server checks it with a constant-time comparison when
 *   a call starts (every unary call, and a stream once, before its first message reaches a
 *   handler); a call without it or with another secret ends with status UNAUTHENTICATED and never
 *   reaches a handler.
 * - Mutual TLS, when the node is configured with a certificate, its key and a CA (`GrpcTls`): the
 *   server requires a client certificate signed by the CA, and clients verify the server's
 *   certificate against the CA and the peer's address (host name or IP in its subjectAltName).
 *   A connection without a valid certificate fails before any call starts; the secret is still
 *   checked on every call on top of it. Without TLS the secret authenticates but nothing is
 *   encrypted, so the gRPC listen address must then be on a private network.
 *
 * The credentials are passed in explicitly (`bindServer`, `peerChannel`): nothing here is global.
 */
import { Buffer } from "node:buffer";
import { createHash, timingSafeEqual } from "node:crypto";
import { isIP } from "node:net";
import { checkServerIdentity } from "node:tls";
import grpc from "@grpc/grpc-js";
import type { GrpcTls } from "../config/schema.ts";

export type { GrpcTls };

const PREFIX = "Bearer ";

function digest(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

/**
 * A check of `Bearer <secret>` headers against one secret, hashed once here. Each presented
 * value is hashed (once per call) and its digest compared in constant time, so the comparison
 * takes the same time whatever the presented value's length or content. An empty secret
 * matches nothing.
 */
export function secretChecker(secret: string): (header: unknown) => boolean {
  const expected = secret === "" ? undefined : digest(secret);
  return (header) => {
    if (typeof header !== "string" || !expected) return false;
    const presented = header.startsWith(PREFIX) ? header.slice(PREFIX.length) : "";
    const ok = timingSafeEqual(digest(presented), expected);
    return ok && presented.length > 0;
  };
}

function requireSecret(secret: string): void {
  if (!secret) throw new Error("the cluster secret must not be empty");
}

/** A server interceptor refusing every call that lacks the cluster secret. */
export function authServerInterceptor(secret: string): grpc.ServerInterceptor {
  requireSecret(secret);
  const matches = secretChecker(secret);
  return (_method, call) => {
    const listener = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        if (matches(metadata.get("authorization")[0])) {
          metadata.remove("authorization");
          next(metadata);
        } else {
          call.sendStatus({
            code: grpc.status.UNAUTHENTICATED,
            details: "missing or wrong cluster secret",
          });
        }
      })
      .build();
    const responder = new grpc.ResponderBuilder().withStart((next) => next(listener)).build();
    return new grpc.ServerInterceptingCall(call, responder);
  };
}

/** A client interceptor adding the cluster secret to every call. */
export function authClientInterceptor(secret: string): grpc.Interceptor {
  requireSecret(secret);
  const header = `${PREFIX}${secret}`;
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", header);
        next(metadata, listener);
      },
    });
}

/** Largest message either side accepts (snapshots of big entities travel in one message). */
export const MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

/** A gRPC server that authenticates every call with the cluster secret. */
export function authenticatedServer(secret: string): grpc.Server {
  return new grpc.Server({
    interceptors: [authServerInterceptor(secret)],
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  });
}

/** Server credentials: mutual TLS (client certificates required) with `tls`, else insecure. */
export function serverCredentials(tls?: GrpcTls): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(
    Buffer.from(tls.ca),
    [{ cert_chain: Buffer.from(tls.cert), private_key: Buffer.from(tls.key) }],
    true,
  );
}

/**
 * Binds the server to exactly `listen` (`host:port`; port 0 picks a free one) and returns the
 * port, over mutual TLS when `opts.tls` is given. Nothing else is bound: use the configured
 * grpcListen address.
 */
export function bindServer(
  server: grpc.Server,
  listen: string,
  opts: { tls?: GrpcTls } = {},
): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(listen, serverCredentials(opts.tls), (err, port) => {
      if (err) reject(err);
      else resolve(port);
    });
  });
}

/**
 * TLS server name sent when a peer is addressed by IP. SNI may not carry an IP (RFC 6066) and
 * Deno's node:tls refuses one, while grpc-js always sends the target host; the peer's certificate
 * is still checked against its IP (see peerChannel). `.invalid` is reserved: it names nothing.
 */
const IP_PEER_SERVER_NAME = "momd-peer.invalid";

/** How to open a channel to one peer: its credentials and the options beyond clientOptions. */
export interface PeerChannel {
  credentials: grpc.ChannelCredentials;
  options: grpc.ChannelOptions;
}

/**
 * The channel credentials for the node at `address` (`host:port`): mutual TLS with `tls` (this
 * node's certificate as client certificate, the peer verified against the CA and `host`), else
 * an insecure channel. The cluster secret comes on top from clientOptions' interceptor.
 */
export function peerChannel(address: string, tls?: GrpcTls): PeerChannel {
  if (!tls) return { credentials: grpc.credentials.createInsecure(), options: {} };
  const [ca, key, cert] = [Buffer.from(tls.ca), Buffer.from(tls.key), Buffer.from(tls.cert)];
  const host = address.slice(0, address.lastIndexOf(":")).replace(/^\[(.*)\]$/, "$1");
  if (!isIP(host)) {
    return { credentials: grpc.credentials.createSsl(ca, key, cert), options: {} };
  }
  // An IP address: send a placeholder server name instead of the IP, and check the
  // certificate against the IP itself (its subjectAltName must list it), as the name check would.
  return {
    credentials: grpc.credentials.createSsl(ca, key, cert, {
      checkServerIdentity: (_name, peerCert) => checkServerIdentity(host, peerCert),
    }),
    options: { "grpc.ssl_target_name_override": IP_PEER_SERVER_NAME },
  };
}

/**
 * Options for clients of another node: the secret interceptor, message limits, keepalive. A
 * peer that stops answering pings (paused, frozen, cut off) fails every call on its channel
 * within `keepaliveMs` plus as much again, well inside a ZooKeeper session, instead of leaving
 * forwarded requests and replication streams hanging until their deadlines.
 */
export function clientOptions(secret: string, keepaliveMs = 10_000): grpc.ClientOptions {
  return {
    interceptors: [authClientInterceptor(secret)],
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    "grpc.keepalive_time_ms": keepaliveMs,
    "grpc.keepalive_timeout_ms": keepaliveMs,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1_000,
  };
}
