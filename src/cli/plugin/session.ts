/**
 * The plugin's connection to the API server: the user's own kubeconfig (--kubeconfig, $KUBECONFIG or
 * ~/.kube/config), the chosen context, the namespace, and the few reads every command shares.
 * Nothing else is used: no in-cluster account, no impersonation, no credentials of the operator.
 */
import * as k8s from '@kubernetes/client-node';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { GROUP, VERSION } from '../../api/common.js';
import { IP_WHITELIST, POSTGRES_SERVER, TENANT_DATABASE, type KindInfo } from '../../api/kinds.js';
import { ipWhitelist, type IpWhitelist } from '../../api/ipwhitelist.js';
import { postgresServer, type PostgresServer } from '../../api/postgresserver.js';
import { tenantDatabase, type TenantDatabase } from '../../api/tenantdatabase.js';
import { ownedBy } from '../../controllers/tenantdatabase/secret.js';
import { CliError, describeError, notFoundKind, oneLine, statusCode } from './errors.js';

export type Output = 'table' | 'json' | 'yaml';

export interface GlobalOptions {
  kubeconfig?: string;
  context?: string;
  namespace?: string;
  output: Output;
  requestTimeout: number;
}

export interface Session {
  kc: k8s.KubeConfig;
  /** The namespace commands act in: -n, else the context's, else default. */
  namespace: string;
  /** Whether -n was given (a forbidden default namespace gets a hint). */
  namespaceGiven: boolean;
  server: string;
  core: k8s.CoreV1Api;
  custom: k8s.CustomObjectsApi;
  output: Output;
  /** Runs one API request with the request timeout; every request of the plugin goes through it. */
  call<T>(request: () => Promise<T>): Promise<T>;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Validates a namespace name before it reaches a URL path. */
export function checkNamespace(ns: string): string {
  if (!DNS_LABEL.test(ns)) throw new CliError(`"${ns}" is not a valid namespace name`);
  return ns;
}

/** Validates an object name before it reaches a URL path. */
export function checkName(kind: string, name: string): string {
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(name)) throw new CliError(`"${name}" is not a valid ${kind} name`);
  return name;
}

/** The kubeconfig as kubectl would load it; refuses to fall back to in-cluster or localhost:8080. */
export function loadUserKubeConfig(opts: Pick<GlobalOptions, 'kubeconfig' | 'context'>): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  const path = opts.kubeconfig ?? (process.env.KUBECONFIG ? undefined : join(homedir(), '.kube', 'config'));
  try {
    if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
    else if (process.env.KUBECONFIG) kc.loadFromDefault();
    else if (path && existsSync(path)) kc.loadFromFile(path);
    else throw new CliError('no kubeconfig: set KUBECONFIG or pass --kubeconfig <file>');
  } catch (err) {
    if (err instanceof CliError) throw err;
    const file = opts.kubeconfig ?? process.env.KUBECONFIG ?? path ?? '';
    throw new CliError(`cannot load kubeconfig ${file}: ${oneLine(err instanceof Error ? err.message : String(err))}`);
  }
  if (opts.context) {
    if (!kc.getContextObject(opts.context)) {
      const known = kc.getContexts().map((c) => c.name);
      throw new CliError(`context "${opts.context}" is not in the kubeconfig${known.length ? ` (it has: ${known.join(', ')})` : ''}`);
    }
    kc.setCurrentContext(opts.context);
  }
  if (!kc.getCurrentContext()) throw new CliError('the kubeconfig has no current context: pass --context');
  if (!kc.getCurrentCluster()) throw new CliError(`context "${kc.getCurrentContext()}" names no cluster in the kubeconfig`);
  return kc;
}

export function openSession(opts: GlobalOptions): Session {
  const kc = loadUserKubeConfig(opts);
  const contextNs = kc.getContextObject(kc.getCurrentContext())?.namespace;
  const namespace = checkNamespace(opts.namespace ?? (contextNs || 'default'));
  const server = kc.getCurrentCluster()?.server ?? '';
  const timeout = opts.requestTimeout;
  return {
    kc,
    namespace,
    namespaceGiven: opts.namespace !== undefined,
    server,
    core: kc.makeApiClient(k8s.CoreV1Api),
    custom: kc.makeApiClient(k8s.CustomObjectsApi),
    output: opts.output,
    call: async <T>(request: () => Promise<T>): Promise<T> => {
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new CliError(`the API server at ${server} did not answer within ${Math.round(timeout / 1000)}s`)),
          timeout,
        );
        timer.unref();
      });
      try {
        return await Promise.race([request(), expired]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** A 403 in the default namespace often means "you meant another namespace": say so. */
export function forbiddenHint(s: Session, err: unknown): string {
  const text = describeError(err, s.server);
  return statusCode(err) === 403 && !s.namespaceGiven ? `${text} (choose a namespace with -n)` : text;
}

/** Rethrows an API error as the user's one-line sentence. */
export function fail(s: Session, err: unknown): never {
  if (err instanceof CliError) throw err;
  throw new CliError(forbiddenHint(s, err));
}

const base = (k: KindInfo) => ({ group: GROUP, version: VERSION, plural: k.plural });

function parseAs<T>(
  kind: string,
  schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: Error } },
  v: unknown,
): T {
  const r = schema.safeParse(v);
  if (!r.success) {
    const name = (v as { metadata?: { name?: string } } | undefined)?.metadata?.name ?? '?';
    throw new CliError(
      `${kind} "${name}" does not match this plugin's schema (is the plugin older than the operator?): ${oneLine(r.error.message)}`,
    );
  }
  return r.data;
}

export async function getTenant(s: Session, name: string, namespace = s.namespace): Promise<TenantDatabase> {
  return (await getTenantAsStored(s, name, namespace)).td;
}

/** The TenantDatabase parsed, and as the API server returned it (no defaults filled in). */
export async function getTenantAsStored(s: Session, name: string, namespace = s.namespace): Promise<{ td: TenantDatabase; raw: unknown }> {
  checkName('TenantDatabase', name);
  try {
    const raw: unknown = await s.call<unknown>(() => s.custom.getNamespacedCustomObject({ ...base(TENANT_DATABASE), namespace, name }));
    return { td: parseAs('TenantDatabase', tenantDatabase, raw), raw };
  } catch (err) {
    if (notFoundKind(err) === 'object')
      throw new CliError(`TenantDatabase "${name}" not found in namespace "${namespace}" (see: kubectl tenantdb list -n ${namespace})`);
    fail(s, err);
  }
}

/** TenantDatabases of the session's namespace, or of every namespace. */
export async function listTenants(s: Session, allNamespaces: boolean): Promise<TenantDatabase[]> {
  try {
    const list = (await s.call(() =>
      allNamespaces
        ? s.custom.listClusterCustomObject(base(TENANT_DATABASE))
        : s.custom.listNamespacedCustomObject({ ...base(TENANT_DATABASE), namespace: s.namespace }),
    )) as { items?: unknown[] };
    return (list.items ?? []).map((i) => parseAs('TenantDatabase', tenantDatabase, i));
  } catch (err) {
    fail(s, err);
  }
}

export async function listWhitelists(s: Session, namespace: string | undefined): Promise<IpWhitelist[]> {
  const list = (await s.call(() =>
    namespace
      ? s.custom.listNamespacedCustomObject({ ...base(IP_WHITELIST), namespace })
      : s.custom.listClusterCustomObject(base(IP_WHITELIST)),
  )) as { items?: unknown[] };
  return (list.items ?? []).flatMap((i) => {
    const r = ipWhitelist.safeParse(i);
    return r.success ? [r.data] : [];
  });
}

export async function getServer(s: Session, name: string): Promise<PostgresServer> {
  const raw: unknown = await s.call<unknown>(() => s.custom.getClusterCustomObject({ ...base(POSTGRES_SERVER), name }));
  return parseAs('PostgresServer', postgresServer, raw);
}

/** The name of a tenant's Secret: what status reports, else what spec asks, else <name>-db. */
export function secretNameOf(td: TenantDatabase): string {
  return td.status?.secretName ?? td.spec.secretName ?? `${td.metadata.name}-db`;
}

/**
 * The tenant's Secret, only when the TenantDatabase owns it: a Secret of that name written by
 * someone else (a Conflict) never hands out its values as the tenant's.
 */
export async function getTenantSecret(s: Session, td: TenantDatabase): Promise<k8s.V1Secret> {
  const name = secretNameOf(td);
  const namespace = td.metadata.namespace ?? s.namespace;
  let secret: k8s.V1Secret;
  try {
    secret = await s.call(() => s.core.readNamespacedSecret({ name, namespace }));
  } catch (err) {
    if (notFoundKind(err) === 'object')
      throw new CliError(
        `Secret "${name}" of TenantDatabase "${td.metadata.name}" does not exist yet in namespace "${namespace}" (see: kubectl tenantdb status ${td.metadata.name} -n ${namespace})`,
      );
    fail(s, err);
  }
  if (!ownedBy(secret, td.metadata.uid))
    throw new CliError(
      `Secret "${name}" in namespace "${namespace}" is not owned by TenantDatabase "${td.metadata.name}": refusing to use it`,
    );
  return secret;
}

/** Runs a read whose failure should be shown, not fatal: a missing right leaves a section empty. */
export async function attempt<T>(s: Session, read: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; reason: string }> {
  try {
    return { ok: true, value: await read() };
  } catch (err) {
    return { ok: false, reason: describeError(err, s.server) };
  }
}
