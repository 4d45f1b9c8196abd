/**
 * What a real node changes on this host, recorded before it starts and put back after it stops:
 * processes, mounts, iptables and ip6tables chains, sysctls, cgroups, network links and files.
 * Host-wide, so one real node per machine at a time: a lock file names the run that holds it, and
 * a run that finds the lock of a crashed one cleans up after it first.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  rmdirSync,
  statSync,
  unlinkSync,
  writeFileSync,
  openSync,
  closeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Sysctls the kubelet, kube-proxy and the CNI bridge plugin are known to set. */
export const SYSCTLS = [
  'kernel.panic',
  'kernel.panic_on_oops',
  'kernel.keys.root_maxkeys',
  'kernel.keys.root_maxbytes',
  'vm.overcommit_memory',
  'vm.panic_on_oom',
  'net.ipv4.ip_forward',
  'net.ipv4.conf.all.forwarding',
  'net.ipv6.conf.all.forwarding',
  'net.ipv4.conf.all.route_localnet',
  'net.bridge.bridge-nf-call-iptables',
  'net.bridge.bridge-nf-call-ip6tables',
  'net.netfilter.nf_conntrack_max',
  'net.netfilter.nf_conntrack_tcp_timeout_established',
  'net.netfilter.nf_conntrack_tcp_timeout_close_wait',
  'net.netfilter.nf_conntrack_tcp_be_liberal',
];

/** Host paths a node writes to whatever its flags say; removed afterwards if they were not there before. */
export const HOST_PATHS = [
  '/var/lib/kubelet',
  '/var/log/pods',
  '/var/log/containers',
  '/var/lib/cni',
  '/run/containerd',
  '/run/netns',
  '/run/containers',
  '/var/lib/containers',
  '/run/xtables.lock',
  '/etc/kubernetes',
  '/usr/libexec/kubernetes',
  '/var/run/kubernetes',
];

/** Mount points under these belong to the node (pod volumes, netns, the kubelet's own bind mount). */
const MOUNT_PREFIXES = ['/run/netns/', '/run/containerd/', '/var/lib/kubelet/', '/run/containers/', '/var/lib/containers/'];
const IPTABLES_TABLES = ['filter', 'nat', 'mangle', 'raw'];
const OUR_CHAIN = /^(KUBE-|CNI-)/;

export interface HostState {
  dir: string;
  bridge: string;
  sysctls: Record<string, string>;
  paths: Record<string, boolean>;
  cgroups: Record<string, string[]>;
  mounts: string[];
  links: string[];
  iptables: Record<Iptables, Record<string, string[]>>;
  /** Folders outside the run folder to remove (PostgreSQL's data, say). */
  extraDirs: string[];
}

const LOCK = join(tmpdir(), 'tenantdb-node.lock');

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : '';
}

function readSysctl(key: string): string | undefined {
  try {
    return readFileSync(join('/proc/sys', key.replaceAll('.', '/')), 'utf8').trim();
  } catch {
    return undefined;
  }
}

function writeSysctl(key: string, value: string): void {
  try {
    writeFileSync(join('/proc/sys', key.replaceAll('.', '/')), value);
  } catch {
    /* gone with its module or read-only here: nothing to put back */
  }
}

function cgroupRoots(): string[] {
  const base = '/sys/fs/cgroup';
  if (!existsSync(base)) return [];
  const roots = readdirSync(base)
    .map((d) => join(base, d))
    .filter((d) => {
      try {
        return statSync(d).isDirectory() && existsSync(join(d, 'cgroup.procs'));
      } catch {
        return false;
      }
    });
  // cgroup v2 alone: the root itself is the hierarchy.
  return existsSync(join(base, 'cgroup.procs')) ? [base, ...roots] : roots;
}

function topCgroups(root: string): string[] {
  try {
    return readdirSync(root).filter((d) => {
      try {
        return statSync(join(root, d)).isDirectory();
      } catch {
        return false;
      }
    });
  } catch {
    return [];
  }
}

function mountPoints(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => (l.split(' ')[4] ?? '').replace(/\\040/g, ' '));
}

function links(): string[] {
  return sh('ip', ['-o', 'link', 'show'])
    .split('\n')
    .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1])
    .filter((n): n is string => !!n);
}

type Iptables = 'iptables' | 'ip6tables';

/** Rules per table, as `iptables -S` prints them. */
function iptablesRules(cmd: Iptables): Record<string, string[]> {
  return Object.fromEntries(IPTABLES_TABLES.map((t) => [t, sh(cmd, ['-w', '-t', t, '-S']).split('\n').filter(Boolean)]));
}

export function recordHost(dir: string, bridge: string): HostState {
  return {
    dir,
    bridge,
    sysctls: Object.fromEntries(SYSCTLS.map((k) => [k, readSysctl(k)]).filter((e): e is [string, string] => e[1] !== undefined)),
    paths: Object.fromEntries(HOST_PATHS.map((p) => [p, existsSync(p)])),
    cgroups: Object.fromEntries(cgroupRoots().map((r) => [r, topCgroups(r)])),
    mounts: mountPoints(),
    links: links(),
    iptables: { iptables: iptablesRules('iptables'), ip6tables: iptablesRules('ip6tables') },
    extraDirs: [],
  };
}

export const stateFile = (dir: string) => join(dir, 'host-state.json');

export function saveHostState(s: HostState): void {
  writeFileSync(stateFile(s.dir), JSON.stringify(s, null, 1));
}

/** This process and its ancestors, which are never killed. */
function ancestors(): Set<number> {
  const pids = new Set<number>();
  let pid = process.pid;
  while (pid > 1 && !pids.has(pid)) {
    pids.add(pid);
    try {
      // The parent is the 2nd field after the parenthesised command name.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      pid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      break;
    }
  }
  return pids;
}

/** PIDs of processes whose command line names the run folder (the daemons and containerd's shims). */
function processesOf(dir: string): number[] {
  const pids: number[] = [];
  const mine = ancestors();
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || mine.has(Number(p))) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      if (cmd.includes(`${dir}/`)) pids.push(Number(p));
    } catch {
      /* exited */
    }
  }
  return pids;
}

/** PIDs of processes in the node's pod cgroups (containers whose shim is gone). */
function podProcesses(): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (/:\/kubepods[/.]/.test(readFileSync(`/proc/${p}/cgroup`, 'utf8'))) pids.push(Number(p));
    } catch {
      /* exited */
    }
  }
  return pids;
}

function kill(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* exited */
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function killAll(find: () => number[]): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const pids = find();
    if (!pids.length) return;
    kill(pids);
    await sleep(100);
  }
}

/**
 * Removes the KUBE-* and CNI-* chains made since the record, and the rules made since that lead to
 * them; chains and rules that were there before (another tool's) stay.
 */
function cleanIptables(cmd: Iptables, before: Record<string, string[]>): void {
  for (const table of IPTABLES_TABLES) {
    const was = new Set(before[table] ?? []);
    const rules = sh(cmd, ['-w', '-t', table, '-S']).split('\n').filter(Boolean);
    const newChains = rules.filter((l) => l.startsWith('-N ') && !was.has(l)).map((l) => l.slice(3).trim());
    const ours = newChains.filter((c) => OUR_CHAIN.test(c));
    for (const l of rules) {
      const m = /^-A (\S+) (.*)$/.exec(l);
      if (!m || was.has(l) || ours.includes(m[1] ?? '')) continue;
      const target = /(?:^| )-[jg] (\S+)/.exec(m[2] ?? '')?.[1] ?? '';
      if (!OUR_CHAIN.test(target) && !OUR_CHAIN.test(m[1] ?? '')) continue;
      spawnSync('sh', ['-c', `${cmd} -w -t ${table} -D ${m[1]} ${m[2]}`]);
    }
    for (const c of ours) spawnSync(cmd, ['-w', '-t', table, '-F', c]);
    for (const c of ours) spawnSync(cmd, ['-w', '-t', table, '-X', c]);
  }
}

function rmCgroupTree(path: string): void {
  let entries: string[];
  try {
    entries = readdirSync(path);
  } catch {
    return;
  }
  for (const e of entries) {
    const p = join(path, e);
    try {
      if (statSync(p).isDirectory()) rmCgroupTree(p);
    } catch {
      /* gone */
    }
  }
  try {
    rmdirSync(path);
  } catch {
    /* still busy: the next pass */
  }
}

/**
 * Puts the host back as recorded: kills what is left of the run, then unmounts, removes cgroups,
 * iptables chains, links and files, and writes the sysctls back. Idempotent. Returns what still
 * differs from the record (empty when the host is as it was).
 */
export async function restoreHost(s: HostState): Promise<string[]> {
  if (!s.dir.startsWith('/') || s.dir.split('/').filter(Boolean).length < 2) throw new Error(`refusing to restore after a run in ${s.dir}`);
  await killAll(() => processesOf(s.dir));
  for (const d of s.extraDirs) await killAll(() => processesOf(d));
  await killAll(podProcesses);

  // Mounts made since the record, deepest first.
  const before = new Set(s.mounts);
  for (let pass = 0; pass < 3; pass++) {
    const extra = mountPoints()
      .filter((m) => !before.has(m) && (m.startsWith(s.dir + '/') || MOUNT_PREFIXES.some((p) => m.startsWith(p))))
      .reverse();
    if (!extra.length) break;
    for (const m of extra) {
      if (spawnSync('umount', [m]).status !== 0) spawnSync('umount', ['-l', m]);
    }
  }

  for (let pass = 0; pass < 20; pass++) {
    let left = 0;
    for (const [root, tops] of Object.entries(s.cgroups)) {
      for (const d of topCgroups(root)) {
        if (tops.includes(d)) continue;
        rmCgroupTree(join(root, d));
        if (existsSync(join(root, d))) left++;
      }
    }
    if (!left) break;
    await killAll(podProcesses);
    await sleep(200);
  }

  cleanIptables('iptables', s.iptables.iptables);
  cleanIptables('ip6tables', s.iptables.ip6tables);

  const linksBefore = new Set(s.links);
  for (const l of links()) {
    if (!linksBefore.has(l) && (l === s.bridge || l.startsWith('veth'))) spawnSync('ip', ['link', 'del', l]);
  }

  for (const [p, existed] of Object.entries(s.paths)) {
    if (!existed) rmSync(p, { recursive: true, force: true });
  }
  for (const d of s.extraDirs) rmSync(d, { recursive: true, force: true });

  for (const [k, v] of Object.entries(s.sysctls)) if (readSysctl(k) !== v) writeSysctl(k, v);

  return hostDifferences(s);
}

/** What differs between the host now and the record. */
export function hostDifferences(s: HostState): string[] {
  const diffs: string[] = [];
  for (const [k, v] of Object.entries(s.sysctls)) {
    const now = readSysctl(k);
    if (now !== v) diffs.push(`sysctl ${k} = ${now} (was ${v})`);
  }
  for (const [p, existed] of Object.entries(s.paths)) if (existsSync(p) !== existed) diffs.push(`${p} ${existed ? 'is gone' : 'is left'}`);
  const before = new Set(s.mounts);
  for (const m of mountPoints())
    if (!before.has(m) && (m.startsWith(s.dir + '/') || MOUNT_PREFIXES.some((p) => m.startsWith(p)))) diffs.push(`mount ${m}`);
  for (const [root, tops] of Object.entries(s.cgroups))
    for (const d of topCgroups(root)) if (!tops.includes(d)) diffs.push(`cgroup ${join(root, d)}`);
  const linksBefore = new Set(s.links);
  for (const l of links()) if (!linksBefore.has(l)) diffs.push(`link ${l}`);
  for (const cmd of ['iptables', 'ip6tables'] as const) {
    const now = iptablesRules(cmd);
    for (const t of IPTABLES_TABLES) {
      const was = new Set(s.iptables[cmd][t] ?? []);
      const is = new Set(now[t] ?? []);
      for (const l of is) if (!was.has(l)) diffs.push(`${cmd} -t ${t}: ${l}`);
      for (const l of was) if (!is.has(l)) diffs.push(`${cmd} -t ${t}: missing ${l}`);
    }
  }
  if (processesOf(s.dir).length) diffs.push(`processes ${processesOf(s.dir).join(' ')}`);
  return diffs;
}

/** Restores the host after the run recorded in dir, if it recorded anything. */
export async function restoreFromDir(dir: string): Promise<string[]> {
  if (!existsSync(stateFile(dir))) {
    await killAll(() => processesOf(dir));
    return [];
  }
  const s = JSON.parse(readFileSync(stateFile(dir), 'utf8')) as HostState;
  const diffs = await restoreHost(s);
  if (!diffs.length) unlinkSync(stateFile(dir));
  return diffs;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return readlinkSync(`/proc/${pid}/exe`).length > 0;
  } catch {
    return false;
  }
}

/**
 * Takes the machine-wide lock of real-node runs. A lock whose process is gone is a crashed run: its
 * leftovers are cleaned up first. Returns a release function.
 */
export async function lockHost(dir: string, log: (s: string) => void = () => undefined): Promise<() => void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(LOCK, 'wx', 0o600);
      writeFileSync(fd, JSON.stringify({ pid: process.pid, dir }));
      closeSync(fd);
      return () => {
        try {
          const held = JSON.parse(readFileSync(LOCK, 'utf8')) as { pid: number };
          if (held.pid === process.pid) unlinkSync(LOCK);
        } catch {
          /* already gone */
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let held: { pid: number; dir: string } | undefined;
    try {
      held = JSON.parse(readFileSync(LOCK, 'utf8')) as { pid: number; dir: string };
    } catch {
      /* being written, or torn: treat as stale */
    }
    if (held && alive(held.pid)) {
      throw new Error(`another real-node run holds ${LOCK} (pid ${held.pid}, folder ${held.dir}); one at a time per machine`);
    }
    if (held?.dir) {
      log(`cleaning up after a run that did not finish (${held.dir})`);
      const left = await restoreFromDir(held.dir);
      if (left.length) throw new Error(`could not restore the host after ${held.dir}:\n  ${left.join('\n  ')}`);
    }
    rmSync(LOCK, { force: true });
  }
  throw new Error(`could not take ${LOCK}`);
}

/** `ctr` against the node's containerd. */
export function ctr(sock: string, ...args: string[]): string {
  return execFileSync('ctr', ['-a', sock, '-n', 'k8s.io', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
