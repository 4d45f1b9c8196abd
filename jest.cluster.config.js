/**
 * `npm run test:cluster`: end-to-end on a real node (test/env/node.ts), apart from `npm test`'s
 * projects. Needs root; one run per machine at a time. scripts/kind-e2e.sh runs the same tests
 * against kind (TENANTDB_E2E_TARGET=kind, test/cluster/target.ts).
 */
export default {
  testTimeout: 300_000,
  // node.test.ts uninstalls the chart at its end: it runs after the other files.
  testSequencer: '<rootDir>/test/cluster/sequencer.js',
  projects: [
    {
      displayName: 'cluster',
      testEnvironment: 'node',
      extensionsToTreatAsEsm: ['.ts'],
      moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
      transform: { '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json', diagnostics: false }] },
      testMatch: ['<rootDir>/test/cluster/**/*.test.ts'],
      // npm run dev:cluster's run folder holds image file systems.
      modulePathIgnorePatterns: ['<rootDir>/.cluster/'],
      globalSetup: '<rootDir>/test/cluster/global-setup.js',
      globalTeardown: '<rootDir>/test/cluster/global-teardown.js',
    },
  ],
};
