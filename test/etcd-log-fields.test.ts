/**
 * Issue 20, item 10: an etcd registry's log lines carry one `component` (pino repeats a key
 * given by two child loggers instead of replacing it). The registry is built the way drover
 * builds it (createRegistries) and pointed at a port nothing listens on, so its first line is
 * the real "unreachable" warning, read as the raw JSON text.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { createLogger } from '../src/observability/log.js';
import { createRegistries } from '../src/registry/create.js';
import type { RegistrySink } from '../src/registry/types.js';
import { REFUSING_PORT } from './helpers/backends.js';
import { waitFor } from './helpers/wait.js';

describe('etcd registry log lines', () => {
  it('name their component once', async () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString('utf8')));
    const config = parseConfig(`registry: {etcd: {endpoints: ['http://127.0.0.1:${REFUSING_PORT}']}}\n`, '');
    const [reg] = await createRegistries(config, createLogger({ destination: out }));
    const sink: RegistrySink = { replaceAll: () => undefined, put: () => undefined, delete: () => undefined, markSynced: () => undefined, connected: () => undefined, invalid: () => undefined } as unknown as RegistrySink;
    await reg?.start(sink);
    try {
      await waitFor(() => text.includes('etcd unreachable'), 15_000);
      const line = text.split('\n').find((l) => l.includes('etcd unreachable')) ?? '';
      expect(line.match(/"component":/g)).toHaveLength(1);
      expect(JSON.parse(line)).toMatchObject({ component: 'registry', source: 'etcd' });
    } finally {
      await reg?.close();
    }
  });
});
