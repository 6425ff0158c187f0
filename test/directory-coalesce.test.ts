/**
 * Coalescing in the ServiceDirectory (src/registry/directory.ts): a debounce of `coalesceMs`
 * capped at `maxWaitMs`. Unit part: vitest's fake timers (deterministic). Real part: 1 000 puts
 * through a real etcd and the real EtcdRegistry, counting `onChange` deliveries per service.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEFAULT_COALESCE_MS, DEFAULT_MAX_WAIT_MS, ServiceDirectory } from '../src/registry/directory.js';
import { EtcdRegistry } from '../src/registry/etcd.js';
import { silentLogger } from '../src/observability/log.js';
import type { MemberSpec } from '../routing/types.js';
import { describeEtcd, useSharedEtcd } from './helpers/etcd.js';
import { waitFor } from './helpers/wait.js';

interface Delivery {
  readonly at: number;
  readonly service: string;
  readonly ids: string[];
}

function directory(opts: { coalesceMs?: number; maxWaitMs?: number } = {}): { dir: ServiceDirectory; deliveries: Delivery[] } {
  const deliveries: Delivery[] = [];
  const dir = new ServiceDirectory({
    ...opts,
    onChange: (changed) => {
      for (const [service, members] of changed) deliveries.push({ at: Date.now(), service, ids: members.map((m) => m.id).sort() });
    },
    observer: { event: () => undefined, connected: () => undefined, invalid: () => undefined },
    logger: silentLogger(),
  });
  return { dir, deliveries };
}

const member = (id: string, port = 9000): MemberSpec => ({ id, url: `http://127.0.0.1:${port}`, weight: 1, draining: false, source: 'etcd' });

function perService(deliveries: readonly Delivery[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const d of deliveries) out[d.service] = (out[d.service] ?? 0) + 1;
  return out;
}

/**
 * Upper bound on deliveries per service for events arriving at the given times: a new burst
 * starts when the gap to the previous event reaches the debounce (less 2 ms of timer and clock
 * granularity, so the bound errs high) or the burst has lasted `maxWaitMs`.
 */
function burstsPerService(arrivals: readonly { at: number; service: string }[], coalesceMs: number, maxWaitMs: number): Record<string, number> {
  const out: Record<string, number> = {};
  let touched = new Set<string>();
  let start = -Infinity;
  let last = -Infinity;
  const close = (): void => {
    for (const s of touched) out[s] = (out[s] ?? 0) + 1;
    touched = new Set();
  };
  for (const a of arrivals) {
    if (a.at - last >= coalesceMs - 2 || a.at - start >= maxWaitMs - 2) {
      close();
      start = a.at;
    }
    last = a.at;
    touched.add(a.service);
  }
  close();
  return out;
}

describe('ServiceDirectory coalescing (fake timers)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('defaults are a 10 ms debounce capped at 1 s', () => {
    expect([DEFAULT_COALESCE_MS, DEFAULT_MAX_WAIT_MS]).toEqual([10, 1000]);
  });

  it('a lone change is delivered 10 ms after it arrived, not before', () => {
    vi.useFakeTimers({ now: 0 });
    const { dir, deliveries } = directory();
    dir.put('etcd', 'web', member('a'));
    vi.advanceTimersByTime(9);
    expect(deliveries).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(deliveries).toEqual([{ at: 10, service: 'web', ids: ['a'] }]);
  });

  // Each row: events at the given spacing (ms; 0 = same tick) spread over services; expected
  // deliveries per service and the longest any change waited.
  const rows = [
    { name: '1 000 events in one tick, 4 services', events: 1000, spacingMs: 0, services: 4, perService: 1, maxWait: 10 },
    { name: '1 000 events 1 ms apart (1 s), 4 services: one rebuild each', events: 1000, spacingMs: 1, services: 4, perService: 1, maxWait: 1000 },
    { name: '2 000 events 1 ms apart (2 s), 2 services', events: 2000, spacingMs: 1, services: 2, perService: 2, maxWait: 1000 },
    { name: '100 events 5 ms apart (0.5 s), 1 service', events: 100, spacingMs: 5, services: 1, perService: 1, maxWait: 505 },
    { name: '10 events 20 ms apart: no burst, each delivered on its own', events: 10, spacingMs: 20, services: 1, perService: 10, maxWait: 10 },
  ];
  it.each(rows)('$name', (row) => {
    vi.useFakeTimers({ now: 0 });
    const { dir, deliveries } = directory();
    const arrived: { at: number; service: string; id: string }[] = [];
    for (let i = 0; i < row.events; i++) {
      const service = `s${i % row.services}`;
      const id = `m${i}`;
      dir.put('etcd', service, member(id));
      arrived.push({ at: Date.now(), service, id });
      if (row.spacingMs > 0) vi.advanceTimersByTime(row.spacingMs);
    }
    vi.advanceTimersByTime(2000);
    const counts = perService(deliveries);
    for (let s = 0; s < row.services; s++) expect(counts[`s${s}`]).toBe(row.perService);
    // Every member arrives in the first delivery after its event, within the cap.
    let longest = 0;
    for (const a of arrived) {
      const d = deliveries.find((x) => x.service === a.service && x.at >= a.at && x.ids.includes(a.id));
      expect(d, `member ${a.id} delivered`).toBeDefined();
      longest = Math.max(longest, (d as Delivery).at - a.at);
    }
    expect(longest).toBe(row.maxWait);
    // The last delivery of each service holds its whole final member list.
    for (let s = 0; s < row.services; s++) {
      const last = deliveries.filter((d) => d.service === `s${s}`).at(-1) as Delivery;
      expect(last.ids.length).toBe(Math.ceil((row.events - s) / row.services));
    }
  });

  it('a service touched only once in a storm is delivered once, with the storm', () => {
    vi.useFakeTimers({ now: 0 });
    const { dir, deliveries } = directory();
    dir.put('etcd', 'quiet', member('q'));
    for (let i = 0; i < 200; i++) {
      dir.put('etcd', 'busy', member(`b${i}`));
      vi.advanceTimersByTime(1);
    }
    vi.advanceTimersByTime(100);
    expect(perService(deliveries)).toEqual({ quiet: 1, busy: 1 });
    expect(deliveries.map((d) => d.at)).toEqual([209, 209]);
  });

  it('the first full list of a source is delivered at once by markSynced: ready means routable', () => {
    vi.useFakeTimers({ now: 0 });
    const { dir, deliveries } = directory();
    dir.expectSources(['etcd']);
    dir.replaceAll('etcd', new Map([['web', [member('a')]]]));
    expect(dir.ready()).toBe(false);
    dir.markSynced('etcd');
    expect(dir.ready()).toBe(true);
    expect(deliveries).toEqual([{ at: 0, service: 'web', ids: ['a'] }]);
    // Later re-lists (resyncs) are coalesced as usual.
    dir.replaceAll('etcd', new Map([['web', [member('a'), member('b')]]]));
    dir.markSynced('etcd');
    expect(deliveries.length).toBe(1);
    vi.advanceTimersByTime(10);
    expect(deliveries.at(-1)).toEqual({ at: 10, service: 'web', ids: ['a', 'b'] });
  });

  it('puts that change nothing deliver nothing', () => {
    vi.useFakeTimers({ now: 0 });
    const { dir, deliveries } = directory();
    dir.put('etcd', 'web', member('a'));
    vi.advanceTimersByTime(20);
    for (let i = 0; i < 50; i++) dir.put('etcd', 'web', member('a'));
    vi.advanceTimersByTime(500);
    expect(deliveries.length).toBe(1);
  });
});

describeEtcd('ServiceDirectory coalescing with a real etcd burst', () => {
  const shared = useSharedEtcd();

  it('1 000 puts to 10 services at once: a few deliveries per service, not hundreds; a later lone put lands fast', async () => {
    const prefix = `/coalesce${process.pid}/`;
    const { dir, deliveries } = directory();
    // When each put reached the directory: the watch delivers the burst in batches, and on a busy
    // machine (CI, 2 cores, other test files running) batches can be more than 10 ms apart, which
    // a 10 ms debounce rightly treats as separate bursts. The bound below is derived from these
    // arrival times, not from how long the writes took.
    const arrivals: { at: number; service: string }[] = [];
    const put = dir.put.bind(dir);
    dir.put = (source, service, m) => {
      arrivals.push({ at: performance.now(), service });
      put(source, service, m);
    };
    const reg = new EtcdRegistry({ endpoints: shared.etcd.endpoints, prefix, layout: 'drover' }, silentLogger(), { backoff: { initialMs: 20, maxMs: 200 } });
    await reg.start(dir);
    try {
      await waitFor(() => dir.ready(), { what: 'the directory to be ready', timeoutMs: 10_000 });
      dir.expectSources(['etcd']);
      await new Promise((r) => setTimeout(r, 50));
      deliveries.length = 0;
      arrivals.length = 0;
      const t0 = Date.now();
      // 1 000 puts at once, as a deploy script or a registrator resync writes them.
      await Promise.all(Array.from({ length: 1000 }, (_, i) => shared.kv.put(`${prefix}svc${i % 10}/m${i}`).value(`127.0.0.1:${10_000 + i}`)));
      const writeMs = Date.now() - t0;
      await waitFor(() => dir.merged('svc9').length >= 100, { what: "svc9's 100 members", timeoutMs: 5000 });
      await new Promise((r) => setTimeout(r, DEFAULT_MAX_WAIT_MS + 50));
      const counts = perService(deliveries);
      const bound = burstsPerService(arrivals, DEFAULT_COALESCE_MS, DEFAULT_MAX_WAIT_MS);
      process.stdout.write(
        `[coalesce] 1000 puts written in ${writeMs} ms, arrived over ${Math.round(arrivals.at(-1)!.at - arrivals[0]!.at)} ms; deliveries per service: ${JSON.stringify(counts)}; arrival bursts: ${JSON.stringify(bound)}\n`,
      );
      expect(arrivals.length).toBe(1000);
      expect(Object.keys(counts).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `svc${i}`).sort());
      for (let s = 0; s < 10; s++) {
        expect(dir.merged(`svc${s}`).length).toBe(100);
        // Never more than one delivery per burst of arrivals (gaps under 10 ms, at most 1 s
        // long) that touched the service, and never anywhere near one per event (100 each).
        expect(counts[`svc${s}`]).toBeLessThanOrEqual(bound[`svc${s}`]!);
        expect(counts[`svc${s}`]).toBeLessThan(25);
      }
      // After the storm, one lone put reaches onChange within a few debounce periods.
      deliveries.length = 0;
      await shared.kv.put(`${prefix}svc0/late`).value('127.0.0.1:9');
      const t1 = Date.now(); // after etcd committed it: its commit latency after 1 000 puts is not drover's
      await waitFor(() => deliveries.length > 0, { what: 'the lone put delivered', timeoutMs: 2000, everyMs: 1 });
      expect(deliveries.map((d) => d.service)).toEqual(['svc0']);
      expect(Date.now() - t1).toBeLessThan(DEFAULT_MAX_WAIT_MS);
    } finally {
      await reg.close();
      dir.close();
      await shared.kv.delete().prefix(prefix);
    }
  });
});
