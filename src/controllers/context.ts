import type * as k8s from '@kubernetes/client-node';
import type {
  CachedIpWhitelist,
  CachedPostgresServer,
  CachedTenantDatabase,
  CachedTenantDatabasePlan,
  CachedTenantGroup,
} from '../api/cached.js';
import type { PostgresServer } from '../api/postgresserver.js';
import type { KubeClients } from '../kube/client.js';
import { secretValue } from '../kube/secrets.js';
import type { AdminCredentials, AdminPools, ServerEndpoint } from '../pg/connections.js';
import type { CatalogSnapshot } from '../pg/tenant-sql.js';
import type { EventRecorder, ObjectRef } from '../runtime/events.js';
import { API_VERSION } from '../api/common.js';
import type { ResilientInformer } from '../runtime/informer.js';
import type { Logger } from '../runtime/logger.js';

export const FINALIZER = 'tenantdb.dev/finalizer';
export { MANAGED_BY, MANAGED_BY_LABEL } from '../pooler/contract.js';
export const TENANT_LABEL = 'tenantdb.dev/tenantdatabase';

export interface OperatorConfig {
  /** How often every object is re-checked for drift. */
  resyncMs: number;
  /** The operator's own namespace: default home of pooler config Secrets. */
  namespace: string;
  /** Bytes of tenant lines one pooler config shard may hold. */
  poolerShardBytes: number;
  /**
   * Whether migration Jobs may run (--migration-jobs): the platform's consent, since whoever may
   * edit a TenantDatabase then runs an image of its choice as a pod in its namespace.
   */
  migrationJobs?: boolean;
}

export interface OperatorContext {
  clients: KubeClients;
  log: Logger;
  events: EventRecorder;
  pools: AdminPools;
  config: OperatorConfig;
  servers: ResilientInformer<CachedPostgresServer>;
  tenants: ResilientInformer<CachedTenantDatabase>;
  whitelists: ResilientInformer<CachedIpWhitelist>;
  groups: ResilientInformer<CachedTenantGroup>;
  /** Namespaces, for the servers' allowedNamespaces selectors. */
  namespaces: ResilientInformer<k8s.V1Namespace>;
  /** Secrets labelled as managed by tenantdb: tenant Secrets and pooler config Secrets. */
  secrets: ResilientInformer<k8s.V1Secret>;
  /** The operator's migration Jobs, metadata and status only (src/controllers/migrations/). */
  jobs: ResilientInformer<k8s.V1Job>;
  /** TenantDatabasePlans waiting for their answer, or answered and waiting to be deleted. */
  plans: ResilientInformer<CachedTenantDatabasePlan>;
  /**
   * Per server, what its catalog showed at the server's last reconcile: for each TenantDatabase uid,
   * the roles and databases that carry its marker. Configs are rendered only from these.
   */
  markers: Map<string, ServerMarkers>;
  /**
   * Per server, the attributes of its marked objects at its last reconcile, when they were read, and
   * when the sizes in it were (they are read less often).
   */
  catalog: Map<string, CatalogSnapshot & { at: number; sizedAt: number }>;
  /** Says that a tenant's objects on a server were created or changed (the watch table's `provisioned`). */
  provisioned: (server: string, tenant: string) => void;
}

export type ServerMarkers = Map<string, { roles: Set<string>; databases: Set<string> }>;

export function endpointOf(server: PostgresServer, ca?: string): ServerEndpoint {
  return { host: server.spec.host, port: server.spec.port, sslMode: server.spec.sslMode, ca };
}

export type Resolved<T> = { ok: true; value: T } | { ok: false; reason: string; message: string };

/**
 * Secrets a PostgresServer names (admin, CA, pooler admin, rendered configs) live in the operator's
 * own namespace: a server object must not be a way to make the operator read or write Secrets of
 * tenant namespaces, and the operator's RBAC for such Secrets can stay in its namespace.
 */
export function outsideOperatorNamespace(
  ref: { namespace: string; name: string },
  field: string,
  operatorNamespace: string,
): { ok: false; reason: string; message: string } | undefined {
  if (ref.namespace === operatorNamespace) return undefined;
  return {
    ok: false,
    reason: 'SecretOutsideOperatorNamespace',
    message: `${field} names Secret ${ref.namespace}/${ref.name}; Secrets of a PostgresServer must be in the operator's namespace ${operatorNamespace}`,
  };
}

/** Reads the admin credentials a server's adminSecretRef points at. */
export async function loadAdminCredentials(
  clients: KubeClients,
  server: PostgresServer,
  operatorNamespace: string,
): Promise<Resolved<AdminCredentials>> {
  const ref = server.spec.adminSecretRef;
  const outside = outsideOperatorNamespace(ref, 'adminSecretRef', operatorNamespace);
  if (outside) return outside;
  let secret: k8s.V1Secret;
  try {
    secret = await clients.sharedSecret(ref.namespace, ref.name);
  } catch (err) {
    const code = (err as { code?: number }).code;
    if (code === 404)
      return { ok: false, reason: 'AdminSecretNotFound', message: `Secret ${ref.namespace}/${ref.name} (adminSecretRef) does not exist` };
    if (code === 403)
      return { ok: false, reason: 'AdminSecretForbidden', message: `the operator may not read Secret ${ref.namespace}/${ref.name}` };
    throw err;
  }
  const username = secretValue(secret, 'username');
  const password = secretValue(secret, 'password');
  if (!username || !password) {
    return { ok: false, reason: 'AdminSecretInvalid', message: `Secret ${ref.namespace}/${ref.name} must have keys username and password` };
  }
  return { ok: true, value: { username, password, database: secretValue(secret, 'database') ?? 'postgres' } };
}

/** Reads the CA certificate for verify-ca / verify-full, if the server names one. */
export async function loadCa(
  clients: KubeClients,
  server: PostgresServer,
  operatorNamespace: string,
): Promise<Resolved<string | undefined>> {
  const ref = server.spec.caSecretRef;
  if (!ref) return { ok: true, value: undefined };
  const outside = outsideOperatorNamespace(ref, 'caSecretRef', operatorNamespace);
  if (outside) return outside;
  try {
    const secret = await clients.sharedSecret(ref.namespace, ref.name);
    const ca = secretValue(secret, 'ca.crt');
    if (!ca) return { ok: false, reason: 'CaSecretInvalid', message: `Secret ${ref.namespace}/${ref.name} has no key ca.crt` };
    return { ok: true, value: ca };
  } catch (err) {
    if ((err as { code?: number }).code === 404) {
      return { ok: false, reason: 'CaSecretNotFound', message: `Secret ${ref.namespace}/${ref.name} (caSecretRef) does not exist` };
    }
    throw err;
  }
}

export function splitKey(key: string): { namespace: string | undefined; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { namespace: undefined, name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

export function keyOf(obj: k8s.KubernetesObject): string {
  const ns = obj.metadata?.namespace;
  return ns ? `${ns}/${obj.metadata?.name}` : (obj.metadata?.name ?? '');
}

/** The reference an Event about a TenantDatabase names. */
export function tenantRef(td: { metadata: { name: string; namespace?: string | undefined; uid: string } }): ObjectRef {
  return {
    apiVersion: API_VERSION,
    kind: 'TenantDatabase',
    name: td.metadata.name,
    namespace: td.metadata.namespace,
    uid: td.metadata.uid,
  };
}

/**
 * The owner reference of an object the operator writes for one of its kinds: the controller, so
 * that the object goes with its owner. blockOwnerDeletion where the owner's finalizers RBAC allows it.
 */
export function controllerRef(kind: string, name: string, uid: string, blockOwnerDeletion = true): k8s.V1OwnerReference {
  return { apiVersion: API_VERSION, kind, name, uid, controller: true, ...(blockOwnerDeletion ? { blockOwnerDeletion: true } : {}) };
}
