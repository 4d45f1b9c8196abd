/** The operator under test, as a real process running under its ServiceAccount's kubeconfig. */
import { join } from 'node:path';
import { ROOT, OPERATOR_NAMESPACE } from './cluster.js';
import { startProcess, type Proc } from './process.js';

export interface OperatorProcOptions {
  kubeconfig: string;
  logFile: string;
  resync?: string;
  identity?: string;
  extraArgs?: string[];
  /** Run the compiled operator (dist/, after `npm run build`), as the image does, instead of the sources through tsx. */
  built?: boolean;
  /** NODE_OPTIONS for the operator process alone (heap limits, say). */
  nodeOptions?: string;
  /** More environment of the operator process (MALLOC_ARENA_MAX, say). */
  env?: Record<string, string>;
}

export function startOperatorProcess(o: OperatorProcOptions): Proc {
  return startProcess(
    'operator',
    process.execPath,
    [
      ...(o.built ? [join(ROOT, 'dist/cli/main.js')] : ['--import', 'tsx', join(ROOT, 'src/cli/main.ts')]),
      'operator',
      `--kubeconfig=${o.kubeconfig}`,
      `--namespace=${OPERATOR_NAMESPACE}`,
      '--metrics-port=0',
      '--metrics-host=127.0.0.1',
      ...(o.resync ? [`--resync=${o.resync}`] : []),
      ...(o.extraArgs ?? []),
    ],
    o.logFile,
    {
      cwd: ROOT,
      env: {
        ...process.env,
        LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
        ...(o.identity ? { POD_NAME: o.identity } : {}),
        ...(o.nodeOptions !== undefined ? { NODE_OPTIONS: o.nodeOptions } : {}),
        ...o.env,
      },
    },
  );
}
