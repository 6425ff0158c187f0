/** Issue 20, item 10: invalid registry values are logged capped and once per key and reason. */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../src/observability/log.js';
import { ServiceDirectory } from '../src/registry/directory.js';
import { parseBackendUrl } from '../src/config/values.js';
import { waitFor } from './helpers/wait.js';

describe('invalid registry entries in the log', () => {
  it('five 1 MB garbage values under one key write one short line; every one is counted', async () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString('utf8')));
    let counted = 0;
    const dir = new ServiceDirectory({
      onChange: () => undefined,
      observer: { event: () => undefined, connected: () => undefined, invalid: () => (counted += 1) },
      logger: createLogger({ destination: out }),
    });
    const garbage = 'x'.repeat(1024 * 1024);
    for (let i = 0; i < 5; i++) {
      const parsed = parseBackendUrl(`${garbage} ${i}`);
      expect(parsed.ok).toBe(false);
      dir.invalidEntry('etcd', '/drover/services/web/a', parsed.ok ? '' : parsed.reason);
    }
    dir.invalidEntry('etcd', '/drover/services/web/b', 'another reason');
    await waitFor(() => text.includes('another reason'));
    const lines = text.trim().split('\n');
    expect(counted).toBe(6);
    expect(lines).toHaveLength(2);
    expect(lines[0]?.length).toBeLessThan(1024);
    expect(lines[0]).toMatch(/\.\.\. \(10486\d\d chars\)/);
  });
});
