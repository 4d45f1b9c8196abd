import { stringify } from 'yaml';
import { buildCrd } from './crd.js';
import { KINDS } from './kinds.js';

const HEADER = '# Generated from src/api by `npm run generate`. Do not edit.\n';

/** The CRD files as they are committed in crds/: one per kind. */
export function renderCrdFiles(): Record<string, string> {
  return Object.fromEntries(KINDS.map((k) => [`${k.plural}.yaml`, HEADER + stringify(buildCrd(k), { lineWidth: 0 })]));
}
