/**
 * Watches one file for changes, robustly: editors and config tools often replace a file
 * (write a temp file, rename it over), which a watch on the file itself loses, so the directory
 * is watched and events are filtered by name. A slow poll backs it up where inotify events are
 * missed (network filesystems, some containers). Bursts are debounced; the callback runs only
 * when the content's bytes actually changed and have stayed the same for one more debounce period.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';

export interface FileWatcher {
  close(): void;
}

export interface WatchOptions {
  /** ms to wait for a burst of events to settle; default 50 */
  readonly debounceMs?: number;
  /** ms between polls; default 1000 */
  readonly pollMs?: number;
}

function digest(file: string): string | undefined {
  try {
    return createHash('sha1').update(fs.readFileSync(file)).digest('hex');
  } catch {
    return undefined; // missing for a moment while being replaced
  }
}

/** Calls `onChange` after `file`'s content changes. Never throws from an event. */
export function watchFile(file: string, onChange: () => void, options: WatchOptions = {}): FileWatcher {
  const debounceMs = options.debounceMs ?? 50;
  const dir = path.dirname(file);
  const base = path.basename(file);
  let last = digest(file);
  // The new content seen by the previous check, not yet delivered: a change is delivered only
  // once two checks `debounceMs` apart read the same bytes. A tool that truncates and then
  // writes (most do) can be caught between the two by a busy machine's scheduler; the half
  // file would otherwise be applied (an empty registry file removes every member) and the
  // whole file a moment later.
  let candidate: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const check = (): void => {
    timer = undefined;
    if (closed) return;
    const now = digest(file);
    if (now === undefined || now === last) {
      candidate = undefined;
      return;
    }
    if (now !== candidate) {
      candidate = now;
      schedule();
      return;
    }
    candidate = undefined;
    last = now;
    try {
      onChange();
    } catch {
      // the callback owns its errors; a watcher must never take the process down
    }
  };
  const schedule = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(check, debounceMs);
    timer.unref();
  };
  let watcher: fs.FSWatcher | undefined;
  try {
    watcher = fs.watch(dir, { persistent: false }, (_event, name) => {
      if (name === null || name === base) schedule();
    });
    watcher.on('error', () => undefined);
  } catch {
    watcher = undefined; // the poll below still works
  }
  const poll = setInterval(schedule, options.pollMs ?? 1000);
  poll.unref();
  return {
    close(): void {
      closed = true;
      watcher?.close();
      clearInterval(poll);
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}
