/**
 * A real in-memory RegistrySink (our own interface, not a mock of etcd or the network) that
 * records every call, for the registry tests (etcd, ZooKeeper, DNS).
 */
import type { MemberSpec } from '../../routing/types.js';
import type { RegistrySink } from '../../src/registry/types.js';

/** A real in-memory RegistrySink that records every call. */
export class RecordingSink implements RegistrySink {
  /** source -> service -> id -> member */
  readonly members = new Map<string, Map<string, Map<string, MemberSpec>>>();
  readonly synced = new Set<string>();
  readonly connected = new Map<string, boolean>();
  readonly connectedHistory: boolean[] = [];
  readonly events = { put: 0, delete: 0, resync: 0 };
  readonly invalid: { key: string; reason: string }[] = [];
  replaceAllCalls = 0;
  /** changes held by a mass-removal guard */
  guarded = 0;

  replaceAll(source: string, services: ReadonlyMap<string, readonly MemberSpec[]>): void {
    this.replaceAllCalls++;
    const bySvc = new Map<string, Map<string, MemberSpec>>();
    for (const [svc, list] of services) bySvc.set(svc, new Map(list.map((m) => [m.id, m])));
    this.members.set(source, bySvc);
  }
  put(source: string, service: string, member: MemberSpec): void {
    let bySvc = this.members.get(source);
    if (bySvc === undefined) this.members.set(source, (bySvc = new Map()));
    let byId = bySvc.get(service);
    if (byId === undefined) bySvc.set(service, (byId = new Map()));
    byId.set(member.id, member);
  }
  delete(source: string, service: string, id: string): void {
    const byId = this.members.get(source)?.get(service);
    byId?.delete(id);
    if (byId?.size === 0) this.members.get(source)?.delete(service);
  }
  markSynced(source: string): void {
    this.synced.add(source);
  }
  setConnected(source: string, connected: boolean): void {
    this.connected.set(source, connected);
    this.connectedHistory.push(connected);
  }
  countEvent(_source: string, type: 'put' | 'delete' | 'resync'): void {
    this.events[type]++;
  }
  guardedChange(): void {
    this.guarded++;
  }
  invalidEntry(_source: string, key: string, reason: string): void {
    this.invalid.push({ key, reason });
  }

  /** `{service: {id: url}}` of one source, sorted, for compact assertions. */
  view(source = 'etcd'): Record<string, Record<string, string>> {
    const out: Record<string, Record<string, string>> = {};
    const bySvc = this.members.get(source);
    if (bySvc === undefined) return out;
    for (const svc of [...bySvc.keys()].sort()) {
      const byId = bySvc.get(svc) as Map<string, MemberSpec>;
      if (byId.size === 0) continue;
      out[svc] = Object.fromEntries([...byId.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, m]) => [id, m.url]));
    }
    return out;
  }

  member(service: string, id: string, source = 'etcd'): MemberSpec | undefined {
    return this.members.get(source)?.get(service)?.get(id);
  }
}

