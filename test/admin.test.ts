import http from 'node:http';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../src/observability/log.js';
import { Metrics } from '../src/observability/metrics.js';
import { startAdminServer, type AdminServer } from '../src/admin/server.js';
import { redact, redactHeader, REDACTED } from '../src/config/redact.js';
import type { AdminModel, BackendView, EventView, ServiceView } from '../src/admin/model.js';
import { DroverError, ErrorCodes } from '../src/core/errors.js';

/** An in-memory AdminModel: what the runtime would expose, minus the runtime. */
class MemoryModel implements AdminModel {
  isReady = false;
  failServices = false;
  readonly config: unknown = {
    admin: { address: '127.0.0.1:9901', tokenEnv: 'DROVER_ADMIN_TOKEN' },
    registry: {
      etcd: {
        endpoints: ['http://root:hunter2@127.0.0.1:2379'],
        usernameEnv: 'ETCD_USER',
        passwordEnv: 'ETCD_PASSWORD',
        password: 'hunter2',
        tls: { ca: '/etc/ca.pem', key: '/etc/k.pem' },
      },
    },
    services: [{ name: 'web', meta: { apiKey: 'abc', token: 'xyz', secret: '' } }],
  };
  readonly list: ServiceView[] = [
    {
      name: 'web',
      balancer: 'round_robin',
      backends: [backend('127.0.0.1:9001'), backend('127.0.0.1:9002'), backend('a/b')],
    },
    { name: 'api v2', balancer: 'p2c', panic: true, backends: [backend('x')] },
  ];
  readonly log: EventView[] = [];

  services(): ServiceView[] {
    if (this.failServices) throw new Error('model exploded');
    return structuredClone(this.list);
  }
  setDraining(service: string, id: string, draining: boolean): BackendView | undefined {
    const b = this.list.find((s) => s.name === service)?.backends.find((x) => x.id === id);
    if (b === undefined) return undefined;
    const from = b.state;
    b.state = draining ? 'draining' : 'healthy';
    b.last_change = new Date(0).toISOString();
    b.reason = draining ? 'admin drain' : 'admin undrain';
    this.log.push({ at: b.last_change, service, backend: id, from, to: b.state, reason: b.reason });
    return structuredClone(b);
  }
  ready(): boolean {
    return this.isReady;
  }
  notReady(): string[] {
    return this.isReady ? [] : ['registry etcd: members not listed yet', 'shared config under /c/ not read from etcd yet'];
  }
  effectiveConfig(): unknown {
    return this.config;
  }
  events(): EventView[] {
    return [...this.log];
  }
}

function backend(id: string): BackendView {
  return {
    id,
    url: `http://${id.includes(':') ? id : '127.0.0.1:9999'}`,
    weight: 1,
    source: 'static',
    state: 'healthy',
    inflight: 0,
    requests: 10,
    failures: 1,
    last_change: null,
    reason: '',
    latency_ewma_ms: null,
    max_conns: 0,
  };
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(port: number, method: string, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const TOKEN_ENV = `DROVER_TEST_ADMIN_TOKEN_${process.pid}`;

describe('admin server', () => {
  let model: MemoryModel;
  let metrics: Metrics;
  let server: AdminServer;
  let port: number;

  beforeAll(async () => {
    model = new MemoryModel();
    metrics = new Metrics({ defaultMetrics: false });
    server = await startAdminServer({
      host: '127.0.0.1',
      port: 0,
      model,
      metrics,
      tokenEnv: TOKEN_ENV,
      logger: silentLogger(),
      streamIntervalMs: 50,
    });
    port = server.address.port;
  });
  afterAll(async () => {
    await server.close();
  });
  afterEach(() => {
    delete process.env[TOKEN_ENV];
  });

  it('reports its real address', () => {
    expect(server.address.host).toBe('127.0.0.1');
    expect(port).toBeGreaterThan(0);
  });

  it('GET /healthz is 200 ok', async () => {
    const r = await request(port, 'GET', '/healthz');
    expect(r.status).toBe(200);
    expect(r.body.trim()).toBe('ok');
  });

  it('GET /readyz follows model.ready()', async () => {
    model.isReady = false;
    const notReady = await request(port, 'GET', '/readyz');
    expect([notReady.status, notReady.body]).toEqual([503, 'not ready\n- registry etcd: members not listed yet\n- shared config under /c/ not read from etcd yet\n']);
    model.isReady = true;
    expect((await request(port, 'GET', '/readyz')).status).toBe(200);
    model.isReady = false;
    expect((await request(port, 'GET', '/readyz')).status).toBe(503);
  });

  it('GET /metrics serves the Prometheus text of the Metrics object', async () => {
    metrics.backend('web', '127.0.0.1:9001').request(200);
    const r = await request(port, 'GET', '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(r.body).toContain('drover_requests_total{service="web",backend="127.0.0.1:9001",code="200"} 1');
  });

  it('GET /api/services lists services and backends with the contract fields', async () => {
    const r = await request(port, 'GET', '/api/services');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    const body = JSON.parse(r.body) as { services: ServiceView[] };
    expect(body.services.map((s) => s.name)).toEqual(['web', 'api v2']);
    const b = body.services[0]!.backends[0]!;
    expect(Object.keys(b).sort()).toEqual(
      ['id', 'url', 'weight', 'source', 'state', 'inflight', 'requests', 'failures', 'last_change', 'reason', 'latency_ewma_ms', 'max_conns'].sort(),
    );
  });

  const drainCases: { name: string; path: string; service: string; id: string; state: string }[] = [
    { name: 'drain', path: '/api/services/web/backends/127.0.0.1:9002/drain', service: 'web', id: '127.0.0.1:9002', state: 'draining' },
    { name: 'undrain', path: '/api/services/web/backends/127.0.0.1:9002/undrain', service: 'web', id: '127.0.0.1:9002', state: 'healthy' },
    { name: 'encoded colon', path: '/api/services/web/backends/127.0.0.1%3A9001/drain', service: 'web', id: '127.0.0.1:9001', state: 'draining' },
    { name: 'encoded slash in id', path: '/api/services/web/backends/a%2Fb/drain', service: 'web', id: 'a/b', state: 'draining' },
    { name: 'encoded space in service', path: '/api/services/api%20v2/backends/x/drain', service: 'api v2', id: 'x', state: 'draining' },
  ];
  it.each(drainCases)('POST $name -> 200 with the new backend JSON', async ({ path, service, id, state }) => {
    const r = await request(port, 'POST', path);
    expect(r.status).toBe(200);
    const view = JSON.parse(r.body) as BackendView;
    expect(view.id).toBe(id);
    expect(view.state).toBe(state);
    expect(model.list.find((s) => s.name === service)!.backends.find((b) => b.id === id)!.state).toBe(state);
  });

  it.each([
    ['unknown backend', '/api/services/web/backends/nope/drain'],
    ['unknown service', '/api/services/nope/backends/127.0.0.1:9001/undrain'],
  ])('POST %s -> 404 not_found', async (_name, path) => {
    const r = await request(port, 'POST', path);
    expect(r.status).toBe(404);
    expect(JSON.parse(r.body)).toEqual({ error: 'not_found' });
  });

  it('with a token set, POST needs the right bearer token (read per request)', async () => {
    const path = '/api/services/web/backends/127.0.0.1:9001/drain';
    process.env[TOKEN_ENV] = 's3cret-token';
    const cases: [Record<string, string>, number][] = [
      [{}, 401],
      [{ authorization: 'Bearer wrong' }, 401],
      [{ authorization: 'Bearer s3cret-toke' }, 401],
      [{ authorization: 'Basic s3cret-token' }, 401],
      [{ authorization: 's3cret-token' }, 401],
      [{ authorization: 'Bearer s3cret-token' }, 200],
      [{ authorization: 'bearer s3cret-token' }, 200],
    ];
    for (const [headers, status] of cases) {
      const r = await request(port, 'POST', path, headers);
      expect(r.status, JSON.stringify(headers)).toBe(status);
      if (status === 401) {
        expect(JSON.parse(r.body)).toEqual({ error: 'unauthorized' });
        expect(r.headers['www-authenticate']).toMatch(/^Bearer/);
      }
    }
    // GET endpoints stay open.
    expect((await request(port, 'GET', '/api/services')).status).toBe(200);
    // Rotating the token takes effect at once; unsetting it opens POSTs again.
    process.env[TOKEN_ENV] = 'next';
    expect((await request(port, 'POST', path, { authorization: 'Bearer s3cret-token' })).status).toBe(401);
    expect((await request(port, 'POST', path, { authorization: 'Bearer next' })).status).toBe(200);
    delete process.env[TOKEN_ENV];
    expect((await request(port, 'POST', path)).status).toBe(200);
  });

  it('refuses a cross-origin POST (CSRF) but accepts a same-origin one', async () => {
    const path = '/api/services/web/backends/127.0.0.1:9001/undrain';
    const evil = await request(port, 'POST', path, { origin: 'http://evil.example' });
    expect(evil.status).toBe(403);
    const same = await request(port, 'POST', path, { origin: `http://127.0.0.1:${port}` });
    expect(same.status).toBe(200);
  });

  it('GET /api/events lists the events', async () => {
    const r = await request(port, 'GET', '/api/events');
    expect(r.status).toBe(200);
    const body = JSON.parse(r.body) as { events: EventView[] };
    expect(body.events.length).toBeGreaterThan(0);
    expect(body.events.at(-1)).toMatchObject({ service: 'web', backend: '127.0.0.1:9001', to: 'healthy' });
  });

  it('GET /api/config redacts secrets but keeps env-var names and file paths', async () => {
    const r = await request(port, 'GET', '/api/config');
    expect(r.status).toBe(200);
    const { config } = JSON.parse(r.body) as { config: Record<string, any> };
    expect(r.body).not.toContain('hunter2');
    expect(r.body).not.toContain('xyz');
    expect(r.body).not.toContain('"abc"');
    expect(config['registry'].etcd.password).toBe(REDACTED);
    expect(config['registry'].etcd.endpoints[0]).toBe(`http://root:${REDACTED}@127.0.0.1:2379`);
    expect(config['registry'].etcd.passwordEnv).toBe('ETCD_PASSWORD');
    expect(config['registry'].etcd.tls.key).toBe('/etc/k.pem');
    expect(config['admin'].tokenEnv).toBe('DROVER_ADMIN_TOKEN');
    expect(config['services'][0].meta).toEqual({ apiKey: REDACTED, token: REDACTED, secret: '' });
  });

  it('GET /api/stream pushes {services, events} repeatedly', async () => {
    const messages: { services: ServiceView[]; events: EventView[] }[] = [];
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/api/stream', agent: false }, (res) => {
        expect(res.statusCode).toBe(200);
        expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let i: number;
          while ((i = buf.indexOf('\n\n')) !== -1) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const data = block.split('\n').find((l) => l.startsWith('data: '));
            if (data !== undefined) messages.push(JSON.parse(data.slice(6)));
            if (messages.length >= 3) {
              req.destroy();
              resolve();
            }
          }
        });
      });
      req.on('error', (err) => (messages.length >= 3 ? undefined : reject(err)));
    });
    expect(messages[0]!.services.map((s) => s.name)).toEqual(['web', 'api v2']);
    expect(Array.isArray(messages[2]!.events)).toBe(true);
  });

  it('GET / serves the dashboard with a strict CSP', async () => {
    const r = await request(port, 'GET', '/');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/html/);
    expect(r.headers['content-security-policy']).toMatch(/default-src 'none'/);
    expect(r.headers['content-security-policy']).toMatch(/script-src 'self'(;|$)/);
    expect(r.headers['content-security-policy']).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(r.body).toContain('<title>drover dashboard</title>');
    // No inline script or style at all: every script and stylesheet is a same-origin file with its hash.
    expect(r.body).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/i);
    expect(r.body).not.toMatch(/<style|style=/i);
    expect(r.body.match(/integrity="sha256-[A-Za-z0-9+/]+=*"/g)?.length).toBe(4);
    // No CDN, no external fonts: nothing is loaded from another origin.
    expect(r.body).not.toMatch(/(src|href)=["']?(https?:)?\/\//i);
    expect(r.body).not.toMatch(/@import|url\(/i);
    expect(r.body).not.toMatch(/innerHTML/);
  });

  it.each([
    ['GET', '/nope'],
    ['GET', '/api/services/web'],
    ['GET', '/api/services/web/backends/x/explode'],
    ['POST', '/api/services/web/backends/x/drain/more'],
    ['GET', '/healthz/'],
  ])('%s %s -> 404 JSON', async (method, path) => {
    const r = await request(port, method, path);
    expect(r.status).toBe(404);
    expect(JSON.parse(r.body)).toEqual({ error: 'not_found' });
  });

  it.each([
    ['POST', '/healthz', 'GET, HEAD'],
    ['DELETE', '/api/services', 'GET, HEAD'],
    ['PUT', '/', 'GET, HEAD'],
    ['GET', '/api/services/web/backends/127.0.0.1:9001/drain', 'POST'],
    ['DELETE', '/api/services/web/backends/127.0.0.1:9001/undrain', 'POST'],
  ])('%s %s -> 405 with Allow: %s', async (method, path, allow) => {
    const r = await request(port, method, path);
    expect(r.status).toBe(405);
    expect(r.headers['allow']).toBe(allow);
    expect(JSON.parse(r.body)).toEqual({ error: 'method_not_allowed' });
  });

  it('HEAD works on GET endpoints', async () => {
    const r = await request(port, 'HEAD', '/healthz');
    expect(r.status).toBe(200);
    expect(r.body).toBe('');
  });

  it('malformed percent-encoding -> 400', async () => {
    const r = await request(port, 'POST', '/api/services/web/backends/%E0%A4%A/drain');
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body)).toEqual({ error: 'bad_request' });
  });

  it('a throwing model answers 500 and the server keeps serving', async () => {
    model.failServices = true;
    try {
      const r = await request(port, 'GET', '/api/services');
      expect(r.status).toBe(500);
      expect(JSON.parse(r.body)).toEqual({ error: 'internal' });
    } finally {
      model.failServices = false;
    }
    expect((await request(port, 'GET', '/api/services')).status).toBe(200);
  });

  it('a malformed HTTP request gets 400 and the server keeps serving', async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(port, '127.0.0.1', () => sock.write('GARBAGE / NOT-HTTP\r\n\r\n'));
      let data = '';
      sock.setEncoding('utf8');
      sock.on('data', (c: string) => (data += c));
      sock.on('end', () => resolve(data));
      sock.on('error', reject);
    });
    expect(reply).toMatch(/^HTTP\/1\.1 400/);
    expect((await request(port, 'GET', '/healthz')).status).toBe(200);
  });
});

describe('admin server lifecycle', () => {
  it('rejects with E_LISTEN_FAILED when the port is taken', async () => {
    const opts = {
      host: '127.0.0.1',
      model: new MemoryModel(),
      metrics: new Metrics({ defaultMetrics: false }),
      tokenEnv: TOKEN_ENV,
      logger: silentLogger(),
    };
    const first = await startAdminServer({ ...opts, port: 0 });
    try {
      const err = await startAdminServer({ ...opts, port: first.address.port }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DroverError);
      expect((err as DroverError).code).toBe(ErrorCodes.LISTEN_FAILED);
      expect((err as DroverError).message).toContain('EADDRINUSE');
    } finally {
      await first.close();
    }
  });

  it('close() resolves with a stream open, and the port is released', async () => {
    const s = await startAdminServer({
      host: '127.0.0.1',
      port: 0,
      model: new MemoryModel(),
      metrics: new Metrics({ defaultMetrics: false }),
      tokenEnv: TOKEN_ENV,
      logger: silentLogger(),
    });
    const port = s.address.port;
    const ended = new Promise<void>((resolve) => {
      http.get({ host: '127.0.0.1', port, path: '/api/stream', agent: false }, (res) => {
        res.once('data', () => void s.close());
        res.on('close', () => resolve());
        res.resume();
      });
    });
    await ended;
    await s.close();
    const refused = await request(port, 'GET', '/healthz').catch((e: NodeJS.ErrnoException) => e.code);
    expect(refused).toBe('ECONNREFUSED');
  });
});

describe('redact', () => {
  it.each<[string, unknown, unknown]>([
    ['password key', { password: 'p' }, { password: REDACTED }],
    ['nested token', { a: [{ authToken: 't' }] }, { a: [{ authToken: REDACTED }] }],
    ['env-var names kept', { token_env: 'X', passwordEnv: 'Y' }, { token_env: 'X', passwordEnv: 'Y' }],
    ['url credentials', { u: 'http://u:p@h:1/x' }, { u: `http://u:${REDACTED}@h:1/x` }],
    ['url without password kept', { u: 'http://u@h:1' }, { u: 'http://u@h:1' }],
    ['empty secret left as is', { secret: '' }, { secret: '' }],
    ['scalars kept', { n: 1, b: true, z: null }, { n: 1, b: true, z: null }],
    // one redactor for /api/config and the route view: file paths stay, header values named like credentials go
    ['tls.key is a file path', { tls: { cert: '/c.pem', key: '/etc/k.pem' } }, { tls: { cert: '/c.pem', key: '/etc/k.pem' } }],
    ['header pair named like a credential', { set: [{ name: 'X-Auth-Token', value: 'v' }, { name: 'X-Env', value: 'prod' }] }, { set: [{ name: 'X-Auth-Token', value: REDACTED }, { name: 'X-Env', value: 'prod' }] }],
    ['idempotent', { password: REDACTED, u: `http://u:${REDACTED}@h:1` }, { password: REDACTED, u: `http://u:${REDACTED}@h:1` }],
  ])('%s', (_name, input, expected) => {
    expect(redact(input)).toEqual(expected);
  });

  it.each([
    ['Authorization', true],
    ['X-Api-Key', true],
    ['Cookie', true],
    ['X-Auth-User', true],
    ['X-Env', false],
    ['Accept', false],
  ])('a header %s is redacted: %s', (name, secret) => {
    expect(redactHeader(name, 'v')).toBe(secret ? REDACTED : 'v');
  });

  it('survives cycles', () => {
    const a: Record<string, unknown> = { name: 'a' };
    a['self'] = a;
    expect(redact(a)).toEqual({ name: 'a', self: '[circular]' });
  });
});
