/**
 * A TLS listener's certificate files, loaded into its `CertificateStore` and watched: when a
 * certificate or key file changes, the pair is read again and, if it checks out, served to new
 * connections (open ones keep theirs). A pair that does not check out is refused: the previous
 * version keeps serving, the refusal is logged and reported through `onReload('failure')`.
 *
 * Tools replace a certificate and its key one after the other, so a reader can catch the new
 * certificate with the old key for a moment; that moment is refused like any broken pair and the
 * next change (the key arriving) installs the pair.
 */
import { readFileSync } from 'node:fs';
import { watchFile, type FileWatcher } from '../core/file-watch.js';
import type { Logger } from '../observability/log.js';
import type { CertificateStore } from './store.js';

/** One certificate of a TLS listener: absolute paths of its PEM files. */
export interface CertificateFiles {
  readonly cert: string;
  readonly key: string;
}

/** How a watched pair reports. */
export interface CertFilesEvents {
  readonly logger?: Logger | undefined;
  /** one reload attempt of a changed pair (`drover_config_reloads_total{result}`) */
  readonly onReload?: ((result: 'success' | 'failure') => void) | undefined;
  /** ms between polls of the files (default 1000; tests use less) */
  readonly pollMs?: number | undefined;
}

/** Watched certificate files of one listener. */
export interface CertFiles {
  /** Stops watching. */
  close(): void;
}

function loadPair(store: CertificateStore, pair: CertificateFiles): void {
  // read both before touching the store: a missing file throws here and changes nothing
  const cert = readFileSync(pair.cert, 'utf8');
  const key = readFileSync(pair.key, 'utf8');
  store.set(pair.cert, cert, key);
}

/**
 * Loads every pair into `store` (throws on the first one that cannot be served: a listener does
 * not start with a broken certificate), then watches them.
 */
export function loadCertFiles(store: CertificateStore, pairs: readonly CertificateFiles[], events: CertFilesEvents = {}): CertFiles {
  for (const pair of pairs) loadPair(store, pair);
  const watchers: FileWatcher[] = [];
  for (const pair of pairs) {
    const reload = (): void => {
      try {
        loadPair(store, pair);
        const info = store.list().find((c) => c.name === pair.cert);
        events.logger?.info({ cert: pair.cert, fingerprint: info?.fingerprint, not_after: info === undefined ? undefined : new Date(info.notAfter).toISOString() }, 'certificate reloaded');
        events.onReload?.('success');
      } catch (err) {
        events.logger?.error({ cert: pair.cert, key: pair.key, err: (err as Error).message }, 'certificate refused: the previous one keeps serving');
        events.onReload?.('failure');
      }
    };
    const opts = events.pollMs === undefined ? {} : { pollMs: events.pollMs };
    watchers.push(watchFile(pair.cert, reload, opts), watchFile(pair.key, reload, opts));
  }
  return {
    close: () => {
      for (const w of watchers) w.close();
    },
  };
}
