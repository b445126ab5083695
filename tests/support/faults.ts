/**
 * What the cluster fault tests share (tests/cluster_faults_test.ts, cluster_correctness_test.ts):
 * queues of a known configuration, steady load through NGINX with the checker, waiting for
 * acknowledged sends or a caught-up node, and comparing a replica's copy with its owner's.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import type { EntityRef, EntityType } from "../../src/broker/keys.ts";
import { ZkSession } from "../../src/cluster/zk.ts";
import { decodeEntry } from "../../src/cluster/ownership.ts";
import { queueKeys } from "../../src/broker/keys.ts";
import type { Cluster, ClusterStatus } from "./cluster.ts";
import { type History, LoadDriver, type Report, summarize } from "./checker.ts";
import { dumpEntity } from "./state.ts";

export const SESSION_MS = 2000;
export const QUEUES = ["q0", "q1", "q2", "q3", "q4", "q5"];
/** Queue settings of every test: a short visibility keeps redeliveries (and draining) quick. */
export const QUEUE_CONFIG = { visibilityTimeoutSeconds: 5, dedupWindowSeconds: 600 };
export const opts = { sanitizeOps: false, sanitizeResources: false };

export type EntityStatus = ClusterStatus["entities"][number];

export async function createQueues(c: Cluster, names: readonly string[], config = QUEUE_CONFIG) {
  for (const name of names) {
    const res = await c.call("PUT", `/v1/queues/${name}`, { body: config });
    assert.equal(res.status, 201, `PUT /v1/queues/${name}: ${JSON.stringify(res.body)}`);
  }
}

export function entityOf(status: ClusterStatus, name: string, type = "queue"): EntityStatus {
  const e = status.entities.find((x) => x.type === type && x.name === name);
  assert.ok(e, `${type} ${name} is not in /v1/cluster: ${JSON.stringify(status.entities)}`);
  return e;
}

/** The checker found nothing a broker must never do (duplicated deliveries are allowed). */
export function assertSafe(report: Report, what: string): void {
  const text = summarize(report);
  console.log(`${what}: ${text.replaceAll("\n", "\n  ")}`);
  assert.ok(report.acknowledged > 0, `${what}: nothing was acknowledged`);
  assert.deepEqual(report.lost, [], `${what}: acknowledged sends lost\n${text}`);
  assert.deepEqual(report.unexpected, [], `${what}: unexpected deliveries\n${text}`);
  assert.deepEqual(report.concurrentDeliveries, [], `${what}: concurrent deliveries\n${text}`);
  assert.deepEqual(report.redeliveredAfterAck, [], `${what}: acked messages came back\n${text}`);
}

/** Runs a step; a failed step ends the test (and withCluster prints the logs). */
export async function step(
  t: Deno.TestContext,
  name: string,
  fn: () => Promise<void>,
): Promise<void> {
  if (!(await t.step(name, fn))) throw new Error(`step failed: ${name}`);
}

/** The entities and nodes of a status, short, for timeout messages. */
export function brief(s: ClusterStatus | undefined): string {
  if (!s) return "(no answer)";
  const nodes = s.nodes.map((n) => `${n.id}${n.alive ? "" : " (dead)"}`).join(", ");
  const entities = s.entities.map((e) =>
    `${e.name}: ${e.owner}@${e.epoch} [${e.replicas.join(" ")}] lag ${JSON.stringify(e.lag)}`
  ).join("; ");
  return `controller ${s.controller}; nodes ${nodes}; ${entities}`;
}

/** Three producers and two consumers over every queue, for at most a minute. */
export function steadyLoad(c: Cluster, history?: History): LoadDriver {
  return new LoadDriver({
    base: c.url,
    token: c.token,
    queues: QUEUES,
    producers: 3,
    consumers: 2,
    maxMessages: 20_000,
    maxDurationMs: 60_000,
    history,
  });
}

/** Waits until the driver has `n` more acknowledged sends than now. */
export async function moreAcknowledged(
  c: Cluster,
  driver: LoadDriver,
  n: number,
  timeoutMs = 30_000,
) {
  const target = driver.acknowledged + n;
  await c.waitFor(
    `${n} more acknowledged sends`,
    () => {
      if (driver.acknowledged >= target) return true;
      assert.ok(driver.producing, `the producers stopped early (${driver.describe()})`);
      return false;
    },
    { timeoutMs, describe: () => driver.describe() },
  );
}

/** A node's local copy of an entity equals its owner's. */
export async function assertSameState(
  c: Cluster,
  entity: EntityRef,
  owner: string,
  replica: string,
) {
  const a = new Redis(`${c.redisUrl(owner)}/0`);
  const b = new Redis(`${c.redisUrl(replica)}/0`);
  let diff = "";
  try {
    await c.waitFor(`${replica}'s copy of ${entity.name} to equal ${owner}'s`, async () => {
      const [x, y] = [await dumpEntity(a, entity), await dumpEntity(b, entity)];
      const keys = [...new Set([...Object.keys(x), ...Object.keys(y)])].sort();
      diff = keys.filter((k) => JSON.stringify(x[k]) !== JSON.stringify(y[k]))
        .map((k) => `${k}: ${owner} ${short(x[k])} / ${replica} ${short(y[k])}`).join("\n  ");
      return Object.keys(x).length > 0 && diff === "";
    }, { timeoutMs: 20_000, intervalMs: 250, describe: () => `\n  ${diff}` });
  } finally {
    a.disconnect();
    b.disconnect();
  }
}

function short(value: unknown): string {
  const text = JSON.stringify(value) ?? "undefined";
  return text.length > 300 ? `${text.slice(0, 300)}...` : text;
}

/** Waits until `node` is alive and an in-sync replica (or the owner) of every entity. */
export async function waitCaughtUp(
  c: Cluster,
  node: string,
  timeoutMs = 60_000,
): Promise<ClusterStatus> {
  let seen: ClusterStatus | undefined;
  try {
    return await c.waitFor(`${node} alive and in sync for every entity`, async () => {
      const s = seen = await c.cluster();
      const alive = s.nodes.some((n) => n.id === node && n.alive);
      const synced = s.entities.every((e) => e.owner === node || e.inSync.includes(node));
      return alive && synced && s.entities.length > 0 ? s : undefined;
    }, { timeoutMs, intervalMs: 250, describe: () => brief(seen) });
  } catch (err) {
    const lagging = (seen?.entities ?? []).filter((e) =>
      e.owner !== node && !e.inSync.includes(node)
    );
    const positions = await Promise.all(lagging.map((e) => localPositions(c, e.name)));
    throw new Error(
      `${(err as Error).message}\nlocal copies (seq@epoch per node): ${positions.join("; ")}`,
    );
  }
}

/** `name: node1 seq@epoch, ...` from every running node's local Redis (the queue's meta). */
export async function localPositions(c: Cluster, name: string): Promise<string> {
  const parts: string[] = [];
  for (const id of c.nodeIds) {
    const redis = new Redis(`${c.redisUrl(id)}/0`);
    try {
      const [seq, epoch] = await redis.hmget(queueKeys(name).meta, "seq", "epoch");
      parts.push(`${id} ${seq ?? "-"}@${epoch ?? "-"}`);
    } catch (err) {
      parts.push(`${id} (${err})`);
    } finally {
      redis.disconnect();
    }
  }
  return `${name}: ${parts.join(", ")}`;
}

/**
 * The six queues under steady load; `fault` breaks something (the driver is running); then the
 * producers stop, everything acknowledged must be delivered, and the checker must find nothing a
 * broker must never do. Returns the driver (stopped) for further checks.
 */
export async function underLoad(
  c: Cluster,
  what: string,
  fault: (driver: LoadDriver) => Promise<void>,
): Promise<LoadDriver> {
  await createQueues(c, QUEUES);
  const driver = steadyLoad(c);
  try {
    driver.start();
    await moreAcknowledged(c, driver, 150);
    await fault(driver);
    const drained = await driver.drain(30_000);
    console.log(`load around ${what}: ${driver.describe()}`);
    assertSafe(driver.history.report(), what);
    assert.ok(drained, "draining did not end");
    return driver;
  } finally {
    await driver.stop();
  }
}

/** The node owning the most entities, and what it owns. */
export function busiestOwner(status: ClusterStatus): { id: string; owned: EntityStatus[] } {
  const id = [...status.nodes].sort((x, y) => y.owned - x.owned)[0].id;
  return { id, owned: status.entities.filter((e) => e.owner === id) };
}

/** `type/name` -> `owner@epoch` as ZooKeeper holds it now. */
export async function zooKeeperView(c: Cluster): Promise<Map<string, string>> {
  const zk = await ZkSession.open({ connect: c.zookeeper, sessionTimeoutMs: 4000 });
  try {
    const out = new Map<string, string>();
    for (const type of ["queue", "topic"] as EntityType[]) {
      for (const name of await zk.getChildren(`/momd/entities/${type}`)) {
        const { data, stat } = await zk.getData(`/momd/entities/${type}/${name}`);
        const e = decodeEntry({ type, name }, data, stat);
        out.set(`${type}/${name}`, `${e.owner}@${e.epoch}`);
      }
    }
    return out;
  } finally {
    zk.close();
  }
}

/** `type/name` -> `owner@epoch` as one node's own cache holds it. */
export async function nodeView(c: Cluster, id: string): Promise<Map<string, string>> {
  const res = await c.call("GET", "/v1/cluster?scope=local", { base: c.nodeUrl(id) });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const status = res.body as ClusterStatus;
  return new Map(status.entities.map((e) => [`${e.type}/${e.name}`, `${e.owner}@${e.epoch}`]));
}

/** Waits until every node's ownership view equals ZooKeeper's. */
export async function viewsAgree(c: Cluster): Promise<Map<string, string>> {
  let diff = "";
  return await c.waitFor("every node's ownership view to equal ZooKeeper's", async () => {
    const truth = await zooKeeperView(c);
    const wrong: string[] = [];
    for (const id of c.nodeIds) {
      const view = await nodeView(c, id);
      for (const k of new Set([...truth.keys(), ...view.keys()])) {
        if (truth.get(k) !== view.get(k)) {
          wrong.push(
            `${id}: ${k} ${view.get(k) ?? "missing"} (ZooKeeper: ${truth.get(k) ?? "none"})`,
          );
        }
      }
    }
    diff = wrong.slice(0, 10).join("; ");
    return wrong.length === 0 ? truth : undefined;
  }, { timeoutMs: 20_000, intervalMs: 250, describe: () => diff });
}
