/**
 * A plan's pooler and HBA changes: one tenant's lines in the PgBouncer files and in the server's
 * pg_hba.conf tenant block, as they are rendered now and as they would be once the planned spec is
 * provisioned; the lines that go (-) and come (+). Verifiers are never shown.
 */
import type { PostgresServer } from '../../api/postgresserver.js';
import { postgresServer } from '../../api/postgresserver.js';
import type { TenantDatabase } from '../../api/tenantdatabase.js';
import { secretValue } from '../../kube/secrets.js';
import { POOLER_FILES, renderServerHba, renderTenantBlocks, type PoolerTenant, type ServerHbaTenant } from '../../pooler/render.js';
import type { OperatorContext } from '../context.js';
import { clientLimitOf, poolerTenants, serverHbaPlan, whitelistCidrs } from '../pooler-view.js';
import { activeLogin, loginRolesOf } from '../tenantdatabase/credentials.js';
import type { TenantNames } from '../tenantdatabase/resolve.js';

/** Stands in for a verifier not known yet (a new password): valid in form, never shown. */
const PLACEHOLDER_VERIFIER = `SCRAM-SHA-256$4096:${'A'.repeat(24)}$${'A'.repeat(44)}:${'A'.repeat(44)}`;
const redacted = (line: string) => line.replace(/"SCRAM-SHA-256\$[^"]*"/g, '<verifier>');

/** Lines of `before` not in `after` (-) and of `after` not in `before` (+), each with its file. */
export function lineChanges(file: string, before: string, after: string): string[] {
  const split = (s: string) => s.split('\n').filter(Boolean);
  const a = split(before);
  const b = split(after);
  const out: string[] = [];
  for (const l of a) if (!b.includes(l)) out.push(`${file}: - ${l}`);
  for (const l of b) if (!a.includes(l)) out.push(`${file}: + ${l}`);
  return out;
}

function render(server: PostgresServer, t: PoolerTenant | undefined) {
  if (!t) return { 'databases.ini': '', 'userlist.txt': '', 'hba.conf': '' };
  const [block] = renderTenantBlocks({
    serverHost: server.spec.host,
    serverPort: server.spec.port,
    tenants: [t],
    alwaysAllowedCidrs: server.spec.alwaysAllowedCidrs ?? [],
  });
  return block?.files ?? { 'databases.ini': '', 'userlist.txt': '', 'hba.conf': '' };
}

export function configChanges(
  ctx: OperatorContext,
  td: TenantDatabase,
  names: TenantNames,
  serverName: string,
): { pooler: string[]; serverHba: string[] } {
  const parsed = postgresServer.safeParse(ctx.servers.get(serverName));
  if (!parsed.success) return { pooler: [], serverHba: [] };
  const server = parsed.data;
  const ns = td.metadata.namespace ?? '';
  const cidrs = whitelistCidrs(ctx, ns, td.metadata.name);

  // The pooler: the alias as served now (only a tenant the server's catalog proves has one), and as
  // the spec would have it.
  const now = poolerTenants(ctx, server).find((t) => t.alias === names.alias);
  let next: PoolerTenant | undefined;
  if (server.spec.pooler && td.spec.pooling.enabled) {
    const secret = ctx.secrets.get(names.secret, ns);
    const ours = !!secret?.metadata?.ownerReferences?.some((r) => r.controller && r.uid === td.metadata.uid);
    const role = activeLogin(ours ? { username: secretValue(secret, 'username') ?? '' } : undefined, loginRolesOf(names.role));
    const limits = server.spec.pooler.clientLimits ?? { default: 200, max: 2000 };
    const p = td.spec.pooling;
    next = {
      alias: names.alias,
      database: names.database,
      role,
      verifier: now?.role === role ? now.verifier : PLACEHOLDER_VERIFIER,
      ...(now?.extraLogins ? { extraLogins: now.extraLogins } : {}),
      poolMode: p.poolMode,
      poolSize: p.poolSize,
      maxDbConnections: p.maxDbConnections,
      maxClientConnections: clientLimitOf(p.maxClientConnections, limits),
      allowedCidrs: cidrs,
      suspended: td.spec.suspend,
    };
  }
  const before = render(server, now);
  const after = render(server, next);
  const pooler: string[] = [];
  for (const f of POOLER_FILES) {
    const changed = lineChanges(f, before[f], after[f]).map(redacted);
    // A new verifier for the same role shows as a line removed and the same line added: one line says it.
    if (f === 'userlist.txt' && now && next && now.role === next.role && next.verifier === PLACEHOLDER_VERIFIER)
      pooler.push(`${f}: ~ "${next.role}" <verifier> (a new password)`);
    else pooler.push(...changed);
  }

  // The server's own pg_hba.conf (spec.hba.mode Agent): the tenant's block, when it has allow-lists.
  const serverHba: string[] = [];
  if (server.spec.hba?.mode === 'Agent') {
    const twin = loginRolesOf(names.role).twin;
    const current = serverHbaPlan(ctx, server).tenants.find((t) => t.role === names.role);
    const wanted: ServerHbaTenant | undefined =
      cidrs === undefined
        ? undefined
        : {
            role: names.role,
            ...(current?.otherRoles?.includes(twin) ? { otherRoles: [twin] } : {}),
            databases: names.schema !== undefined ? [names.database] : [names.database, ...(names.shadow ? [names.shadow] : [])],
            shared: names.schema !== undefined,
            allowedCidrs: cidrs,
          };
    const always = server.spec.alwaysAllowedCidrs ?? [];
    serverHba.push(
      ...lineChanges('pg_hba.conf', current ? renderServerHba([current], always) : '', wanted ? renderServerHba([wanted], always) : ''),
    );
  }
  return { pooler, serverHba };
}
