import type { Redis } from "ioredis";
import { BrokerError } from "../broker/errors.ts";
import { userKeys } from "../broker/keys.ts";
import { hashPassword, verifyPassword } from "./passwords.ts";

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
}

/** Usernames: the earlier API's character set, 3 to 64 long. */
export const USERNAME_PATTERN = /^[a-zA-Z0-9_-]{3,64}$/;

/**
 * Users in the central users Redis: one hash per user, a sorted set of names for listing.
 * `tokenVersion` is bumped on password change and the hash deleted with the user, so tokens
 * carrying an older version (or of a deleted user) stop working.
 */
export class UserStore {
  readonly #redis: Redis;
  readonly #hashCost: number;

  constructor(redis: Redis, opts: { hashCost: number }) {
    this.#redis = redis;
    this.#hashCost = opts.hashCost;
  }

  /** The Redis connection (health checks). */
  get redis(): Redis {
    return this.#redis;
  }

  /** Creates a user; `already_exists` if the name is taken. */
  async create(username: string, password: string, role: Role): Promise<User> {
    const hash = await hashPassword(password, this.#hashCost);
    const createdAt = new Date().toISOString();
    // HSETNX on the role field claims the name atomically; the rest follows in one MULTI.
    const key = userKeys.user(username);
    const claimed = await this.#redis.hsetnx(key, "role", role);
    if (claimed === 0) throw new BrokerError("already_exists", `user '${username}' already exists`);
    await this.#redis.multi()
      .hset(key, { hash, createdAt, tokenVersion: "1" })
      .zadd(userKeys.index, 0, username)
      .exec();
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
    if (!role) return null;
    return { username, role: role as Role, createdAt: createdAt ?? "" };
  }

  /** The user's current token version, or null if the user does not exist. */
  async tokenVersion(username: string): Promise<number | null> {
    const v = await this.#redis.hget(userKeys.user(username), "tokenVersion");
    return v === null ? null : Number(v);
  }

  /** Checks credentials; returns the user and its token version, or null. */
  async authenticate(
    username: string,
    password: string,
  ): Promise<{ user: User; tokenVersion: number } | null> {
    const [role, hash, createdAt, version] = await this.#redis.hmget(
      userKeys.user(username),
      "role",
      "hash",
      "createdAt",
      "tokenVersion",
    );
    if (!role || !hash) return null;
    if (!(await verifyPassword(password, hash))) return null;
    return {
      user: { username, role: role as Role, createdAt: createdAt ?? "" },
      tokenVersion: Number(version ?? 1),
    };
  }

  /** Replaces the password and invalidates every token issued before. */
  async setPassword(username: string, password: string): Promise<void> {
    const hash = await hashPassword(password, this.#hashCost);
    const key = userKeys.user(username);
    if (!(await this.#redis.exists(key))) {
      throw new BrokerError("not_found", `user '${username}' does not exist`);
    }
    await this.#redis.multi().hset(key, "hash", hash).hincrby(key, "tokenVersion", 1).exec();
    await this.#redis.publish(userKeys.changes, username);
  }

  /** Deletes a user; its tokens stop working. False if it did not exist. */
  async delete(username: string): Promise<boolean> {
    const [[, removed]] = (await this.#redis.multi()
      .del(userKeys.user(username))
      .zrem(userKeys.index, username)
      .exec()) as [[Error | null, number]];
    await this.#redis.publish(userKeys.changes, username);
    return removed === 1;
  }

  /** Lists users in name order, after `after`, at most `limit`, optionally by name prefix. */
  async list(opts: { prefix?: string; after?: string; limit: number }): Promise<User[]> {
    const min = opts.after ? `(${opts.after}` : opts.prefix ? `[${opts.prefix}` : "-";
    const max = opts.prefix ? `[${opts.prefix}\xff` : "+";
    const names = await this.#redis.zrangebylex(userKeys.index, min, max, "LIMIT", 0, opts.limit);
    if (names.length === 0) return [];
    const pipe = this.#redis.pipeline();
    for (const n of names) pipe.hmget(userKeys.user(n), "role", "createdAt");
    const rows = (await pipe.exec()) ?? [];
    const users: User[] = [];
    names.forEach((username, i) => {
      const [role, createdAt] = rows[i][1] as [string | null, string | null];
      if (role) users.push({ username, role: role as Role, createdAt: createdAt ?? "" });
    });
    return users;
  }
}
