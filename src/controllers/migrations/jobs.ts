/** The one write the migration steps make to the Kubernetes API: creating a Job. */
import type * as k8s from '@kubernetes/client-node';
import { httpStatus } from '../../kube/client.js';
import type { OperatorContext } from '../context.js';
import { isJobOf } from './job.js';

/**
 * Creates the Job unless it exists. Its name is derived from the tenant and the template, so a
 * second create (the cache had not seen the first yet, another replica, a retried reconcile) finds
 * it and changes nothing. A Job of that name that the tenant does not control (someone made it by
 * hand) is 'foreign': it is never taken for the migration's run.
 */
export async function createMigrationJob(
  ctx: Pick<OperatorContext, 'clients'>,
  body: k8s.V1Job,
  tenantUid: string,
): Promise<'created' | 'exists' | 'foreign'> {
  const namespace = body.metadata?.namespace ?? '';
  try {
    await ctx.clients.batch.createNamespacedJob({ namespace, body });
    return 'created';
  } catch (err) {
    if (httpStatus(err) !== 409) throw err;
  }
  const found = await ctx.clients.batch.readNamespacedJob({ name: body.metadata?.name ?? '', namespace });
  return isJobOf(found, tenantUid) ? 'exists' : 'foreign';
}
