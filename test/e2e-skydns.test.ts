/**
 * End to end with `registry.etcd.layout: skydns`: SkyDNS/CoreDNS records (what registrator's
 * skydns2 backend writes) in a real etcd, read by the real `bin/drover`, served by backends that
 * name themselves.
 */
import { expect, it } from 'vitest';
import { describeEtcd, useSharedEtcd } from './helpers/etcd.js';
import { startBackend, request, type TestBackend } from './helpers/backends.js';
import { startDrover } from './helpers/drover.js';
import { bodies, metric, pool, uniq } from './helpers/e2e.js';
import { cleanupAfterEach } from './helpers/cleanup.js';
import { waitFor } from './helpers/wait.js';

const later = cleanupAfterEach();

const record = (b: TestBackend, weight?: number, priority = 10): string =>
  JSON.stringify({ host: '127.0.0.1', port: b.port, priority, ...(weight !== undefined ? { weight } : {}), ttl: 30 });

describeEtcd('drover with SkyDNS records in etcd, end to end', () => {
  const shared = useSharedEtcd();

  it('the domain below the prefix names the service; records added and removed: traffic follows; invalid records counted', async () => {
    const [a, b, spare] = await Promise.all([startBackend('sky-a'), startBackend('sky-b'), startBackend('sky-spare')]);
    later(() => a.close());
    later(() => b.close());
    later(() => spare.close());
    const prefix = `/skydns/test${process.pid}/drover/`;
    await shared.kv.put(`${prefix}web/a`).value(record(a));
    await shared.kv.put(`${prefix}web/spare`).value(record(spare, 1, 20)); // a fallback: a higher priority value
    const d = await startDrover(`
listen: [{address: 127.0.0.1:0}]
admin: {address: 127.0.0.1:0}
access_log: off
registry:
  etcd: {endpoints: [${shared.etcd.endpoints[0]}], layout: skydns, prefix: ${prefix}}
routes:
  - match: {path_prefix: /}
    service: web
`);
    later(() => d.stop('SIGKILL'));
    await waitFor(async () => (await request(d.adminPort, { path: '/readyz' })).status === 200, { what: 'readyz' });
    expect(uniq(await bodies(d.port, '/', 3))).toEqual(['sky-a']);
    await shared.kv.put(`${prefix}web/b`).value(record(b, 3));
    await waitFor(async () => (await pool(d, 'web'))?.length === 3, { what: 'b added' });
    expect(uniq(await bodies(d.port, '/', 8))).toEqual(['sky-a', 'sky-b']);
    await shared.kv.put(`${prefix}web/broken`).value('{"host":"127.0.0.1"}');
    await waitFor(async () => (await metric(d, 'drover_registry_invalid_entries_total', { source: 'etcd' })) === 1, { what: 'invalid counted' });
    await shared.kv.delete().key(`${prefix}web/a`);
    await waitFor(async () => (await pool(d, 'web'))?.length === 2, { what: 'a removed' });
    expect(uniq(await bodies(d.port, '/', 4))).toEqual(['sky-b']);
    // the last priority-10 record gone: the priority-20 one serves
    await shared.kv.delete().key(`${prefix}web/b`);
    await waitFor(async () => (await pool(d, 'web'))?.length === 1, { what: 'b removed' });
    expect(uniq(await bodies(d.port, '/', 4))).toEqual(['sky-spare']);
  });
});
