/**
 * A reconcile as a list of named steps (as Cluster API's machine controller reads as its phases).
 * A step returns undefined to go on, or the result that ends this reconcile: a refusal for status,
 * a wait. What a step throws ends the reconcile too, and the logs say in which step.
 */
import type { Logger } from './logger.js';

export interface Step<R> {
  name: string;
  run(): Promise<R | undefined>;
}

export const step = <R>(name: string, run: () => Promise<R | undefined>): Step<R> => ({ name, run });

export async function runSteps<R>(steps: readonly Step<R>[], log: Logger): Promise<R | undefined> {
  for (const s of steps) {
    let out: R | undefined;
    try {
      out = await s.run();
    } catch (err) {
      log.debug({ step: s.name }, 'Step failed');
      if (err && typeof err === 'object' && !('step' in err)) Object.assign(err, { step: s.name });
      throw err;
    }
    if (out !== undefined) {
      log.debug({ step: s.name }, 'Reconcile ends at this step');
      return out;
    }
  }
  return undefined;
}
