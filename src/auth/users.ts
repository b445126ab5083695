import type { Redis } from "ioredis";
import { BrokerError } from "../broker/errors.ts";
import { userKeys } from "../broker/keys.ts";
import { dummyHash, hashPassword, needsRehash, verifyPassword } from "./passwords.ts";
import { HashSlots } from "./hash_slots.ts";
import type { RateLimit } from "./rate_limit.ts";
import { runAuthScript } from "./scripts.ts";

/** The two roles. Admins manage users and may manage every entity. */
export type Role = "admin" | "user";

/** A user as the API shows it (never the hash). */
export interface User {
  username: string;
  role: Role;
  createdAt: string;
}

/** Who makes a request, from a verified token. */
export interface Principal {
  username: string;
  role: Role;
  /**
   * The user's token version the token carried: a node serving a forwarded request checks it
   * against the user as it is now (deleted or created again: refused).
   */
  tokenVersion?: number;
}

/** A page of users in name order; `next` is the `after` of the following page, null at the end. */
export interface UserPage {
  users: User[];
  next: string | null;
}

/** Usernames: the earlier API's character set, 3 to 64 long. */
export const USERNAME_PATTERN = /^[a-zA-Z0-9_-]{3,64}$/;

/** Passwords: 8 to 1024 characters. */
export const PASSWORD_MIN_LENGTH = 8;
/** Passwords: 8 to 1024 characters (the cap bounds the hashing work per login). */
export const PASSWORD_MAX_LENGTH = 1024;

/**
 * A fresh token version: an opaque random integer (below 2^53, so it survives JSON). It is new on
 * creation and on every password change, so a user deleted and created again under the same name
 * does not bring its old tokens back to life.
 */
function newTokenVersion(): number {
  const [hi, lo] = crypto.getRandomValues(new Uint32Array(2));
  return (hi & 0xfffff) * 2 ** 32 + lo + 1;
}

function checkPasswordLength(password: string): void {
  if (password.length < PASSWORD_MIN_LENGTH || password.length > PASSWORD_MAX_LENGTH) {
    throw new BrokerError(
      "invalid",
      `password must be ${PASSWORD_MIN_LENGTH}-${PASSWORD_MAX_LENGTH} characters`,
    );
  }
}

function asRole(value: string | null): Role | null {
  return value === "admin" || value === "user" ? value : null;
}

/**
 * Users in the central users Redis: one hash per user (`role`, `hash`, `createdAt`,
 * `passwordChangedAt`, `tokenVersion`) and a sorted set of names for listing. Every change is
 * one Lua script (src/auth/scripts/), so a user is created, deleted or given a new password
 * entirely or not at all, and the change message for other nodes goes out in the same step.
 */
export class UserStore {
  readonly #redis: Redis;
  readonly #hashCost: number;
  readonly #slots: HashSlots;

  constructor(
    redis: Redis,
    opts: { hashCost: number; hashConcurrency?: number; hashQueue?: number },
  ) {
    this.#redis = redis;
    this.#hashCost = opts.hashCost;
    this.#slots = new HashSlots({
      concurrency: opts.hashConcurrency ?? 1,
      maxWaiting: opts.hashQueue ?? 64,
    });
  }

  #hash(password: string): Promise<string> {
    return this.#slots.run(() => hashPassword(password, this.#hashCost));
  }

  #verify(password: string, hash: string): Promise<boolean> {
    return this.#slots.run(() => verifyPassword(password, hash));
  }

  /** The Redis connection (health checks). */
  get redis(): Redis {
    return this.#redis;
  }

  /** Creates a user; `already_exists` if the name is taken, `invalid` for a bad name or password. */
  async create(username: string, password: string, role: Role): Promise<User> {
    if (!USERNAME_PATTERN.test(username)) {
      throw new BrokerError(
        "invalid",
        "username must be 3-64 characters of a-z, A-Z, 0-9, _ and -",
      );
    }
    checkPasswordLength(password);
    const hash = await this.#hash(password);
    const createdAt = new Date().toISOString();
    await runAuthScript(this.#redis, "user_create", [userKeys.user(username), userKeys.index], [
      username,
      role,
      hash,
      createdAt,
      newTokenVersion(),
    ]);
    return { username, role, createdAt };
  }

  /** Creates the configured admin if no user of that name exists; true if it was created. */
  async ensureAdmin(username: string, password: string): Promise<boolean> {
    if (await this.#redis.exists(userKeys.user(username))) return false;
    try {
      await this.create(username, password, "admin");
      return true;
    } catch (err) {
      if (err instanceof BrokerError && err.code === "already_exists") return false;
      throw err;
    }
  }

  /** Returns the user, or null. */
  async get(username: string): Promise<User | null> {
    const [role, createdAt] = await this.#redis.hmget(userKeys.user(username), "role", "createdAt");
    const r = asRole(role);
    return r ? { username, role: r, createdAt: createdAt ?? "" } : null;
  }

  /** The user's current token version, or null if the user does not exist. */
  async tokenVersion(username: string): Promise<number | null> {
    const v = await this.#redis.hget(userKeys.user(username), "tokenVersion");
    return v === null ? null : Number(v);
  }

  /**
   * Checks credentials; returns the user and its token version, or null. An unknown user costs
   * the same scrypt work as a known one (a cached dummy hash), so timing does not reveal names.
   * A hash made with older parameters is upgraded after a successful check.
   */
  async authenticate(
    username: string,
    password: string,
  ): Promise<{ user: User; tokenVersion: number } | null> {
    const key = userKeys.user(username);
    const [role, hash, createdAt, version] = await this.#redis.hmget(
      key,
      "role",
      "hash",
      "createdAt",
      "tokenVersion",
    );
    const r = asRole(role);
    if (!r || !hash || version === null) {
      await this.#verify(password, await dummyHash(this.#hashCost));
      return null;
    }
    if (!(await this.#verify(password, hash))) return null;
    if (needsRehash(hash, this.#hashCost)) {
      const upgraded = await this.#hash(password);
      await runAuthScript(this.#redis, "user_rehash", [key], [hash, upgraded]);
    }
    return {
      user: { username, role: r, createdAt: createdAt ?? "" },
      tokenVersion: Number(version),
    };
  }

  /**
   * Replaces the password and gives the user a new token version, so every token issued before
   * stops working. With `expectTokenVersion` (the version seen when the current password was
   * checked), a password changed in between makes this a `conflict` instead of a silent
   * overwrite. `not_found` if the user does not exist.
   */
  async setPassword(
    username: string,
    password: string,
    opts: { expectTokenVersion?: number } = {},
  ): Promise<void> {
    checkPasswordLength(password);
    const hash = await this.#hash(password);
    await runAuthScript(this.#redis, "user_set_password", [userKeys.user(username)], [
      username,
      hash,
      newTokenVersion(),
      opts.expectTokenVersion ?? "",
      new Date().toISOString(),
      userKeys.changes,
    ]);
  }

  /**
   * The user's own rate limit: undefined when the cluster default applies, null for no limit.
   * `not_found` if the user does not exist.
   */
  async rateLimit(username: string): Promise<RateLimit | undefined> {
    const [role, stored] = await this.#redis.hmget(userKeys.user(username), "role", "rateLimit");
    if (!asRole(role)) throw new BrokerError("not_found", `user '${username}' does not exist`);
    if (stored === null) return undefined;
    if (stored === "none") return null;
    const [rps, burst] = stored.split(":").map(Number);
    return { requestsPerSecond: rps, burst };
  }

  /**
   * Sets the user's own rate limit (null: no limit), or with undefined clears it so the cluster
   * default applies. Nodes apply it at their next bucket sync. `not_found` if there is no user.
   */
  async setRateLimit(username: string, limit: RateLimit | undefined): Promise<void> {
    const stored = limit === undefined
      ? ""
      : limit === null
      ? "none"
      : `${limit.requestsPerSecond}:${limit.burst}`;
    await runAuthScript(this.#redis, "user_set_rate_limit", [userKeys.user(username)], [
      username,
      stored,
    ]);
  }

  /**
   * Deletes a user; its tokens stop working on every node. False if it did not exist. With `by`
   * (the acting admin), refuses with `conflict` when an admin deletes itself and with `forbidden`
   * when the actor is no longer an admin — so deletions never leave the cluster without an admin.
   */
  async delete(username: string, opts: { by?: string } = {}): Promise<boolean> {
    const by = opts.by ?? "";
    const result = await runAuthScript(
      this.#redis,
      "user_delete",
      [userKeys.user(username), userKeys.index, userKeys.user(by || username)],
      [username, by, userKeys.changes],
    );
    return result === 1;
  }

  /**
   * Lists users in name order: after `after` (exclusive), at most `limit`, optionally only names
   * starting with `prefix`.
   */
  async list(opts: { prefix?: string; after?: string; limit: number }): Promise<UserPage> {
    const prefix = opts.prefix ?? "";
    // Names are ASCII, so every name starting with the prefix sorts below prefix + "\xff".
    const max = prefix ? `[${prefix}\xff` : "+";
    let min = prefix ? `[${prefix}` : "-";
    if (opts.after && opts.after >= prefix) min = `(${opts.after}`;
    const names = await this.#redis.zrangebylex(
      userKeys.index,
      min,
      max,
      "LIMIT",
      0,
      opts.limit + 1,
    );
    const more = names.length > opts.limit;
    const page = names.slice(0, opts.limit);
    if (page.length === 0) return { users: [], next: null };
    const pipe = this.#redis.pipeline();
    for (const n of page) pipe.hmget(userKeys.user(n), "role", "createdAt");
    const rows = (await pipe.exec()) ?? [];
    const users: User[] = [];
    page.forEach((username, i) => {
      const [err, fields] = rows[i] ?? [null, null];
      if (err) throw err;
      const [role, createdAt] = fields as [string | null, string | null];
      const r = asRole(role);
      // A name deleted between the two reads is left out.
      if (r) users.push({ username, role: r, createdAt: createdAt ?? "" });
    });
    return { users, next: more ? page[page.length - 1] : null };
  }
}
