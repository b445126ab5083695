/**
 * Requests forwarded to one node over one long-lived `Forward.Stream`: each request carries a
 * call id, and its answer comes back with that id whenever it is ready (a long poll does not hold
 * up the others). A unary `Forward.Http` call per request cost about four times the CPU of a
 * stream message here (a new HTTP/2 stream with headers and trailers, metadata, interceptors and a
 * deadline per call, through Deno's node:http2), and two requests in three cross this hop.
 */
import grpc from "@grpc/grpc-js";

/** HttpRequest on the wire. */
export interface WireHttpRequest {
  method: string;
  path: string;
  headers: { name: string; value: string }[];
  body: Uint8Array;
  /** tokenVersion: a 64-bit field, a decimal string when received ("0": not sent). */
  principal: { username: string; role: string; tokenVersion?: number | string } | null;
  callId?: string;
  /** Cancels the request in flight with this callId (no other field is read). */
  cancel?: boolean;
}

/** HttpResponse on the wire. */
export interface WireHttpResponse {
  status: number;
  headers: { name: string; value: string }[];
  body: Uint8Array<ArrayBuffer>;
  callId?: string;
  error?: string;
}

/** What a call that failed as a whole (no answer) rejects with: like a gRPC ServiceError. */
export interface StreamCallError {
  code: grpc.status;
  details: string;
  /** The request had left this node: the owner may have served it. */
  sent?: boolean;
}

interface Pending {
  resolve: (res: WireHttpResponse) => void;
  reject: (err: StreamCallError) => void;
  timer: ReturnType<typeof setTimeout>;
  /** Stops listening to the caller's signal. */
  unlisten?: () => void;
}

/**
 * grpc-js's detail when a call found no connection to start on (its picker's): the stream never
 * started, so nothing written to it left this node.
 */
const NOT_CONNECTED = /^No connection established/;

const CANCEL_FIELDS = {
  method: "",
  path: "",
  headers: [],
  body: new Uint8Array(0),
  principal: null,
};

/** One Forward.Stream to one node; see the module comment. */
export class ForwardStream {
  readonly #call: grpc.ClientDuplexStream<WireHttpRequest, WireHttpResponse>;
  readonly #pending = new Map<string, Pending>();
  #nextId = 1;
  #closed = false;

  /** `onClosed` is told once, when the stream can carry no more requests. */
  constructor(
    call: grpc.ClientDuplexStream<WireHttpRequest, WireHttpResponse>,
    readonly onClosed: () => void,
  ) {
    this.#call = call;
    call.on("data", (res: WireHttpResponse) => {
      const id = String(res.callId);
      const p = this.#pending.get(id);
      if (!p) return; // its deadline passed: nobody waits for it any more
      this.#pending.delete(id);
      clearTimeout(p.timer);
      p.unlisten?.();
      // An error the owner answered with is its own refusal (it did not serve the request).
      if (res.error) p.reject(parseError(res.error));
      else p.resolve(res);
    });
    call.on("error", (err: grpc.ServiceError) => {
      const details = err.details ?? err.message;
      this.#fail({
        code: err.code ?? grpc.status.UNKNOWN,
        details,
        // grpc-js found no connection to start the stream on: nothing left this node.
        sent: !(err.code === grpc.status.UNAVAILABLE && NOT_CONNECTED.test(details)),
      });
    });
    call.on("end", () => {
      this.#fail({
        code: grpc.status.UNAVAILABLE,
        details: "the forward stream ended",
        sent: true,
      });
    });
  }

  /** Whether the stream still takes requests. */
  get open(): boolean {
    return !this.#closed;
  }

  /**
   * Sends one request; resolves with its answer, rejects with a StreamCallError. When `signal`
   * aborts first, the call is cancelled on the serving node too and rejects with CANCELLED.
   */
  send(req: WireHttpRequest, deadlineMs: number, signal?: AbortSignal): Promise<WireHttpResponse> {
    if (this.#closed) {
      return Promise.reject({ code: grpc.status.UNAVAILABLE, details: "the forward stream ended" });
    }
    if (signal?.aborted) {
      return Promise.reject({ code: grpc.status.CANCELLED, details: "the client went away" });
    }
    const id = String(this.#nextId++);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        pending.unlisten?.();
        reject({
          code: grpc.status.DEADLINE_EXCEEDED,
          details: `no answer in ${deadlineMs} ms`,
          sent: true,
        });
      }, deadlineMs);
      const pending: Pending = { resolve, reject, timer };
      if (signal) {
        const cancel = () => {
          if (!this.#pending.delete(id)) return;
          clearTimeout(timer);
          if (!this.#closed) this.#call.write({ ...CANCEL_FIELDS, callId: id, cancel: true });
          reject({ code: grpc.status.CANCELLED, details: "the client went away" });
        };
        signal.addEventListener("abort", cancel, { once: true });
        pending.unlisten = () => signal.removeEventListener("abort", cancel);
      }
      this.#pending.set(id, pending);
      this.#call.write({ ...req, callId: id });
    });
  }

  /** Ends the stream; requests still waiting fail. */
  close(): void {
    this.#fail({ code: grpc.status.CANCELLED, details: "the channel was closed" });
    this.#call.cancel();
  }

  #fail(err: StreamCallError): void {
    if (!this.#closed) {
      this.#closed = true;
      this.onClosed();
    }
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.unlisten?.();
      p.reject(err);
    }
    this.#pending.clear();
  }
}

/** `"<status name> <detail>"` as the server writes it into HttpResponse.error. */
function parseError(text: string): StreamCallError {
  const space = text.indexOf(" ");
  const name = space < 0 ? text : text.slice(0, space);
  const code = grpc.status[name as keyof typeof grpc.status];
  return {
    code: typeof code === "number" ? code : grpc.status.UNKNOWN,
    details: space < 0 ? "" : text.slice(space + 1),
  };
}
