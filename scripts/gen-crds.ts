/**
 * Writes crds/*.yaml and the chart's CRD templates from the zod schemas; with --check, fails when
 * the committed files differ.
 */
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderChartCrdTemplates, renderCrdFiles } from '../src/api/crd-files.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
let stale = 0;
// crds/ for kubectl users; the chart renders the same CRDs from templates, so that upgrades reach them.
const targets: [string, string][] = [
  ...Object.entries(renderCrdFiles()).map(([file, content]): [string, string] => [join('crds', file), content]),
  ...Object.entries(renderChartCrdTemplates()).map(([file, content]): [string, string] => [
    join('charts/tenantdb/templates/crds', file),
    content,
  ]),
];
for (const [rel, content] of targets) {
  const path = join(root, rel);
  const current = existsSync(path) ? readFileSync(path, 'utf8') : '';
  if (current === content) continue;
  if (check) {
    console.error(`${rel} is stale: run npm run generate`);
    stale++;
  } else {
    writeFileSync(path, content);
    console.log(`wrote ${rel}`);
  }
}
process.exit(stale ? 1 : 0);
