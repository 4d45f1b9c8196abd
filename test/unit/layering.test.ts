/**
 * The arrows between the folders of src/: the operator's controllers and the agents share only
 * the pooler contract (src/pooler/) and the adapters (src/pg/, src/kube/), never each other's code;
 * src/pooler/ stays pure.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Module specifiers of a file: `import … from`, `export … from`, bare `import '…'` and `import('…')`. */
export function importsOf(text: string): string[] {
  const out: string[] = [];
  const patterns = [
    /\b(?:import|export)\s[^'"]*?\sfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s*['"]([^'"]+)['"]/g,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of text.matchAll(re)) if (m[1]) out.push(m[1]);
  return out;
}

/** The src/ folder (first segment) a relative specifier of `file` lands in; undefined for packages. */
function folderOf(file: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  return relative(SRC, resolve(dirname(file), spec)).split('/')[0];
}

function violations(from: string, forbidden: readonly string[], packages: readonly string[] = []): string[] {
  const out: string[] = [];
  for (const file of tsFiles(join(SRC, from))) {
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      const folder = folderOf(file, spec);
      const bad = folder !== undefined ? forbidden.includes(folder) : packages.some((p) => spec === p || spec.startsWith(`${p}/`));
      if (bad) out.push(`${relative(SRC, file)} imports ${spec}`);
    }
  }
  return out;
}

describe('import layering of src/', () => {
  test('the import parser sees every form of import', () => {
    const text = [
      "import type * as k8s from '@kubernetes/client-node';",
      "import {\n  a,\n  type B,\n} from '../agent/x.js';",
      "export { c } from './y.js';",
      "import './side-effect.js';",
      "const m = await import('../z.js');",
    ].join('\n');
    expect(importsOf(text).sort()).toEqual(['../agent/x.js', '../z.js', './side-effect.js', './y.js', '@kubernetes/client-node'].sort());
  });

  test('no controller imports from the agent', () => {
    expect(violations('controllers', ['agent'])).toEqual([]);
  });

  test('the agent imports no controller', () => {
    expect(violations('agent', ['controllers', 'operator.ts'])).toEqual([]);
  });

  test('the pooler contract is pure: no Kubernetes, PostgreSQL, controller or agent code', () => {
    expect(
      violations('pooler', ['agent', 'controllers', 'kube', 'pg', 'runtime', 'operator.ts'], ['@kubernetes/client-node', 'pg']),
    ).toEqual([]);
  });

  test('the PostgreSQL and PgBouncer adapters import no controller and no agent', () => {
    expect(violations('pg', ['agent', 'controllers', 'operator.ts'])).toEqual([]);
  });

  test('a controller that imported the agent would be caught', () => {
    const text = "import { withAdmin } from '../agent/pooler-agent.js';";
    const file = join(SRC, 'controllers', 'x.ts');
    expect(importsOf(text).map((s) => folderOf(file, s))).toEqual(['agent']);
  });
});
