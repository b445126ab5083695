/**
 * The saved login: `$XDG_CONFIG_HOME/momd/credentials.json` (or `~/.config/momd/...`), readable
 * by its owner only (mode 0600, in a 0700 directory). It holds the server URL, the username and
 * a token, never a password.
 */
import type { CliIo } from "./io.ts";

/** What `momd login` saves. */
export interface Credentials {
  url: string;
  username: string;
  token: string;
  /** ISO 8601 (server time). */
  expiresAt: string;
}

/** The momd configuration directory of the user. */
export function configDir(io: Pick<CliIo, "env">): string {
  const xdg = io.env("XDG_CONFIG_HOME");
  if (xdg) return `${xdg.replace(/\/+$/, "")}/momd`;
  const home = io.env("HOME") ?? io.env("USERPROFILE");
  if (!home) {
    throw new Error("cannot find the configuration directory: set HOME or XDG_CONFIG_HOME");
  }
  return `${home.replace(/\/+$/, "")}/.config/momd`;
}

/** Path of the credentials file. */
export function credentialsPath(io: Pick<CliIo, "env">): string {
  return `${configDir(io)}/credentials.json`;
}

/** The saved login, or undefined when there is none (or it is unreadable). */
export async function loadCredentials(io: Pick<CliIo, "env">): Promise<Credentials | undefined> {
  try {
    const parsed = JSON.parse(await Deno.readTextFile(credentialsPath(io)));
    if (typeof parsed?.url === "string" && typeof parsed?.token === "string") return parsed;
  } catch {
    // none, or not ours: as if logged out
  }
  return undefined;
}

/** Saves the login with mode 0600, replacing the file atomically. */
export async function saveCredentials(io: Pick<CliIo, "env">, creds: Credentials): Promise<string> {
  const dir = configDir(io);
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const path = credentialsPath(io);
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.writeTextFile(tmp, JSON.stringify(creds, null, 2) + "\n", { mode: 0o600 });
    await Deno.chmod(tmp, 0o600); // the umask may have taken bits away; never added any
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  return path;
}

/** Deletes the saved login; false when there was none. */
export async function deleteCredentials(io: Pick<CliIo, "env">): Promise<boolean> {
  try {
    await Deno.remove(credentialsPath(io));
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}
