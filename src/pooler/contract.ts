/**
 * The contract between the operator and its agents, shared by both sides: which keys and labels the
 * config Secrets carry, how a set of files is fingerprinted, and how an agent reports on the Secret
 * what it did with them. Pure: no Kubernetes or PostgreSQL I/O. (The pooler index format, its key
 * and its shard label are in shards.ts, with the cut they describe.)
 */
import { createHash } from 'node:crypto';

/** On every Secret tenantdb writes; the agent uses a pooler shard only when it carries it. */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'tenantdb';
/** On config Secrets: the PostgresServer they were rendered for. */
export const SERVER_LABEL = 'tenantdb.dev/postgresserver';

/** The one key of a server's HBA config Secret: the tenant block of its pg_hba.conf. */
export const HBA_KEY = 'pg_hba.conf';

/** Annotations the agent writes on a config Secret: what it loaded, and why it refused. */
export const AGENT_APPLIED_ANNOTATION = 'tenantdb.dev/agent-applied';
export const AGENT_ERROR_ANNOTATION = 'tenantdb.dev/agent-error';
/** Set by an agent that loaded a config but could not honour all of it (e.g. a setting its PgBouncer lacks). */
export const AGENT_WARNING_ANNOTATION = 'tenantdb.dev/agent-warning';

/** A short fingerprint of a set of files, as the agent and the operator both compute it. */
export function configHash(files: Readonly<Record<string, string | undefined>>): string {
  const h = createHash('sha256');
  for (const f of Object.keys(files).sort()) h.update(`${f}\u0000${files[f] ?? ''}\u0000`);
  return h.digest('hex').slice(0, 16);
}

export type AgentReport = { applied: boolean; error?: string | undefined; warning?: string | undefined };

/** The annotations an agent writes after loading config `hash` (null removes an annotation). */
export function appliedAnnotations(hash: string, warning?: string): Record<string, string | null> {
  return {
    [AGENT_APPLIED_ANNOTATION]: hash,
    [AGENT_ERROR_ANNOTATION]: null,
    [AGENT_WARNING_ANNOTATION]: warning ? `${hash}: ${warning}` : null,
  };
}

/** The annotation an agent writes after refusing config `hash`; the last good config stays. */
export function refusedAnnotations(hash: string, error: string): Record<string, string> {
  return { [AGENT_ERROR_ANNOTATION]: `${hash}: ${error}` };
}

/** What the annotations say the agent did with config `hash`: loaded it, refused it (why), or not yet. */
export function agentReport(annotations: Readonly<Record<string, string>> | undefined, hash: string): AgentReport {
  const ann = annotations ?? {};
  const ofThis = (v: string | undefined) => (v?.startsWith(`${hash}:`) ? v.slice(hash.length + 2) : undefined);
  return {
    applied: ann[AGENT_APPLIED_ANNOTATION] === hash,
    error: ofThis(ann[AGENT_ERROR_ANNOTATION]),
    warning: ofThis(ann[AGENT_WARNING_ANNOTATION]),
  };
}
