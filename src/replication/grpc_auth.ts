/**
 * Authentication of inter-node gRPC: every call carries the shared cluster secret in its metadata
 * (`authorization: Bearer <secret>`). The server checks it with a constant-time comparison when a
 * call starts (every unary call, and a stream once, before its first message reaches a handler);
 * a call without it or with another secret ends with status UNAUTHENTICATED and never reaches a
 * handler. TLS is not configured here: the secret authenticates, it does not encrypt, so the
 * gRPC listen address should be on a private network.
 */
import { Buffer } from "node:buffer";
import { createHash, timingSafeEqual } from "node:crypto";
import grpc from "@grpc/grpc-js";

const PREFIX = "Bearer ";

function digest(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

/**
 * True when `header` is `Bearer <secret>`. Both sides are hashed first, so the comparison takes
 * the same time whatever the presented value's length or content.
 */
export function secretMatches(header: unknown, secret: string): boolean {
  if (typeof header !== "string" || secret === "") return false;
  const presented = header.startsWith(PREFIX) ? header.slice(PREFIX.length) : "";
  const ok = timingSafeEqual(digest(presented), digest(secret));
  return ok && presented.length > 0;
}

function requireSecret(secret: string): void {
  if (!secret) throw new Error("the cluster secret must not be empty");
}

/** A server interceptor refusing every call that lacks the cluster secret. */
export function authServerInterceptor(secret: string): grpc.ServerInterceptor {
  requireSecret(secret);
  return (_method, call) => {
    const listener = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        if (secretMatches(metadata.get("authorization")[0], secret)) {
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
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", `${PREFIX}${secret}`);
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

/**
 * Binds the server to exactly `listen` (`host:port`; port 0 picks a free one) and returns the
 * port. Nothing else is bound: use the configured grpcListen address.
 */
export function bindServer(server: grpc.Server, listen: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(listen, grpc.ServerCredentials.createInsecure(), (err, port) => {
      if (err) reject(err);
      else resolve(port);
    });
  });
}

/** Options for clients of another node: the secret interceptor, message limits, keepalive. */
export function clientOptions(secret: string): grpc.ClientOptions {
  return {
    interceptors: [authClientInterceptor(secret)],
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1_000,
  };
}
