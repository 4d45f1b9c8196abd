import * as k8s from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import https from 'node:https';
import tls from 'node:tls';
import { GROUP, VERSION } from '../api/common.js';
import type { KindInfo } from '../api/kinds.js';

export interface KubeClients {
  kc: k8s.KubeConfig;
  custom: k8s.CustomObjectsApi;
  core: k8s.CoreV1Api;
  coordination: k8s.CoordinationV1Api;
  /** Migration Jobs (src/controllers/migrations/). */
  batch: k8s.BatchV1Api;
  /**
   * A read of a Secret a PostgresServer names (admin, CA, pooler admin), shared by every caller of
   * the next SHARED_READ_MS: each tenant's reconcile needs them and they rarely change, so a burst of
   * tenants costs a few reads instead of several each. A failed read is not kept.
   */
  sharedSecret(namespace: string, name: string): Promise<k8s.V1Secret>;
}

const SHARED_READ_MS = 2000;

export function loadKubeConfig(path?: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}

/**
 * The kubeconfig's authentication with connections kept alive. client-node (1.4) builds a new
 * https.Agent for every request (KubeConfig.applySecurityAuthentication), so every API call pays
 * a TLS handshake and a new TLS context: in bench:provision that was the largest part of the
 * operator's CPU. Here the kubeconfig still applies its headers on every request (a token file
 * that rotates is read again), and its fresh agent is swapped for one keep-alive agent per TLS
 * identity (CA, client certificate and key, verification, server name), made once with a TLS
 * context of its own. Proxy agents are left as client-node makes them. No option of client-node
 * does this, hence by hand.
 */
export function keepAliveAuthentication(kc: k8s.KubeConfig): k8s.SecurityAuthentication {
  const agents = new Map<string, https.Agent>();
  return {
    getName: () => 'kubeconfig authentication, connections kept alive',
    applySecurityAuthentication: async (context) => {
      await kc.applySecurityAuthentication(context);
      const fresh = context.getAgent();
      if (!fresh || fresh.constructor !== https.Agent) return;
      const o = fresh.options;
      const h = createHash('sha256');
      for (const part of [o.ca, o.cert, o.key, o.pfx, o.passphrase, String(o.rejectUnauthorized), o.servername ?? ''])
        for (const x of Array.isArray(part) ? part : [part])
          h.update(typeof x === 'string' || Buffer.isBuffer(x) ? x : JSON.stringify(x ?? null)).update('\0');
      const key = h.digest('base64');
      let agent = agents.get(key);
      if (!agent) {
        // A new identity (a rotated client certificate): the old agent's connections go once the
        // requests on them have had time to end.
        for (const old of agents.values()) setTimeout(() => old.destroy(), 60_000).unref();
        agents.clear();
        const { ca, cert, key: privateKey, pfx, passphrase } = o;
        const secureContext = tls.createSecureContext({ ca, cert, key: privateKey, pfx, passphrase });
        agent = new https.Agent({ ...o, secureContext, keepAlive: true, maxFreeSockets: 16 });
        agents.set(key, agent);
      }
      context.setAgent(agent);
    },
  };
}

/** An API client of the given kind on the kubeconfig's current cluster, connections kept alive. */
export function makeApiClient<T>(kc: k8s.KubeConfig, api: new (config: k8s.Configuration) => T, auth = keepAliveAuthentication(kc)): T {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig names no current cluster');
  return new api(k8s.createConfiguration({ baseServer: new k8s.ServerConfiguration(cluster.server, {}), authMethods: { default: auth } }));
}

export function makeClients(kc: k8s.KubeConfig): KubeClients {
  const auth = keepAliveAuthentication(kc);
  const core = makeApiClient(kc, k8s.CoreV1Api, auth);
  const reads = new Map<string, { at: number; secret: Promise<k8s.V1Secret> }>();
  const sharedSecret = (namespace: string, name: string): Promise<k8s.V1Secret> => {
    const key = `${namespace}/${name}`;
    const now = Date.now();
    const hit = reads.get(key);
    if (hit && now - hit.at < SHARED_READ_MS) return hit.secret;
    for (const [k, v] of reads) if (now - v.at >= SHARED_READ_MS) reads.delete(k);
    const secret = core.readNamespacedSecret({ name, namespace });
    reads.set(key, { at: now, secret });
    secret.catch(() => reads.delete(key));
    return secret;
  };
  return {
    kc,
    custom: makeApiClient(kc, k8s.CustomObjectsApi, auth),
    core,
    coordination: makeApiClient(kc, k8s.CoordinationV1Api, auth),
    batch: makeApiClient(kc, k8s.BatchV1Api, auth),
    sharedSecret,
  };
}

export const mergePatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);

export function httpStatus(err: unknown): number | undefined {
  if (err instanceof k8s.ApiException) return err.code;
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'number') {
    return (err as { code: number }).code;
  }
  return undefined;
}

/** Narrow access to one custom resource kind. */
export interface CustomResourceApi {
  get(name: string, namespace?: string): Promise<unknown>;
  list(namespace?: string): Promise<{ items: unknown[]; metadata?: { resourceVersion?: string } }>;
  patchMeta(name: string, namespace: string | undefined, patch: object): Promise<unknown>;
  patchStatus(name: string, namespace: string | undefined, status: object): Promise<unknown>;
}

export function customResourceApi(c: KubeClients, kind: KindInfo): CustomResourceApi {
  const base = { group: GROUP, version: VERSION, plural: kind.plural };
  return {
    get: (name, namespace) =>
      kind.namespaced
        ? c.custom.getNamespacedCustomObject({ ...base, namespace: namespace ?? '', name })
        : c.custom.getClusterCustomObject({ ...base, name }),
    list: async (namespace) =>
      (kind.namespaced && namespace
        ? await c.custom.listNamespacedCustomObject({ ...base, namespace })
        : await c.custom.listClusterCustomObject(base)) as { items: unknown[] },
    patchMeta: (name, namespace, patch) =>
      kind.namespaced
        ? c.custom.patchNamespacedCustomObject({ ...base, namespace: namespace ?? '', name, body: patch }, mergePatch)
        : c.custom.patchClusterCustomObject({ ...base, name, body: patch }, mergePatch),
    patchStatus: (name, namespace, status) =>
      kind.namespaced
        ? c.custom.patchNamespacedCustomObjectStatus({ ...base, namespace: namespace ?? '', name, body: { status } }, mergePatch)
        : c.custom.patchClusterCustomObjectStatus({ ...base, name, body: { status } }, mergePatch),
  };
}
