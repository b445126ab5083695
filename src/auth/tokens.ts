import { sign, verify } from "hono/jwt";
import type { Redis } from "ioredis";
import { userKeys } from "../broker/keys.ts";
import type { Principal, Role, User, UserStore } from "./users.ts";

/** A freshly issued access token. */
export interface IssuedToken {
  token: string;
  expiresAt: string;
}

interface Claims {
  sub: string;
  role: Role;
  ver: number;
  iat: number;
  exp: number;
  [key: string]: unknown;
}

/** Why a token was refused; the API turns each into a 401 with code `token_<reason>`. */
export class TokenError extends Error {
  constructor(readonly reason: "invalid" | "expired" | "revoked") {
    super(
      reason === "expired"
        ? "token has expired"
        : reason === "revoked"
        ? "token was revoked (its user was deleted or changed its password)"
        : "token is invalid",
    );
    this.name = "TokenError";
  }
}

/** Options of a TokenService. */
export interface TokenServiceOptions {
  /** HS256 secret, the same on every node. */
  secret: string;
  ttlSeconds: number;
  /** The clock in ms (tests move it to expire tokens without sleeping). */
  now?: () => number;
  /** How long a user's token version is trusted without asking Redis (default 5 s). */
  versionCacheMs?: number;
}

/** How far a token's issue time may lie in this node's future (clocks of nodes differ a little). */
const CLOCK_SKEW_SECONDS = 60;
/** Above this many cached versions, expired ones are swept on the next insert. */
const CACHE_SWEEP_SIZE = 10_000;

/** Tokens whose signature was verified, remembered per node (a few hundred bytes each). */
const VERIFIED_CACHE_SIZE = 10_000;

/**
 * Issues and verifies HS256 tokens. A token carries its user's token version, an opaque number
 * that is new on creation and on every password change; verification compares it with the user's
 * current one, so a deleted user's or an old password's tokens die. The current version is cached
 * briefly per user; `invalidate` (called synchronously by the route that changed the user, and by
 * `watchUserChanges` for changes made on other nodes) evicts it.
 */
export class TokenService {
  readonly #secret: string;
  readonly #ttlSeconds: number;
  readonly #users: UserStore;
  readonly #now: () => number;
  readonly #cacheMs: number;
  /** Tokens whose signature was verified, until they expire (bounded). */
  readonly #verified = new Map<string, Claims>();
  readonly #versions = new Map<string, { version: number | null; until: number }>();
  /** Bumped by every invalidation: a lookup that started before one must not be cached. */
  #generation = 0;

  constructor(users: UserStore, opts: TokenServiceOptions) {
    this.#users = users;
    this.#secret = opts.secret;
    this.#ttlSeconds = opts.ttlSeconds;
    this.#now = opts.now ?? Date.now;
    this.#cacheMs = opts.versionCacheMs ?? 5_000;
  }

  /** Signs a token for the user, valid for the configured lifetime. */
  async issue(user: User, tokenVersion: number): Promise<IssuedToken> {
    const iat = Math.floor(this.#now() / 1000);
    const exp = iat + this.#ttlSeconds;
    const claims: Claims = { sub: user.username, role: user.role, ver: tokenVersion, iat, exp };
    return {
      token: await sign(claims, this.#secret, "HS256"),
      expiresAt: new Date(exp * 1000).toISOString(),
    };
  }

  /**
   * Verifies the signature, then expiry (against this service's clock), then that the user still
   * exists with the same token version. Throws TokenError.
   */
  async verify(token: string): Promise<Principal> {
    const claims = this.#verified.get(token) ?? await this.#checkSignature(token);
    const now = this.#now() / 1000;
    if (claims.iat > now + CLOCK_SKEW_SECONDS) throw new TokenError("invalid");
    if (claims.exp <= now) throw new TokenError("expired");
    const current = await this.#currentVersion(claims.sub);
    if (current === null || current !== claims.ver) throw new TokenError("revoked");
    return { username: claims.sub, role: claims.role, tokenVersion: claims.ver };
  }

  /**
   * Checks a principal another node verified and forwarded, against the user as it is now: a
   * user deleted (or deleted and created again, or whose password changed) while its request
   * was on its way is refused, like its token would be here. A principal without a token version
   * (from a node of an earlier version) needs only its user to exist. Throws TokenError.
   */
  async checkForwarded(principal: Principal): Promise<void> {
    const current = await this.#currentVersion(principal.username);
    if (current === null) throw new TokenError("revoked");
    if (principal.tokenVersion !== undefined && principal.tokenVersion !== current) {
      throw new TokenError("revoked");
    }
  }

  /**
   * Verifies the signature and the claims' shape, and remembers a good token until it expires:
   * a signature check costs far more than the rest of a small request, and a token never
   * changes. Expiry and the token version are still checked on every request.
   */
  async #checkSignature(token: string): Promise<Claims> {
    let claims: Claims;
    try {
      // Signature only: time claims are checked against our own clock, and only once the
      // signature holds (a forged token is "invalid", never "expired").
      claims = await verify(token, this.#secret, {
        alg: "HS256",
        exp: false,
        iat: false,
        nbf: false,
      }) as Claims;
    } catch {
      throw new TokenError("invalid");
    }
    if (
      typeof claims.sub !== "string" || typeof claims.ver !== "number" ||
      typeof claims.exp !== "number" || typeof claims.iat !== "number" ||
      (claims.role !== "admin" && claims.role !== "user")
    ) {
      throw new TokenError("invalid");
    }
    if (this.#verified.size >= VERIFIED_CACHE_SIZE) {
      // Drop the oldest entry (Map keeps insertion order).
      this.#verified.delete(this.#verified.keys().next().value!);
    }
    this.#verified.set(token, claims);
    return claims;
  }

  /** Forgets what is cached for a user (its password changed or it was deleted somewhere). */
  invalidate(username: string): void {
    this.#generation++;
    this.#versions.delete(username);
  }

  /** Forgets every cached version (change messages may have been missed). */
  clear(): void {
    this.#generation++;
    this.#versions.clear();
  }

  async #currentVersion(username: string): Promise<number | null> {
    const now = Date.now();
    const hit = this.#versions.get(username);
    if (hit && hit.until > now) return hit.version;
    const generation = this.#generation;
    const version = await this.#users.tokenVersion(username);
    if (generation === this.#generation) {
      if (this.#versions.size >= CACHE_SWEEP_SIZE) this.#sweep(now);
      this.#versions.set(username, { version, until: now + this.#cacheMs });
    }
    return version;
  }

  #sweep(now: number): void {
    for (const [name, entry] of this.#versions) {
      if (entry.until <= now) this.#versions.delete(name);
    }
  }
}

/**
 * Evicts cached token versions when any node changes or deletes a user (Redis pub/sub on a
 * dedicated connection). After a reconnect every cached version is dropped, since messages sent
 * while disconnected are lost. Resolves once subscribed.
 */
export async function watchUserChanges(subscriber: Redis, tokens: TokenService): Promise<void> {
  subscriber.on("message", (channel: string, username: string) => {
    if (channel === userKeys.changes) tokens.invalidate(username);
  });
  subscriber.on("ready", () => tokens.clear());
  await subscriber.subscribe(userKeys.changes);
}
