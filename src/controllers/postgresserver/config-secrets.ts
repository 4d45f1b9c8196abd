/**
 * The Secrets the operator writes for its agents (a pooler's index and shards, a server's HBA
 * rules): where they are, owned by their PostgresServer, labelled as managed, written only when
 * their bytes differ, and carrying the agent's report as annotations (src/pooler/contract.ts).
 */
import type * as k8s from '@kubernetes/client-node';
import type { PostgresServer } from '../../api/postgresserver.js';
import { httpStatus } from '../../kube/client.js';
import { decodeSecretData, encodeSecretData } from '../../kube/secrets.js';
import { MANAGED_BY, MANAGED_BY_LABEL, SERVER_LABEL, agentReport, configHash, type AgentReport } from '../../pooler/contract.js';
import { controllerRef, type OperatorContext } from '../context.js';
import { countConfigWrite } from '../../runtime/metrics.js';

export interface SecretRef {
  namespace: string;
  name: string;
}

export interface PoolerConfigState {
  hash: string;
  applied: boolean;
  error?: string | undefined;
  /** What the agent loaded but could not honour (e.g. a setting its PgBouncer lacks). */
  warning?: string | undefined;
  ref: SecretRef;
}

/** Where a server's pooler config index is: spec.pooler.configSecretRef, or `<server>-pooler` beside the operator. */
export function poolerConfigRef(server: PostgresServer, operatorNamespace: string): SecretRef {
  return server.spec.pooler?.configSecretRef ?? { namespace: operatorNamespace, name: `${server.metadata.name}-pooler` };
}

/** Where a server's pg_hba.conf tenant block is: spec.hba.configSecretRef, or `<server>-hba` beside the operator. */
export function serverHbaRef(server: PostgresServer, operatorNamespace: string): SecretRef {
  return server.spec.hba?.configSecretRef ?? { namespace: operatorNamespace, name: `${server.metadata.name}-hba` };
}

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
      // No blockOwnerDeletion: the operator has no postgresservers/finalizers RBAC.
      ownerReferences: [controllerRef('PostgresServer', server.metadata.name, server.metadata.uid, false)],
    },
    data: encodeSecretData(files),
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
  return { hash, ...agentReport(current.metadata?.annotations, hash), ref };
}

/** What the agent reported for the files now in a config Secret, from the cache, with their text. */
export function cachedConfigReport(ctx: OperatorContext, ref: SecretRef): AgentReport & { text: string } {
  const s = ctx.secrets.get(ref.name, ref.namespace);
  if (!s?.data) return { text: '', applied: false };
  const files = decodeSecretData(s.data);
  return { text: Object.values(files).join('\n'), ...agentReport(s.metadata?.annotations, configHash(files)) };
}
