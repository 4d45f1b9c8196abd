import type { z } from 'zod';
import { GROUP, VERSION } from './common.js';
import { ipWhitelist, ipWhitelistSpec, ipWhitelistStatus } from './ipwhitelist.js';
import { postgresServer, postgresServerSpec, postgresServerStatus } from './postgresserver.js';
import { tenantDatabase, tenantDatabaseSpec, tenantDatabaseStatus } from './tenantdatabase.js';
import { tenantDatabasePlan, tenantDatabasePlanSpec, tenantDatabasePlanStatus } from './tenantdatabaseplan.js';
import { tenantGroup, tenantGroupSpec, tenantGroupStatus } from './tenantgroup.js';

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'date' | 'boolean';
  jsonPath: string;
  description: string;
  priority?: number;
}

export interface KindInfo {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  namespaced: boolean;
  description: string;
  spec: z.ZodType;
  status: z.ZodType;
  object: z.ZodType;
  printerColumns: PrinterColumn[];
}

const ready: PrinterColumn = {
  name: 'Ready',
  type: 'string',
  jsonPath: '.status.conditions[?(@.type=="Ready")].status',
  description: 'Whether the object is ready.',
};
const reason: PrinterColumn = {
  name: 'Reason',
  type: 'string',
  jsonPath: '.status.conditions[?(@.type=="Ready")].reason',
  description: 'Why the object is or is not ready.',
  priority: 1,
};
const age: PrinterColumn = {
  name: 'Age',
  type: 'date',
  jsonPath: '.metadata.creationTimestamp',
  description: 'Time since creation.',
};

export const POSTGRES_SERVER: KindInfo = {
  kind: 'PostgresServer',
  plural: 'postgresservers',
  singular: 'postgresserver',
  shortNames: ['pgs'],
  namespaced: false,
  description: 'A PostgreSQL server the operator may provision tenant databases on.',
  spec: postgresServerSpec,
  status: postgresServerStatus,
  object: postgresServer,
  printerColumns: [
    { name: 'Host', type: 'string', jsonPath: '.spec.host', description: 'Server host.' },
    { name: 'Version', type: 'string', jsonPath: '.status.version', description: 'Server version.' },
    { name: 'Tenants', type: 'integer', jsonPath: '.status.tenantCount', description: 'Tenant databases on it.' },
    ready,
    reason,
    age,
  ],
};

export const TENANT_DATABASE: KindInfo = {
  kind: 'TenantDatabase',
  plural: 'tenantdatabases',
  singular: 'tenantdatabase',
  shortNames: ['tdb'],
  namespaced: true,
  description: "A tenant's database (or schema), login role, pooler entry and connection Secret.",
  spec: tenantDatabaseSpec,
  status: tenantDatabaseStatus,
  object: tenantDatabase,
  printerColumns: [
    { name: 'Server', type: 'string', jsonPath: '.status.serverName', description: 'The PostgresServer in use.' },
    { name: 'Database', type: 'string', jsonPath: '.status.databaseName', description: 'The database name.' },
    { name: 'Secret', type: 'string', jsonPath: '.status.secretName', description: 'The connection Secret.', priority: 1 },
    {
      name: 'Migration',
      type: 'string',
      jsonPath: '.status.migration.phase',
      description: 'Where the migration of the current template stands.',
      priority: 1,
    },
    ready,
    reason,
    age,
  ],
};

export const IP_WHITELIST: KindInfo = {
  kind: 'IpWhitelist',
  plural: 'ipwhitelists',
  singular: 'ipwhitelist',
  shortNames: ['ipwl'],
  namespaced: true,
  description: "CIDRs allowed to log in to one tenant database; any list restricts the tenant to the lists' CIDRs.",
  spec: ipWhitelistSpec,
  status: ipWhitelistStatus,
  object: ipWhitelist,
  printerColumns: [
    { name: 'Tenant', type: 'string', jsonPath: '.spec.tenantDatabaseRef.name', description: 'The TenantDatabase.' },
    { name: 'Rules', type: 'integer', jsonPath: '.status.ruleCount', description: 'Live rules.' },
    {
      name: 'Applied',
      type: 'string',
      jsonPath: '.status.conditions[?(@.type=="Applied")].status',
      description: 'Whether the rules are enforced.',
    },
    age,
  ],
};

export const TENANT_GROUP: KindInfo = {
  kind: 'TenantGroup',
  plural: 'tenantgroups',
  singular: 'tenantgroup',
  shortNames: ['tg'],
  namespaced: true,
  description: "A live registry of a namespace's TenantDatabases (chosen by labels) in one Secret, for multi-tenant backends.",
  spec: tenantGroupSpec,
  status: tenantGroupStatus,
  object: tenantGroup,
  printerColumns: [
    { name: 'Secret', type: 'string', jsonPath: '.status.secretName', description: 'The registry Secret.' },
    { name: 'Members', type: 'integer', jsonPath: '.status.members', description: 'TenantDatabases listed.' },
    { name: 'Ready', type: 'integer', jsonPath: '.status.ready', description: 'Members that are Ready.', priority: 1 },
    {
      name: 'Migrated',
      type: 'integer',
      jsonPath: '.status.rollout.succeeded',
      description: 'Members whose migration of the current template succeeded.',
      priority: 1,
    },
    { ...ready, name: 'Synced' },
    reason,
    age,
  ],
};

export const TENANT_DATABASE_PLAN: KindInfo = {
  kind: 'TenantDatabasePlan',
  plural: 'tenantdatabaseplans',
  singular: 'tenantdatabaseplan',
  shortNames: ['tdbplan'],
  namespaced: true,
  description:
    'A request for a plan: the exact SQL, pooler and HBA changes the operator would make for a TenantDatabase spec, computed from the live server without changing anything. Deleted a while after it is answered.',
  spec: tenantDatabasePlanSpec,
  status: tenantDatabasePlanStatus,
  object: tenantDatabasePlan,
  printerColumns: [
    { name: 'Tenant', type: 'string', jsonPath: '.spec.tenantDatabase.name', description: 'The TenantDatabase planned for.' },
    {
      name: 'Planned',
      type: 'string',
      jsonPath: '.status.conditions[?(@.type=="Planned")].status',
      description: 'Whether the plan is computed.',
    },
    { name: 'Result', type: 'string', jsonPath: '.status.result.reason', description: 'Where the plan ends.' },
    age,
  ],
};

export const KINDS = [POSTGRES_SERVER, TENANT_DATABASE, IP_WHITELIST, TENANT_GROUP, TENANT_DATABASE_PLAN] as const;

export function apiPath(k: KindInfo, namespace?: string): string {
  const ns = k.namespaced && namespace ? `/namespaces/${namespace}` : '';
  return `/apis/${GROUP}/${VERSION}${ns}/${k.plural}`;
}
