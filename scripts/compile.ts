/**
 * `deno task compile`: builds the single `momd` binary with `deno compile`, embedding every file
 * the node reads at run time, so the binary needs no file beside it.
 *
 *   deno run -A scripts/compile.ts [deno compile options, e.g. --target aarch64-unknown-linux-gnu]
 *
 * `deno compile` downloads Deno's slim runtime ("denort") for the target unless DENORT_BIN names
 * a local copy; a machine that cannot reach Deno's download host stops at that step.
 */

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");

/** The binary's permissions: the same as the local broker gives `deno run main.ts serve`. */
// --allow-write: the same binary is the command line, which keeps its login in the user's
// config directory.
export const BINARY_PERMISSIONS = [
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-write",
  "--allow-sys",
];

/** Folders read at run time (Lua scripts, .proto files, the console): embedded when they exist. */
export const RUNTIME_FILES = [
  "src/broker/scripts",
  "src/auth/scripts",
  "src/backup/scripts",
  "src/api/console/assets",
  "src/api/docs/assets",
  "proto",
];

function exists(path: string): boolean {
  try {
    Deno.statSync(`${ROOT}/${path}`);
    return true;
  } catch {
    return false;
  }
}

/** The checkout's commit (short, "-dirty" with uncommitted changes), or "unknown" without git. */
async function commitOf(root: string): Promise<string> {
  try {
    const out = await new Deno.Command("git", {
      args: ["describe", "--always", "--dirty", "--abbrev=12"],
      cwd: root,
      stderr: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout).trim();
    return out.success && text ? text : "unknown";
  } catch {
    return "unknown";
  }
}

async function main(args: string[]): Promise<number> {
  const includes = RUNTIME_FILES.filter(exists).flatMap((dir) => ["--include", dir]);
  const output = args.some((a) => a === "-o" || a.startsWith("--output")) ? [] : [
    "--output",
    "dist/momd",
  ];
  const compileArgs = [
    "compile",
    ...BINARY_PERMISSIONS,
    ...includes,
    ...output,
    ...args,
    "main.ts",
  ];
  console.log(`deno ${compileArgs.join(" ")}`);
  // The binary names its build (src/version.ts): the commit and time, written for the compile
  // and put back after it, so the checkout keeps saying "source".
  const buildFile = `${ROOT}/src/build.json`;
  const source = await Deno.readTextFile(buildFile);
  await Deno.writeTextFile(
    buildFile,
    JSON.stringify({ commit: await commitOf(ROOT), builtAt: new Date().toISOString() }) + "\n",
  );
  let status: Deno.CommandStatus;
  try {
    status = await new Deno.Command(Deno.execPath(), { args: compileArgs, cwd: ROOT }).spawn()
      .status;
  } finally {
    await Deno.writeTextFile(buildFile, source);
  }
  if (!status.success && !Deno.env.get("DENORT_BIN")) {
    console.error(
      "\nIf the failure is the download of denort: this machine cannot reach Deno's download host." +
        "\nSet DENORT_BIN to a denort binary of the same Deno version (from the release's " +
        "denort-<target>.zip),\nor build on a machine that reaches it (deploy/Dockerfile does).",
    );
  }
  return status.code;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
