/** Writes crds/*.yaml from the zod schemas; with --check, fails when the committed files differ. */
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderCrdFiles } from '../src/api/crd-files.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
let stale = 0;
for (const [file, content] of Object.entries(renderCrdFiles())) {
  const path = join(root, 'crds', file);
  const current = existsSync(path) ? readFileSync(path, 'utf8') : '';
  if (current === content) continue;
  if (check) {
    console.error(`crds/${file} is stale: run npm run generate`);
    stale++;
  } else {
    writeFileSync(path, content);
    console.log(`wrote crds/${file}`);
  }
}
process.exit(stale ? 1 : 0);
