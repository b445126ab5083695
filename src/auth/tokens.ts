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

/** Why a token was refused; the API turns each into a 401 with this detail. */
export class TokenError extends Error {
  constructor(readonly reason: "invalid" | "expired" | "revoked") {
    super(reason === "expired" ? "token has expired" : `token is ${reason}`);
    this.name = "TokenError";
  }
}

const VERSION_CACHE_MS = 5_000;

/**
 * Issues and verifies HS256 tokens. A token carries the user's token version; verification
 * compares it with the user's current one (cached briefly, evicted at once on a change message),
 * so a deleted user's or an old password's tokens die.
 */
export class TokenService {
  readonly #secret: string;
  readonly #ttlSeconds: number;
  readonly #users: UserStore;
  readonly #versions = new Map<string, { version: number | null; until: number }>();

  constructor(users: UserStore, opts: { secret: string; ttlSeconds: number }) {
    this.#users = users;
    this.#secret = opts.secret;
    this.#ttlSeconds = opts.ttlSeconds;
  }

  /** Signs a token for the user. */
  async issue(user: User, tokenVersion: number): Promise<IssuedToken> {
    const iat = Math.floor(Date.now() / 1000);
    const exp = iat + this.#ttlSeconds;
    const claims: Claims = { sub: user.username, role: user.role, ver: tokenVersion, iat, exp };
    this.#versions.set(user.username, {
      version: tokenVersion,
      until: Date.now() + VERSION_CACHE_MS,
    });
    return {
      token: await sign(claims, this.#secret, "HS256"),
      expiresAt: new Date(exp * 1000).toISOString(),
    };
  }

  /** Verifies signature, expiry and that the user still exists with the same token version. */
  async verify(token: string): Promise<Principal> {
    let claims: Claims;
    try {
      claims = await verify(token, this.#secret, "HS256") as Claims;
    } catch (err) {
      const name = err instanceof Error ? err.name : "";
      throw new TokenError(name === "JwtTokenExpired" ? "expired" : "invalid");
    }
    if (typeof claims.sub !== "string" || typeof claims.ver !== "number") {
      throw new TokenError("invalid");
    }
    const current = await this.#currentVersion(claims.sub);
    if (current === null || current !== claims.ver) throw new TokenError("revoked");
    return { username: claims.sub, role: claims.role === "admin" ? "admin" : "user" };
  }

  /** Forgets what is cached for a user (its password changed or it was deleted somewhere). */
  invalidate(username: string): void {
    this.#versions.delete(username);
  }

  async #currentVersion(username: string): Promise<number | null> {
    const hit = this.#versions.get(username);
    if (hit && hit.until > Date.now()) return hit.version;
    const version = await this.#users.tokenVersion(username);
    this.#versions.set(username, { version, until: Date.now() + VERSION_CACHE_MS });
    return version;
  }
}

/**
 * Evicts cached token versions when any node changes or deletes a user (Redis pub/sub on a
 * dedicated connection). Resolves once subscribed.
 */
export async function watchUserChanges(subscriber: Redis, tokens: TokenService): Promise<void> {
  subscriber.on("message", (_channel: string, username: string) => tokens.invalidate(username));
  await subscriber.subscribe(userKeys.changes);
}
