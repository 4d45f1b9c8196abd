/** The sharded pooler config: the cut, its budget, incremental changes, and the render/validate round trip. */
import { renderPoolerConfig, renderServerHba, assemblePoolerFiles, type PoolerInput, type PoolerTenant } from '../../src/pooler/render.js';
import {
  INDEX_KEY,
  MIN_SHARD_BYTES,
  filesBytes,
  parsePoolerIndex,
  renderPoolerShards,
  shardFor,
  shardName,
} from '../../src/pooler/shards.js';
import { configHash } from '../../src/pooler/contract.js';
import { validatePoolerFiles, validateServerHba } from '../../src/pooler/validate.js';
import { scramVerifier } from '../../src/pg/scram.js';

/** mulberry32: a small seeded generator, so a failure names a seed that repeats it. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}
const verifiers = [0, 1, 2, 3].map((i) => scramVerifier(`pw${i}`, Buffer.alloc(16, i + 1)));

function generator(seed: number) {
  const r = rng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;
  const ident = () => {
    const len = 1 + int(int(4) === 0 ? 63 : 20);
    let s = pick('abcdefghijklmnopqrstuvwxyz_'.split(''));
    while (s.length < len) s += pick('abcdefghijklmnopqrstuvwxyz0123456789_'.split(''));
    return s;
  };
  const cidr = () =>
    int(3) === 0
      ? `2001:db8:${int(65536).toString(16)}::${int(65536).toString(16)}/${int(129)}`
      : `${int(256)}.${int(256)}.${int(256)}.${int(256)}/${int(33)}`;
  const tenants = (n: number): PoolerTenant[] => {
    const seen = new Set<string>();
    const out: PoolerTenant[] = [];
    while (out.length < n) {
      const alias = ident();
      if (seen.has(alias) || ['all', 'sameuser', 'samerole', 'samegroup', 'replication', 'pgbouncer'].includes(alias)) continue;
      seen.add(alias);
      const role = int(10) === 0 && out.length ? (out[int(out.length)]?.role ?? alias) : alias;
      out.push({
        alias,
        database: alias,
        role,
        verifier: pick(verifiers),
        poolMode: pick(['session', 'transaction', 'statement'] as const),
        poolSize: int(100),
        maxDbConnections: int(1000),
        maxClientConnections: int(1000),
        allowedCidrs: int(4) === 0 ? Array.from({ length: int(6) }, cidr) : undefined,
      });
    }
    return out;
  };
  return { int, tenants, cidr };
}

const input = (tenants: PoolerTenant[], always: string[] = []): PoolerInput => ({
  serverHost: 'db.internal',
  serverPort: 5432,
  tenants,
  alwaysAllowedCidrs: always,
});

describe('round trip: whatever the renderer writes for valid tenants, the agent accepts', () => {
  test.each(Array.from({ length: 40 }, (_, i) => i + 1))('seed %i', (seed) => {
    const g = generator(seed);
    const tenants = g.tenants(g.int(60));
    const always = Array.from({ length: g.int(4) }, g.cidr);
    const files = renderPoolerConfig(input(tenants, always));
    expect(validatePoolerFiles(files, { reservedUsers: ['tenantdb_pooler'] })).toEqual([]);
    const server = renderServerHba(
      tenants
        .filter((t) => t.allowedCidrs)
        .map((t) => ({ databases: [t.database, `${t.database.slice(0, 56)}_shadow`], role: t.role, allowedCidrs: t.allowedCidrs ?? [] })),
      always,
    );
    expect(validateServerHba(server)).toEqual([]);
  });
});

describe('renderPoolerShards', () => {
  test.each(Array.from({ length: 25 }, (_, i) => i + 1))(
    'seed %i: any budget assembles to the same files, every shard within it',
    (seed) => {
      const g = generator(seed);
      const inp = input(g.tenants(20 + g.int(200)), ['10.244.0.0/16']);
      const whole = renderPoolerConfig(inp);
      for (const budget of [MIN_SHARD_BYTES, 4096 + g.int(20_000), 512 * 1024]) {
        const cfg = renderPoolerShards(inp, 'srv-pooler', budget);
        expect(cfg.oversized).toEqual([]);
        expect(assemblePoolerFiles(cfg.shards.map((s) => s.files))).toEqual(whole);
        for (const s of cfg.shards) {
          expect(filesBytes(s.files)).toBeLessThanOrEqual(budget);
          expect(s.hash).toBe(configHash(s.files));
          expect(s.name).toBe(`srv-pooler-${s.hash}`);
          expect(s.files['databases.ini'].startsWith(`${s.firstAlias} = `)).toBe(true);
        }
        const index = parsePoolerIndex(cfg.index);
        expect(index).toEqual({ ok: true, shards: cfg.shards.map((s) => ({ name: s.name, hash: s.hash, firstAlias: s.firstAlias })) });
        // Every tenant is found in the shard that holds it.
        for (const t of inp.tenants)
          expect(shardFor(cfg.shards, t.alias)?.files['databases.ini']).toMatch(new RegExp(`^${t.alias} = `, 'm'));
      }
    },
  );

  test('a tenant added or removed rewrites about one shard', () => {
    const g = generator(7);
    const all = g.tenants(2050);
    const base = all.slice(0, 2000);
    const budget = 64 * 1024;
    const names = (ts: PoolerTenant[]) => new Set(renderPoolerShards(input(ts), 'p', budget).shards.map((s) => s.name));
    const before = names(base);
    expect(before.size).toBeGreaterThan(20);
    const counts: number[] = [];
    for (let i = 0; i < 50; i++) {
      const next = names(i % 2 ? [...base, all[2000 + i] as PoolerTenant] : base.filter((_, j) => j !== i * 37));
      counts.push([...next].filter((n) => !before.has(n)).length);
    }
    // One new shard for most changes; a change next to a cut can touch two; never many.
    expect(counts.reduce((a, b) => a + b, 0) / counts.length).toBeLessThan(1.3);
    expect(Math.max(...counts)).toBeLessThanOrEqual(3);
  });

  test('no tenant can make a shard pass the budget: one too large for any shard is left out', () => {
    const g = generator(3);
    const many = Array.from({ length: 256 }, (_, i) => `2001:db8:${i.toString(16)}::/48`);
    const tenants = [...g.tenants(30), { ...(g.tenants(1)[0] as PoolerTenant), alias: 'zz_big', role: 'zz_big', allowedCidrs: many }];
    const cfg = renderPoolerShards(input(tenants), 'p', 8192);
    expect(cfg.oversized.map((o) => o.alias)).toEqual(['zz_big']);
    expect(cfg.shards.every((s) => filesBytes(s.files) <= 8192)).toBe(true);
    // With the default budget the same tenant fits.
    expect(renderPoolerShards(input(tenants), 'p').oversized).toEqual([]);
  });

  test('tenants choosing names that all hash to a cut still share shards (a minimum size)', () => {
    const g = generator(11);
    const cfg = renderPoolerShards(input(g.tenants(400)), 'p', MIN_SHARD_BYTES);
    expect(cfg.shards.every((s, i) => i === cfg.shards.length - 1 || filesBytes(s.files) >= MIN_SHARD_BYTES / 8)).toBe(true);
  });

  test('no tenants: no shards, an empty index, the catch-all only', () => {
    const cfg = renderPoolerShards(input([]), 'p');
    expect(cfg.shards).toEqual([]);
    expect(cfg.index).toEqual({ [INDEX_KEY]: '' });
    expect(assemblePoolerFiles([])['hba.conf']).toBe('host all all 0.0.0.0/0 reject\nhost all all ::/0 reject\n');
  });

  test('a shard name stays a valid Secret name', () => {
    const long = `${'a'.repeat(250)}-pooler`;
    const n = shardName(long, '0123456789abcdef');
    expect(n.length).toBeLessThanOrEqual(253);
    expect(n).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
  });

  test.each([
    [{ shards: 'p-0123456789abcdef a\n', extra: 'x' }, /exactly one key/],
    [{ shards: 'p-0123456789abcdef a' }, /newline/],
    [{ shards: 'p-0123456789abcdef\n' }, /index:1/],
    [{ shards: 'P_x 0123456789abcdef a\n' }, /index:1/],
    [{ shards: 'p 0123456789abcdef a\np 0123456789abcdef b\n' }, /listed twice/],
  ])('a malformed index is refused: %j', (data, msg) => {
    const r = parsePoolerIndex(data);
    expect(r.ok).toBe(false);
    expect(r.ok ? '' : r.error).toMatch(msg);
  });
});
