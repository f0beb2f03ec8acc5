import { defineConfig } from 'vitest/config';

// Timing-sensitive tests (event-loop lag during generation): one file at a time, nothing else
// running in parallel. `npm test` runs this pass after the main one.
export default defineConfig({
  test: {
    include: ['test/timing/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 120_000,
  },
});
