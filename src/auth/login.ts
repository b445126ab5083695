import type { RateLimiter } from "./rate_limit.ts";
import type { User, UserStore } from "./users.ts";

/** Why a password check was refused. */
export class LoginRefused extends Error {
  constructor(
    readonly reason: "bad_credentials" | "throttled",
    readonly retryAfterSeconds = 0,
  ) {
    super(
      reason === "throttled"
        ? "too many failed logins for this username from this client; try again later"
        : "invalid username or password",
    );
    this.name = "LoginRefused";
  }
}

/**
 * Checks a username and password under the failed-login limit: the one path every password check
 * takes (the token route, a user changing its own password, the compatibility API). Returns the
 * user and its token version, or throws LoginRefused. A throttled pair is refused before the
 * password is looked at, so even the right password is refused until the window frees.
 */
export async function checkPassword(
  deps: { users: UserStore; limiter: RateLimiter },
  attempt: { username: string; password: string; client: string },
): Promise<{ user: User; tokenVersion: number }> {
  const gate = await deps.limiter.loginAttempt(attempt.username, attempt.client);
  if (!gate.allowed) throw new LoginRefused("throttled", gate.retryAfterSeconds);
  const found = await deps.users.authenticate(attempt.username, attempt.password);
  if (!found) throw new LoginRefused("bad_credentials");
  await gate.succeeded();
  return found;
}
