import { defineConfig } from 'vitest/config';

// Native suites share process-wide native state (thread pools, memory): run test files in
// forked processes so a native crash kills one fork, not the runner.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/timing/**', '**/node_modules/**'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 300_000,
  },
});
