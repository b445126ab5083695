import assert from "node:assert/strict";
import { Notifier, type PollLook } from "../src/broker/notifier.ts";
import { BrokerError } from "../src/broker/errors.ts";

/** Resolves after the macrotasks queued so far (a timer of 0 ms) have run. */
function nextMacrotask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

const idle = <T>(value: T): PollLook<T> => ({
  value,
  ready: false,
  dueAt: false,
});
const found = <T>(value: T): PollLook<T> => ({
  value,
  ready: true,
  dueAt: false,
});

Deno.test("notifier: a poll that finds something at once answers with no waiter left", async () => {
  const n = new Notifier();
  let looks = 0;
  const value = await n.poll("k", () => {
    looks++;
    return Promise.resolve(found("m"));
  }, { waitMs: 60_000, now: Date.now });
  assert.equal(value, "m");
  assert.equal(looks, 1);
  assert.equal(n.waiting, 0);
});

Deno.test("notifier: without waitMs a poll looks once (again while the look asks for it)", async () => {
  const n = new Notifier();
  let looks = 0;
  const value = await n.poll("k", () => {
    looks++;
    return Promise.resolve({ ...idle(looks), again: looks < 3 });
  }, { waitMs: 0, now: Date.now });
  assert.equal(value, 3);
  assert.equal(n.waiting, 0);
});

Deno.test("notifier: a notify during a look is not missed: the poll looks again at once", async () => {
  const n = new Notifier();
  const stop = new AbortController();
  let looks = 0;
  const value = await n.poll("k", () => {
    looks++;
    if (looks === 1) {
      // Something arrives after the look found nothing, before the poll waits.
      n.notify("k");
      // Were the notify missed, the poll would wait, and this abort would end it.
      setTimeout(() => stop.abort(), 0);
      return Promise.resolve(idle("nothing"));
    }
    return Promise.resolve(found("arrived"));
  }, {
    waitMs: 60_000,
    signal: stop.signal,
    now: Date.now,
    aborted: () => "aborted",
  });
  assert.equal(value, "arrived");
  assert.equal(looks, 2);
  assert.equal(n.waiting, 0);
});

Deno.test("notifier: a notify wakes a waiting poll, which looks again", async () => {
  const n = new Notifier();
  const stop = new AbortController();
  let looks = 0;
  const poll = n.poll("k", () => {
    looks++;
    return Promise.resolve(looks === 1 ? idle("nothing") : found("arrived"));
  }, {
    waitMs: 60_000,
    signal: stop.signal,
    now: Date.now,
    aborted: () => "aborted",
  });
  await nextMacrotask();
  assert.equal(looks, 1);
  assert.equal(n.waiting, 1);
  n.notify("other");
  await nextMacrotask();
  assert.equal(looks, 1, "a notify of another key does not wake it");
  n.notify("k");
  await nextMacrotask();
  assert.equal(looks, 2, "woken by the notify");
  stop.abort(); // ends the poll should the notify have been lost
  assert.equal(await poll, "arrived");
  assert.equal(n.waiting, 0);
});

Deno.test("notifier: an abort ends the wait with opts.aborted(), leaving no waiter", async () => {
  const n = new Notifier();
  const stop = new AbortController();
  let looks = 0;
  const poll = n.poll("k", () => {
    looks++;
    return Promise.resolve(idle("nothing"));
  }, {
    waitMs: 60_000,
    signal: stop.signal,
    now: Date.now,
    aborted: () => "aborted",
  });
  await nextMacrotask();
  stop.abort();
  assert.equal(await poll, "aborted");
  assert.equal(looks, 1);
  assert.equal(n.waiting, 0);
});

Deno.test("notifier: without opts.aborted, one more look answers after an abort", async () => {
  const n = new Notifier();
  const stop = new AbortController();
  let looks = 0;
  const poll = n.poll("k", () => {
    looks++;
    return Promise.resolve(idle(looks));
  }, { waitMs: 60_000, signal: stop.signal, now: Date.now });
  await nextMacrotask();
  stop.abort();
  assert.equal(await poll, 2);
  assert.equal(n.waiting, 0);
});

Deno.test("notifier: the look after the end of the wait answers", async () => {
  const n = new Notifier();
  let looks = 0;
  const value = await n.poll("k", () => {
    looks++;
    return Promise.resolve(idle(looks));
  }, { waitMs: 20, now: Date.now });
  assert.ok(looks >= 2, "one look, the wait, one last look");
  assert.equal(value, looks, "the last look answered");
  assert.equal(n.waiting, 0);
});

Deno.test("notifier: a poll wakes for dueAt on the store's clock, not the wall clock", async () => {
  const n = new Notifier();
  const stop = new AbortController();
  const storeNow = 1_000; // a frozen store clock, far from the wall clock
  let guard: ReturnType<typeof setTimeout> | undefined;
  let looks = 0;
  const value = await n.poll("k", () => {
    looks++;
    if (looks === 1) {
      // Due in 10 ms on the store's clock. Taken as a wall-clock time it would be long past
      // (a busy loop of looks); ignored, the poll would wait until this abort.
      guard = setTimeout(() => stop.abort(), 30_000);
      return Promise.resolve({
        value: "early",
        ready: false,
        dueAt: storeNow + 10,
      });
    }
    return Promise.resolve(found("due"));
  }, {
    waitMs: 60_000,
    signal: stop.signal,
    now: () => storeNow,
    aborted: () => "aborted",
  });
  clearTimeout(guard);
  assert.equal(value, "due");
  assert.equal(looks, 2);
  assert.equal(n.waiting, 0);
});

Deno.test("notifier: something already due is looked for again at once, then not in a spin", async () => {
  const n = new Notifier();
  const stop = new AbortController();
  let looks = 0;
  let macrotaskRan = false;
  const seen: boolean[] = [];
  const value = await n.poll("k", () => {
    looks++;
    seen.push(macrotaskRan);
    macrotaskRan = false;
    setTimeout(() => macrotaskRan = true, 0);
    if (looks < 4) {
      return Promise.resolve({
        value: "none",
        ready: false,
        dueAt: Date.now() - 1,
      });
    }
    return Promise.resolve(found("done"));
  }, {
    waitMs: 60_000,
    signal: stop.signal,
    now: Date.now,
    aborted: () => "aborted",
  });
  assert.equal(value, "done");
  // Look 2 follows look 1 without a wait; looks 3 and 4 each follow a short wait.
  assert.deepEqual(seen, [false, false, true, true]);
  await nextMacrotask(); // the last look's timer
  assert.equal(n.waiting, 0);
});

Deno.test("notifier: a look that throws rejects the poll and leaves no waiter", async () => {
  const n = new Notifier();
  await assert.rejects(
    n.poll("k", () => Promise.reject(new Error("boom")), {
      waitMs: 60_000,
      now: Date.now,
    }),
    /boom/,
  );
  assert.equal(n.waiting, 0);
});

Deno.test("notifier: wait resolves on notify, and wakeAll wakes every key", async () => {
  const n = new Notifier();
  const a = n.wait("a", Date.now() + 60_000);
  const b = n.wait("b", Date.now() + 60_000);
  assert.equal(n.waiting, 2);
  n.notify("a");
  await a;
  assert.equal(n.waiting, 1);
  n.wakeAll();
  await b;
  assert.equal(n.waiting, 0);
});

Deno.test("notifier: an entity that moved away while the poll waited ends it with nothing taken", async () => {
  const n = new Notifier();
  const moved = () => new BrokerError("unavailable", "queue/q: owned by node2", 1);
  // The first look fails: the request reached a node that does not serve the entity (503).
  await assert.rejects(
    n.poll("k", () => Promise.reject(moved()), {
      waitMs: 60_000,
      now: Date.now,
      unavailable: () => "moved",
    }),
    (err) => err instanceof BrokerError && err.code === "unavailable",
  );
  // A look after a wait fails so: the poll answers `unavailable()`, not an error.
  let looks = 0;
  const value = await n.poll("k", () => {
    looks++;
    if (looks === 1) {
      setTimeout(() => n.notify("k"), 5);
      return Promise.resolve(idle("nothing yet"));
    }
    return Promise.reject(moved());
  }, { waitMs: 60_000, now: Date.now, unavailable: () => "moved" });
  assert.equal(value, "moved");
  // Any other error after a wait still rejects.
  looks = 0;
  await assert.rejects(
    n.poll("k", () => {
      looks++;
      if (looks === 1) {
        setTimeout(() => n.notify("k"), 5);
        return Promise.resolve(idle("nothing yet"));
      }
      return Promise.reject(new BrokerError("store_lost", "the local store lost its data"));
    }, { waitMs: 60_000, now: Date.now, unavailable: () => "moved" }),
    (err) => err instanceof BrokerError && err.code === "store_lost",
  );
  assert.equal(n.waiting, 0);
});
