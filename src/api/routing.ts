import { BrokerError } from "../broker/errors.ts";
import type { EntityRef, EntityType } from "../broker/keys.ts";
import type { Principal } from "../auth/users.ts";

/** Where a request for an entity is served: `owner` is the serving node's id. */
export type Route =
  | { here: true; owner: string; claimed: boolean }
  | { here: false; owner: string; address: string; claimed: boolean };

/**
 * What EntityRouter.lifecycle throws when, by the turn of a create or a delete, the entity is
 * no longer this node's (a delete or a move queued before it came first): nothing ran, and the
 * request may be routed again. Whoever gets it sees a 503: nothing changed, try again.
 */
export class NotOwnerError extends BrokerError {
  constructor(detail: string) {
    super("unavailable", detail, 1);
    this.name = "NotOwnerError";
  }
}

/**
 * How many times a request was forwarded, set by the forwarding node (a client's own is
 * dropped) and believed only on a forwarded request (middleware/owner_routing.ts).
 */
export const FORWARDS_HEADER = "momd-forwards";

/**
 * When the caller of a forwarded request stops waiting (ms since the epoch), set by the node
 * that forwards it: a request still queued after that (its target was frozen) is not served.
 */
export const DEADLINE_HEADER = "momd-deadline";

/** When NGINX passed the request on (`$msec`: seconds since the epoch, with milliseconds). */
export const REQUEST_START_HEADER = "momd-request-start";

const MAY_WAIT = /\/(?:receive|requests)$|^\/v1\/tasks\/[^/]+$/;

/**
 * Whether a request to `path` (query string allowed) may wait, as a long poll: receives, a
 * request waiting for its reply, reading a task. Only such requests are worth cancelling when
 * their client goes away, so only they carry the client's signal across a forward.
 */
export function mayWait(path: string): boolean {
  const q = path.indexOf("?");
  return MAY_WAIT.test(q < 0 ? path : path.slice(0, q));
}

/** One node of the cluster as `GET /v1/cluster` shows it. */
export interface NodeStatus {
  id: string;
  http: string | null;
  grpc: string | null;
  alive: boolean;
  owned: number;
  replicated: number;
  startedAt: string | null;
  /** The momd version it runs (null: unknown, e.g. a node that is down). */
  version: string | null;
  /** What its /readyz says (null: not asked, or it did not answer). */
  ready: boolean | null;
  /**
   * Its backup recovery point: the start of its last backup pass that saved every entity it
   * owns (null: none yet, or not asked).
   */
  recoveryPoint: string | null;
}

/** One entity as `GET /v1/cluster` shows it. */
export interface EntityStatus {
  type: EntityType;
  name: string;
  owner: string;
  replicas: string[];
  epoch: number;
  /** Per replica: records shipped but not yet acknowledged (null: unknown to this node). */
  lag: Record<string, number | null>;
  inSync: string[];
}

/** The cluster as one node sees it. */
export interface ClusterStatus {
  node: string;
  /** The version of the node that answers. */
  version: string;
  mode: "single" | "cluster";
  controller: string | null;
  nodes: NodeStatus[];
  entities: EntityStatus[];
  /** The cluster's backup recovery point: the oldest of the live nodes' (null: unknown). */
  backup: { recoveryPoint: string | null };
}

/**
 * What the HTTP layer needs from the cluster: where an entity lives, how to reach it, and the
 * bookkeeping of creates and deletes. A single node has no router and serves everything itself.
 */
export interface EntityRouter {
  /** This node's id. */
  readonly nodeId: string;
  /** Where the entity is served; with `create`, takes the name cluster-wide first if needed. */
  route(entity: EntityRef, opts?: { create?: { creator: string } }): Promise<Route>;
  /**
   * Whether ZooKeeper names this node the entity's owner (re-read unless this node may write
   * the entity now). A request another node forwarded on a stale view of ownership (a delete,
   * a move or a failover it had not heard of yet) goes on to the owner instead of failing here.
   */
  isOwner(entity: EntityRef): Promise<boolean>;
  /**
   * Before serving an entity here: catches up with ZooKeeper if this node does not know yet
   * that it owns the entity (a create or move just happened), and waits for its take-over.
   */
  ready(entity: EntityRef): Promise<void>;
  /**
   * Sends a request to the owner at `address` and returns its answer; `signal` (the client went
   * away) cancels it there too; `forwards` counts the forwards of the request, this one included
   * (1 unless a forwarded request goes on to the owner); `deadline` is when its caller stops
   * waiting, if earlier than this forward's own timeout.
   */
  forward(
    address: string,
    request: Request,
    principal: Principal | null,
    opts?: { signal?: AbortSignal; forwards?: number; deadline?: number },
  ): Promise<Response>;
  /**
   * When a caller that sent `path` through NGINX at `startMs` (its clock) stops waiting: NGINX's
   * read timeout is above the forward timeout, so this node's forward timeout is a safe bound.
   */
  deadlineFrom(startMs: number, path: string): number;
  /**
   * Serves a create or a delete of an entity this node owns: `run` is the handler, `succeeded`
   * tells from its answer whether the entity was made (or deleted). One at a time per entity,
   * so that a name's record always follows what the owner's store holds: a create makes a
   * claimed name live, or gives the name back when it failed and nothing exists; a delete
   * removes the record once the entity is gone (and refuses creates until then).
   */
  lifecycle(
    entity: EntityRef,
    kind: "create" | "delete",
    run: () => Promise<Response>,
    succeeded: (res: Response) => Promise<boolean>,
  ): Promise<Response>;
  /** Entities cluster-wide, in name order, after `after`, at most `limit`. */
  list(
    type: EntityType,
    query: { prefix?: string; after?: string; limit: number },
  ): { name: string; owner: string; createdAt: string }[];
  /**
   * The cluster as this node sees it (with the lag its peers report, asked as `caller`, an
   * admin).
   */
  status(opts?: { localOnly?: boolean; caller?: Principal }): Promise<ClusterStatus>;
  /**
   * Forgets a node that left for good (it then no longer shows as down); false when unknown.
   * Refuses (conflict) a live node.
   */
  forgetNode(id: string): Promise<boolean>;
  /** How well this node's part of the cluster is replicated (for /readyz and metrics). */
  replicationHealth(): ReplicationHealth;
}

/** This node's share of replication, as /readyz reports it. */
export interface ReplicationHealth {
  /** Entities this node owns. */
  owned: number;
  /** Owned entities (`type/name`) with a live replica outside their in-sync set. */
  underReplicated: string[];
  /** Replica places of owned entities on nodes that are down. */
  replicasDown: number;
  /** Entities this node replicates but is not in sync with yet (after a restart or a resync). */
  catchingUp: string[];
}
