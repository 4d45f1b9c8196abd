/**
 * Whether tenants that use every connection they may can still lock the operator out. A pure
 * decision, tested in a table; the server reconcile feeds it what the catalog says.
 */
import type { ConditionInput } from '../../runtime/conditions.js';
import type { ConnectionSlots } from '../../pg/tenant-sql.js';

export function adminReserveCondition(
  slots: ConnectionSlots,
  tenantLimits: readonly number[],
  operatorSessions: number,
  admin: string,
): ConditionInput {
  const type = 'AdminReserve';
  if (slots.superuser) {
    return {
      type,
      status: 'True',
      reason: 'Superuser',
      message: `the admin is a superuser: superuser_reserved_connections (${slots.superuserReserved}) keep it connected`,
    };
  }
  if (slots.adminMayUseReserved && slots.reserved >= operatorSessions) {
    return {
      type,
      status: 'True',
      reason: 'ReservedConnections',
      message: `${admin} may use the ${slots.reserved} reserved_connections, at least the operator's ${operatorSessions} sessions`,
    };
  }
  const open = slots.maxConnections - slots.superuserReserved - slots.reserved;
  const sum = tenantLimits.reduce((n, l) => n + (l < 0 ? slots.maxConnections : l), 0);
  if (sum + operatorSessions <= open) {
    return {
      type,
      status: 'True',
      reason: 'WithinBudget',
      message: `tenant connection limits add up to ${sum}; with the operator's ${operatorSessions} sessions that fits the ${open} connections open to non-superusers`,
    };
  }
  return {
    type,
    status: 'False',
    reason: 'NoReserve',
    message:
      `tenant connection limits add up to ${sum}, more than the ${open - operatorSessions} the ${open} connections open to non-superusers leave beside the operator's ${operatorSessions}: ` +
      `tenants using all they may would lock the operator out. On PostgreSQL 16 or newer set reserved_connections to at least ${operatorSessions} and GRANT pg_use_reserved_connections TO ${admin}; otherwise lower connectionLimits`,
  };
}
