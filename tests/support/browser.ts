/**
 * Headless Chromium for browser tests (the console's), driven by puppeteer-core: Debian's
 * `/usr/bin/chromium` (installed by `./scripts/dev install`), never a downloaded browser. Each
 * launch gets a fresh profile in a temporary directory, removed on close.
 */
import puppeteer, { type Browser, type Page } from "puppeteer-core";

/** Where Debian's chromium package puts the browser. */
export const CHROMIUM = "/usr/bin/chromium";

/**
 * Flags for a closed network and a root user: no sandbox (root), no GPU, and none of the
 * background connections to Google's hosts that this machine refuses.
 */
const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage",
];

/** A launched browser and how to stop it. */
export interface TestBrowser {
  browser: Browser;
  /** A new page of the given size that records what went wrong on it. */
  newPage(opts?: { width?: number; height?: number }): Promise<TestPage>;
  close(): Promise<void>;
}

/** A page with the errors its scripts raised and the messages they logged as errors. */
export interface TestPage {
  page: Page;
  /** Uncaught exceptions and console errors (CSP refusals among them). */
  problems: string[];
}

/** Throws, saying how to install Chromium, when it is missing (a browser test fails, not skips). */
export function requireChromium(path = CHROMIUM): void {
  try {
    if (Deno.statSync(path).isFile) return;
  } catch {
    // missing: below
  }
  throw new Error(
    `${path} is missing: the browser tests need Debian's chromium package. ` +
      "Run ./scripts/dev install (it installs it), then run the tests again.",
  );
}

/** Launches headless Chromium with a fresh profile. */
export async function launchBrowser(opts: { executablePath?: string } = {}): Promise<TestBrowser> {
  const executablePath = opts.executablePath ?? CHROMIUM;
  requireChromium(executablePath);
  const userDataDir = await Deno.makeTempDir({ prefix: "momd-chromium-" });
  let browser: Browser;
  try {
    browser = await puppeteer.launch({
      executablePath,
      headless: true,
      userDataDir,
      args: ARGS,
      // The test's own deadline applies; a browser that cannot start fails within this.
      timeout: 60_000,
    });
  } catch (err) {
    await Deno.remove(userDataDir, { recursive: true }).catch(() => {});
    throw err;
  }
  return {
    browser,
    async newPage(o = {}) {
      const page = await browser.newPage();
      await page.setViewport({ width: o.width ?? 1280, height: o.height ?? 800 });
      const problems: string[] = [];
      page.on("pageerror", (err) => problems.push(`page error: ${err}`));
      page.on("console", (msg) => {
        // An API call the test makes fail on purpose (a wrong password: 401) is logged as a
        // failed resource load; that is the API's answer, not a fault of the page.
        if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) {
          problems.push(`console error: ${msg.text()}`);
        }
      });
      return { page, problems };
    },
    async close() {
      const proc = browser.process();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        browser.close().catch(() => {}),
        new Promise((r) => timer = setTimeout(r, 10_000)),
      ]);
      clearTimeout(timer);
      // A browser that did not close in time does not outlive the test.
      if (proc && proc.exitCode === null) proc.kill("SIGKILL");
      await Deno.remove(userDataDir, { recursive: true }).catch(() => {});
    },
  };
}

/** Runs `fn` with a launched browser, closed afterwards whatever happens. */
export async function withBrowser<T>(fn: (b: TestBrowser) => Promise<T>): Promise<T> {
  const b = await launchBrowser();
  try {
    return await fn(b);
  } finally {
    await b.close();
  }
}
