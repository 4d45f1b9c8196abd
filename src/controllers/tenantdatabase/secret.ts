import type * as k8s from '@kubernetes/client-node';
import type { TenantDatabase } from '../../api/tenantdatabase.js';
import { httpStatus, type KubeClients } from '../../kube/client.js';
import { generatePassword, isAcceptablePassword } from '../../pg/scram.js';
import { MANAGED_BY, MANAGED_BY_LABEL, TENANT_LABEL, controllerRef } from '../context.js';
import { DATA_HASH_ANNOTATION, dataHash, decodeSecretData, encodeSecretData } from '../../kube/secrets.js';

export type SecretState = { kind: 'missing' } | { kind: 'foreign' } | { kind: 'owned'; secret: k8s.V1Secret; data: Record<string, string> };

export function ownedBy(secret: k8s.V1Secret, uid: string): boolean {
  return (secret.metadata?.ownerReferences ?? []).some((r) => r.uid === uid && r.controller === true);
}

export async function readSecret(clients: KubeClients, namespace: string, name: string, uid: string): Promise<SecretState> {
  try {
    const secret = await clients.core.readNamespacedSecret({ name, namespace });
    if (!ownedBy(secret, uid)) return { kind: 'foreign' };
    return { kind: 'owned', secret, data: decodeSecretData(secret.data) };
  } catch (err) {
    if (httpStatus(err) === 404) return { kind: 'missing' };
    throw err;
  }
}

/** The password to use: the one already in the tenant's Secret when it is sound, else a new one. */
export function choosePassword(...candidates: (string | undefined)[]): { password: string; generated: boolean } {
  for (const c of candidates) if (c && isAcceptablePassword(c)) return { password: c, generated: false };
  return { password: generatePassword(), generated: true };
}

/** Label values are at most 63 characters: a longer TenantDatabase name is left out (the owner reference still names it). */
export function secretLabels(tdName: string): Record<string, string> {
  return tdName.length <= 63 ? { [MANAGED_BY_LABEL]: MANAGED_BY, [TENANT_LABEL]: tdName } : { [MANAGED_BY_LABEL]: MANAGED_BY };
}

/** On the TenantDatabase: asks for a new password; any new value rotates once. */
export const ROTATE_ANNOTATION = 'tenantdb.dev/rotate-password';
/** On the Secret: the rotation request its password answers. */
export const ROTATED_ANNOTATION = 'tenantdb.dev/rotated-for';

export function secretObject(
  td: TenantDatabase,
  name: string,
  data: Record<string, string>,
  annotations: Record<string, string> = {},
): k8s.V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: {
      name,
      namespace: td.metadata.namespace ?? '',
      labels: secretLabels(td.metadata.name),
      annotations: { ...annotations, [DATA_HASH_ANNOTATION]: dataHash(data) },
      ownerReferences: [controllerRef('TenantDatabase', td.metadata.name, td.metadata.uid)],
    },
    data: encodeSecretData(data),
  };
}

export function sameData(a: Record<string, string>, b: Record<string, string>): boolean {
  const ak = Object.keys(a).sort();
  const bk = Object.keys(b).sort();
  return ak.length === bk.length && ak.every((k, i) => k === bk[i] && a[k] === b[k]);
}

/** Creates or rewrites the Secret; returns what it did, for the event trail. */
export async function writeSecret(
  clients: KubeClients,
  td: TenantDatabase,
  name: string,
  state: SecretState,
  data: Record<string, string>,
  annotations: Record<string, string> = {},
  /** Annotations to take off (what the operator recorded there and no longer holds). */
  remove: readonly string[] = [],
): Promise<'created' | 'updated' | 'unchanged'> {
  const namespace = td.metadata.namespace ?? '';
  const desired = secretObject(td, name, data, annotations);
  if (state.kind === 'missing') {
    await clients.core.createNamespacedSecret({ namespace, body: desired });
    return 'created';
  }
  if (state.kind !== 'owned') throw new Error('refusing to write a Secret this TenantDatabase does not own');
  const labels = state.secret.metadata?.labels ?? {};
  const wanted = secretLabels(td.metadata.name);
  const have = state.secret.metadata?.annotations ?? {};
  if (
    sameData(state.data, data) &&
    Object.entries(wanted).every(([k, v]) => labels[k] === v) &&
    Object.entries(annotations).every(([k, v]) => have[k] === v) &&
    remove.every((k) => have[k] === undefined)
  ) {
    return 'unchanged';
  }
  await clients.core.replaceNamespacedSecret({
    name,
    namespace,
    body: {
      ...desired,
      metadata: {
        ...state.secret.metadata,
        labels: { ...labels, ...wanted },
        annotations: {
          ...Object.fromEntries(Object.entries(have).filter(([k]) => !remove.includes(k))),
          ...annotations,
          [DATA_HASH_ANNOTATION]: dataHash(data),
        },
        ownerReferences: state.secret.metadata?.ownerReferences ?? desired.metadata?.ownerReferences ?? [],
      },
    },
  });
  return 'updated';
}
