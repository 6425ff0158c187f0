/**
 * The file registry (`registry.file`): a YAML file of members per service, watched. The
 * embedded default registry: what `npm start` uses, and what a deploy script can write.
 *
 * A file that does not parse changes nothing; a service whose entry is invalid keeps the members
 * it had; valid services apply. So a half-written file or one typo never empties a pool.
 */
import { readFile } from 'node:fs/promises';
import { parseServicesFile } from '../config/load.js';
import { formatIssue } from '../core/errors.js';
import { watchFile, type FileWatcher } from '../core/file-watch.js';
import type { Logger } from '../observability/log.js';
import type { MemberSpec } from '../../routing/types.js';
import type { Registry, RegistrySink } from './types.js';

export class FileRegistry implements Registry {
  readonly source = 'file';
  private readonly file: string;
  private readonly logger: Logger;
  private sink: RegistrySink | undefined;
  private watcher: FileWatcher | undefined;
  /** last members applied per service */
  private current = new Map<string, readonly MemberSpec[]>();

  /** @param file absolute path of the registry file */
  constructor(file: string, logger: Logger) {
    this.file = file;
    this.logger = logger.child({ component: 'file-registry', file });
  }

  async start(sink: RegistrySink): Promise<void> {
    this.sink = sink;
    await this.load();
    sink.markSynced(this.source);
    sink.setConnected(this.source, true);
    this.watcher = watchFile(this.file, () => void this.load());
  }

  /** Reads the file and applies what validates. Never throws. */
  async load(): Promise<void> {
    const sink = this.sink;
    if (sink === undefined) return;
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      this.logger.error({ err: String(err), code: 'E_REGISTRY_UNREACHABLE' }, 'registry file unreadable: keeping the last members');
      return;
    }
    const result = parseServicesFile(text, this.file);
    const bad = new Set<string>();
    let wholeFile = false;
    for (const issue of result.issues) {
      const segs = issue.path.split('.');
      const name = segs[0] === 'services' ? segs[1] : segs[0];
      if (name === undefined || name === '' || (segs[0] === 'services' && segs.length < 2 && result.services.size === 0)) wholeFile = true;
      else bad.add(name);
      sink.invalidEntry(this.source, issue.path === '' ? this.file : issue.path, formatIssue(issue));
    }
    if (wholeFile && result.services.size === 0 && result.issues.length > 0) {
      this.logger.error({ issues: result.issues.map(formatIssue) }, 'registry file invalid: keeping the last members');
      return;
    }
    const next = new Map<string, readonly MemberSpec[]>();
    for (const [name, members] of result.services) if (!bad.has(name)) next.set(name, members);
    for (const name of bad) {
      const prev = this.current.get(name);
      if (prev !== undefined) next.set(name, prev);
    }
    this.current = next;
    sink.countEvent(this.source, 'resync');
    sink.replaceAll(this.source, next);
    this.logger.info({ services: next.size, invalid: bad.size }, 'registry file loaded');
  }

  async close(): Promise<void> {
    this.watcher?.close();
    this.watcher = undefined;
  }
}
