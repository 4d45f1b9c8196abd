/**
 * Generated inputs for the pooler and server HBA renderers and for the SQL escaping: hostile names,
 * CIDRs and verifiers, seeded (TENANTDB_FUZZ_SEED) and 10,000 runs per property (TENANTDB_FUZZ_RUNS).
 * What the renderer writes, the agent's validator must accept, and parsing it back must give what
 * was asked for; a name that is syntax never reaches a file or a statement.
 */
import fc from 'fast-check';
import type pg from 'pg';
import { isCidr } from '../../src/api/common.js';
import { usablePoolerTenants } from '../../src/controllers/postgresserver/pooler-shards.js';
import { scramVerifier } from '../../src/pg/scram.js';
import * as sql from '../../src/pg/tenant-sql.js';
import { assemblePoolerFiles, renderPoolerConfig, renderServerHba, type PoolerInput, type PoolerTenant } from '../../src/pooler/render.js';
import { MAX_SHARD_BYTES, MIN_SHARD_BYTES, parsePoolerIndex, renderPoolerShards } from '../../src/pooler/shards.js';
import { validatePoolerFiles, validateServerHba } from '../../src/pooler/validate.js';
import { collidingName, hostileCidr, hostileName, safeInFiles } from '../fuzz/names.js';
import { fuzzParams } from '../fuzz/params.js';

const VERIFIERS = [0, 1, 2].map((i) => scramVerifier(`pw${i}`, Buffer.alloc(16, i + 1)));
const VERIFIER_SHAPE = /^SCRAM-SHA-256\$\d{1,7}:[A-Za-z0-9+/=]{4,64}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$/;
const RESERVED_USERS = ['tenantdb_pooler', 'pooler_admin'];

const verifier = fc.oneof(
  { arbitrary: fc.constantFrom(...VERIFIERS), weight: 8 },
  {
    arbitrary: fc.constantFrom(
      'SCRAM-SHA-256$x',
      'SCRAM-SHA-256$4096:abc$def:ghi',
      `${VERIFIERS[0]}\n`,
      `${VERIFIERS[0]}" "x`,
      'md5abcdef',
      '',
      'SCRAM-SHA-256$4096:c2FsdA==$$',
    ),
    weight: 1,
  },
);

const poolNumber = (max: number) =>
  fc.oneof(
    { arbitrary: fc.integer({ min: 0, max }), weight: 6 },
    { arbitrary: fc.constantFrom(-1, max + 1, 1.5, Number.NaN, 1e21), weight: 1 },
  );

const tenant: fc.Arbitrary<PoolerTenant> = fc
  .record({
    alias: fc.oneof(hostileName, collidingName),
    database: fc.option(hostileName, { nil: undefined }),
    role: fc.oneof(hostileName, collidingName, fc.constantFrom(...RESERVED_USERS)),
    verifier,
    poolMode: fc.constantFrom('session', 'transaction', 'statement'),
    poolSize: poolNumber(10_000),
    maxDbConnections: poolNumber(100_000),
    maxClientConnections: poolNumber(100_000),
    allowedCidrs: fc.option(fc.array(hostileCidr, { maxLength: 8 }), { nil: undefined }),
  })
  .map((t) => ({ ...t, database: t.database ?? t.alias }));

const poolerInput: fc.Arbitrary<PoolerInput> = fc.record({
  serverHost: fc.oneof(
    { arbitrary: fc.constantFrom('db.internal', '10.0.0.5', 'fd00::5', 'a'), weight: 6 },
    { arbitrary: fc.constantFrom('db internal', 'db\nhost', '-db', 'db=x', ''), weight: 1 },
  ),
  serverPort: fc.oneof(
    { arbitrary: fc.integer({ min: 1, max: 65535 }), weight: 6 },
    { arbitrary: fc.constantFrom(0, 65536, -1, 1.5), weight: 1 },
  ),
  tenants: fc.array(tenant, { maxLength: 24 }),
  alwaysAllowedCidrs: fc.oneof({ arbitrary: fc.array(hostileCidr.filter(isCidr), { maxLength: 3 }), weight: 9 }, fc.array(hostileCidr)),
});

const intIn = (n: number, max: number) => Number.isInteger(n) && n >= 0 && n <= max;

/** Whether the agent may be handed this tenant's lines at all: the oracle the renderer must follow. */
function acceptableTenant(t: PoolerTenant): boolean {
  return (
    safeInFiles('alias', t.alias) &&
    safeInFiles('database', t.database) &&
    safeInFiles('role', t.role) &&
    VERIFIER_SHAPE.test(t.verifier) &&
    intIn(t.poolSize, 99_999) &&
    intIn(t.maxDbConnections, 999_999) &&
    intIn(t.maxClientConnections, 999_999) &&
    (t.allowedCidrs ?? []).every(isCidr)
  );
}

interface ParsedPooler {
  databases: { alias: string; settings: Record<string, string> }[];
  users: Map<string, string>;
  hba: { db: string; user: string; cidr: string; method: string }[];
}

/** Reads the three files back, the way PgBouncer splits them. */
function parsePooler(files: ReturnType<typeof renderPoolerConfig>): ParsedPooler {
  const [header, ...dbLines] = files['databases.ini'].split('\n').slice(0, -1);
  expect(header).toBe('[databases]');
  const databases = dbLines.map((l) => {
    const [alias = '', rest = ''] = l.split(' = ');
    return { alias, settings: Object.fromEntries(rest.split(' ').map((kv) => kv.split('=') as [string, string])) };
  });
  const users = new Map<string, string>();
  for (const l of files['userlist.txt'].split('\n').slice(0, -1)) {
    const m = /^"([^"]*)" "([^"]*)"$/.exec(l);
    expect(m).not.toBeNull();
    users.set(m?.[1] ?? '', m?.[2] ?? '');
  }
  const hba = files['hba.conf']
    .split('\n')
    .slice(0, -1)
    .map((l) => {
      const [, db = '', user = '', cidr = '', method = ''] = l.split(' ');
      return { db, user, cidr, method };
    });
  return { databases, users, hba };
}

/** What the files must say for these tenants, stated as facts rather than as lines. */
function expectRoundTrip(parsed: ParsedPooler, input: PoolerInput, rendered: readonly PoolerTenant[]): void {
  const byAlias = [...rendered].sort((a, b) => (a.alias < b.alias ? -1 : a.alias > b.alias ? 1 : 0));
  expect(parsed.databases).toEqual(
    byAlias.map((t) => ({
      alias: t.alias,
      settings: {
        host: input.serverHost,
        port: String(input.serverPort),
        dbname: t.database,
        pool_mode: t.poolMode,
        pool_size: String(t.poolSize),
        max_db_connections: String(t.maxDbConnections),
        max_db_client_connections: String(t.maxClientConnections),
      },
    })),
  );
  const users = new Map<string, string>();
  for (const t of byAlias) if (!users.has(t.role)) users.set(t.role, t.verifier);
  expect(parsed.users).toEqual(users);

  const closing = parsed.hba.slice(-2);
  expect(closing).toEqual([
    { db: 'all', user: 'all', cidr: '0.0.0.0/0', method: 'reject' },
    { db: 'all', user: 'all', cidr: '::/0', method: 'reject' },
  ]);
  const rules = parsed.hba.slice(0, -2);
  for (const t of byAlias) {
    const mine = rules.filter((r) => r.db === t.alias);
    const allow = mine.filter((r) => r.method === 'scram-sha-256');
    // Allows come first; what follows a tenant's allows for it are its rejects.
    expect(mine.slice(0, allow.length)).toEqual(allow);
    expect(allow.every((r) => r.user === t.role)).toBe(true);
    if (t.allowedCidrs === undefined) {
      expect(new Set(allow.map((r) => r.cidr))).toEqual(new Set(['0.0.0.0/0', '::/0']));
      expect(mine).toHaveLength(2);
    } else {
      expect(new Set(allow.map((r) => r.cidr))).toEqual(new Set([...t.allowedCidrs, ...input.alwaysAllowedCidrs]));
      expect(allow).toHaveLength(new Set(allow.map((r) => r.cidr)).size);
      expect(mine.slice(allow.length)).toEqual([
        { db: t.alias, user: 'all', cidr: '0.0.0.0/0', method: 'reject' },
        { db: t.alias, user: 'all', cidr: '::/0', method: 'reject' },
      ]);
    }
  }
  expect(rules).toHaveLength(byAlias.reduce((n, t) => n + parsed.hba.filter((r) => r.db === t.alias).length, 0));
  // No name that is syntax anywhere, and `all` only in the two reject shapes.
  for (const r of rules) {
    expect(safeInFiles('alias', r.db)).toBe(true);
    expect(r.user === 'all' ? r.method === 'reject' : safeInFiles('role', r.user)).toBe(true);
  }
}

describe('pooler config from generated tenants', () => {
  test('every rendered config passes the agent, reads back as rendered, and only bad tenants are left out', () => {
    fc.assert(
      fc.property(
        poolerInput,
        fc.constantFrom(MIN_SHARD_BYTES, 8 * 1024, MAX_SHARD_BYTES),
        fc.constantFrom('pooler', 'x'.repeat(250)),
        (input, budget, indexName) => {
          const reserved = new Set(RESERVED_USERS);
          const { usable, leftOut } = usablePoolerTenants(input.tenants, reserved);
          const aliasCount = new Map<string, number>();
          for (const t of input.tenants) aliasCount.set(t.alias, (aliasCount.get(t.alias) ?? 0) + 1);
          // Left out exactly the tenants that are bad by the oracle, claim a shared alias, or use the admin's name.
          for (const t of input.tenants) {
            const ok = acceptableTenant(t) && aliasCount.get(t.alias) === 1 && !reserved.has(t.role);
            expect(usable.includes(t)).toBe(ok);
          }
          expect(leftOut.every((l) => typeof l.reason === 'string' && l.reason.length > 0)).toBe(true);

          const hostOk = /^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$/.test(input.serverHost);
          const portOk = Number.isInteger(input.serverPort) && input.serverPort >= 1 && input.serverPort <= 65535;
          const cidrsOk = input.alwaysAllowedCidrs.every(isCidr);
          const renderable = cidrsOk && hostOk && portOk;
          let cfg: ReturnType<typeof renderPoolerShards>;
          try {
            cfg = renderPoolerShards({ ...input, tenants: usable }, indexName, budget);
          } catch (err) {
            // Refusing is right only for a bad server address or always-allowed CIDR, never for a tenant.
            expect(renderable).toBe(false);
            expect(String(err)).toMatch(/refusing|not a CIDR|server/);
            return;
          }
          expect(renderable).toBe(true);

          const index = parsePoolerIndex(cfg.index);
          if (!index.ok) throw new Error(index.error);
          expect(index.shards.map((s) => [s.name, s.hash, s.firstAlias])).toEqual(cfg.shards.map((s) => [s.name, s.hash, s.firstAlias]));
          for (const s of cfg.shards) expect(s.bytes).toBeLessThanOrEqual(budget);

          const assembled = assemblePoolerFiles(cfg.shards.map((s) => s.files));
          expect(validatePoolerFiles(assembled, { reservedUsers: RESERVED_USERS })).toEqual([]);
          const oversized = new Set(cfg.oversized.map((o) => o.alias));
          const rendered = usable.filter((t) => !oversized.has(t.alias));
          expect(assembled).toEqual(renderPoolerConfig({ ...input, tenants: rendered }));
          expectRoundTrip(parsePooler(assembled), input, rendered);
        },
      ),
      fuzzParams(),
    );
  });
});

describe('counter-examples the generated inputs found', () => {
  const good: PoolerTenant = {
    alias: '_',
    database: '_',
    role: 'app',
    verifier: VERIFIERS[0] ?? '',
    poolMode: 'session',
    poolSize: 0,
    maxDbConnections: 0,
    maxClientConnections: 100,
  };
  const input = (tenants: PoolerTenant[], serverHost = 'db', serverPort = 5432): PoolerInput => ({
    serverHost,
    serverPort,
    tenants,
    alwaysAllowedCidrs: [],
  });

  test('a server address the agent would refuse is refused by the renderer, not written for every tenant', () => {
    expect(() => renderPoolerConfig(input([good], 'db internal'))).toThrow(/server address/);
    expect(() => renderPoolerConfig(input([good], 'db', 0))).toThrow(/server address/);
    expect(validatePoolerFiles(renderPoolerConfig(input([good])))).toEqual([]);
  });

  test.each([
    ['a verifier of the wrong shape', { verifier: 'SCRAM-SHA-256$x' }],
    ['a verifier with keys too short', { verifier: 'SCRAM-SHA-256$4096:abc$def:ghi' }],
    ['a negative pool size', { poolSize: -1 }],
    ['a fractional pool size', { poolSize: 1.5 }],
    ['a max_db_connections of seven digits', { maxDbConnections: 1_000_000 }],
    ['a max_db_client_connections of seven digits', { maxClientConnections: 1_000_000 }],
  ])('a tenant with %s is left out rather than making the agent refuse the whole config', (_, bad) => {
    const { usable, leftOut } = usablePoolerTenants([good, { ...good, alias: 'bad', role: 'bad', ...bad }]);
    expect(usable.map((t) => t.alias)).toEqual(['_']);
    expect(leftOut.map((t) => t.alias)).toEqual(['bad']);
    expect(validatePoolerFiles(renderPoolerConfig(input(usable)))).toEqual([]);
  });
});

describe('server HBA from generated tenants', () => {
  const serverTenant = fc.record({
    databases: fc.array(fc.oneof(hostileName, collidingName), { maxLength: 3 }),
    role: fc.oneof(hostileName, collidingName),
    allowedCidrs: fc.array(hostileCidr, { maxLength: 5 }),
  });

  test('renders only what the agent accepts, and refuses whatever names or CIDRs are syntax', () => {
    fc.assert(
      fc.property(fc.array(serverTenant, { maxLength: 8 }), fc.array(hostileCidr, { maxLength: 3 }), (tenants, always) => {
        // Always-allowed CIDRs are written only into tenants' lines.
        const good =
          (tenants.length === 0 || always.every(isCidr)) &&
          tenants.every(
            (t) =>
              t.databases.length > 0 &&
              t.databases.every((d) => safeInFiles('database', d)) &&
              safeInFiles('role', t.role) &&
              t.allowedCidrs.every(isCidr),
          );
        let text: string;
        try {
          text = renderServerHba(tenants, always);
        } catch (err) {
          expect(good).toBe(false);
          expect(String(err)).toMatch(/refusing to render the server HBA rules/);
          return;
        }
        expect(good).toBe(true);
        expect(validateServerHba(text)).toEqual([]);
        const rules = text
          .split('\n')
          .slice(0, -1)
          .map((l) => l.split(' '));
        const owners = new Map<string, number>();
        for (const t of tenants) for (const d of new Set(t.databases)) owners.set(d, (owners.get(d) ?? 0) + 1);
        // A database belongs to one tenant on a real server; lines of tenants sharing one are not told apart here.
        for (const t of tenants.filter((x) => x.databases.every((d) => owners.get(d) === 1))) {
          const dbs = [...t.databases].sort().join(',');
          const mine = rules.filter((r) => r[1] === dbs);
          const allowed = new Set([...t.allowedCidrs.map((c) => `${t.role} ${c}`), ...always.map((c) => `all ${c}`)]);
          expect(new Set(mine.filter((r) => r[4] === 'scram-sha-256').map((r) => `${r[2]} ${r[3]}`))).toEqual(allowed);
          expect(mine.slice(-2).map((r) => r.join(' '))).toEqual([`host ${dbs} all 0.0.0.0/0 reject`, `host ${dbs} all ::/0 reject`]);
        }
        expect(rules.every((r) => r.length === 5 && r[0] === 'host')).toBe(true);
      }),
      fuzzParams(),
    );
  });
});

/**
 * A small lexer of PostgreSQL's top level: quoted identifiers, standard strings, E'' strings and
 * comments. It says how many statements a text holds and whether every quote it opened was closed.
 */
export function splitSql(text: string): { statements: number; balanced: boolean } {
  let statements = 0;
  let sawToken = false;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === '"' || c === "'") {
      const escapes = c === "'" && (text[i - 1] === 'E' || text[i - 1] === 'e') && !/[A-Za-z0-9_]/.test(text[i - 2] ?? '');
      i++;
      for (;;) {
        if (i >= n) return { statements: statements + 1, balanced: false };
        const d = text[i];
        if (escapes && d === '\\') {
          i += 2;
          continue;
        }
        if (d === c) {
          if (text[i + 1] === c) {
            i += 2;
            continue;
          }
          i++;
          break;
        }
        i++;
      }
      sawToken = true;
      continue;
    }
    if (c === '-' && text[i + 1] === '-') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      if (end < 0) return { statements: statements + 1, balanced: false };
      i = end + 2;
      continue;
    }
    if (c === ';') {
      if (sawToken) statements++;
      sawToken = false;
      i++;
      continue;
    }
    if (c !== ' ' && c !== '\n' && c !== '\t' && c !== '\r') sawToken = true;
    i++;
  }
  return { statements: statements + (sawToken ? 1 : 0), balanced: true };
}

describe('SQL escaping of generated names and literals', () => {
  const sqlName = fc.oneof(hostileName, fc.string({ unit: 'grapheme', maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 80 }));

  test('the lexer itself sees injected statements and open quotes', () => {
    expect(splitSql('CREATE ROLE "a"; DROP ROLE b')).toEqual({ statements: 2, balanced: true });
    expect(splitSql("ALTER ROLE a PASSWORD 'x''; DROP ROLE b; --'")).toEqual({ statements: 1, balanced: true });
    expect(splitSql(` ALTER ROLE a PASSWORD E'x\\'; DROP ROLE b; --'`)).toEqual({ statements: 1, balanced: true });
    expect(splitSql('CREATE ROLE "a')).toEqual({ statements: 1, balanced: false });
  });

  test('id() quotes every name of 1 to 63 bytes into one identifier and refuses the rest', () => {
    fc.assert(
      fc.property(sqlName, (name) => {
        const bytes = Buffer.byteLength(name, 'utf8');
        if (bytes === 0 || bytes > 63) {
          expect(() => sql.id(name)).toThrow(RangeError);
          expect(sql.fitsIdentifier(name)).toBe(false);
          return;
        }
        const q = sql.id(name);
        expect(q.startsWith('"') && q.endsWith('"')).toBe(true);
        expect(q.slice(1, -1).replaceAll('""', '"')).toBe(name);
        expect(q.slice(1, -1).replaceAll('""', '')).not.toContain('"');
        expect(splitSql(`DROP ROLE ${q}`)).toEqual({ statements: 1, balanced: true });
      }),
      fuzzParams(),
    );
  });

  test('every statement the tenant SQL builds from generated names is one statement with balanced quotes', async () => {
    const texts: string[] = [];
    // Statements sent together: each checked alone, and the text PostgreSQL would get as just as many.
    const together: (readonly string[])[] = [];
    const db = {
      query: async (text: string) => {
        texts.push(text);
        return { rows: [], rowCount: 0, command: '', oid: 0, fields: [] };
      },
      [sql.RUN_TOGETHER]: async (statements: readonly string[]) => {
        texts.push(...statements);
        together.push(statements);
      },
    } as unknown as pg.ClientBase;
    await fc.assert(
      fc.asyncProperty(sqlName, sqlName, fc.string({ unit: 'binary', maxLength: 60 }), fc.integer(), async (a, b, literal, limit) => {
        texts.length = 0;
        together.length = 0;
        const calls: (() => Promise<unknown>)[] = [
          () => sql.createRole(db, a, literal, limit, literal),
          () => sql.createTwinRole(db, a, b, literal, limit, literal, limit % 2 === 0),
          () => sql.setRolePassword(db, a, literal),
          () => sql.setRoleLogin(db, a, limit % 2 === 0, limit),
          () => sql.disableLogin(db, a),
          () => sql.createDatabase(db, a, limit),
          () => sql.createExtension(db, a),
          () => sql.dropDatabase(db, a),
          () => sql.tombstoneRole(db, a, b, literal),
          () => sql.dropRole(db, a),
          () => sql.dropOwned(db, a, literal),
          () => sql.ensureAdminMembership(db, a),
          () => sql.commentOnDatabase(db, a, literal),
          () => sql.takeDatabaseOwnership(db, a),
          () => sql.resetDatabaseSettings(db, a),
          () => sql.allowConnections(db, a),
          () => sql.setDatabaseConnLimit(db, a, limit),
          () => sql.revokeAllFrom(db, a, b),
          () => sql.grantOwnPrivileges(db, a),
          () => sql.openNewDatabase(db, a, literal, limit, limit),
          () => sql.markUnmarkedDatabase(db, a, b, literal, limit),
          () => sql.handOverDatabase(db, a, b, true),
          () => sql.handOverDatabase(db, a, b, false),
        ];
        const fits = (s: string) => sql.fitsIdentifier(s);
        for (const call of calls) {
          try {
            await call();
          } catch (err) {
            // The only refusal: a name PostgreSQL would truncate or cannot take.
            expect(err).toBeInstanceOf(RangeError);
            expect(fits(a) && fits(b)).toBe(false);
          }
        }
        for (const text of texts) expect(splitSql(text)).toEqual({ statements: 1, balanced: true });
        for (const statements of together)
          expect(splitSql(statements.join(';\n'))).toEqual({ statements: statements.length, balanced: true });
      }),
      fuzzParams(),
    );
  });
});
