import type * as k8s from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { errorMessage } from './errors.js';
import type { Logger } from './logger.js';

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string | undefined;
  uid: string;
}

export interface EventRecorder {
  normal(obj: ObjectRef, reason: string, message: string): void;
  warning(obj: ObjectRef, reason: string, message: string): void;
}

/** Longer Event messages are cut to this many characters. */
export const EVENT_MESSAGE_MAX = 1024;

/**
 * `head` and `tail` as one Event message: where they do not fit, the head is shortened (and ends
 * in an ellipsis) so that the tail, the part a reader looks for, is kept whole.
 */
export function messageEndingWith(head: string, tail: string): string {
  if (head.length + tail.length <= EVENT_MESSAGE_MAX) return head + tail;
  return cutMessage(`${cutAt(head, EVENT_MESSAGE_MAX - tail.length - 1)}\u2026${tail}`);
}

/** The first `max` UTF-16 units of `s`, one fewer where the last would be half of a character outside the BMP. */
export function cutAt(s: string, max: number): string {
  if (max <= 0) return '';
  if (s.length <= max) return s;
  const last = s.charCodeAt(max - 1);
  return s.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}

/** A message within the Event limit, never ending in half a character. */
export function cutMessage(message: string): string {
  return cutAt(message, EVENT_MESSAGE_MAX);
}

/**
 * Kubernetes Events, the audit trail of every change the operator makes. Recording is
 * fire-and-forget: a failed Event is logged and never fails a reconcile. Events of
 * cluster-scoped objects go to the `default` namespace, where kubectl describe finds them.
 */
export function eventRecorder(core: k8s.CoreV1Api, component: string, log: Logger): EventRecorder {
  const host = process.env.POD_NAME ?? process.env.HOSTNAME ?? 'local';
  const record = (type: 'Normal' | 'Warning', obj: ObjectRef, reason: string, message: string) => {
    const namespace = obj.namespace ?? 'default';
    const now = new Date();
    const event: k8s.CoreV1Event = {
      metadata: { name: `${obj.name}.${now.getTime().toString(16)}${randomBytes(3).toString('hex')}`, namespace },
      involvedObject: {
        apiVersion: obj.apiVersion,
        kind: obj.kind,
        name: obj.name,
        uid: obj.uid,
        ...(obj.namespace ? { namespace: obj.namespace } : {}),
      },
      type,
      reason,
      message: cutMessage(message),
      source: { component, host },
      reportingComponent: component,
      reportingInstance: host,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    core.createNamespacedEvent({ namespace, body: event }).catch((err: unknown) => {
      log.warn({ reason, err: errorMessage(err) }, 'Could not record event');
    });
  };
  return {
    normal: (obj, reason, message) => record('Normal', obj, reason, message),
    warning: (obj, reason, message) => record('Warning', obj, reason, message),
  };
}
