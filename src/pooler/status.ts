import { createHash } from 'node:crypto';

/** Annotations the agent writes on the pooler config Secret: what it loaded, and why it refused. */
export const AGENT_APPLIED_ANNOTATION = 'tenantdb.dev/agent-applied';
export const AGENT_ERROR_ANNOTATION = 'tenantdb.dev/agent-error';

/** A short fingerprint of a set of files, as the agent and the operator both compute it. */
export function configHash(files: Readonly<Record<string, string | undefined>>): string {
  const h = createHash('sha256');
  for (const f of Object.keys(files).sort()) h.update(`${f}\u0000${files[f] ?? ''}\u0000`);
  return h.digest('hex').slice(0, 16);
}
