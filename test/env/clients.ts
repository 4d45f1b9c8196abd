/**
 * Database clients other than node-pg, run as their users run them: a process of their own with
 * the tenant Secret's keys in its environment (as a container's `envFrom` gives them). The Go ones
 * are programs under test/clients, built and cached by scripts/build-clients.sh; pgjdbc is Debian's
 * jar (libpostgresql-jdbc-java, which scripts/setup.sh installs) under a single-source-file launch.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './cluster.js';

export const PGJDBC_JAR = '/usr/share/java/postgresql.jar';

/** Runs a program with `env` on top of the test's environment: what it printed, or an error that holds its stderr. */
export function runClient(cmd: string, args: string[], env: Record<string, string>, timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, out) =>
      err ? reject(new Error(err.message, { cause: err })) : resolve(out.trim()),
    ),
  );
}

/** The path of a Go client's binary: the cached build of its current sources (built first when missing). */
export async function goClient(name: string): Promise<string> {
  const out = await runClient('bash', [join(ROOT, 'scripts/build-clients.sh'), name], {}, 600_000);
  return out.split('\n').pop() ?? '';
}

/** test/clients/pgjdbc/Main.java in a JVM with pgjdbc on the class path; what it printed. */
export function runPgjdbc(env: Record<string, string>): Promise<string> {
  return runClient('java', ['-cp', PGJDBC_JAR, join(ROOT, 'test/clients/pgjdbc/Main.java')], env);
}
