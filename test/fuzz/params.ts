/**
 * Seed and run counts of the generated-input tests. A failure prints its seed (and fast-check's
 * path); `TENANTDB_FUZZ_SEED=<seed>` replays the same inputs, `TENANTDB_FUZZ_RUNS=<n>` changes how
 * many are tried.
 */
import fc from 'fast-check';

const DEFAULT_SEED = 20_260_611;

function intFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, not ${JSON.stringify(raw)}`);
  return n;
}

export const FUZZ_SEED = intFromEnv('TENANTDB_FUZZ_SEED', DEFAULT_SEED);

/** Runs per property: 10,000 unless TENANTDB_FUZZ_RUNS says otherwise. */
export function fuzzRuns(fallback = 10_000): number {
  return intFromEnv('TENANTDB_FUZZ_RUNS', fallback);
}

/** fast-check parameters: the fixed (or overridden) seed, the run count, and the seed in every failure. */
export function fuzzParams<T>(numRuns = fuzzRuns()): fc.Parameters<T> {
  return { seed: FUZZ_SEED, numRuns };
}

/** A deterministic generator for code outside fc.assert (the integration test's batches). */
export function sampleSeeded<T>(arb: fc.Arbitrary<T>, count: number, salt = 0): T[] {
  return fc.sample(arb, { seed: FUZZ_SEED + salt, numRuns: count });
}
