/**
 * The pooler config of one server, cut into shards so that it outgrows no Secret (1 MiB each).
 * Tenants are sorted by alias and cut at content-defined boundaries: after a tenant whose alias
 * hashes to a value with its low bits zero, once the shard holds a minimum of bytes. A cut depends
 * only on the tenants near it, so a tenant added or removed rewrites the shard it lands in and
 * (almost always) no other. A shard that would pass the byte budget is cut early, and a tenant too
 * large for a shard of its own is left out, so no tenant can make a shard exceed the budget.
 *
 * An index lists the shards in order with the hash of each; the agent assembles the files from them.
 * Shard names carry their hash, so a shard is never rewritten in place: the operator writes new
 * shards, then the index, then deletes the shards the index no longer names.
 */
import { createHash } from 'node:crypto';
import { DNS_SUBDOMAIN } from '../api/common.js';
import { nameProblem } from './names.js';
import { POOLER_FILES, renderTenantBlocks, type PoolerFiles, type PoolerInput } from './render.js';
import { configHash } from './contract.js';

export const DEFAULT_SHARD_BYTES = 512 * 1024;
/** Below this a shard holds too few tenants; above the maximum a Secret (1 MiB of data) gets tight. */
export const MIN_SHARD_BYTES = 4 * 1024;
export const MAX_SHARD_BYTES = 900 * 1024;
/** The index Secret's one key: a line `<shard name> <hash> <first alias>` per shard, in order. */
export const INDEX_KEY = 'shards';
/** On every shard: the index it belongs to (its name, or a hash of a name too long for a label). */
export const SHARD_OF_LABEL = 'tenantdb.dev/pooler-shard-of';

export function shardOfLabelValue(indexName: string): string {
  return indexName.length <= 63 ? indexName : `index-${createHash('sha256').update(indexName).digest('hex').slice(0, 16)}`;
}

export interface PoolerShard {
  name: string;
  hash: string;
  firstAlias: string;
  tenants: number;
  bytes: number;
  files: PoolerFiles;
}

export interface ShardedPoolerConfig {
  shards: PoolerShard[];
  /** The index Secret's data; its configHash is the config's hash, which the agent reports. */
  index: Record<string, string>;
  /** Tenants whose lines alone pass the budget: left out, so that they cannot stop the others. */
  oversized: { alias: string; bytes: number }[];
}

export const filesBytes = (f: PoolerFiles): number => POOLER_FILES.reduce((n, k) => n + Buffer.byteLength(f[k]), 0);

/** Expected tenants between content-defined cuts: about a quarter of a budget of ~512-byte tenants. */
export function boundaryBits(budget: number): number {
  return Math.max(0, Math.min(16, Math.floor(Math.log2(budget / 2048))));
}

export function isContentBoundary(alias: string, bits: number): boolean {
  const h = createHash('sha256').update(alias).digest().readUInt32BE(0);
  return (h & ((1 << bits) - 1)) === 0;
}

/** `<index>-<hash>`, shortened at the front when needed to stay a valid Secret name. */
export function shardName(indexName: string, hash: string): string {
  const room = 253 - hash.length - 1;
  return `${indexName.slice(0, room).replace(/[.-]+$/, '')}-${hash}`;
}

export function renderPoolerShards(input: PoolerInput, indexName: string, budget = DEFAULT_SHARD_BYTES): ShardedPoolerConfig {
  if (!Number.isInteger(budget) || budget < MIN_SHARD_BYTES || budget > MAX_SHARD_BYTES) {
    throw new RangeError(`the shard budget must be an integer from ${MIN_SHARD_BYTES} to ${MAX_SHARD_BYTES} bytes`);
  }
  const bits = boundaryBits(budget);
  // A minimum size keeps tenants who choose their names from making a shard of every tenant.
  const minBytes = Math.floor(budget / 8);
  const shards: PoolerShard[] = [];
  const oversized: ShardedPoolerConfig['oversized'] = [];
  let cur: { alias: string; files: PoolerFiles }[] = [];
  let curBytes = 0;
  const cut = () => {
    const first = cur[0];
    if (!first) return;
    const files = Object.fromEntries(POOLER_FILES.map((k) => [k, cur.map((b) => b.files[k]).join('')])) as PoolerFiles;
    const hash = configHash(files);
    shards.push({ name: shardName(indexName, hash), hash, firstAlias: first.alias, tenants: cur.length, bytes: curBytes, files });
    cur = [];
    curBytes = 0;
  };
  for (const block of renderTenantBlocks(input)) {
    const bytes = filesBytes(block.files);
    if (bytes > budget) {
      oversized.push({ alias: block.alias, bytes });
      continue;
    }
    if (curBytes + bytes > budget) cut();
    cur.push(block);
    curBytes += bytes;
    if (curBytes >= minBytes && isContentBoundary(block.alias, bits)) cut();
  }
  cut();
  return { shards, index: { [INDEX_KEY]: formatPoolerIndex(shards) }, oversized };
}

export interface IndexEntry {
  name: string;
  hash: string;
  firstAlias: string;
}

export function formatPoolerIndex(shards: readonly IndexEntry[]): string {
  return shards.map((s) => `${s.name} ${s.hash} ${s.firstAlias}\n`).join('');
}

const MAX_INDEX_ENTRIES = 10_000;

/** Parses an index Secret's data; every line must be of the shape formatPoolerIndex writes. */
export function parsePoolerIndex(
  data: Readonly<Record<string, string>>,
): { ok: true; shards: IndexEntry[] } | { ok: false; error: string } {
  const keys = Object.keys(data);
  const text = data[INDEX_KEY];
  if (text === undefined || keys.length !== 1)
    return { ok: false, error: `the index must have exactly one key, ${INDEX_KEY} (it has ${keys.join(', ') || 'none'})` };
  if (text !== '' && !text.endsWith('\n')) return { ok: false, error: 'index: the last line has no newline' };
  const shards: IndexEntry[] = [];
  const names = new Set<string>();
  const lines = text.split('\n').slice(0, -1);
  if (lines.length > MAX_INDEX_ENTRIES) return { ok: false, error: `index: more than ${MAX_INDEX_ENTRIES} shards` };
  for (const [i, l] of lines.entries()) {
    const [name = '', hash = '', firstAlias = '', ...rest] = l.split(' ');
    if (
      rest.length ||
      !DNS_SUBDOMAIN.test(name) ||
      name.length > 253 ||
      !/^[0-9a-f]{16}$/.test(hash) ||
      nameProblem('alias', firstAlias) !== undefined
    ) {
      return { ok: false, error: `index:${i + 1}: not a "<shard name> <hash> <first alias>" line` };
    }
    if (names.has(name)) return { ok: false, error: `index:${i + 1}: shard ${name} is listed twice` };
    names.add(name);
    shards.push({ name, hash, firstAlias });
  }
  return { ok: true, shards };
}

/** The shard that holds an alias, if any shard can: the last whose first alias is not after it. */
export function shardFor<T extends { firstAlias: string }>(shards: readonly T[], alias: string): T | undefined {
  let lo = 0;
  let hi = shards.length - 1;
  let found: T | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const s = shards[mid];
    if (s && s.firstAlias <= alias) {
      found = s;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}
