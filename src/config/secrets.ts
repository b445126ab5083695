/**
 * Whether a shared secret (the JWT secret, the cluster secret) is one an attacker would not guess:
 * not a placeholder copied from an example file, not a pattern, and with enough entropy. The
 * entropy is estimated from the string itself (Shannon entropy of its character frequencies
 * times its length), which over-estimates words but catches repetition and short alphabets.
 */

/** How to make a good one, for error messages. */
export const SECRET_ADVICE = "generate one with: openssl rand -base64 48";

/** Least estimated entropy in bits (32 random base64 characters carry about 190, 32 hex 128). */
const MIN_ENTROPY_BITS = 80;

/** Placeholders of example files and documentation (lowercase, letters and digits only). */
const PLACEHOLDERS = [
  "changeme",
  "changethis",
  "replaceme",
  "placeholder",
  "example",
  "yoursecret",
  "secrethere",
  "insertsecret",
];

/** Shannon entropy of the character frequencies, in bits per character, times the length. */
export function estimatedEntropyBits(value: string): number {
  const chars = [...value];
  const counts = new Map<string, number>();
  for (const ch of chars) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  let bits = 0;
  for (const n of counts.values()) {
    const p = n / chars.length;
    bits -= p * Math.log2(p);
  }
  return bits * chars.length;
}

/** The length of the shortest unit whose repetition makes up the string, up to half of it. */
function repeatedUnit(value: string): number | undefined {
  for (let p = 1; p <= value.length / 2; p++) {
    let periodic = true;
    for (let i = p; i < value.length && periodic; i++) periodic = value[i] === value[i - p];
    if (periodic) return p;
  }
  return undefined;
}

/** Share of neighbouring characters that repeat or step by one ("aaaa", "abcd", "4321"). */
function sequentialShare(value: string): number {
  let steps = 0;
  for (let i = 1; i < value.length; i++) {
    if (Math.abs(value.charCodeAt(i) - value.charCodeAt(i - 1)) <= 1) steps++;
  }
  return value.length > 1 ? steps / (value.length - 1) : 1;
}

/** Why a secret is too weak to use, or undefined when it is fine. */
export function weakSecretReason(value: string): string | undefined {
  const letters = value.toLowerCase().replace(/[^a-z0-9]/g, "");
  const placeholder = PLACEHOLDERS.find((p) => letters.includes(p));
  if (placeholder) return `it looks like a placeholder ('${placeholder}')`;
  // The messages never quote the secret: they end up in logs.
  if (repeatedUnit(value) !== undefined) return "it is one short part repeated";
  if (sequentialShare(value) > 0.6) {
    return "it is mostly a run of repeated or consecutive characters";
  }
  const bits = estimatedEntropyBits(value);
  if (bits < MIN_ENTROPY_BITS) {
    return `it is too predictable (about ${Math.floor(bits)} bits, at least ` +
      `${MIN_ENTROPY_BITS} needed)`;
  }
  return undefined;
}
