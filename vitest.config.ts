import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // expect.poll waits on a real browser or process: 1 s (vitest's default) is too short on a
    // loaded 2-core machine, and a poll that succeeds returns as soon as it does
    expect: { poll: { timeout: 10_000 } },
    // End-to-end tests start real servers, etcd clusters and child processes: keep the
    // 2-core CI machine from being oversubscribed.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
