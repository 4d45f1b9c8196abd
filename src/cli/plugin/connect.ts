/** url and psql: the tenant's connection, from its own Secret, read with the user's rights. */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { decodeSecretData } from '../../kube/secrets.js';
import { PROGRAM, examples, print, sessionOf } from './command.js';
import { connectionParams, connectionUrl, defaultPath, libpqEnv, passfileLine, type ConnectionPath, type UrlFormat } from './connection.js';
import { CliError } from './errors.js';
import { renderData } from './format.js';
import { getTenant, getTenantSecret, secretNameOf, type Session } from './session.js';
import { psqlInPod } from './pod-psql.js';

/** An image with psql, for --pod (the official PostgreSQL image; its client talks to servers of every supported major). */
const DEFAULT_PSQL_IMAGE = 'postgres:17-alpine';

interface PathOptions {
  direct?: boolean;
  pooled?: boolean;
}

function pathOf(opts: PathOptions, data: Record<string, string>): ConnectionPath {
  if (opts.direct && opts.pooled) throw new CliError('--direct and --pooled exclude each other');
  if (opts.pooled && defaultPath(data) === 'direct')
    throw new CliError('this TenantDatabase has no pooler (pooling is off, or its server has none): use --direct');
  return opts.direct ? 'direct' : opts.pooled ? 'pooled' : defaultPath(data);
}

async function tenantData(s: Session, name: string): Promise<{ data: Record<string, string>; secretName: string }> {
  const td = await getTenant(s, name);
  const secret = await getTenantSecret(s, td);
  return { data: decodeSecretData(secret.data), secretName: secretNameOf(td) };
}

const FORMATS: readonly UrlFormat[] = ['uri', 'jdbc', 'env'];

async function url(name: string, opts: PathOptions & { format: string }, cmd: Command): Promise<void> {
  if (!FORMATS.includes(opts.format as UrlFormat))
    throw new CliError(`--format must be one of ${FORMATS.join(', ')}, not "${opts.format}"`);
  const s = sessionOf(cmd);
  const { data, secretName } = await tenantData(s, name);
  const path = pathOf(opts, data);
  if (s.output === 'table') {
    print(connectionUrl(data, path, opts.format as UrlFormat, secretName));
    return;
  }
  print(
    renderData(s.output, {
      path,
      uri: connectionUrl(data, path, 'uri', secretName),
      jdbc: connectionUrl(data, path, 'jdbc', secretName),
      env: libpqEnv(connectionParams(data, path, secretName)),
    }),
  );
}

/** Variables of the caller's environment that would take the connection elsewhere or bring another password. */
const DROPPED_ENV = ['PGPASSWORD', 'PGPASSFILE', 'PGSERVICE', 'PGSERVICEFILE', 'PGHOSTADDR', 'PGSSLROOTCERT', 'DATABASE_URL'];

interface PsqlOptions extends PathOptions {
  psqlPath: string;
  pod?: boolean;
  image: string;
  podTimeout: string;
}

async function psql(name: string, args: string[], opts: PsqlOptions, cmd: Command): Promise<void> {
  const s = sessionOf(cmd);
  const startTimeout = Number(opts.podTimeout);
  if (!Number.isInteger(startTimeout) || startTimeout < 1 || startTimeout > 3600)
    throw new CliError(`--pod-timeout must be a number of seconds from 1 to 3600, not "${opts.podTimeout}"`);
  if (!opts.image.trim() || /\s/.test(opts.image)) throw new CliError(`--image "${opts.image}" is not an image name`);
  const { data, secretName } = await tenantData(s, name);
  const path = pathOf(opts, data);
  if (opts.pod) {
    process.exitCode = await psqlInPod(s, name, secretName, data, path, args, { image: opts.image, startTimeout });
    return;
  }
  const p = connectionParams(data, path, secretName);
  // The password goes to psql in a 0600 password file of a private folder, removed afterwards:
  // never in its arguments (ps shows them) nor in its environment.
  const dir = mkdtempSync(join(tmpdir(), 'kubectl-tenantdb-'));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  process.once('exit', cleanup);
  try {
    const passfile = join(dir, 'pgpass');
    writeFileSync(passfile, passfileLine(p), { mode: 0o600 });
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const k of DROPPED_ENV) delete env[k];
    const { PGPASSWORD: _omitted, ...connection } = libpqEnv(p);
    Object.assign(env, connection, { PGPASSFILE: passfile, PGAPPNAME: env.PGAPPNAME ?? 'kubectl-tenantdb' });
    if (data['ca.crt']) {
      const ca = join(dir, 'ca.crt');
      writeFileSync(ca, data['ca.crt'], { mode: 0o600 });
      env.PGSSLROOTCERT = ca;
    }
    const code = await new Promise<number>((resolve, reject) => {
      const child = spawn(opts.psqlPath, args, { stdio: 'inherit', env });
      // Ctrl-C belongs to psql (it cancels the running query); termination is passed on.
      const ignore = () => undefined;
      const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
      const onTerm = forward('SIGTERM');
      const onHup = forward('SIGHUP');
      process.on('SIGINT', ignore);
      process.on('SIGQUIT', ignore);
      process.on('SIGTERM', onTerm);
      process.on('SIGHUP', onHup);
      const done = () => {
        process.off('SIGINT', ignore);
        process.off('SIGQUIT', ignore);
        process.off('SIGTERM', onTerm);
        process.off('SIGHUP', onHup);
      };
      child.once('error', (err: NodeJS.ErrnoException) => {
        done();
        reject(
          err.code === 'ENOENT'
            ? new CliError(`${opts.psqlPath} not found: install the PostgreSQL client (psql) or pass --psql-path`)
            : new CliError(`cannot run ${opts.psqlPath}: ${err.message}`),
        );
      });
      child.once('exit', (c, signal) => {
        done();
        resolve(c ?? (signal === 'SIGINT' ? 130 : 1));
      });
    });
    process.exitCode = code;
  } finally {
    cleanup();
    process.off('exit', cleanup);
  }
}

const pathOptions = (cmd: Command) =>
  cmd
    .option('--direct', 'straight to PostgreSQL (for migrations and admin work)')
    .option('--pooled', 'through PgBouncer (the default when the tenant has a pooler)');

export function registerConnectCommands(program: Command): void {
  examples(
    pathOptions(
      program
        .command('url')
        .description(
          "Print a connection URL of a TenantDatabase from its Secret: a postgresql:// URI, a JDBC URL, or libpq's environment. It contains the password.",
        )
        .argument('<name>', 'the TenantDatabase'),
    )
      .option('--format <format>', 'uri, jdbc or env (export lines for a shell)', 'uri')
      .action((name: string, opts: PathOptions & { format: string }, cmd: Command) => url(name, opts, cmd)),
    [
      ['the URL applications use (pooled when the tenant has a pooler)', `${PROGRAM} url orders -n team-a`],
      ['the direct URL, for migrations', `${PROGRAM} url orders -n team-a --direct`],
      ['a JDBC URL through the pooler', `${PROGRAM} url orders -n team-a --pooled --format jdbc`],
      ["libpq's variables in this shell", `eval "$(${PROGRAM} url orders -n team-a --format env)"`],
    ],
  );
  examples(
    pathOptions(
      program
        .command('psql')
        .description(
          'Run psql on this machine as the tenant, with the credentials of its Secret (the password goes through a temporary 0600 password file, never the command line). Arguments after -- go to psql.',
        )
        .argument('<name>', 'the TenantDatabase')
        .argument('[psql-args...]', 'arguments for psql, after --'),
    )
      .option('--psql-path <path>', 'the psql program to run', 'psql')
      .option(
        '--pod',
        "run psql in a short-lived pod of the tenant's namespace instead, so the network and the allow-list are its workloads' (the pod reads the password from the Secret; it is deleted when psql ends)",
      )
      .option('--image <image>', 'the image of that pod (it must have psql)', DEFAULT_PSQL_IMAGE)
      .option('--pod-timeout <seconds>', 'how long to wait for the pod to start', '120')
      .action((name: string, args: string[], opts: PsqlOptions, cmd: Command) => psql(name, args, opts, cmd)),
    [
      ['an interactive session, through the pooler when there is one', `${PROGRAM} psql orders -n team-a`],
      ['one query, straight to PostgreSQL', `${PROGRAM} psql orders -n team-a --direct -- -Atc 'select current_user'`],
      ["from a pod in the tenant's namespace (its network, its allow-list)", `${PROGRAM} psql orders -n team-a --pod`],
      ['a script from this machine, run in such a pod', `${PROGRAM} psql orders -n team-a --pod -- -v ON_ERROR_STOP=1 < migrate.sql`],
    ],
  );
}
