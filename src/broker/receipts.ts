/**
 * Message ids, and the receipts of queues and topics with the random tokens in them. A receipt is
 * opaque to clients: base64url of `<message id or offset>.<token>`, the token being the one the
 * script stored for that delivery attempt only.
 */

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** A message id (a ULID in Crockford's base 32). */
export const MESSAGE_ID_PATTERN = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{16}$/;

/** Makes message ids: 26-character ULIDs (time first, so they sort in sending order). */
export class IdMaker {
  #lastTime = -1;
  #random: number[] = [];

  next(now: number): string {
    const time = Math.max(now, this.#lastTime);
    if (time === this.#lastTime) {
      // Same millisecond: increment the random part, keeping ids strictly increasing.
      let i = this.#random.length - 1;
      while (i >= 0 && this.#random[i] === 31) this.#random[i--] = 0;
      if (i >= 0) this.#random[i]++;
    } else {
      const bytes = crypto.getRandomValues(new Uint8Array(16));
      this.#random = Array.from(bytes, (b) => b & 31);
      this.#random[0] &= 15; // leave room to increment
    }
    this.#lastTime = time;
    let t = time;
    let head = "";
    for (let i = 0; i < 10; i++) {
      head = CROCKFORD[t % 32] + head;
      t = Math.floor(t / 32);
    }
    return head + this.#random.map((d) => CROCKFORD[d]).join("");
  }
}

/** base64url without padding. */
export function toBase64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_")
    .replace(/=+$/, "");
}

/** The decoded text (one character per byte) of base64url, or null when it is not base64. */
export function fromBase64url(text: string): string | null {
  try {
    return atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  } catch {
    return null;
  }
}

/** A fresh random token for one delivery attempt (16 base64url characters). */
export function newToken(): string {
  return toBase64url(crypto.getRandomValues(new Uint8Array(12)));
}

const utf8 = new TextEncoder();

/** The receipt handed to a client: opaque, it carries the message id and the attempt's token. */
export function encodeReceipt(id: string, token: string): string {
  return toBase64url(utf8.encode(`${id}.${token}`));
}

/** The message id and attempt token of a receipt, or null when it is not one of ours. */
export function decodeReceipt(receipt: string): { id: string; token: string } | null {
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(receipt)) return null;
  const text = fromBase64url(receipt);
  if (text === null) return null;
  const dot = text.indexOf(".");
  const id = text.slice(0, dot);
  const token = text.slice(dot + 1);
  if (dot < 0 || !MESSAGE_ID_PATTERN.test(id) || !TOKEN_PATTERN.test(token)) return null;
  return { id, token };
}

/** The receipt handed to a client: opaque, it carries the offset and the attempt's token. */
export function encodeTopicReceipt(offset: number, token: string): string {
  return toBase64url(utf8.encode(`${offset}.${token}`));
}

/** The offset and attempt token of a receipt, or null when it is not a topic receipt. */
export function decodeTopicReceipt(receipt: string): { offset: number; token: string } | null {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(receipt)) return null;
  const text = fromBase64url(receipt);
  if (text === null) return null;
  const m = /^(0|[1-9]\d{0,15})\.(.*)$/s.exec(text);
  if (!m || !TOKEN_PATTERN.test(m[2])) return null;
  return { offset: Number(m[1]), token: m[2] };
}

/** Outcome of one receipt in an ack, nack or visibility change. */
export interface ReceiptResult {
  receipt: string;
  ok: boolean;
  error?: "stale_receipt";
}

/** Pairs each receipt with the script's outcome for it ('ok', or else stale). */
export function receiptResults(
  receipts: readonly string[],
  outcomes: readonly string[],
): ReceiptResult[] {
  return receipts.map((receipt, i) =>
    outcomes[i] === "ok" ? { receipt, ok: true } : { receipt, ok: false, error: "stale_receipt" }
  );
}
