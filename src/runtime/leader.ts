import * as k8s from '@kubernetes/client-node';
import { httpStatus } from '../kube/client.js';
import { errorMessage } from './errors.js';
import type { Logger } from './logger.js';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

export interface LeaderElector {
  /** Resolves once this replica leads. */
  acquired: Promise<void>;
  isLeader(): boolean;
  /** Stops renewing and hands the Lease back so another replica takes over at once. */
  release(): Promise<void>;
}

/**
 * Lease-based leader election in the manner of client-go's leaderelection: expiry is judged by
 * the local clock from the moment this replica last saw the Lease change, so clock skew between
 * replicas does not matter. Losing the Lease calls onLost; the caller exits, like controller-runtime.
 */
export function startLeaderElection(
  api: k8s.CoordinationV1Api,
  opts: LeaderElectionOptions,
  log: Logger,
  onLost: () => void,
): LeaderElector {
  let leading = false;
  let stopped = false;
  let lastRenew = 0;
  let observed: { rv: string | undefined; holder: string | undefined; renew: string | undefined; at: number } | undefined;
  let resolveAcquired!: () => void;
  const acquired = new Promise<void>((r) => (resolveAcquired = r));
  const durationSeconds = Math.ceil(opts.leaseDurationMs / 1000);

  const tryAcquireOrRenew = async (): Promise<boolean> => {
    const now = new k8s.V1MicroTime();
    let lease: k8s.V1Lease;
    try {
      lease = await api.readNamespacedLease({ name: opts.name, namespace: opts.namespace });
    } catch (err) {
      if (httpStatus(err) !== 404) throw err;
      await api.createNamespacedLease({
        namespace: opts.namespace,
        body: {
          metadata: { name: opts.name, namespace: opts.namespace },
          spec: {
            holderIdentity: opts.identity,
            leaseDurationSeconds: durationSeconds,
            acquireTime: now,
            renewTime: now,
            leaseTransitions: 0,
          },
        },
      });
      return true;
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity || undefined;
    const renew = spec.renewTime ? new Date(spec.renewTime).toISOString() : undefined;
    if (!observed || observed.rv !== lease.metadata?.resourceVersion || observed.holder !== holder || observed.renew !== renew) {
      observed = { rv: lease.metadata?.resourceVersion, holder, renew, at: Date.now() };
    }
    const theirDurationMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    const mine = holder === opts.identity;
    if (holder && !mine && Date.now() < observed.at + theirDurationMs) return false;
    lease.spec = {
      holderIdentity: opts.identity,
      leaseDurationSeconds: durationSeconds,
      acquireTime: mine && spec.acquireTime ? new k8s.V1MicroTime(spec.acquireTime) : now,
      renewTime: now,
      leaseTransitions: (spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
    };
    await api.replaceNamespacedLease({ name: opts.name, namespace: opts.namespace, body: lease });
    return true;
  };

  const loop = async () => {
    while (!stopped) {
      try {
        const ok = await tryAcquireOrRenew();
        if (ok) {
          lastRenew = Date.now();
          if (!leading) {
            leading = true;
            log.info({ lease: `${opts.namespace}/${opts.name}`, identity: opts.identity }, 'Became leader');
            resolveAcquired();
          }
        } else if (leading) {
          leading = false;
          log.error('Lease taken by another replica');
          onLost();
          return;
        }
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'Lease update failed');
      }
      if (leading && Date.now() - lastRenew > opts.renewDeadlineMs) {
        leading = false;
        log.error('Could not renew the Lease in time, stepping down');
        onLost();
        return;
      }
      await new Promise((r) => setTimeout(r, opts.retryPeriodMs));
    }
  };
  void loop();

  return {
    acquired,
    isLeader: () => leading,
    release: async () => {
      stopped = true;
      if (!leading) return;
      leading = false;
      try {
        const lease = await api.readNamespacedLease({ name: opts.name, namespace: opts.namespace });
        if (lease.spec?.holderIdentity !== opts.identity) return;
        lease.spec = { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: new k8s.V1MicroTime() };
        if (lease.spec.acquireTime) lease.spec.acquireTime = new k8s.V1MicroTime(lease.spec.acquireTime);
        await api.replaceNamespacedLease({ name: opts.name, namespace: opts.namespace, body: lease });
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'Could not release the Lease');
      }
    },
  };
}
