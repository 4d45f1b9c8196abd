import { kindEnv } from '../cluster/kind-target.js';
import { containerIds } from '../cluster/target.js';
import { chartImageValues, splitImage } from '../env/node-tenantdb.js';

const kindVars = {
  KUBECONFIG: '/tmp/kind/kubeconfig',
  TENANTDB_E2E_APP_IMAGE: 'tenantdb:e2e',
  TENANTDB_E2E_PGBOUNCER_IMAGE: 'tenantdb-pgbouncer:e2e',
  TENANTDB_E2E_CLIENT_IMAGE: 'postgres:16',
  TENANTDB_E2E_PG_HOST: 'postgres.tenantdb-e2e-pg.svc',
  TENANTDB_E2E_PG_ADMIN_USER: 'tenantdb_admin',
  TENANTDB_E2E_PG_ADMIN_PASSWORD: 'secret',
  TENANTDB_E2E_PG_POD: 'tenantdb-e2e-pg/postgres',
};

describe('the cluster targets of the end-to-end tests', () => {
  test.each([
    ['tenantdb:0.1.0', { repository: 'tenantdb', tag: '0.1.0' }],
    ['localhost/tenantdb-pgbouncer:0.1.0', { repository: 'localhost/tenantdb-pgbouncer', tag: '0.1.0' }],
    ['localhost:5000/team/tenantdb:e2e', { repository: 'localhost:5000/team/tenantdb', tag: 'e2e' }],
  ])('image %s', (ref, want) => {
    expect(splitImage(ref)).toEqual(want);
  });

  test.each(['tenantdb', 'localhost:5000/tenantdb', 'tenantdb:'])('image %s without a tag is refused', (ref) => {
    expect(() => splitImage(ref)).toThrow(/has no tag/);
  });

  test('the chart points at both images and never pulls them', () => {
    expect(chartImageValues('tenantdb:e2e', 'tenantdb-pgbouncer:e2e')).toEqual([
      '--set=image.repository=tenantdb',
      '--set=image.tag=e2e',
      '--set=image.pullPolicy=Never',
      '--set=pooler.enabled=true',
      '--set=pooler.image.repository=tenantdb-pgbouncer',
      '--set=pooler.image.tag=e2e',
      '--set=pooler.image.pullPolicy=Never',
    ]);
  });

  test('container IDs of a pod status', () => {
    expect(containerIds('containerd://0a1b2c containerd://ffee00\n')).toEqual(['0a1b2c', 'ffee00']);
    expect(containerIds('')).toEqual([]);
    expect(() => containerIds('docker://0a1b')).toThrow(/not a containerd container ID/);
  });

  test('kind-e2e.sh hands over the cluster, the images and PostgreSQL', () => {
    expect(kindEnv(kindVars)).toEqual({
      kubeconfig: '/tmp/kind/kubeconfig',
      kubectl: 'kubectl',
      helm: 'helm',
      docker: 'docker',
      appImage: 'tenantdb:e2e',
      pgbouncerImage: 'tenantdb-pgbouncer:e2e',
      clientImage: 'postgres:16',
      postgres: {
        host: 'postgres.tenantdb-e2e-pg.svc',
        port: 5432,
        admin: { user: 'tenantdb_admin', password: 'secret' },
        namespace: 'tenantdb-e2e-pg',
        pod: 'postgres',
        superuser: 'postgres',
      },
    });
    expect(kindEnv({ ...kindVars, TENANTDB_E2E_PG_PORT: '6543', TENANTDB_HELM: '/opt/helm' })).toMatchObject({
      helm: '/opt/helm',
      postgres: { port: 6543 },
    });
  });

  test('a missing or wrong variable is named', () => {
    const { TENANTDB_E2E_CLIENT_IMAGE: _c, KUBECONFIG: _k, ...partial } = kindVars;
    expect(() => kindEnv(partial)).toThrow('the kind target needs KUBECONFIG, TENANTDB_E2E_CLIENT_IMAGE');
    expect(() => kindEnv({ ...kindVars, KUBECONFIG: '/a:/b' })).toThrow(/one file/);
    expect(() => kindEnv({ ...kindVars, TENANTDB_E2E_PG_PORT: '0' })).toThrow(/not a port/);
    expect(() => kindEnv({ ...kindVars, TENANTDB_E2E_PG_POD: 'postgres' })).toThrow(/<namespace>\/<pod>/);
  });
});
