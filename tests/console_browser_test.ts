/**
 * The web console at /console: its files as served (content types, a strict Content-Security
 * Policy, validators, 404 problems), and an operator's session in headless Chromium through
 * NGINX in front of a real three-node cluster: a wrong password, the cluster view, a queue
 * created, messages sent and the depth following, a dead letter redriven, a purge, users, and a
 * plain user who gets no users page and is sent back to the login when deleted.
 *
 * Set MOMD_CONSOLE_SCREENSHOTS=docs/console to save the screenshots docs/console.md shows.
 */
import assert from "node:assert/strict";
import { Hono } from "hono";
import type { Page } from "puppeteer-core";
import { CONSOLE_CSP, CONSOLE_FILES, registerConsoleRoutes } from "../src/api/console/mod.ts";
import { requireChromium, withBrowser } from "./support/browser.ts";
import { type Cluster, CLUSTER_ADMIN, withCluster } from "./support/cluster.ts";

const ASSETS = new URL("../src/api/console/assets/", import.meta.url);

Deno.test("console: files are served with their types, a strict CSP and validators", async () => {
  const app = new Hono();
  registerConsoleRoutes(app);

  // Every file of the folder is listed (and so served and embedded in the binary), and back.
  const onDisk: string[] = [];
  for await (const entry of Deno.readDir(ASSETS)) if (entry.isFile) onDisk.push(entry.name);
  assert.deepEqual(onDisk.sort(), Object.keys(CONSOLE_FILES).sort());

  for (const path of ["/console", "/console/", "/console/index.html"]) {
    const res = await app.request(path);
    assert.equal(res.status, 200, path);
    assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(res.headers.get("content-security-policy"), CONSOLE_CSP);
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    assert.equal(res.headers.get("cache-control"), "no-cache");
    const html = await res.text();
    // No inline script or style, and every script a module of our own.
    for (const tag of html.match(/<script\b[^>]*>/g) ?? []) {
      assert.match(tag, /\bsrc="\/console\/[a-z_]+\.js"/, tag);
    }
    assert.doesNotMatch(html, /<style\b|\sstyle=|\son[a-z]+=/i);
  }
  assert.match(CONSOLE_CSP, /^default-src 'self';/);
  assert.doesNotMatch(CONSOLE_CSP, /unsafe-inline|unsafe-eval|https?:/);

  for (const [name, type] of Object.entries(CONSOLE_FILES)) {
    const res = await app.request(`/console/${name}`);
    assert.equal(res.status, 200, name);
    assert.equal(res.headers.get("content-type"), type, name);
    const text = await res.text();
    // Nothing fetched from elsewhere: no URL of another host in any file (an SVG's namespace
    // names no resource).
    const urls = text.match(/https?:\/\/[^\s"')]+/g) ?? [];
    assert.deepEqual(urls.filter((u) => u !== "http://www.w3.org/2000/svg"), [], name);

    const etag = res.headers.get("etag");
    assert.ok(etag, `${name} has an ETag`);
    const again = await app.request(`/console/${name}`, { headers: { "if-none-match": etag } });
    assert.equal(again.status, 304, name);
    assert.equal(await again.text(), "");
  }

  const head = await app.request("/console/app.js", { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-type"), "text/javascript; charset=utf-8");

  // Only the listed files: an encoded slash does not reach a file outside the folder.
  for (
    const path of ["/console/nope.js", "/console/..%2Fmod.ts", "/console/assets%2F..%2Fmod.ts"]
  ) {
    const res = await app.request(path);
    assert.equal(res.status, 404, path);
    assert.equal(res.headers.get("content-type"), "application/problem+json");
    const body = await res.json();
    assert.equal(body.status, 404);
    assert.equal(body.title, "Not Found");
  }
});

// ---- the browser session ------------------------------------------------------------------------

const WAIT_MS = 20_000;

/** The trimmed text of the first element matching `selector` ("" when there is none). */
function textOf(page: Page, selector: string): Promise<string> {
  return page.$eval(selector, (el) => (el.textContent ?? "").trim()).catch(() => "");
}

/**
 * Waits until the element's text matches: the page refreshes every few seconds, so a change made
 * through the API shows up within a refresh or two.
 */
async function waitText(page: Page, selector: string, expected: string | RegExp): Promise<void> {
  const matches = (t: string) => typeof expected === "string" ? t === expected : expected.test(t);
  const until = Date.now() + WAIT_MS;
  let seen = "";
  while (Date.now() < until) {
    seen = await textOf(page, selector);
    if (matches(seen)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`waited ${WAIT_MS} ms for ${selector} to read ${expected}; it reads "${seen}"`);
}

/** Waits until `selector` matches an element that is displayed. */
async function waitVisible(page: Page, selector: string): Promise<void> {
  await page.waitForSelector(selector, { visible: true, timeout: WAIT_MS });
}

/** Waits until `selector` matches no displayed element. */
async function waitHidden(page: Page, selector: string): Promise<void> {
  await page.waitForSelector(selector, { hidden: true, timeout: WAIT_MS });
}

async function fill(page: Page, selector: string, value: string): Promise<void> {
  await page.locator(selector).fill(value);
}

async function click(page: Page, selector: string): Promise<void> {
  await page.locator(selector).click();
}

/** Row keys of a table. */
function rowKeys(page: Page, table: string): Promise<string[]> {
  return page.$$eval(
    `[data-testid=${table}] tbody tr[data-key]`,
    (rows) => rows.map((r) => r.getAttribute("data-key") ?? ""),
  );
}

async function login(page: Page, username: string, password: string): Promise<void> {
  await waitVisible(page, "#login-username");
  await fill(page, "#login-username", username);
  await fill(page, "#login-password", password);
  await click(page, "::-p-aria([name='Log in'][role='button'])");
}

/** Saves a screenshot into MOMD_CONSOLE_SCREENSHOTS, when set. */
async function screenshot(page: Page, name: string): Promise<void> {
  const dir = Deno.env.get("MOMD_CONSOLE_SCREENSHOTS");
  if (!dir) return;
  await Deno.mkdir(dir, { recursive: true });
  // Nothing focused or hovered: the picture shows the page as it rests.
  await page.evaluate("document.activeElement?.blur()");
  await page.mouse.move(0, 799);
  await page.screenshot({ path: `${dir}/${name}.png`, type: "png" });
}

async function queueStats(c: Cluster, name: string) {
  const res = await c.call("GET", `/v1/queues/${name}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.stats;
}

Deno.test({
  name: "console: in Chromium through NGINX, an admin creates a queue, sends, sees the depth and " +
    "redrives a dead letter; a user gets no users page",
  // puppeteer keeps a WebSocket to the browser and timers of its own between steps.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // Before the cluster starts: a machine without Chromium fails at once, saying what to do.
    requireChromium();
    await withCluster({}, (c) =>
      withBrowser(async (browser) => {
        const alice = { username: "alice", password: "alice-password" };
        const created = await c.call("POST", "/v1/users", { body: alice });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        // Something on each page besides the queue the test creates.
        for (
          const [path, body] of [
            ["/v1/queues/invoices", {}],
            ["/v1/topics/events", {}],
            ["/v1/topics/events/subscriptions/audit", { start: "earliest" }],
          ] as const
        ) {
          const res = await c.call("PUT", path, { body });
          assert.equal(res.status, 201, `${path}: ${JSON.stringify(res.body)}`);
        }

        const { page, problems } = await browser.newPage({ width: 1280, height: 800 });
        const res = await page.goto(`${c.url}/console`, { waitUntil: "load" });
        assert.equal(res?.status(), 200);
        assert.equal(res?.headers()["content-security-policy"], CONSOLE_CSP);
        await waitVisible(page, "#login-username");
        await screenshot(page, "login");

        // A wrong password: the problem's title and detail, and still the login page.
        await login(page, CLUSTER_ADMIN.username, "not-the-password");
        await waitText(page, "[data-testid=login-error]", /^Unauthorized: .+/);
        assert.equal(await page.$("#nav:not([hidden])"), null, "no navigation before a login");

        // The admin: the cluster view with its three nodes, alive.
        await login(page, CLUSTER_ADMIN.username, CLUSTER_ADMIN.password);
        await waitText(page, "[data-testid=session-user]", "cluster-admin (admin)");
        await waitText(page, "[data-testid=cluster-alive]", "3 of 3");
        assert.deepEqual(await rowKeys(page, "nodes-table"), [...c.nodeIds]);
        assert.equal(await textOf(page, "[data-testid=cluster-ready]"), "ready");
        await waitVisible(page, "#nav-users");
        const token = await page.evaluate(() => sessionStorage.getItem("momd.console.session"));
        assert.match(token ?? "", /"token":"[^"]+"/, "the token is kept in sessionStorage");

        // Create a queue whose messages are dead-lettered after two deliveries.
        await click(page, "::-p-aria([name='Queues'][role='link'])");
        await waitVisible(page, "[data-testid=create-queue]");
        await fill(page, "#q-name", "orders");
        await fill(page, "#q-visibility", "30");
        await fill(page, "#q-max-deliveries", "2");
        await click(page, "::-p-aria([name='Create queue'][role='button'])");
        await waitText(page, "[data-testid=create-queue-outcome]", "Queue 'orders' created.");
        const config = (await c.call("GET", "/v1/queues/orders")).body.config;
        assert.equal(config.maxDeliveries, 2);
        assert.equal(config.visibilityTimeoutSeconds, 30);
        await waitText(
          page,
          "[data-testid=queues-table] tr[data-key=orders] [data-testid=depth]",
          "0",
        );
        // Bad input past the browser's own check: the API's problem, shown by the form.
        await fill(page, "#q-name", "bad name!");
        await page.$eval("[data-testid=create-queue]", (f) => f.setAttribute("novalidate", ""));
        await click(page, "::-p-aria([name='Create queue'][role='button'])");
        await waitText(page, "[data-testid=create-queue-outcome]", /^Bad Request: name: must be/);

        // The queue's page: send two messages and watch the depth.
        await click(page, "[data-testid=queues-table] tr[data-key=orders] a");
        await waitText(page, "h1", "Queue orders");
        await waitText(page, "[data-testid=queue-depth]", "0");
        await fill(page, "#send-body", "order 1");
        await click(page, "::-p-aria([name='Send'][role='button'])");
        await waitText(page, "[data-testid=send-message-outcome]", /^Sent message \w+\.$/);
        await fill(page, "#send-body", "order 2");
        await fill(page, "#send-attributes", "customer=c-7");
        await click(page, "::-p-aria([name='Send'][role='button'])");
        await waitText(page, "[data-testid=queue-depth]", "2");
        assert.equal((await queueStats(c, "orders")).depth, 2);
        const owner = (await c.call("GET", "/v1/queues/orders")).headers.get("momd-owner");
        await waitText(page, "[data-testid=queue-owner-node]", owner ?? "");

        // Over the API, two deliveries without an ack: the first message goes to the dead letters.
        for (let attempt = 0; attempt < 2; attempt++) {
          const got = await c.call("POST", "/v1/queues/orders/receive", { body: { max: 1 } });
          assert.equal(got.body.messages.length, 1, JSON.stringify(got.body));
          assert.equal(got.body.messages[0].body, "order 1");
          const nack = await c.call("POST", "/v1/queues/orders/nack", {
            body: { receipts: [got.body.messages[0].receipt] },
          });
          assert.deepEqual(
            nack.body.results.map((r: { ok: boolean }) => r.ok),
            [true],
          );
        }
        assert.equal((await queueStats(c, "orders")).deadLettered, 1);
        await waitText(page, "[data-testid=queue-dead]", "1");
        await waitText(page, "[data-testid=queue-depth]", "1");

        // Peek at the dead letters: the message, not consumed.
        await page.select("#peek-state", "dead");
        await click(page, "::-p-aria([name='Peek'][role='button'])");
        const bodies = "[data-testid=peek-table] tbody tr[data-key] td:nth-child(2)";
        await waitText(page, bodies, "order 1");
        const peeked = await page.$$eval(
          bodies,
          (cells) => cells.map((td) => td.textContent),
        );
        assert.deepEqual(peeked, ["order 1"]);
        await screenshot(page, "queue");

        // Redrive: no dead letters left, the depth back to 2.
        await click(page, "[data-testid=queue-redrive]");
        await waitText(page, "[data-testid=queue-action-outcome]", /^Moved 1 dead letter/);
        await waitText(page, "[data-testid=queue-dead]", "0");
        await waitText(page, "[data-testid=queue-depth]", "2");
        const after = await queueStats(c, "orders");
        assert.deepEqual([after.deadLettered, after.depth], [0, 2]);

        // Purge asks first, then drops both messages.
        await click(page, "[data-testid=queue-purge]");
        await click(page, "[data-testid=queue-purge-confirm]");
        await waitText(page, "[data-testid=queue-action-outcome]", "Purged 2 message(s).");
        await waitText(page, "[data-testid=queue-depth]", "0");
        assert.equal((await queueStats(c, "orders")).depth, 0);

        // The cluster view lists the queue with its owner and in-sync replicas.
        await click(page, "::-p-aria([name='Cluster'][role='link'])");
        await waitText(
          page,
          "[data-testid=entities-table] tr[data-key='queue/orders'] td:nth-child(3)",
          owner ?? "",
        );
        await screenshot(page, "cluster");

        // Topics: the one made over the API, with its subscription and no dead letters.
        await click(page, "::-p-aria([name='Topics'][role='link'])");
        await waitText(
          page,
          "[data-testid=topics-table] tr[data-key=events] [data-testid=dead]",
          "0",
        );

        // Users (admin): alice is listed; a user created here and deleted again.
        await click(page, "#nav-users");
        await waitVisible(page, "[data-testid=users-table] tr[data-key=alice]");
        await fill(page, "#user-name", "bob");
        await fill(page, "#user-password", "bob-password");
        await click(page, "::-p-aria([name='Create user'][role='button'])");
        await waitText(page, "[data-testid=create-user-outcome]", "User 'bob' created.");
        await waitVisible(page, "[data-testid=users-table] tr[data-key=bob]");
        assert.equal((await c.call("GET", "/v1/users/bob")).status, 200);
        await click(page, "[data-testid=users-table] tr[data-key=bob] [data-testid=user-delete]");
        await click(
          page,
          "[data-testid=users-table] tr[data-key=bob] [data-testid=user-delete-confirm]",
        );
        await waitText(page, "[data-testid=users-outcome]", /^User 'bob' deleted/);
        await waitHidden(page, "[data-testid=users-table] tr[data-key=bob]");
        assert.equal((await c.call("GET", "/v1/users/bob")).status, 404);

        // A plain user: no users page, no cluster internals, but the queues.
        await click(page, "::-p-aria([name='Log out'][role='button'])");
        await login(page, alice.username, alice.password);
        await waitText(page, "[data-testid=session-user]", "alice (user)");
        await waitVisible(page, "[data-testid=cluster-admin-only]");
        assert.equal(await page.$("[data-testid=nodes-table]:not([hidden]) tr[data-key]"), null);
        await waitHidden(page, "#nav-users");
        await page.goto(`${c.url}/console/#/users`);
        await waitVisible(page, "[data-testid=users-forbidden]");
        assert.equal(await page.$("[data-testid=users-table]"), null);
        await page.goto(`${c.url}/console/#/queues`);
        await waitVisible(page, "[data-testid=queues-table] tr[data-key=orders]");

        // Her account deleted: her token stops working, and the console goes back to the login.
        assert.equal((await c.call("DELETE", "/v1/users/alice")).status, 204);
        await waitVisible(page, "#login-username");
        await waitText(page, "[data-testid=login-error]", /session ended/);
        assert.equal(await page.evaluate(() => sessionStorage.length), 0);

        assert.deepEqual(problems, [], "no script errors or CSP refusals on the page");
      }));
  },
});

Deno.test("console: without Chromium the browser test fails and says how to install it", () => {
  assert.throws(
    () => requireChromium("/nonexistent/chromium"),
    /\/nonexistent\/chromium is missing.*\.\/scripts\/dev install/,
  );
});
