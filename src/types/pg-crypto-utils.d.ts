// pg's SCRAM helpers (see src/pg/pg-scram.ts); pg ships no types for its internals.
declare module 'pg/lib/crypto/utils.js' {
  const utils: Record<string, unknown>;
  export default utils;
}
