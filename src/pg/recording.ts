/**
 * Observe-only provisioning: the operator's own steps run against the live server through a session
 * that lets reads through and keeps every other statement instead of running it. What is kept is
 * the plan: the exact statements a managed reconcile would run now, in its order. Written by hand
 * because it wraps this project's own narrow Queryable (query alone), not a pg API.
 *
 * A statement is a read when it starts with SELECT, WITH, SHOW, VALUES or TABLE and calls none of
 * the functions that act (ending sessions, setting configuration, locks, sequences, large objects);
 * transaction control is neither run nor kept (nothing is written to commit). Passwords (SCRAM
 * verifiers) are never kept: `PASSWORD '…'` is shown as `PASSWORD <redacted>`.
 */
import type pg from 'pg';
import { RUN_TOGETHER, type Queryable } from './tenant-sql.js';

const READ = /^\s*(select|with|show|values|table)\b/i;
const ACTS =
  /\b(pg_terminate_backend|pg_cancel_backend|set_config|pg_(try_)?advisory\w*|nextval|setval|lo_\w+|pg_reload_conf|pg_rotate_logfile|pg_notify|txid_current\w*|pg_current_xact_id\w*|pg_stat_reset\w*|pg_switch_wal|pg_create\w*|pg_drop\w*|pg_promote|pg_replication_\w+|pg_logical_\w+|pg_backup_\w+|pg_start_backup|pg_stop_backup|pg_wal_replay_\w+|pg_log_backend_memory_contexts|pg_import_system_collations|pg_file_\w+|dblink\w*)"?\s*\(/i;
/** Locks, a new table, several statements: not reads, whatever they start with. */
const NOT_READ = /\binto\b|\bfor\s+(update|share|no\s+key\s+update|key\s+share)\b|;\s*\S/i;
const TRANSACTION = /^\s*(begin|commit|rollback|savepoint|release|start\s+transaction)\b/i;

export function isRead(text: string): boolean {
  const bare = text.replace(/'(?:[^']|'')*'/g, "''");
  return READ.test(text) && !ACTS.test(text) && !NOT_READ.test(bare) && !/\b(insert|update|delete|merge)\b\s/i.test(bare);
}

/** A statement as a plan shows it: one line, values in place of $n, no password. */
export function shown(text: string, values?: readonly unknown[]): string {
  let t = text.replace(/\s+/g, ' ').trim();
  if (values?.length)
    t = t.replace(/\$(\d+)/g, (m, n: string) => {
      const v = values[Number(n) - 1];
      return v === undefined ? m : typeof v === 'string' ? `'${v.replace(/'/g, "''")}'` : JSON.stringify(v);
    });
  // escapeLiteral doubles quotes and backslashes (and writes E'...' where there is a backslash): '' is the only escape.
  return t.replace(/PASSWORD\s+E?'(?:[^']|'')*'/gi, 'PASSWORD <redacted>');
}

export class Recorder {
  readonly statements: string[] = [];
  /** Changes a reconcile would make outside PostgreSQL (the Secret), in words. */
  readonly notes: string[] = [];
  /** Where a plan stopped early (a step needed an object the recorded statements would create). */
  cut: string | undefined;
  /** Whether the plan gives the tenant a new password (one the Secret does not hold). */
  newPassword = false;

  queryable(real: Queryable): Queryable & { release?: () => void } {
    const query = async <R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> => {
      if (isRead(text)) return real.query<R>(text, values);
      if (!TRANSACTION.test(text)) this.statements.push(shown(text, values));
      const none: pg.QueryResult<R> = { rows: [], rowCount: 0, command: '', oid: 0, fields: [] };
      return none;
    };
    return {
      query,
      // Statements meant to run together are kept one by one, each its own line of the plan.
      [RUN_TOGETHER]: async (statements: readonly string[]) => {
        for (const text of statements) await query(text);
      },
    };
  }

  /** A pool whose sessions record: `connect()` hands out a recording client over a real one. */
  pool(real: pg.Pool): pg.Pool {
    const q = this.queryable(real);
    return {
      query: (text: string, values?: unknown[]) => q.query(text, values),
      [RUN_TOGETHER]: q[RUN_TOGETHER],
      connect: async () => {
        const client = await real.connect();
        return Object.assign(this.queryable(client), { release: (err?: Error | boolean) => client.release(err) });
      },
    } as unknown as pg.Pool;
  }
}
