import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // End-to-end tests start real servers, etcd clusters and child processes: keep the
    // 2-core CI machine from being oversubscribed.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
