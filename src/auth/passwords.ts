import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";

/**
 * Password hashing with scrypt (node:crypto), stored in the PHC string format
 * `$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<hash>` (unpadded base64), so a stored hash names its
 * own parameters and a later change of the cost still verifies old hashes.
 *
 * Parameters: r = 8, p = 1, a 16-byte random salt and a 32-byte key; the cost exponent comes from
 * configuration (default 15: N = 32768, 32 MiB of memory per hash). OWASP's guidance for scrypt is
 * N = 2^17, r = 8, p = 1 (128 MiB per hash); raise `passwordHashCost` to 16 or 17 where memory
 * allows for the number of logins a node runs at once. Passwords are NFKC-normalised first, so
 * the same password typed on two systems that encode it differently still matches.
 */

const KEY_LENGTH = 32;
const SALT_LENGTH = 16;
const BLOCK_SIZE = 8;
const PARALLELISM = 1;

/** The cost exponents a stored hash may name (a corrupt or hostile hash cannot ask for more). */
const MIN_COST = 10;
const MAX_COST = 20;

interface Params {
  cost: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

function derive(password: string, salt: Buffer, params: Omit<Params, "salt" | "hash">) {
  const N = 2 ** params.cost;
  // scrypt needs 128 * N * r bytes (plus 128 * r * p); allow twice that.
  const maxmem = 2 * 128 * N * params.r + 128 * params.r * params.p;
  return new Promise<Buffer>((resolve, reject) => {
    scrypt(
      password.normalize("NFKC"),
      salt,
      KEY_LENGTH,
      { N, r: params.r, p: params.p, maxmem },
      (err, key) => err ? reject(err) : resolve(key),
    );
  });
}

function b64(buf: Buffer): string {
  return buf.toString("base64").replace(/=+$/, "");
}

function parse(stored: string): Params | null {
  const m = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/
    .exec(stored);
  if (!m) return null;
  const [cost, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (cost < MIN_COST || cost > MAX_COST || r < 1 || r > 32 || p < 1 || p > 16) return null;
  const hash = Buffer.from(m[5], "base64");
  if (hash.length !== KEY_LENGTH) return null;
  return { cost, r, p, salt: Buffer.from(m[4], "base64"), hash };
}

/** Hashes a password with scrypt and a random salt (PHC string, see the module comment). */
export async function hashPassword(password: string, cost: number): Promise<string> {
  if (!Number.isInteger(cost) || cost < MIN_COST || cost > MAX_COST) {
    throw new RangeError(`scrypt cost exponent must be ${MIN_COST}..${MAX_COST}, got ${cost}`);
  }
  const salt = randomBytes(SALT_LENGTH);
  const key = await derive(password, salt, { cost, r: BLOCK_SIZE, p: PARALLELISM });
  return `$scrypt$ln=${cost},r=${BLOCK_SIZE},p=${PARALLELISM}$${b64(salt)}$${b64(key)}`;
}

/** Checks a password against a stored hash in constant time; false for an unreadable hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const params = parse(stored);
  if (!params) return false;
  const key = await derive(password, params.salt, params);
  return timingSafeEqual(key, params.hash);
}

/** Whether a stored hash was made with other parameters than the current ones (rehash it). */
export function needsRehash(stored: string, cost: number): boolean {
  const params = parse(stored);
  return !params || params.cost !== cost || params.r !== BLOCK_SIZE || params.p !== PARALLELISM;
}

const dummies = new Map<number, Promise<string>>();

/**
 * A hash of a random password, made once per cost and cached: verifying against it spends the
 * same time on an unknown user as on a known one, so timing does not tell which names exist.
 */
export function dummyHash(cost: number): Promise<string> {
  let hash = dummies.get(cost);
  if (!hash) {
    hash = hashPassword(randomBytes(16).toString("hex"), cost);
    hash.catch(() => dummies.delete(cost));
    dummies.set(cost, hash);
  }
  return hash;
}
