import { createHash } from 'node:crypto';
import { POOLER_FILES, type PoolerFiles } from './render.js';

/** Annotations the agent writes on the pooler config Secret: what it loaded, and why it refused. */
export const AGENT_APPLIED_ANNOTATION = 'tenantdb.dev/agent-applied';
export const AGENT_ERROR_ANNOTATION = 'tenantdb.dev/agent-error';

export function configHash(files: Partial<Record<keyof PoolerFiles, string>>): string {
  const h = createHash('sha256');
  for (const f of POOLER_FILES) h.update(`${f}\u0000${files[f] ?? ''}\u0000`);
  return h.digest('hex').slice(0, 16);
}
