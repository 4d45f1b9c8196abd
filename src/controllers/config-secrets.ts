/**
 * The Secrets the operator writes for its agents (a pooler's index and shards, a server's HBA
 * rules): owned by their PostgresServer, labelled as managed, written only when their bytes differ,
 * and carrying the agent's report as annotations.
 */
import type * as k8s from '@kubernetes/client-node';
import { API_VERSION } from '../api/common.js';
import type { PostgresServer } from '../api/postgresserver.js';
import { httpStatus } from '../kube/client.js';
import { countConfigWrite } from '../runtime/metrics.js';
import { AGENT_APPLIED_ANNOTATION, AGENT_ERROR_ANNOTATION, configHash } from '../pooler/status.js';
import { MANAGED_BY, MANAGED_BY_LABEL, type OperatorContext } from './context.js';

export const SERVER_LABEL = 'tenantdb.dev/postgresserver';

export interface SecretRef {
  namespace: string;
  name: string;
}

export interface PoolerConfigState {
  hash: string;
  applied: boolean;
  error?: string | undefined;
  ref: SecretRef;
}

export const decodeData = (s: k8s.V1Secret | undefined): Record<string, string> =>
  Object.fromEntries(Object.entries(s?.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));

export const ownedBy = (s: k8s.V1Secret | undefined, server: PostgresServer): boolean =>
  (s?.metadata?.ownerReferences ?? []).some((r) => r.uid === server.metadata.uid);

export function configSecret(
  server: PostgresServer,
  ref: SecretRef,
  files: Record<string, string>,
  labels: Record<string, string> = {},
): k8s.V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: {
      name: ref.name,
      namespace: ref.namespace,
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY, [SERVER_LABEL]: server.metadata.name, ...labels },
      ownerReferences: [
        { apiVersion: API_VERSION, kind: 'PostgresServer', name: server.metadata.name, uid: server.metadata.uid, controller: true },
      ],
    },
    data: Object.fromEntries(Object.entries(files).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  };
}

/** Writes a config Secret when its bytes differ; reports what the agent did with the current bytes. */
export async function writeOwnedConfig(
  ctx: OperatorContext,
  server: PostgresServer,
  ref: SecretRef,
  files: Record<string, string>,
  what: string,
): Promise<PoolerConfigState> {
  const hash = configHash(files);
  const body = configSecret(server, ref, files);
  const data = body.data ?? {};
  let current: k8s.V1Secret | undefined;
  try {
    current = await ctx.clients.core.readNamespacedSecret({ name: ref.name, namespace: ref.namespace });
  } catch (err) {
    if (httpStatus(err) !== 404) throw err;
  }
  if (!current) {
    await ctx.clients.core.createNamespacedSecret({ namespace: ref.namespace, body });
    countConfigWrite(what, files);
    return { hash, applied: false, ref };
  }
  if (!ownedBy(current, server))
    throw new Error(`Secret ${ref.namespace}/${ref.name} exists and is not owned by PostgresServer ${server.metadata.name}`);
  const same =
    Object.keys(data).length === Object.keys(current.data ?? {}).length && Object.entries(data).every(([k, v]) => current?.data?.[k] === v);
  if (!same) {
    await ctx.clients.core.replaceNamespacedSecret({
      name: ref.name,
      namespace: ref.namespace,
      body: {
        ...body,
        metadata: {
          ...body.metadata,
          ...(current.metadata?.resourceVersion ? { resourceVersion: current.metadata.resourceVersion } : {}),
          annotations: current.metadata?.annotations ?? {},
        },
      },
    });
    countConfigWrite(what, files);
    ctx.log.info({ server: server.metadata.name, hash }, `Updated ${what}`);
    return { hash, applied: false, ref };
  }
  return { hash, ...agentReport(current, hash), ref };
}

export function agentReport(s: k8s.V1Secret | undefined, hash: string): { applied: boolean; error?: string | undefined } {
  const ann = s?.metadata?.annotations ?? {};
  const err = ann[AGENT_ERROR_ANNOTATION];
  return { applied: ann[AGENT_APPLIED_ANNOTATION] === hash, error: err?.startsWith(`${hash}:`) ? err.slice(hash.length + 2) : undefined };
}
