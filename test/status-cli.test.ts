/**
 * `drover status` as users run it: the real `bin/drover` child process against the real admin
 * server on 127.0.0.1:0 (dist/ is built by the vitest globalSetup).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../src/observability/log.js';
import { Metrics } from '../src/observability/metrics.js';
import { startAdminServer, type AdminServer } from '../src/admin/server.js';
import type { AdminModel, BackendView, EventView, ServiceView } from '../src/admin/model.js';
import { formatStatusTable } from '../src/commands/status.js';
import { REFUSING_PORT, startBackend } from './helpers/backends.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin/drover');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function drover(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

const CHANGED = '2024-05-01T12:00:00.250Z';

function view(id: string, over: Partial<BackendView> = {}): BackendView {
  return {
    id,
    url: `http://${id}`,
    weight: 1,
    source: 'static',
    state: 'healthy',
    inflight: 0,
    requests: 0,
    failures: 0,
    last_change: null,
    reason: '',
    latency_ewma_ms: null,
    max_conns: 0,
    ...over,
  };
}

const SERVICES: ServiceView[] = [
  {
    name: 'web',
    balancer: 'round_robin',
    backends: [
      view('127.0.0.1:9001', { weight: 3, inflight: 2, requests: 1234, latency_ewma_ms: 12.5, max_conns: 8 }),
      view('127.0.0.1:9002', { state: 'draining', requests: 7, last_change: CHANGED, reason: 'admin drain', source: 'zookeeper' }),
    ],
  },
  { name: 'api-long-service-name', balancer: 'p2c', backends: [view('10.0.0.5:8080', { state: 'unhealthy', weight: 10, requests: 99999, source: 'dns' })] },
  { name: 'empty', balancer: 'random', backends: [] },
];

class FixedModel implements AdminModel {
  services(): ServiceView[] {
    return structuredClone(SERVICES);
  }
  setDraining(): BackendView | undefined {
    return undefined;
  }
  ready(): boolean {
    return true;
  }
  effectiveConfig(): unknown {
    return {};
  }
  events(): EventView[] {
    return [];
  }
}

/** Splits a table line into cells (columns are separated by at least two spaces). */
function cells(line: string): string[] {
  return line.trim().split(/ {2,}/);
}

describe('drover status (child process)', () => {
  let server: AdminServer;
  let admin: string;

  beforeAll(async () => {
    server = await startAdminServer({
      host: '127.0.0.1',
      port: 0,
      model: new FixedModel(),
      metrics: new Metrics({ defaultMetrics: false }),
      tokenEnv: 'DROVER_TEST_STATUS_TOKEN_UNSET',
      logger: silentLogger(),
    });
    admin = `http://127.0.0.1:${server.address.port}`;
  });
  afterAll(async () => {
    await server.close();
  });

  it('prints an aligned table of every backend', async () => {
    const r = await drover(['status', '--admin', admin]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(cells(lines[0]!)).toEqual(['SERVICE', 'BACKEND', 'URL', 'STATE', 'WEIGHT', 'INFLIGHT', 'MAX-CONNS', 'REQUESTS', 'EWMA-MS', 'LAST-CHANGE', 'SOURCE']);
    expect(lines).toHaveLength(5);
    const rows = lines.slice(1).map(cells);
    expect(rows[0]).toEqual(['web', '127.0.0.1:9001', 'http://127.0.0.1:9001', 'healthy', '3', '2', '8', '1234', '12.5', '-', 'static']);
    expect(rows[1]!.slice(0, 9)).toEqual(['web', '127.0.0.1:9002', 'http://127.0.0.1:9002', 'draining', '1', '0', '0', '7', '-']);
    expect(rows[1]![9]).toMatch(/^2024-05-01T12:00:00Z \(\d+d ago\)$/);
    expect(rows[1]![10]).toBe('zookeeper');
    expect(rows[2]).toEqual(['api-long-service-name', '10.0.0.5:8080', 'http://10.0.0.5:8080', 'unhealthy', '10', '0', '0', '99999', '-', '-', 'dns']);
    expect(rows[3]![0]).toBe('empty');
    expect(rows[3]![1]).toBe('(none)');

    // Aligned: every row's BACKEND and STATE start where the header's do.
    for (const col of ['BACKEND', 'STATE']) {
      const at = lines[0]!.indexOf(col);
      for (const line of lines.slice(1)) expect(line[at - 1], `${col} in ${line}`).toBe(' ');
      for (const line of lines.slice(1)) expect(line[at], `${col} in ${line}`).not.toBe(' ');
    }
  });

  it('accepts the admin address without a scheme and with a trailing slash', async () => {
    for (const a of [`127.0.0.1:${server.address.port}`, `${admin}/`]) {
      const r = await drover(['status', '--admin', a]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('127.0.0.1:9001');
    }
  });

  it('exits 1 with a clear message when the admin API is unreachable', async () => {
    const admin = `http://127.0.0.1:${REFUSING_PORT}`;
    const r = await drover(['status', '--admin', admin]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`cannot reach the admin API at ${admin}/api/services`);
    expect(r.stderr).toContain('ECONNREFUSED');
  });

  it.each([
    ['a non-drover JSON answer', 200, '{"hello":"world"}', 'unexpected answer'],
    ['an HTTP error', 500, '{"error":"internal"}', 'answered HTTP 500'],
    ['a non-JSON answer', 200, '<html>', 'not JSON'],
  ])('exits 1 on %s', async (_name, status, body, message) => {
    const fake = await startBackend('fake-admin');
    fake.behave((_req, res) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(body);
    });
    try {
      const r = await drover(['status', '--admin', fake.url]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(message);
    } finally {
      await fake.close();
    }
  });

  it('exits 1 when the admin API does not answer in time', async () => {
    const silent = await startBackend('silent-admin');
    silent.behave(() => {
      /* never answers */
    });
    try {
      const r = await drover(['status', '--timeout', '300ms', '--admin', silent.url]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('timed out');
    } finally {
      await silent.close();
    }
  });

  it('--help documents --admin and its default', async () => {
    const r = await drover(['status', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--admin <url>');
    expect(r.stdout).toContain('http://127.0.0.1:9901');
  });
});

describe('formatStatusTable', () => {
  const now = Date.parse('2024-05-01T12:05:00Z');
  it.each<[string, number, string]>([
    ['seconds', Date.parse('2024-05-01T12:04:30Z'), '(30s ago)'],
    ['minutes', Date.parse('2024-05-01T12:00:00Z'), '(5m ago)'],
    ['hours', Date.parse('2024-05-01T09:00:00Z'), '(3h ago)'],
    ['days', Date.parse('2024-04-28T12:05:00Z'), '(3d ago)'],
  ])('shows the age of the last change in %s', (_unit, at, expected) => {
    const out = formatStatusTable([{ name: 's', balancer: 'p2c', backends: [view('b', { last_change: new Date(at).toISOString() })] }], now);
    expect(out.split('\n')[1]).toContain(expected);
  });

  it('neutralises control characters from registry data', () => {
    const out = formatStatusTable([{ name: 's', balancer: 'p2c', backends: [view('evil\u001b[2J')] }], now);
    expect(out).not.toContain('\u001b');
    expect(out).toContain('evil?[2J');
  });
});
