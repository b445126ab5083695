/** Exponential backoff with full jitter: a random delay in [0, min(cap, base * 2^attempt)). */
export function fullJitter(
  attempt: number,
  options: { baseMs: number; capMs: number; random?: () => number },
): number {
  const ceiling = Math.min(options.capMs, options.baseMs * 2 ** attempt);
  return Math.floor((options.random ?? Math.random)() * ceiling);
}

/**
 * The nack delay of a failed delivery: `base * 2^(deliveryCount - 1)` seconds, at most `max`.
 * Deterministic, so a handler that keeps failing backs off 1, 2, 4, 8, ... seconds.
 */
export function nackDelaySeconds(
  deliveryCount: number,
  options: { baseSeconds: number; maxSeconds: number },
): number {
  const exp = Math.max(0, deliveryCount - 1);
  return Math.min(options.maxSeconds, Math.round(options.baseSeconds * 2 ** Math.min(exp, 30)));
}

/**
 * The delay a Retry-After header asks for, in milliseconds (delta-seconds or an HTTP date),
 * or undefined when absent or unreadable.
 */
export function retryAfterMs(header: string | null, now: number): number | undefined {
  if (header === null || header.trim() === "") return undefined;
  const value = header.trim();
  if (/^\d+(\.\d+)?$/.test(value)) return Math.round(Number(value) * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
