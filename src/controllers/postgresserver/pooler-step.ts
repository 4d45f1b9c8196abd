/**
 * The PostgresServer reconcile's pooler and HBA step: renders what pooler-plan.ts decided and writes
 * it into the server's config Secrets, for the agents beside PgBouncer and beside PostgreSQL; returns
 * what the agents reported for the current bytes, which the reconcile turns into conditions.
 */
import type { PostgresServer } from '../../api/postgresserver.js';
import { HBA_KEY } from '../../pooler/contract.js';
import { renderServerHba } from '../../pooler/render.js';
import type { OperatorContext } from '../context.js';
import { DEFAULT_POOLER_ADMIN_USER, loadPoolerAdmin } from '../pooler-view.js';
import { poolerConfigRef, serverHbaRef, writeOwnedConfig, type PoolerConfigState } from './config-secrets.js';
import { poolerTenants, serverHbaPlan } from './pooler-plan.js';
import { writePoolerShards, type ShardedConfigState } from './pooler-shards.js';

/** Renders the server's pooler config and writes its shards and index where the bytes differ. */
export async function ensurePoolerConfig(ctx: OperatorContext, server: PostgresServer): Promise<ShardedConfigState> {
  const input = {
    serverHost: server.spec.host,
    serverPort: server.spec.port,
    tenants: poolerTenants(ctx, server),
    alwaysAllowedCidrs: server.spec.alwaysAllowedCidrs ?? [],
  };
  const admin = await loadPoolerAdmin(ctx, server);
  const reserved = new Set([DEFAULT_POOLER_ADMIN_USER, ...(admin.ok ? [admin.value.user] : [])]);
  return writePoolerShards(ctx, server, poolerConfigRef(server, ctx.config.namespace), input, ctx.config.poolerShardBytes, reserved);
}

/** Writes the tenant block of a self-hosted server's pg_hba.conf for its agent; reports what the agent did. */
export async function ensureServerHba(ctx: OperatorContext, server: PostgresServer): Promise<PoolerConfigState> {
  const ref = serverHbaRef(server, ctx.config.namespace);
  const { tenants } = serverHbaPlan(ctx, server);
  const files = { [HBA_KEY]: renderServerHba(tenants, server.spec.alwaysAllowedCidrs ?? []) };
  return writeOwnedConfig(ctx, server, ref, files, 'server HBA rules');
}
