/**
 * whitelist add|rm|list: the IpWhitelists of one tenant. add puts CIDRs into one IpWhitelist (by
 * default <tenant>-kubectl, created when missing); rm takes CIDRs out of the tenant's lists and
 * deletes a list left empty (an IpWhitelist holds at least one entry). Changes are merge patches
 * guarded by resourceVersion, so a concurrent edit is refused rather than lost.
 */
import type { Command } from 'commander';
import { GROUP, VERSION, isCidr } from '../../api/common.js';
import type { IpWhitelist } from '../../api/ipwhitelist.js';
import { IP_WHITELIST } from '../../api/kinds.js';
import { mergePatch } from '../../kube/client.js';
import { PROGRAM, examples, print, sessionOf } from './command.js';
import { CliError, notFoundKind } from './errors.js';
import { renderData, renderTable } from './format.js';
import { checkName, fail, getTenant, listWhitelists, type Session } from './session.js';
import { allowListOf, conditionCell } from './summary.js';

export const MANAGED_BY_PLUGIN = { 'app.kubernetes.io/managed-by': 'kubectl-tenantdb' };

/** The CIDRs as the API stores them, refused one by one with the reason when malformed. */
export function parseCidrs(values: readonly string[]): string[] {
  const out: string[] = [];
  for (const v of values) {
    const c = v.trim();
    if (!isCidr(c)) throw new CliError(`"${v}" is not a CIDR such as 203.0.113.0/24 or 2001:db8::/48 (a single address needs /32 or /128)`);
    if (!out.includes(c)) out.push(c);
  }
  if (!out.length) throw new CliError('name at least one CIDR');
  return out;
}

export interface Entry {
  cidr: string;
  description?: string | undefined;
}

/** The entries after adding: existing ones kept as they are, new ones appended. */
export function addEntries(
  existing: readonly Entry[],
  cidrs: readonly string[],
  description?: string,
): { entries: Entry[]; added: string[] } {
  const have = new Set(existing.map((e) => e.cidr));
  const added = cidrs.filter((c) => !have.has(c));
  return { entries: [...existing, ...added.map((cidr) => (description ? { cidr, description } : { cidr }))], added };
}

/** The entries after removing; the CIDRs found. */
export function removeEntries(existing: readonly Entry[], cidrs: readonly string[]): { entries: Entry[]; removed: string[] } {
  const gone = new Set(cidrs);
  return { entries: existing.filter((e) => !gone.has(e.cidr)), removed: existing.filter((e) => gone.has(e.cidr)).map((e) => e.cidr) };
}

const base = { group: GROUP, version: VERSION, plural: IP_WHITELIST.plural };

async function readList(s: Session, namespace: string, name: string): Promise<IpWhitelist | undefined> {
  const all = await listWhitelists(s, namespace).catch((err: unknown) => fail(s, err));
  return all.find((l) => l.metadata.name === name);
}

async function add(tenant: string, cidrArgs: string[], opts: { name?: string; description?: string }, cmd: Command): Promise<void> {
  const cidrs = parseCidrs(cidrArgs);
  if (opts.description !== undefined && opts.description.length > 256) throw new CliError('--description is at most 256 characters');
  const s = sessionOf(cmd);
  const td = await getTenant(s, tenant);
  const namespace = td.metadata.namespace ?? s.namespace;
  const name = checkName('IpWhitelist', opts.name ?? `${tenant}-kubectl`);
  const current = await readList(s, namespace, name);
  if (current && current.spec.tenantDatabaseRef.name !== tenant)
    throw new CliError(
      `IpWhitelist "${name}" belongs to TenantDatabase "${current.spec.tenantDatabaseRef.name}", not "${tenant}": choose another --name`,
    );
  const { entries, added } = addEntries(current?.spec.entries ?? [], cidrs, opts.description);
  if (entries.length > 256) throw new CliError(`IpWhitelist "${name}" would hold ${entries.length} entries; at most 256 are allowed`);
  try {
    if (!current) {
      await s.call(() =>
        s.custom.createNamespacedCustomObject({
          ...base,
          namespace,
          body: {
            apiVersion: `${GROUP}/${VERSION}`,
            kind: 'IpWhitelist',
            metadata: { name, namespace, labels: MANAGED_BY_PLUGIN },
            spec: { tenantDatabaseRef: { name: tenant }, entries },
          },
        }),
      );
    } else if (added.length) {
      await s.call(() =>
        s.custom.patchNamespacedCustomObject(
          { ...base, namespace, name, body: { metadata: { resourceVersion: current.metadata.resourceVersion }, spec: { entries } } },
          mergePatch,
        ),
      );
    }
  } catch (err) {
    fail(s, err);
  }
  const result = { namespace, name, tenant, created: !current, added, unchanged: cidrs.filter((c) => !added.includes(c)) };
  if (s.output !== 'table') return print(renderData(s.output, result));
  if (!current) print(`Created IpWhitelist ${namespace}/${name} for ${tenant}: ${added.join(', ')}`);
  else if (added.length) print(`Added ${added.join(', ')} to IpWhitelist ${namespace}/${name}`);
  else print(`IpWhitelist ${namespace}/${name} already allows ${cidrs.join(', ')}`);
}

async function rm(tenant: string, cidrArgs: string[], opts: { name?: string }, cmd: Command): Promise<void> {
  const s = sessionOf(cmd);
  if (!cidrArgs.length && !opts.name) throw new CliError('name the CIDRs to remove, or --name <list> to delete a whole IpWhitelist');
  const cidrs = cidrArgs.length ? parseCidrs(cidrArgs) : [];
  const td = await getTenant(s, tenant);
  const namespace = td.metadata.namespace ?? s.namespace;
  const mine = (await listWhitelists(s, namespace).catch((err: unknown) => fail(s, err))).filter(
    (l) => l.spec.tenantDatabaseRef.name === tenant && (!opts.name || l.metadata.name === opts.name),
  );
  if (opts.name && !mine.length)
    throw new CliError(`TenantDatabase "${tenant}" has no IpWhitelist "${opts.name}" in namespace "${namespace}"`);
  const lines: string[] = [];
  const deleted: string[] = [];
  const changed: { name: string; removed: string[] }[] = [];
  const found = new Set<string>();
  const del = async (name: string) => {
    try {
      await s.call(() => s.custom.deleteNamespacedCustomObject({ ...base, namespace, name }));
    } catch (err) {
      if (notFoundKind(err) !== 'object') fail(s, err);
    }
    deleted.push(name);
  };
  if (!cidrs.length) {
    // --name alone: the whole list goes.
    for (const l of mine) {
      await del(l.metadata.name);
      lines.push(`Deleted IpWhitelist ${namespace}/${l.metadata.name}`);
    }
  } else {
    const missing = cidrs.filter((c) => !mine.some((l) => l.spec.entries.some((e) => e.cidr === c)));
    if (missing.length)
      throw new CliError(
        `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not in ${opts.name ? `IpWhitelist "${opts.name}"` : `any IpWhitelist of TenantDatabase "${tenant}"`}: nothing was changed`,
      );
    for (const l of mine) {
      const { entries, removed } = removeEntries(l.spec.entries, cidrs);
      if (!removed.length) continue;
      removed.forEach((c) => found.add(c));
      if (!entries.length) {
        await del(l.metadata.name);
        lines.push(`Deleted IpWhitelist ${namespace}/${l.metadata.name} (it held only ${removed.join(', ')})`);
        continue;
      }
      try {
        await s.call(() =>
          s.custom.patchNamespacedCustomObject(
            {
              ...base,
              namespace,
              name: l.metadata.name,
              body: { metadata: { resourceVersion: l.metadata.resourceVersion }, spec: { entries } },
            },
            mergePatch,
          ),
        );
      } catch (err) {
        fail(s, err);
      }
      changed.push({ name: l.metadata.name, removed });
      lines.push(`Removed ${removed.join(', ')} from IpWhitelist ${namespace}/${l.metadata.name}`);
    }
  }
  const remaining = (await listWhitelists(s, namespace).catch(() => undefined))?.filter((l) => l.spec.tenantDatabaseRef.name === tenant);
  if (s.output !== 'table')
    return print(renderData(s.output, { namespace, tenant, deleted, changed, ...(remaining ? { remaining: remaining.length } : {}) }));
  for (const l of lines) print(l);
  if (remaining && !remaining.length)
    print(`TenantDatabase ${tenant} has no IpWhitelist left: logins are accepted from anywhere the network allows`);
}

async function list(tenant: string | undefined, cmd: Command): Promise<void> {
  const s = sessionOf(cmd);
  const lists = await listWhitelists(s, s.namespace).catch((err: unknown) => fail(s, err));
  let rows = lists;
  if (tenant) {
    const td = await getTenant(s, tenant);
    rows = lists.filter((l) => l.spec.tenantDatabaseRef.name === td.metadata.name);
  }
  const items = rows
    .map((l) => ({ tenant: l.spec.tenantDatabaseRef.name, ...allowListOf(l) }))
    .sort((a, b) => (a.tenant === b.tenant ? (a.name < b.name ? -1 : 1) : a.tenant < b.tenant ? -1 : 1));
  if (s.output !== 'table') return print(renderData(s.output, { items }));
  if (!items.length) return print(`No IpWhitelists${tenant ? ` for ${tenant}` : ''} in namespace ${s.namespace}.`);
  print(
    renderTable(
      ['tenant', 'name', 'rules', 'applied', 'cidrs'],
      items.map((i) => [
        i.tenant,
        i.name,
        i.ruleCount === undefined ? '-' : String(i.ruleCount),
        conditionCell(i.applied),
        i.cidrs.join(','),
      ]),
    ),
  );
}

export function registerWhitelistCommands(program: Command): void {
  const wl = program
    .command('whitelist')
    .alias('ipwl')
    .description("Manage a TenantDatabase's IpWhitelists: once a tenant has one, only their CIDRs may log in.");
  examples(
    wl
      .command('add')
      .description('Allow CIDRs to log in to a TenantDatabase (creates the IpWhitelist when missing).')
      .argument('<tenant>', 'the TenantDatabase')
      .argument('<cidr...>', 'CIDRs such as 203.0.113.0/24 or 2001:db8::/48')
      .option('--name <name>', 'the IpWhitelist to add to (default: <tenant>-kubectl)')
      .option('--description <text>', 'why these CIDRs are allowed')
      .action((tenant: string, cidrs: string[], opts: { name?: string; description?: string }, cmd: Command) =>
        add(tenant, cidrs, opts, cmd),
      ),
    [
      ['let the office reach orders', `${PROGRAM} whitelist add orders 203.0.113.0/24 --description office -n team-a`],
      ['into a list of its own', `${PROGRAM} whitelist add orders 198.51.100.7/32 --name orders-ci -n team-a`],
    ],
  );
  examples(
    wl
      .command('rm')
      .alias('remove')
      .description("Take CIDRs out of a TenantDatabase's IpWhitelists (a list left empty is deleted), or delete one list with --name.")
      .argument('<tenant>', 'the TenantDatabase')
      .argument('[cidr...]', 'the CIDRs to remove')
      .option('--name <name>', 'only this IpWhitelist; without CIDRs, delete it')
      .action((tenant: string, cidrs: string[], opts: { name?: string }, cmd: Command) => rm(tenant, cidrs, opts, cmd)),
    [
      ['the office may no longer log in', `${PROGRAM} whitelist rm orders 203.0.113.0/24 -n team-a`],
      ['delete a whole list', `${PROGRAM} whitelist rm orders --name orders-ci -n team-a`],
    ],
  );
  examples(
    wl
      .command('list')
      .alias('ls')
      .description("List the namespace's IpWhitelists, or one tenant's.")
      .argument('[tenant]', 'only this TenantDatabase')
      .action((tenant: string | undefined, _opts: unknown, cmd: Command) => list(tenant, cmd)),
    [['the allow-lists of orders', `${PROGRAM} whitelist list orders -n team-a`]],
  );
}
