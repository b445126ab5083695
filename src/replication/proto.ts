/**
 * Loads `proto/momd.proto` (found next to the sources through import.meta.url; `deno compile`
 * embeds it with `--include proto`) and converts between the wire messages and momd's types.
 *
 * 64-bit fields arrive as decimal strings (`longs: String`); `safeInt` turns them into numbers
 * and refuses any value a JS number cannot hold exactly.
 */
import { Buffer } from "node:buffer";
import { fileURLToPath } from "node:url";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import type { EntityRef } from "../broker/keys.ts";
import type { ReplicationRecord } from "./record.ts";
import type { EntitySnapshot, RegistrySnapshot } from "./snapshot.ts";

/** Path of the protocol definition. */
export const PROTO_PATH: string = fileURLToPath(new URL("../../proto/momd.proto", import.meta.url));

/** The loaded services: client constructors and server definitions. */
export interface MomdProto {
  Replication: grpc.ServiceClientConstructor;
  Forward: grpc.ServiceClientConstructor;
}

let loaded: MomdProto | undefined;

/** Loads the protocol once. */
export function momdProto(): MomdProto {
  if (!loaded) {
    const definition = protoLoader.loadSync(PROTO_PATH, {
      keepCase: false,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    // deno-lint-ignore no-explicit-any
    const pkg = grpc.loadPackageDefinition(definition) as any;
    loaded = { Replication: pkg.momd.v1.Replication, Forward: pkg.momd.v1.Forward };
  }
  return loaded;
}

/** A 64-bit wire value as a number; throws when it is not a safe integer. */
export function safeInt(value: unknown, field: string): number {
  const n = typeof value === "number" ? value : Number(value ?? 0);
  if (!Number.isSafeInteger(n)) throw new Error(`${field}: '${value}' is not a safe integer`);
  return n;
}

/** EntityRef on the wire. */
export interface WireEntity {
  type: string;
  name: string;
}

/** Record on the wire. */
export interface WireRecord {
  entity: WireEntity;
  seq: string;
  epoch: string;
  op: string;
  at: string;
  args: string[];
}

/** EntitySnapshot on the wire. */
export interface WireSnapshot {
  entity: WireEntity;
  seq: string;
  epoch: string;
  keys: { key: string; value: Uint8Array; pttl: string }[];
  registry: { kind: string; value: string } | null;
  created?: string;
}

/** RecordBatch on the wire. */
export interface WireBatch {
  batchId: string;
  fromNode: string;
  snapshots: WireSnapshot[];
  records: WireRecord[];
}

/** EntityAck on the wire. */
export interface WireEntityAck {
  entity: WireEntity;
  seq: string;
  epoch: string;
  error: string;
  detail: string;
}

/** Ack on the wire. */
export interface WireAck {
  batchId: string;
  entities: WireEntityAck[];
}

/** EntityPosition on the wire. */
export interface WirePosition {
  entity: WireEntity;
  seq: string;
  epoch: string;
  exists: boolean;
  store: string;
}

/** A checked EntityRef from the wire. */
export function fromWireEntity(e: WireEntity | null | undefined): EntityRef {
  if (!e || (e.type !== "queue" && e.type !== "topic") || !e.name) {
    throw new Error(`invalid entity ${JSON.stringify(e)}`);
  }
  return { type: e.type, name: e.name };
}

/** A record for the wire. */
export function toWireRecord(r: ReplicationRecord): WireRecord {
  return {
    entity: { type: r.entity.type, name: r.entity.name },
    seq: String(r.seq),
    epoch: String(r.epoch),
    op: r.op,
    at: String(r.at),
    args: r.args,
  };
}

/** A record from the wire. */
export function fromWireRecord(w: WireRecord): ReplicationRecord {
  return {
    entity: fromWireEntity(w.entity),
    seq: safeInt(w.seq, "seq"),
    epoch: safeInt(w.epoch, "epoch"),
    op: w.op,
    at: safeInt(w.at, "at"),
    args: [...(w.args ?? [])],
  };
}

/** A snapshot for the wire. */
export function toWireSnapshot(s: EntitySnapshot): WireSnapshot {
  return {
    entity: { type: s.entity.type, name: s.entity.name },
    seq: String(s.seq),
    epoch: String(s.epoch),
    keys: s.keys.map((k) => ({ key: k.key, value: Buffer.from(k.value), pttl: String(k.pttl) })),
    registry: { kind: s.registry.kind, value: s.registry.value },
    created: String(s.created ?? 0),
  };
}

/** A snapshot from the wire. */
export function fromWireSnapshot(w: WireSnapshot): EntitySnapshot {
  const kind = w.registry?.kind ?? "";
  if (!["", "zset", "set", "hash"].includes(kind)) {
    throw new Error(`invalid registry kind '${kind}'`);
  }
  return {
    entity: fromWireEntity(w.entity),
    seq: safeInt(w.seq, "seq"),
    epoch: safeInt(w.epoch, "epoch"),
    keys: (w.keys ?? []).map((k) => ({
      key: k.key,
      value: new Uint8Array(k.value),
      pttl: safeInt(k.pttl, "pttl"),
    })),
    registry: { kind: kind as RegistrySnapshot["kind"], value: w.registry?.value ?? "" },
    created: w.created === undefined ? 0 : safeInt(w.created, "created"),
  };
}
