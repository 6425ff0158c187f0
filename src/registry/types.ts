/**
 * The contract between registries (file, etcd) and the service directory that merges their
 * members per service. A registry only describes members; it never touches pools.
 */
import type { MemberSpec } from '../../routing/types.js';

export type { MemberSpec };

/** What a registry reports to. Implemented by `ServiceDirectory` (src/registry/directory.ts). */
export interface RegistrySink {
  /**
   * Replaces every member this source has, for every service (a full list or a resync).
   * Services absent from `services` lose this source's members. Call `markSynced` after the first.
   */
  replaceAll(source: string, services: ReadonlyMap<string, readonly MemberSpec[]>): void;
  /** Adds or updates one member (one watch event). */
  put(source: string, service: string, member: MemberSpec): void;
  /** Removes one member (one watch event); unknown ids are ignored. */
  delete(source: string, service: string, id: string): void;
  /** The source has listed everything once: `/readyz` waits for every source to do so. */
  markSynced(source: string): void;
  /** Connection state for `drover_registry_connected{source}`. */
  setConnected(source: string, connected: boolean): void;
  /** One raw event seen, for `drover_registry_events_total{source,type}` (type: put | delete | resync). */
  countEvent(source: string, type: 'put' | 'delete' | 'resync'): void;
  /**
   * A value that did not parse: skipped, never empties a pool. Counted in
   * `drover_registry_invalid_entries_total{source}`; the sink logs it once per key+value.
   */
  invalidEntry(source: string, key: string, reason: string): void;
  /**
   * A change held back by a mass-removal guard (`registry.etcd.min_members_ratio`), counted in
   * `drover_registry_guarded_changes_total{source}`; the registry logs it.
   */
  guardedChange?(source: string): void;
}

/** A source of members. */
export interface Registry {
  /** `file` or `etcd`: the `source` label of metrics and of every member it reports */
  readonly source: string;
  /** Starts listing and watching; resolves once started (not necessarily synced); never rejects for an unreachable backend store: it retries. */
  start(sink: RegistrySink): Promise<void>;
  /** Stops watching and releases connections. */
  close(): Promise<void>;
}
