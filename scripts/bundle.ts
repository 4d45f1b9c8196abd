/**
 * Bundles the compiled CLI (dist/cli/main.js: the operator and the pooler agent) with its packages
 * into that one file, in place. Loading it keeps a fraction of what loading the package tree does
 * (client-node alone is over a thousand modules whose sources V8 keeps): measured, an operator
 * process holds about 40 MiB less (README, Speed). Whitespace and comments go too: V8 keeps the
 * whole source as long as the process runs, and comments with a character outside Latin-1 (a dash,
 * a quote) made it keep two bytes a character; minified, the operator holds about 10 MiB less.
 * Names are kept (stack traces stay readable), and main.js.map maps positions back to src/ (run
 * with --enable-source-maps to see them in traces). Run after tsc:
 *   tsx scripts/bundle.ts [outDir]   (default dist)
 */
import { build } from 'esbuild';

const dir = process.argv[2] ?? 'dist';
const entry = `${dir}/cli/main.js`;
await build({
  entryPoints: [entry],
  outfile: entry,
  allowOverwrite: true,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  logLevel: 'warning',
  minifyWhitespace: true,
  sourcemap: 'linked',
  sourcesContent: false,
  // Packages written as CommonJS call require() for Node's own modules: an ES module has none.
  banner: {
    js: "import { createRequire as tenantdbCreateRequire } from 'node:module'; const require = tenantdbCreateRequire(import.meta.url);",
  },
});
