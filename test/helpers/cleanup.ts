/**
 * Per-test cleanup: `later(fn)` queues `fn`; after each test the queue runs last-in first-out.
 * Every cleanup runs even when an earlier one throws (a server left open would leak into the
 * next test); the first error is then rethrown, so a failing cleanup still fails the test.
 */
import { afterEach } from 'vitest';

export type Cleanup = () => Promise<unknown> | unknown;

/** Registers the `afterEach` hook in the calling file (or describe block) and returns `later`. */
export function cleanupAfterEach(): (fn: Cleanup) => void {
  const queue: Cleanup[] = [];
  afterEach(async () => {
    let first: unknown;
    let failed = false;
    while (queue.length > 0) {
      const fn = queue.pop() as Cleanup;
      try {
        await fn();
      } catch (err) {
        if (!failed) first = err;
        failed = true;
      }
    }
    if (failed) throw first;
  });
  return (fn) => {
    queue.push(fn);
  };
}
