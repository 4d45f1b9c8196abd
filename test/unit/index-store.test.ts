import { IndexStore } from '../../src/runtime/informer.js';

interface Obj {
  metadata: { name: string; namespace: string };
  spec?: { server?: string };
  status?: { server?: string };
}

const names = (xs: Obj[]) => xs.map((x) => x.metadata.name).sort();

describe('IndexStore', () => {
  const store = () =>
    new IndexStore<Obj>({
      server: (o) => [o.spec?.server ?? '', ...(o.status?.server ? [o.status.server] : [])],
      namespace: (o) => [o.metadata.namespace],
    });
  const obj = (name: string, server: string, status?: string): Obj => ({
    metadata: { name, namespace: 'ns' },
    spec: { server },
    ...(status ? { status: { server: status } } : {}),
  });

  test('an object is found under each of its values, and only under its current ones', () => {
    const s = store();
    expect(s.file(obj('a', 'x'))).toBeUndefined();
    s.file(obj('b', 'x', 'y'));
    expect(names(s.get('server', 'x'))).toEqual(['a', 'b']);
    expect(names(s.get('server', 'y'))).toEqual(['b']);
    expect(names(s.get('namespace', 'ns'))).toEqual(['a', 'b']);
    // Moved: gone from x and y, found under z; the previous version is returned.
    const old = s.file(obj('b', 'z'));
    expect(old?.status?.server).toBe('y');
    expect(names(s.get('server', 'x'))).toEqual(['a']);
    expect(s.get('server', 'y')).toEqual([]);
    expect(names(s.get('server', 'z'))).toEqual(['b']);
  });

  test('unfile takes the object out of every index, whatever version the delete carries', () => {
    const s = store();
    s.file(obj('a', 'x', 'y'));
    s.unfile(obj('a', 'other'));
    expect(s.get('server', 'x')).toEqual([]);
    expect(s.get('server', 'y')).toEqual([]);
    expect(s.get('namespace', 'ns')).toEqual([]);
    expect(s.file(obj('a', 'x'))).toBeUndefined();
  });
});
