import { describe, expect, it } from 'vitest';
import { stalledHoldMs } from '../bench/lib/stall.js';

// The hot-spot benchmark's stalling backend: a stall holds every request in flight on it.
describe('bench stall model: work progresses only outside the stalls (period 1000, stall 200)', () => {
  it.each([
    ['starts and ends between stalls', 300, 20, 20],
    ['ends exactly when the next stall starts', 980, 20, 20],
    ['in service when a stall starts: held the whole stall', 990, 20, 10 + 200 + 10],
    ['arrives during a stall: starts when it ends', 1190, 20, 10 + 20],
    ['arrives at the start of a stall', 1000, 20, 200 + 20],
    ['a long request spans two stalls', 900, 1000, 100 + 200 + 800 + 200 + 100],
  ] as const)('%s', (_name, at, work, expected) => {
    expect(stalledHoldMs(at, work, 1000, 200)).toBe(expected);
  });
});
