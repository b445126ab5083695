import type { LoginAttempt, RateLimiter } from "./rate_limit.ts";
import type { User, UserStore } from "./users.ts";

/** Why a password check was refused. */
export class LoginRefused extends Error {
  constructor(
    readonly reason: "bad_credentials" | "throttled",
    readonly retryAfterSeconds = 0,
    refusedBy: LoginAttempt["refusedBy"] = "pair",
  ) {
    super(
      reason === "bad_credentials"
        ? "invalid username or password"
        : refusedBy === "address"
        ? "too many failed logins from this client address; try again later"
        : refusedBy === "cluster"
        ? "too many failed logins across the cluster, and this client address failed recently; " +
          "try again later"
        : "too many failed logins for this username from this client; try again later",
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
  if (!gate.allowed) {
    throw new LoginRefused("throttled", gate.retryAfterSeconds, gate.refusedBy);
  }
  let found: Awaited<ReturnType<UserStore["authenticate"]>>;
  try {
    found = await deps.users.authenticate(attempt.username, attempt.password);
  } catch (err) {
    await gate.succeeded().catch(() => {}); // not checked (a busy node, an unreachable Redis): not a failure
    throw err;
  }
  if (!found) throw new LoginRefused("bad_credentials");
  await gate.succeeded();
  return found;
}
