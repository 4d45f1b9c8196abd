import { z } from 'zod';
import { cidr, conditions, k8sName, objectMeta } from './common.js';

export const ipWhitelistSpec = z
  .object({
    tenantDatabaseRef: z
      .object({ name: k8sName('tenantDatabaseRef.name').describe('Name of the TenantDatabase in the same namespace.') })
      .describe('The TenantDatabase whose logins this list restricts.'),
    entries: z
      .array(
        z
          .object({
            cidr: cidr.describe('An IPv4 or IPv6 CIDR that may log in, e.g. 203.0.113.0/24 or 2001:db8::/48.'),
            description: z.string().max(256).optional().describe('Why this CIDR is allowed.'),
          })
          .describe('One allowed CIDR.'),
      )
      .min(1)
      .max(256)
      .describe('The CIDRs allowed to log in to the tenant database.'),
  })
  .describe('An allow-list of client addresses for one tenant database.');

export const ipWhitelistStatus = z
  .object({
    conditions,
    observedGeneration: z.number().int().optional().describe('The generation the status was computed for.'),
    ruleCount: z.number().int().optional().describe('How many access rules of this list are live.'),
  })
  .describe('The observed state of the allow-list.');

export const ipWhitelist = z.object({
  apiVersion: z.string(),
  kind: z.literal('IpWhitelist'),
  metadata: objectMeta,
  spec: ipWhitelistSpec,
  status: ipWhitelistStatus.optional(),
});
export type IpWhitelist = z.infer<typeof ipWhitelist>;
