import type { Caller } from "./caller.ts";
import { path } from "./http.ts";
import type {
  CreateUserInput,
  PasswordChangeInput,
  RateLimitInput,
  RateLimitSetting,
  User,
  UserListOptions,
  UserPage,
} from "./types.ts";

/** User management (`client.users`): admins create, list and delete; anyone changes its password. */
export class UsersApi {
  readonly #call: Caller;
  readonly #onPasswordChanged?: (name: string, password: string) => void;

  constructor(call: Caller, onPasswordChanged?: (name: string, password: string) => void) {
    this.#call = call;
    this.#onPasswordChanged = onPasswordChanged;
  }

  /** Creates a user (admin). Not retried: a repeat after a lost answer would be a 409. */
  async create(user: CreateUserInput): Promise<User> {
    return (await this.#call<User>({ method: "POST", path: "/v1/users", body: user, retry: false }))
      .body;
  }

  /** One page of users in name order (admin). */
  async list(options: UserListOptions = {}): Promise<UserPage> {
    return (await this.#call<UserPage>({
      method: "GET",
      path: "/v1/users",
      query: { ...options },
      retry: true,
    })).body;
  }

  /** Every user (matching the prefix), page after page (admin). */
  async *listAll(options: Omit<UserListOptions, "after"> = {}): AsyncGenerator<User> {
    let after: string | undefined;
    do {
      const page = await this.list({ ...options, after });
      yield* page.users;
      after = page.next ?? undefined;
    } while (after);
  }

  /** One user (admin, or the user itself). */
  async get(name: string): Promise<User> {
    return (await this.#call<User>({ method: "GET", path: path`/v1/users/${name}`, retry: true }))
      .body;
  }

  /** Deletes a user; its tokens stop working at once (admin). */
  async delete(name: string): Promise<void> {
    await this.#call({ method: "DELETE", path: path`/v1/users/${name}`, retry: true });
  }

  /**
   * Changes a password; every token of the user stops working. Users changing their own pass
   * `currentPassword`; admins set another user's without it.
   */
  async setPassword(name: string, change: PasswordChangeInput): Promise<void> {
    await this.#call({
      method: "PUT",
      path: path`/v1/users/${name}/password`,
      body: change,
      retry: true,
    });
    this.#onPasswordChanged?.(name, change.password);
  }

  /** The user's rate limit in force (admin, or the user itself). */
  async rateLimit(name: string): Promise<RateLimitSetting> {
    return (await this.#call<RateLimitSetting>({
      method: "GET",
      path: path`/v1/users/${name}/rate-limit`,
      retry: true,
    })).body;
  }

  /** Gives the user its own rate limit, or none with `{ unlimited: true }` (admin). */
  async setRateLimit(name: string, limit: RateLimitInput): Promise<RateLimitSetting> {
    return (await this.#call<RateLimitSetting>({
      method: "PUT",
      path: path`/v1/users/${name}/rate-limit`,
      body: limit,
      retry: true,
    })).body;
  }

  /** Puts the user back on the cluster's default rate limit (admin). */
  async clearRateLimit(name: string): Promise<RateLimitSetting> {
    return (await this.#call<RateLimitSetting>({
      method: "DELETE",
      path: path`/v1/users/${name}/rate-limit`,
      retry: true,
    })).body;
  }
}
