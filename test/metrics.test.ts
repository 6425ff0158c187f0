import { describe, expect, it } from 'vitest';
import { DURATION_BUCKETS_SECONDS, Metrics, type BackendStateSample } from '../src/observability/metrics.js';
import { findSeries, parseMetrics } from './helpers/metrics.js';

/** A Metrics with one of everything recorded. */
function exercised(): Metrics {
  const m = new Metrics({ defaultMetrics: false });
  m.service('web').observeDuration(0.02);
  m.service('web').retry();
  m.backend('web', '127.0.0.1:9001').request(200);
  m.backend('web', '127.0.0.1:9001').upstreamError('connect');
  m.healthTransition('web', 'unhealthy');
  m.registryEvent('etcd', 'put');
  m.registryConnected('etcd', true);
  m.registryInvalid('etcd');
  m.registryGuarded('etcd');
  m.configReload('success');
  m.setBackendStates(() => [{ service: 'web', backend: '127.0.0.1:9001', up: true, inflight: 3 }]);
  m.tlsHandshake('127.0.0.1:8443', 'success');
  m.setCertificates(() => [{ name: '/etc/drover/site.pem', notAfter: Date.now() + 86_400_000 }]);
  const q = m.queue('web');
  q.depth(2);
  q.observeWait(0.02);
  return m;
}

describe('Metrics: names, types and labels (contract section 5)', () => {
  const cases: { name: string; type: string; labels: string[] }[] = [
    { name: 'drover_requests_total', type: 'counter', labels: ['backend', 'code', 'service'] },
    { name: 'drover_request_duration_seconds', type: 'histogram', labels: ['service'] },
    { name: 'drover_upstream_errors_total', type: 'counter', labels: ['backend', 'kind', 'service'] },
    { name: 'drover_backend_up', type: 'gauge', labels: ['backend', 'service'] },
    { name: 'drover_backend_inflight', type: 'gauge', labels: ['backend', 'service'] },
    { name: 'drover_retries_total', type: 'counter', labels: ['service'] },
    { name: 'drover_health_transitions_total', type: 'counter', labels: ['service', 'to'] },
    { name: 'drover_registry_events_total', type: 'counter', labels: ['source', 'type'] },
    { name: 'drover_registry_connected', type: 'gauge', labels: ['source'] },
    { name: 'drover_registry_invalid_entries_total', type: 'counter', labels: ['source'] },
    { name: 'drover_config_reloads_total', type: 'counter', labels: ['result'] },
    // issue 20: registry.etcd.min_members_ratio
    { name: 'drover_registry_guarded_changes_total', type: 'counter', labels: ['source'] },
    // section 10
    { name: 'drover_queue_depth', type: 'gauge', labels: ['service'] },
    { name: 'drover_queue_wait_seconds', type: 'histogram', labels: ['service'] },
    // section 7
    { name: 'drover_tls_handshakes_total', type: 'counter', labels: ['listener', 'result'] },
    { name: 'drover_tls_certificate_expiry_seconds', type: 'gauge', labels: ['name'] },
  ];

  it.each(cases)('$name is a $type with labels $labels', async ({ name, type, labels }) => {
    const m = exercised();
    const text = await m.metricsText();
    expect(text).toContain(`# TYPE ${name} ${type}\n`);
    const json = await m.registry.getMetricsAsJSON();
    const metric = json.find((x) => x.name === name);
    expect(metric).toBeDefined();
    const seriesNames = parseMetrics(text).filter((s) => s.name === name || s.name.startsWith(`${name}_`));
    expect(seriesNames.length).toBeGreaterThan(0);
    for (const s of seriesNames) {
      const keys = Object.keys(s.labels).filter((k) => k !== 'le').sort();
      expect(keys).toEqual(labels);
    }
  });

  it('registers exactly the drover_ metrics of the contract, plus the documented additions', async () => {
    const m = exercised();
    const names = (await m.registry.getMetricsAsJSON()).map((x) => x.name).sort();
    // Additions the contract allows (section 5 is a floor): each one named here on purpose.
    const additions = ['drover_pool_updates_total', 'drover_fast_path_requests_total', 'drover_fast_path_handovers_total'];
    expect(names).toEqual([...cases.map((c) => c.name), ...additions].sort());
  });

  it('records the values given', async () => {
    const m = exercised();
    m.backend('web', '127.0.0.1:9001').request(200);
    m.backend('web', '127.0.0.1:9001').request(502);
    const s = parseMetrics(await m.metricsText());
    const table: [string, Record<string, string>, number][] = [
      ['drover_requests_total', { service: 'web', backend: '127.0.0.1:9001', code: '200' }, 2],
      ['drover_requests_total', { service: 'web', backend: '127.0.0.1:9001', code: '502' }, 1],
      ['drover_upstream_errors_total', { service: 'web', backend: '127.0.0.1:9001', kind: 'connect' }, 1],
      ['drover_upstream_errors_total', { service: 'web', backend: '127.0.0.1:9001', kind: 'timeout' }, 0],
      ['drover_retries_total', { service: 'web' }, 1],
      ['drover_request_duration_seconds_count', { service: 'web' }, 1],
      ['drover_request_duration_seconds_bucket', { service: 'web', le: '0.025' }, 1],
      ['drover_request_duration_seconds_bucket', { service: 'web', le: '0.01' }, 0],
      ['drover_health_transitions_total', { service: 'web', to: 'unhealthy' }, 1],
      ['drover_registry_events_total', { source: 'etcd', type: 'put' }, 1],
      ['drover_registry_connected', { source: 'etcd' }, 1],
      ['drover_registry_invalid_entries_total', { source: 'etcd' }, 1],
      ['drover_config_reloads_total', { result: 'success' }, 1],
      ['drover_config_reloads_total', { result: 'failure' }, 0],
      ['drover_backend_up', { service: 'web', backend: '127.0.0.1:9001' }, 1],
      ['drover_backend_inflight', { service: 'web', backend: '127.0.0.1:9001' }, 3],
    ];
    for (const [name, labels, value] of table) {
      expect(findSeries(s, name, labels)?.value, `${name} ${JSON.stringify(labels)}`).toBe(value);
    }
  });

  it('uses proxy-sized histogram buckets from 1 ms to 10 s', async () => {
    const m = exercised();
    const les = parseMetrics(await m.metricsText())
      .filter((s) => s.name === 'drover_request_duration_seconds_bucket')
      .map((s) => s.labels['le']);
    expect(les).toEqual([...DURATION_BUCKETS_SECONDS.map(String), '+Inf']);
    expect(DURATION_BUCKETS_SECONDS[0]).toBe(0.001);
    expect(DURATION_BUCKETS_SECONDS.at(-1)).toBe(10);
  });

  it('registry flips: connected goes back to 0', async () => {
    const m = exercised();
    m.registryConnected('etcd', false);
    expect(findSeries(parseMetrics(await m.metricsText()), 'drover_registry_connected', { source: 'etcd' })?.value).toBe(0);
  });
});

describe('Metrics: hot-path handles', () => {
  it('caches service and backend handles', () => {
    const m = new Metrics({ defaultMetrics: false });
    expect(m.service('a')).toBe(m.service('a'));
    expect(m.service('a')).not.toBe(m.service('b'));
    expect(m.backend('a', 'x')).toBe(m.backend('a', 'x'));
    expect(m.backend('a', 'x')).not.toBe(m.backend('b', 'x'));
  });

  it('ignores an unknown error kind instead of creating a label', async () => {
    const m = new Metrics({ defaultMetrics: false });
    (m.backend('a', 'x') as { upstreamError(kind: string): void }).upstreamError('bogus');
    const kinds = parseMetrics(await m.metricsText())
      .filter((s) => s.name === 'drover_upstream_errors_total')
      .map((s) => s.labels['kind']);
    expect(kinds).not.toContain('bogus');
  });
});

describe('Metrics: forgetting', () => {
  it('forgetBackend removes every series with that backend label, and only those', async () => {
    const m = new Metrics({ defaultMetrics: false });
    for (const id of ['gone', 'kept']) {
      const b = m.backend('web', id);
      b.request(200);
      b.request(503);
      b.request(404);
      b.upstreamError('timeout');
      b.upstreamError('reset');
    }
    let states: BackendStateSample[] = [
      { service: 'web', backend: 'gone', up: true, inflight: 1 },
      { service: 'web', backend: 'kept', up: true, inflight: 2 },
    ];
    m.setBackendStates(() => states);
    const before = parseMetrics(await m.metricsText()).filter((s) => s.labels['backend'] === 'gone');
    expect(new Set(before.map((s) => s.name))).toEqual(
      new Set(['drover_requests_total', 'drover_upstream_errors_total', 'drover_backend_up', 'drover_backend_inflight']),
    );

    m.forgetBackend('web', 'gone');
    states = states.filter((s) => s.backend !== 'gone');
    const after = parseMetrics(await m.metricsText());
    expect(after.filter((s) => s.labels['backend'] === 'gone')).toEqual([]);
    expect(after.filter((s) => s.labels['backend'] === 'kept' && s.name === 'drover_requests_total')).toHaveLength(3);
    expect(findSeries(after, 'drover_upstream_errors_total', { service: 'web', backend: 'kept', kind: 'reset' })?.value).toBe(1);

    // A backend that comes back starts from zero with fresh handles.
    m.backend('web', 'gone').request(200);
    const again = parseMetrics(await m.metricsText());
    expect(findSeries(again, 'drover_requests_total', { service: 'web', backend: 'gone', code: '200' })?.value).toBe(1);
    expect(findSeries(again, 'drover_requests_total', { service: 'web', backend: 'gone', code: '503' })).toBeUndefined();
  });

  it('forgetService removes the service, its backends and its transitions', async () => {
    const m = new Metrics({ defaultMetrics: false });
    for (const svc of ['a', 'b']) {
      m.service(svc).observeDuration(0.1);
      m.service(svc).retry();
      m.backend(svc, 'x').request(200);
      m.backend(svc, 'x').upstreamError('status');
      m.healthTransition(svc, 'healthy');
      m.healthTransition(svc, 'ejected');
    }
    m.forgetService('a');
    const s = parseMetrics(await m.metricsText());
    expect(s.filter((x) => x.labels['service'] === 'a')).toEqual([]);
    expect(s.filter((x) => x.labels['service'] === 'b').length).toBeGreaterThan(10);
  });
});

describe('Metrics: scrape-time gauges', () => {
  it('reads up and inflight from the source at each scrape', async () => {
    const m = new Metrics({ defaultMetrics: false });
    let calls = 0;
    let states: BackendStateSample[] = [
      { service: 'web', backend: 'a', up: true, inflight: 4 },
      { service: 'web', backend: 'b', up: false, inflight: 0 },
    ];
    m.setBackendStates(() => {
      calls++;
      return states;
    });
    expect(calls).toBe(0);
    let s = parseMetrics(await m.metricsText());
    expect(calls).toBeGreaterThan(0);
    expect(findSeries(s, 'drover_backend_up', { service: 'web', backend: 'a' })?.value).toBe(1);
    expect(findSeries(s, 'drover_backend_up', { service: 'web', backend: 'b' })?.value).toBe(0);
    expect(findSeries(s, 'drover_backend_inflight', { service: 'web', backend: 'a' })?.value).toBe(4);

    states = [{ service: 'web', backend: 'a', up: false, inflight: 7 }];
    s = parseMetrics(await m.metricsText());
    expect(findSeries(s, 'drover_backend_up', { service: 'web', backend: 'a' })?.value).toBe(0);
    expect(findSeries(s, 'drover_backend_inflight', { service: 'web', backend: 'a' })?.value).toBe(7);
    expect(findSeries(s, 'drover_backend_up', { service: 'web', backend: 'b' })).toBeUndefined();
  });

  it('accepts a generator source', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.setBackendStates(function* () {
      yield { service: 's', backend: 'g', up: true, inflight: 2 };
    });
    expect(findSeries(parseMetrics(await m.metricsText()), 'drover_backend_inflight', { service: 's', backend: 'g' })?.value).toBe(2);
  });

  it('a throwing source leaves the gauges empty but the scrape succeeds', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.configReload('failure');
    m.setBackendStates(() => {
      throw new Error('boom');
    });
    const s = parseMetrics(await m.metricsText());
    expect(s.filter((x) => x.name === 'drover_backend_up')).toEqual([]);
    expect(findSeries(s, 'drover_config_reloads_total', { result: 'failure' })?.value).toBe(1);
  });
});

describe('Metrics: registries', () => {
  it('includes default process metrics by default, in its own registry', async () => {
    const m = new Metrics();
    const text = await m.metricsText();
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(text).toContain('nodejs_heap_size_total_bytes');
    expect(m.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const off = await new Metrics({ defaultMetrics: false }).metricsText();
    expect(off).not.toContain('process_cpu_user_seconds_total');
  });

  it('two instances do not share series', async () => {
    const a = new Metrics({ defaultMetrics: false });
    const b = new Metrics({ defaultMetrics: false });
    a.backend('web', 'x').request(200);
    expect(findSeries(parseMetrics(await b.metricsText()), 'drover_requests_total', { service: 'web', backend: 'x', code: '200' })).toBeUndefined();
  });
});
