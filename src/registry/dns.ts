/**
 * The DNS registry (`registry.dns`, `services.<name>.dns`): members from SRV records (targets,
 * ports, weights, priorities: see src/registry/dns-members.ts) or from A/AAAA
 * records and a fixed port. Consul (`_web._tcp.service.consul`), Mesos-DNS, SkyDNS/CoreDNS and
 * plain zones all work through it.
 *
 * Each service is re-resolved on its own timer: after a good answer when its TTL runs out (at
 * least 1 s, at most `refresh`); after a failure (timeout, SERVFAIL, REFUSED) sooner, with
 * backoff, keeping the last good members meanwhile; after an empty answer (NXDOMAIN or no
 * records) after 1 s, and only a second empty answer in a row empties the service.
 * `drover_registry_connected{source="dns"}` is 1 while the latest try of every service reached a
 * server. The registry counts as synced (for `/readyz`) once every service was tried once, so an
 * unreachable DNS server does not keep drover unready forever (static members still serve).
 */
import { getServers } from 'node:dns';
import net from 'node:net';
import type { DnsRegistryConfig, ServiceDnsConfig } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import { callSink } from './sink-call.js';
import { ErrorCodes, errorMessage } from '../core/errors.js';
import type { MemberSpec } from '../../routing/types.js';
import type { Registry, RegistrySink } from './types.js';
import { Backoff } from './backoff.js';
import { RCODE_NXDOMAIN, formatDnsServer, parseDnsServer, queryDns, type DnsAnswer, type DnsRecord, type DnsServer } from './dns-client.js';
import { DNS_SOURCE, MIN_TTL_MS, addressMembers, emptyConfirmed, nextResolveMs, srvMembers, type Addresses, type Resolution, type SrvRecord } from './dns-members.js';

/** `registry.dns` when only services name `dns:`: system resolvers, 5 s refresh, 1 s timeout. */
export const DEFAULT_DNS_REGISTRY: DnsRegistryConfig = Object.freeze({ servers: [], refresh: 5000, timeout: 1000 });

/** One service the registry resolves. */
export interface DnsTarget {
  readonly service: string;
  readonly dns: ServiceDnsConfig;
}

/** The outcome of one resolution. */
type Outcome = { readonly kind: 'members'; readonly r: Resolution } | { readonly kind: 'empty' } | { readonly kind: 'failed'; readonly reason: string };

interface TargetState {
  readonly target: DnsTarget;
  timer?: NodeJS.Timeout | undefined;
  tried: boolean;
  ok: boolean;
  consecutiveEmpty: number;
  current: MemberSpec[];
  readonly backoff: Backoff;
}

function fqdn(name: string): string {
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

/** The DNS registry (README "Registries: ZooKeeper, DNS, SkyDNS"). `source` is `dns`. */
export class DnsRegistry implements Registry {
  readonly source = DNS_SOURCE;
  private readonly log: Logger;
  private readonly servers: DnsServer[];
  private readonly states: TargetState[];
  private sink: RegistrySink | undefined;
  private synced = false;
  /** every service has been answered once (not failed): the full view was reported */
  private listed = false;
  private connected: boolean | undefined;
  private closed = false;

  constructor(
    private readonly config: DnsRegistryConfig,
    targets: readonly DnsTarget[],
    logger: Logger,
  ) {
    this.log = logger.child({ component: 'registry', source: DNS_SOURCE });
    const servers = config.servers.length > 0 ? config.servers : getServers();
    this.servers = servers.map(parseDnsServer);
    this.states = targets.map((target) => ({
      target,
      tried: false,
      ok: false,
      consecutiveEmpty: 0,
      current: [],
      backoff: new Backoff({ initialMs: 250, maxMs: Math.max(250, config.refresh) }),
    }));
  }

  async start(sink: RegistrySink): Promise<void> {
    if (this.sink !== undefined) throw new Error('DnsRegistry already started');
    this.sink = sink;
    this.log.info({ servers: this.servers.map(formatDnsServer), services: this.states.length }, 'dns registry starting');
    if (this.states.length === 0) {
      this.safely(() => sink.replaceAll(DNS_SOURCE, new Map()));
      this.markSynced();
      this.setConnected(true);
      return;
    }
    for (const st of this.states) void this.resolve(st);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const st of this.states) clearTimeout(st.timer);
  }

  private async resolve(st: TargetState): Promise<void> {
    if (this.closed) return;
    let outcome: Outcome;
    try {
      outcome = await this.lookup(st.target.dns);
    } catch (err) {
      outcome = { kind: 'failed', reason: errorMessage(err) };
    }
    if (this.closed) return;
    const sink = this.requireSink();
    let delay: number;
    const name = 'srv' in st.target.dns ? st.target.dns.srv : st.target.dns.a;
    if (outcome.kind === 'failed') {
      // Warn once per outage of this service (first failure, or first after a success).
      const level = st.tried && !st.ok ? 'debug' : 'warn';
      st.ok = false;
      delay = st.backoff.next();
      this.log[level]({ code: ErrorCodes.REGISTRY_UNREACHABLE, service: st.target.service, name, reason: outcome.reason }, 'dns resolution failed: keeping the last members');
    } else {
      st.ok = true;
      st.backoff.reset();
      if (outcome.kind === 'empty') {
        st.consecutiveEmpty++;
        delay = MIN_TTL_MS;
        if (emptyConfirmed(st.consecutiveEmpty) && st.current.length > 0) {
          this.log.warn({ service: st.target.service, name }, 'dns: no records twice in a row: service emptied');
          this.apply(st, [], sink);
        } else if (st.current.length > 0) {
          this.log.info({ service: st.target.service, name }, 'dns: no records (once): keeping the members until it is seen again');
        }
      } else {
        st.consecutiveEmpty = 0;
        delay = nextResolveMs(outcome.r.ttl, this.config.refresh);
        this.apply(st, outcome.r.members, sink);
      }
    }
    st.tried = true;
    if (!this.listed && this.states.every((x) => x.tried && x.ok)) {
      // The whole view once (the sink diffs it): after a config reload this registry is a new
      // instance, and members its predecessor reported for services no longer resolved must go.
      this.listed = true;
      this.safely(() => sink.replaceAll(DNS_SOURCE, new Map(this.states.filter((x) => x.current.length > 0).map((x) => [x.target.service, x.current]))));
    }
    this.setConnected(this.states.every((s) => !s.tried || s.ok));
    if (!this.synced && this.states.every((s) => s.tried)) this.markSynced();
    st.timer = setTimeout(() => void this.resolve(st), delay);
    st.timer.unref();
  }

  /** Reports the difference between the service's current members and `next`. */
  private apply(st: TargetState, next: MemberSpec[], sink: RegistrySink): void {
    const before = new Map(st.current.map((m) => [m.id, m]));
    const after = new Map(next.map((m) => [m.id, m]));
    st.current = next;
    this.safely(() => {
      for (const [id] of before) {
        if (after.has(id)) continue;
        sink.countEvent(DNS_SOURCE, 'delete');
        sink.delete(DNS_SOURCE, st.target.service, id);
      }
      for (const [id, m] of after) {
        const prev = before.get(id);
        if (prev !== undefined && prev.url === m.url && prev.weight === m.weight && prev.priority === m.priority) continue;
        sink.countEvent(DNS_SOURCE, 'put');
        sink.put(DNS_SOURCE, st.target.service, m);
      }
    });
  }

  private async lookup(spec: ServiceDnsConfig): Promise<Outcome> {
    if ('srv' in spec) {
      const ans = await this.query(spec.srv, 'SRV');
      const records: SrvRecord[] = ans.answers.filter((a) => a.type === 'SRV').flatMap((a) => srvOf(a));
      if (records.length === 0) return { kind: 'empty' };
      const resolution = await srvMembers(records, (target) => this.addressesOf(target, ans.additionals));
      return resolution.members.length === 0 ? { kind: 'empty' } : { kind: 'members', r: resolution };
    }
    const addrs = await this.addressesOf(spec.a, []);
    if (addrs === undefined || addrs.addresses.length === 0) return { kind: 'empty' };
    return { kind: 'members', r: { members: addressMembers(addrs.addresses, spec.port), ttl: addrs.ttl } };
  }

  /**
   * Addresses of `name`: from the SRV answer's additional section when it carries them (Consul
   * and dnsmasq do), else from A and AAAA queries. An IP literal is itself. A failed query
   * throws (the whole resolution fails: nothing is removed on a partial answer).
   */
  private async addressesOf(name: string, additionals: readonly DnsRecord[]): Promise<Addresses | undefined> {
    const bare = fqdn(name);
    if (net.isIP(bare) !== 0) return { addresses: [bare], ttl: Infinity };
    const extra = additionals.filter((r) => (r.type === 'A' || r.type === 'AAAA') && fqdn(r.name).toLowerCase() === bare.toLowerCase() && typeof r.data === 'string');
    let records = extra;
    if (records.length === 0) {
      // A server that answered one family and refused the other (dnsmasq without upstream
      // refuses AAAA for a name it only has A for) gives that family; no answer at all fails.
      const settled = await Promise.allSettled([this.query(bare, 'A'), this.query(bare, 'AAAA')]);
      const answered = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const rejected = settled.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      const failure = rejected.find((r) => !(r.reason instanceof RcodeError)) ?? (answered.length === 0 ? rejected[0] : undefined);
      if (failure !== undefined) throw failure.reason;
      records = answered.flatMap((a) => a.answers.filter((r) => (r.type === 'A' || r.type === 'AAAA') && typeof r.data === 'string'));
    }
    if (records.length === 0) return undefined;
    return { addresses: [...new Set(records.map((r) => r.data as string))], ttl: Math.min(...records.map((r) => r.ttl)) };
  }

  /** A query whose NOERROR or NXDOMAIN answer comes back; any other outcome throws. */
  private async query(name: string, type: 'SRV' | 'A' | 'AAAA'): Promise<DnsAnswer> {
    const ans = await queryDns(this.servers, fqdn(name), type, { timeoutMs: this.config.timeout, attempts: 2 });
    if (ans.rcode !== 0 && ans.rcode !== RCODE_NXDOMAIN) throw new RcodeError(`${name} ${type}: ${ans.server} answered rcode ${ans.rcode}`);
    return ans;
  }

  private markSynced(): void {
    this.synced = true;
    const sink = this.requireSink();
    this.safely(() => sink.markSynced(DNS_SOURCE));
  }

  private setConnected(connected: boolean): void {
    if (this.connected === connected) return;
    this.connected = connected;
    const sink = this.sink;
    if (sink !== undefined) this.safely(() => sink.setConnected(DNS_SOURCE, connected));
  }

  private safely(fn: () => void): void {
    callSink(this.log, fn);
  }

  private requireSink(): RegistrySink {
    if (this.sink === undefined) throw new Error('DnsRegistry not started');
    return this.sink;
  }
}

/** A server answered, but with a failure code (SERVFAIL, REFUSED...). */
class RcodeError extends Error {}

function srvOf(a: DnsRecord): SrvRecord[] {
  const d = a.data as { target?: unknown; port?: unknown; priority?: unknown; weight?: unknown } | undefined;
  if (d === undefined || typeof d.target !== 'string' || typeof d.port !== 'number' || d.port < 1) return [];
  return [{ target: d.target, port: d.port, priority: typeof d.priority === 'number' ? d.priority : 0, weight: typeof d.weight === 'number' ? d.weight : 0, ttl: a.ttl }];
}
