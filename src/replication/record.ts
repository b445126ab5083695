import type { EntityRef } from "../broker/keys.ts";

/**
 * One state change of one entity. Applying the records of an entity in sequence order to another
 * Redis (by running the same script with the same arguments) reproduces the owner's state: every
 * source of non-determinism (time, ids, receipt tokens) is an argument, never computed in Lua.
 */
export interface ReplicationRecord {
  entity: EntityRef;
  /** Per-entity sequence number, 1 after create, +1 per change. */
  seq: number;
  /** Ownership epoch of the writer; replicas refuse records older than the epoch they know. */
  epoch: number;
  /** Name of the Lua script that made the change. */
  op: string;
  /** The writer's clock when it made the change (ms since the epoch). */
  at: number;
  /** The script's own arguments. */
  args: string[];
}

/** Where the store hands each record; the replication component ships them to replicas. */
export interface RecordSink {
  /**
   * Throws (BrokerError "unavailable") when a change of the entity could not be acknowledged
   * now, before the change is made: a refusal then means "not applied".
   */
  admit?(entity: EntityRef): void;
  /** Resolves once the record is held where the product promises (e.g. min in-sync replicas). */
  ship(record: ReplicationRecord): Promise<void>;
}

/** A sink for a single node: nothing to ship to. */
export const localOnlySink: RecordSink = { ship: () => Promise.resolve() };
