/**
 * A plan's pooler and HBA changes: one tenant's lines in the PgBouncer files and in the server's
 * pg_hba.conf tenant block, as they are rendered now and as they would be once the planned spec is
 * provisioned; the lines that go (-) and come (+). Verifiers are never shown.
 */
import type { PostgresServer } from '../../api/postgresserver.js';
import { postgresServer } from '../../api/postgresserver.js';
import type { TenantDatabase } from '../../api/tenantdatabase.js';
import { secretValue } from '../../kube/secrets.js';
import { POOLER_FILES, renderServerHba, renderTenantBlocks, type PoolerTenant } from '../../pooler/render.js';
import type { OperatorContext } from '../context.js';
import {
  clientLimitOf,
  planServerHba,
  poolerTenants,
  serverHbaCandidates,
  whitelistCidrs,
  type ServerHbaCandidate,
} from '../pooler-view.js';
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
  newPassword: boolean,
): { pooler: string[]; serverHba: string[] } {
  const parsed = postgresServer.safeParse(ctx.servers.get(serverName));
  if (!parsed.success) return { pooler: [], serverHba: [] };
  const server = parsed.data;
  const ns = td.metadata.namespace ?? '';
  const cidrs = whitelistCidrs(ctx, ns, td.metadata.name);
  const always = server.spec.alwaysAllowedCidrs ?? [];
  // What the platform set and a team may not read (the server's private address, the networks it
  // always allows) is named, not shown.
  const hidden = (line: string) => {
    let out = line.split(`host=${server.spec.host} port=${server.spec.port} `).join(`host=<PostgresServer ${serverName}> `);
    for (const c of always) out = out.split(` ${c} `).join(' <alwaysAllowedCidrs> ');
    return out;
  };
  const shown = (lines: string[]) => [...new Set(lines.map(hidden))];

  // The pooler: the alias as served now (only a tenant the server's catalog proves has one), and as
  // the spec would have it.
  const now = poolerTenants(ctx, server).find((t) => t.alias === names.alias);
  // Its login roles as its server's catalog shows them (a twin of an earlier release keeps its name).
  const logins = loginRolesOf(names.role, ctx.markers.get(serverName)?.get(td.metadata.uid)?.roles);
  let next: PoolerTenant | undefined;
  if (server.spec.pooler && td.spec.pooling.enabled) {
    const secret = ctx.secrets.get(names.secret, ns);
    const ours = !!secret?.metadata?.ownerReferences?.some((r) => r.controller && r.uid === td.metadata.uid);
    const role = activeLogin(ours ? { username: secretValue(secret, 'username') ?? '' } : undefined, logins);
    const limits = server.spec.pooler.clientLimits ?? { default: 200, max: 2000 };
    const p = td.spec.pooling;
    next = {
      alias: names.alias,
      database: names.database,
      role,
      verifier: now?.role === role && !newPassword ? now.verifier : PLACEHOLDER_VERIFIER,
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
    const changed = lineChanges(f, before[f], after[f]);
    // A new verifier for the same role shows as a line removed and the same line added: one line says it.
    if (f === 'userlist.txt' && now && next && now.role === next.role && now.verifier !== next.verifier && !next.suspended)
      pooler.push(`${f}: ~ "${next.role}" <verifier> (a new password)`);
    else pooler.push(...shown(changed.map(redacted)));
  }

  // The server's own pg_hba.conf (spec.hba.mode Agent): the tenant's block as the server would
  // render it, budget and all, with this tenant's planned entry in place of its current one.
  const serverHba: string[] = [];
  if (server.spec.hba?.mode === 'Agent') {
    const candidates = serverHbaCandidates(ctx, server);
    const twin = logins.twin;
    const mine = candidates.find((t) => t.role === names.role);
    const others = candidates.filter((t) => t !== mine);
    const withTwin = td.spec.passwordRotation.strategy === 'Overlap' || !!mine?.otherRoles?.includes(twin);
    const planned: ServerHbaCandidate[] =
      cidrs === undefined
        ? []
        : [
            {
              namespace: ns,
              role: names.role,
              ...(withTwin ? { otherRoles: [twin] } : {}),
              databases: names.schema !== undefined ? [names.database] : [names.database, ...(names.shadow ? [names.shadow] : [])],
              shared: names.schema !== undefined,
              allowedCidrs: cidrs,
              created: mine?.created ?? new Date().toISOString(),
            },
          ];
    const block = (list: ServerHbaCandidate[]) => {
      const t = planServerHba(list, always).tenants.find((x) => x.role === names.role);
      return t ? renderServerHba([t], always) : '';
    };
    serverHba.push(...shown(lineChanges('pg_hba.conf', block(candidates), block([...others, ...planned]))));
  }
  return { pooler, serverHba };
}
