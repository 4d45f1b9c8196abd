/**
 * Allow-lists combined as sets of addresses. Pure: used to give a TenantGroup's login only the
 * network paths that every member it reaches allows for itself.
 */
import { isIP } from 'node:net';

interface Net {
  v6: boolean;
  base: bigint;
  bits: number;
}

function addressValue(addr: string, v6: boolean): bigint {
  if (!v6) return addr.split('.').reduce((n, p) => (n << 8n) | BigInt(Number(p)), 0n);
  let text = addr;
  // An embedded IPv4 tail (::ffff:1.2.3.4 style) becomes two hextets.
  const dot = text.lastIndexOf('.');
  if (dot >= 0) {
    const colon = text.lastIndexOf(':');
    const v4 = addressValue(text.slice(colon + 1), false);
    text = `${text.slice(0, colon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail === undefined ? [] : tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((n, g) => (n << 16n) | BigInt(parseInt(g || '0', 16)), 0n);
}

function parse(cidr: string): Net | undefined {
  const [addr = '', bits = ''] = cidr.split('/');
  const family = isIP(addr);
  if (family === 0) return undefined;
  const v6 = family === 6;
  const width = v6 ? 128 : 32;
  const n = Number(bits);
  if (!Number.isInteger(n) || n < 0 || n > width) return undefined;
  const mask = n === 0 ? 0n : ((1n << BigInt(n)) - 1n) << BigInt(width - n);
  return { v6, base: addressValue(addr, v6) & mask, bits: n };
}

/** Whether every address of `inner` is in `outer`. */
export function cidrContains(outer: string, inner: string): boolean {
  const a = parse(outer);
  const b = parse(inner);
  if (!a || !b || a.v6 !== b.v6 || a.bits > b.bits) return false;
  const width = a.v6 ? 128 : 32;
  const mask = a.bits === 0 ? 0n : ((1n << BigInt(a.bits)) - 1n) << BigInt(width - a.bits);
  return (b.base & mask) === a.base;
}

/**
 * The addresses every list allows: undefined stands for a list-less member (anywhere), so it
 * narrows nothing; the result is undefined only when every list is. Two CIDRs meet in the smaller
 * one or not at all, so the meet of two lists is the pairwise meets.
 */
export function intersectAllowLists(lists: readonly (readonly string[] | undefined)[]): string[] | undefined {
  let acc: string[] | undefined;
  for (const list of lists) {
    if (list === undefined) continue;
    if (acc === undefined) {
      acc = [...new Set(list)];
      continue;
    }
    const next = new Set<string>();
    for (const x of acc)
      for (const y of list) {
        if (cidrContains(x, y)) next.add(y);
        else if (cidrContains(y, x)) next.add(x);
      }
    acc = [...next];
  }
  return acc === undefined ? undefined : acc.sort();
}
