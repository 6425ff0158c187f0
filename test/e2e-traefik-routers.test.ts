/**
 * `layout: traefik` reads Traefik's routers too: a real etcd, the real `bin/drover`, backends
 * that name themselves. A router outside the supported rule subset is skipped with a log line
 * naming it; the others route.
 */
import { expect, it } from 'vitest';
import { describeEtcd, useSharedEtcd } from './helpers/etcd.js';
import { request, startBackend } from './helpers/backends.js';
import { startDrover } from './helpers/drover.js';
import { cleanupAfterEach } from './helpers/cleanup.js';
import { waitFor } from './helpers/wait.js';

const later = cleanupAfterEach();

describeEtcd('layout: traefik routers', () => {
  const shared = useSharedEtcd();

  it('routes by the routers under <prefix>http/routers/, in priority order, skipping the ones it cannot express', async () => {
    const api = await startBackend('api');
    const web = await startBackend('web');
    later(() => api.close());
    later(() => web.close());
    const P = `/tk${process.pid}/`;
    const kv = shared.kv;
    await kv.put(`${P}http/services/api/loadbalancer/servers/0/url`).value(api.url);
    await kv.put(`${P}http/services/web/loadbalancer/servers/0/url`).value(web.url);
    await kv.put(`${P}http/routers/api/rule`).value('Host(`api.test`) && PathPrefix(`/v1`)');
    await kv.put(`${P}http/routers/api/service`).value('api@kv');
    await kv.put(`${P}http/routers/all/rule`).value('PathPrefix(`/`)');
    await kv.put(`${P}http/routers/all/service`).value('web');
    await kv.put(`${P}http/routers/bad/rule`).value('Query(`debug`, `1`)');
    await kv.put(`${P}http/routers/bad/service`).value('api');
    const d = await startDrover(
      `listen: [{address: 127.0.0.1:0}]\nadmin: {address: 127.0.0.1:0}\naccess_log: off\nregistry:\n  etcd: {endpoints: [${shared.etcd.endpoints[0]}], prefix: ${P}, layout: traefik}\n`,
    );
    later(() => d.stop('SIGKILL'));
    const get = async (host: string, path: string): Promise<string> => {
      const r = await request(d.port, { path, headers: { host } });
      return `${r.status}:${r.body}`;
    };
    await waitFor(async () => (await get('api.test', '/v1/x')) === '200:api');
    expect(await get('api.test', '/v2/x')).toBe('200:web');
    expect(await get('other.test', '/v1/x')).toBe('200:web');
    const skipped = await d.waitForLog((l) => l['msg'] === 'traefik routers skipped: the other routers apply');
    expect(skipped['issues']).toEqual([
      `${P}http/routers/bad/rule: routers.bad: router "bad" skipped: rule "Query(\`debug\`, \`1\`)": matcher Query is not supported (supported: Host, HostRegexp, PathPrefix, Path, Method, Headers)`,
    ]);
    // a changed rule applies on the next revision
    await kv.put(`${P}http/routers/api/rule`).value('Host(`api.test`) && (PathPrefix(`/v1`) || PathPrefix(`/v2`))');
    await waitFor(async () => (await get('api.test', '/v2/x')) === '200:api');
    const cfg = (await (await fetch(`http://127.0.0.1:${d.adminPort}/api/config`)).json()) as { config: { routes: { service: string; source: string }[] } };
    expect(cfg.config.routes.map((r) => [r.service, r.source])).toEqual([
      ['api', 'etcd'],
      ['api', 'etcd'],
      ['web', 'etcd'],
    ]);
    expect((await request(d.adminPort, { path: '/readyz' })).status).toBe(200);
  });
});
