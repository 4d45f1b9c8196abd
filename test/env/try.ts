import { startSandbox } from './sandbox.js';
import { adminKubeConfig, apply } from './cluster.js';
const sb = await startSandbox('/tmp/sbx2');
const kc = adminKubeConfig(sb.cp);
try {
  await apply(kc, [
    {
      apiVersion: 'tenantdb.dev/v1alpha1',
      kind: 'TenantDatabase',
      metadata: { name: 'bad', namespace: 'default' },
      spec: { schemaName: 'abc' },
    } as any,
  ]);
  console.log('accepted');
} catch (e: any) {
  console.log('rejected', e.body);
}
const { execFileSync } = await import('node:child_process');
try {
  console.log(
    execFileSync(sb.cp.binDir + '/kubectl', ['--kubeconfig', sb.cp.adminKubeconfig, 'get', 'tdb', '-A', '-o', 'yaml'], {
      encoding: 'utf8',
    }),
  );
} catch (e: any) {
  console.log(e.stderr);
}
await sb.stop();
