import * as k8s from '@kubernetes/client-node';
import { errorMessage } from './errors.js';
import type { Logger } from './logger.js';

/**
 * An informer that keeps running: client-node's informer stops for good on any error other than
 * 410 Gone, so this one restarts it with capped exponential backoff. Handlers only enqueue keys.
 */
export interface ResilientInformer<T extends k8s.KubernetesObject> {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** True once a list has completed since the last (re)start. */
  synced(): boolean;
  list(): readonly T[];
  get(name: string, namespace?: string): T | undefined;
}

export interface InformerHandlers<T> {
  onChange(obj: T): void;
  onDelete?(obj: T): void;
}

export function resilientInformer<T extends k8s.KubernetesObject>(
  kc: k8s.KubeConfig,
  path: string,
  listFn: () => Promise<k8s.KubernetesListObject<T>>,
  handlers: InformerHandlers<T>,
  log: Logger,
  labelSelector?: string,
): ResilientInformer<T> {
  let hasSynced = false;
  let stopped = false;
  let failures = 0;
  let restartTimer: NodeJS.Timeout | undefined;
  const wrappedList = async () => {
    const list = await listFn();
    hasSynced = true;
    failures = 0;
    return list;
  };
  const informer = k8s.makeInformer<T>(kc, path, wrappedList, labelSelector);
  informer.on('add', (o) => handlers.onChange(o));
  informer.on('update', (o) => handlers.onChange(o));
  informer.on('delete', (o) => (handlers.onDelete ?? handlers.onChange)(o));
  informer.on('error', (err) => {
    if (stopped || restartTimer) return; // one restart at a time
    failures += 1;
    const delay = Math.min(30_000, 500 * 2 ** Math.min(failures, 6));
    log.warn({ path, err: errorMessage(err), retryInMs: delay }, 'Watch failed, restarting informer');
    restartTimer = setTimeout(() => {
      restartTimer = undefined;
      if (stopped) return;
      informer.start().catch(() => undefined); // a failed start emits 'error' again
    }, delay);
  });
  return {
    start: async () => {
      stopped = false;
      await informer.start();
    },
    stop: async () => {
      stopped = true;
      if (restartTimer) clearTimeout(restartTimer);
      await informer.stop();
    },
    synced: () => hasSynced,
    list: () => informer.list(),
    get: (name, namespace) => informer.get(name, namespace),
  };
}

/** One view over informers of the same kind in several namespaces (an operator limited to some). */
export function unionInformer<T extends k8s.KubernetesObject>(parts: ReadonlyMap<string, ResilientInformer<T>>): ResilientInformer<T> {
  const all = [...parts.values()];
  return {
    start: async () => {
      await Promise.all(all.map((i) => i.start()));
    },
    stop: async () => {
      await Promise.all(all.map((i) => i.stop()));
    },
    synced: () => all.every((i) => i.synced()),
    list: () => all.flatMap((i) => i.list()),
    get: (name, namespace) => (namespace === undefined ? undefined : parts.get(namespace)?.get(name, namespace)),
  };
}

/**
 * Named namespaces read one by one every `intervalMs`, for an operator whose RBAC may `get` only
 * those (a watch of single cluster-scoped objects by name needs more than client-node's informer
 * offers). Calls onChange for each namespace read; a missing or forbidden one is absent.
 */
export function namespacePoller(
  core: k8s.CoreV1Api,
  names: readonly string[],
  onChange: (ns: k8s.V1Namespace) => void,
  log: Logger,
  intervalMs = 30_000,
): ResilientInformer<k8s.V1Namespace> {
  const cache = new Map<string, k8s.V1Namespace>();
  let synced = false;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const poll = async () => {
    for (const name of names) {
      try {
        const ns = await core.readNamespace({ name });
        cache.set(name, ns);
        onChange(ns);
      } catch (err) {
        cache.delete(name);
        log.warn({ namespace: name, err: errorMessage(err) }, 'Cannot read a watched namespace');
      }
    }
    synced = true;
  };
  const loop = async () => {
    await poll().catch(() => undefined);
    if (!stopped) timer = setTimeout(() => void loop(), intervalMs).unref();
  };
  return {
    start: async () => {
      stopped = false;
      await loop();
    },
    stop: async () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
    synced: () => synced,
    list: () => [...cache.values()],
    get: (name) => cache.get(name),
  };
}
