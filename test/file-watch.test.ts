/**
 * watchFile (src/core/file-watch.ts) on a real file in a temp dir: a change is delivered once, after
 * its bytes stayed the same for one more debounce period, so a file caught between truncate and
 * write is never delivered half-written.
 */
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { watchFile, type FileWatcher } from '../src/core/file-watch.js';
import { waitFor } from './helpers/wait.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('watchFile', () => {
  let dir = '';
  let watcher: FileWatcher | undefined;
  afterEach(() => {
    watcher?.close();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  function setup(debounceMs: number): { file: string; seen: string[] } {
    dir = mkdtempSync(path.join(os.tmpdir(), 'drover-watch-'));
    const file = path.join(dir, 'f.yaml');
    writeFileSync(file, 'one\n');
    const seen: string[] = [];
    watcher = watchFile(file, () => seen.push(readFileSync(file, 'utf8')), { debounceMs, pollMs: 60_000 });
    return { file, seen };
  }

  it('one write: delivered once', async () => {
    const { file, seen } = setup(30);
    writeFileSync(file, 'two\n');
    await waitFor(() => seen.length > 0, 5000);
    await sleep(200);
    expect(seen).toEqual(['two\n']);
  });

  it('truncated, then written a little later: only the whole file is delivered', async () => {
    // The pause (330 ms) is longer than the debounce (300 ms): the first check reads the empty
    // file, and without the stability rule would deliver it.
    const { file, seen } = setup(300);
    writeFileSync(file, '');
    await sleep(330);
    writeFileSync(file, 'whole\n');
    await waitFor(() => seen.length > 0, 5000);
    await sleep(800);
    expect(seen).toEqual(['whole\n']);
  });

  it('a rename over the file (atomic replace) is seen', async () => {
    const { file, seen } = setup(30);
    const tmp = path.join(dir, 'f.yaml.tmp');
    writeFileSync(tmp, 'renamed\n');
    renameSync(tmp, file);
    await waitFor(() => seen.length > 0, 5000);
    expect(seen).toEqual(['renamed\n']);
  });

  it('the same bytes written again deliver nothing', async () => {
    const { file, seen } = setup(30);
    writeFileSync(file, 'one\n');
    await sleep(300);
    expect(seen).toEqual([]);
  });
});
