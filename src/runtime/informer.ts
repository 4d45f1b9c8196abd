import * as k8s from '@kubernetes/client-node';
import { errorMessage } from './errors.js';
import type { Logger } from './logger.js';

/**
 * An informer that keeps running: client-node's informer stops for good on any error other than
 * 410 Gone, so this one restarts it with capped exponential backoff. Handlers only enqueue keys.
 *
 * It also keeps indexes (as client-go's Indexer does): named functions from an object to the values
 * it is filed under, so that "the tenants of server X" is a lookup, not a scan of every tenant.
 */
export interface ResilientInformer<T extends k8s.KubernetesObject> {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** True once a list has completed since the last (re)start. */
  synced(): boolean;
  /** True while the watch is established (synced and not failed since): what /readyz reports. */
  watching(): boolean;
  list(): readonly T[];
  get(name: string, namespace?: string): T | undefined;
  /** Objects filed under `value` by the index `index`. */
  byIndex(index: string, value: string): T[];
}

export type Indexers<T> = Record<string, (obj: T) => readonly string[]>;

export interface InformerHandlers<T> {
  /** An object added or updated; `old` is the previous version this informer saw, if any. */
  onChange(obj: T, old: T | undefined): void;
  onDelete?(obj: T): void;
}

/**
 * Indexes over a cache, kept in step with it by `file` and `unfile`. Written by hand: client-node
 * has no indexer, and this is a few maps. An object's index values are computed again from its
 * previous version when it is refiled (indexers are pure), not kept beside it: a few maps of
 * arrays less for each of thousands of objects.
 */
export class IndexStore<T extends k8s.KubernetesObject> {
  private readonly byValue = new Map<string, Map<string, Map<string, T>>>();
  /** The last version of each object seen, for `old` in change handlers and to unfile it. */
  private readonly last = new Map<string, T>();

  constructor(private readonly indexers: Indexers<T>) {
    for (const name of Object.keys(indexers)) this.byValue.set(name, new Map());
  }

  static keyOf(obj: k8s.KubernetesObject): string {
    return `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
  }

  /** Files the object under its current index values; returns the previous version. */
  file(obj: T): T | undefined {
    const key = IndexStore.keyOf(obj);
    const old = this.last.get(key);
    this.last.set(key, obj);
    for (const [name, fn] of Object.entries(this.indexers)) {
      const index = this.byValue.get(name) ?? new Map<string, Map<string, T>>();
      const values = new Set(fn(obj));
      // Only the values it left are unfiled: the others are overwritten in place, so that the
      // maps of thousands of objects do not grow with deleted entries at every update.
      if (old) for (const v of fn(old)) if (!values.has(v)) this.unfileFrom(index, v, key);
      for (const v of values) {
        const bucket = index.get(v) ?? new Map<string, T>();
        index.set(v, bucket.set(key, obj));
      }
    }
    return old;
  }

  unfile(obj: T): void {
    const key = IndexStore.keyOf(obj);
    const old = this.last.get(key);
    if (!old) return;
    this.last.delete(key);
    for (const [name, fn] of Object.entries(this.indexers)) {
      const index = this.byValue.get(name);
      if (index) for (const v of fn(old)) this.unfileFrom(index, v, key);
    }
  }

  get(index: string, value: string): T[] {
    return [...(this.byValue.get(index)?.get(value)?.values() ?? [])];
  }

  private unfileFrom(index: Map<string, Map<string, T>>, value: string, key: string): void {
    const bucket = index.get(value);
    if (!bucket?.delete(key)) return;
    if (bucket.size === 0) index.delete(value);
  }
}

export function resilientInformer<T extends k8s.KubernetesObject>(
  kc: k8s.KubeConfig,
  path: string,
  listFn: () => Promise<k8s.KubernetesListObject<T>>,
  handlers: InformerHandlers<T>,
  log: Logger,
  labelSelector?: string,
  indexers: Indexers<T> = {},
  /** Cuts an object down, in place, to what the cache must hold (e.g. slimSecret). */
  slim?: (o: T) => void,
): ResilientInformer<T> {
  let hasSynced = false;
  let connected = false;
  const store = new IndexStore<T>(indexers);
  let stopped = false;
  let failures = 0;
  let restartTimer: NodeJS.Timeout | undefined;
  const wrappedList = async () => {
    const list = await listFn();
    hasSynced = true;
    connected = true;
    failures = 0;
    return list;
  };
  const informer = k8s.makeInformer<T>(kc, path, wrappedList, labelSelector);
  const changed = (o: T) => {
    // managedFields are most of an object's bytes and nothing here reads them: the cache holds
    // this very object, so dropping them here keeps thousands of objects small. A copy of the
    // metadata without them rather than `delete`: V8 turns an object that loses a property into a
    // hash table of its own (about 450 bytes more for each cached object).
    if (o.metadata?.managedFields) {
      const { managedFields: _, ...rest } = o.metadata;
      o.metadata = rest;
    }
    slim?.(o);
    handlers.onChange(o, store.file(o));
  };
  informer.on('add', changed);
  informer.on('update', changed);
  informer.on('delete', (o) => {
    store.unfile(o);
    (handlers.onDelete ?? ((x: T) => handlers.onChange(x, undefined)))(o);
  });
  informer.on('error', (err) => {
    connected = false;
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
    watching: () => hasSynced && connected && !stopped,
    list: () => informer.list(),
    get: (name, namespace) => informer.get(name, namespace),
    byIndex: (index, value) => store.get(index, value),
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
    watching: () => all.every((i) => i.watching()),
    list: () => all.flatMap((i) => i.list()),
    byIndex: (index, value) => all.flatMap((i) => i.byIndex(index, value)),
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
    watching: () => synced && !stopped,
    list: () => [...cache.values()],
    get: (name) => cache.get(name),
    byIndex: () => [],
  };
}

/**
 * A list function that reads `pageSize` objects at a time and cuts each page down with `slim` before
 * it asks for the next, so that the memory a list takes is bounded by one page of full objects, not
 * by everything the selector matches (a namespace's users may label objects the operator lists).
 * All pages come from one snapshot (the continue token), so the watch starts from its version.
 */
export function pagedList<T extends k8s.KubernetesObject>(
  fetchPage: (page: { limit: number; _continue?: string }) => Promise<k8s.KubernetesListObject<T>>,
  pageSize: number,
  slim: (o: T) => void,
): () => Promise<k8s.KubernetesListObject<T>> {
  return async () => {
    const items: T[] = [];
    let first: k8s.KubernetesListObject<T> | undefined;
    let token: string | undefined;
    do {
      const page = await fetchPage(token ? { limit: pageSize, _continue: token } : { limit: pageSize });
      for (const o of page.items) slim(o);
      items.push(...page.items);
      first ??= page;
      token = page.metadata?._continue || undefined;
    } while (token);
    const { _continue: _, ...metadata } = first?.metadata ?? {};
    return { ...first, metadata, items };
  };
}
