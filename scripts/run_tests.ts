/**
 * `deno task test`: runs `deno test -A` (on tests/ unless arguments say otherwise), shows its
 * output as it comes, and ends with a plain `N passed, N failed` line counting top-level tests,
 * the line CI reads. Exits with deno test's exit code.
 *
 *   deno run -A scripts/run_tests.ts [deno test arguments]
 */

/** Counts of one run; `failed` includes modules that failed outside any test. */
export interface TestCounts {
  passed: number;
  failed: number;
  ignored: number;
}

// deno test's own closing line, e.g. "FAILED | 1 passed (1 step) | 3 failed (1 step) | 1 ignored".
const SUMMARY =
  /^(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed(?: \(\d+ steps?\))?(?: \| (\d+) ignored)?/;
// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/** Reads deno test's closing line out of its output; undefined when it never got that far. */
export function parseSummary(output: string): TestCounts | undefined {
  let found: TestCounts | undefined;
  for (const line of output.replace(ANSI, "").split("\n")) {
    const m = line.trim().match(SUMMARY);
    if (m) found = { passed: Number(m[1]), failed: Number(m[2]), ignored: Number(m[3] ?? 0) };
  }
  return found;
}

/** Copies a stream to `out` while keeping the last `keep` characters of it. */
async function relay(
  stream: ReadableStream<Uint8Array>,
  out: { write(p: Uint8Array): Promise<number> },
  keep: number,
): Promise<string> {
  const decoder = new TextDecoder();
  let tail = "";
  for await (const chunk of stream) {
    let written = 0;
    while (written < chunk.length) written += await out.write(chunk.subarray(written));
    tail = (tail + decoder.decode(chunk, { stream: true })).slice(-keep);
  }
  return tail;
}

async function main(args: string[]): Promise<number> {
  const testArgs = args.length > 0 ? args : ["tests/"];
  const child = new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", ...testArgs],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const [stdout, stderr, status] = await Promise.all([
    relay(child.stdout, Deno.stdout, 64 * 1024),
    relay(child.stderr, Deno.stderr, 16 * 1024),
    child.status,
  ]);
  let counts = parseSummary(stdout) ?? parseSummary(stderr);
  if (!counts || (!status.success && counts.failed === 0)) {
    // Type errors, a module that cannot load, leaked resources: the run failed as a whole.
    console.log(`deno test exited with code ${status.code} without a failed test to count it`);
    counts = { passed: counts?.passed ?? 0, failed: 1, ignored: counts?.ignored ?? 0 };
  }
  const ignored = counts.ignored > 0 ? `, ${counts.ignored} skipped` : "";
  console.log(`${counts.passed} passed, ${counts.failed} failed${ignored}`);
  if (counts.failed > 0) return status.code || 1;
  return status.code;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
