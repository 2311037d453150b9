// Real-kernel test topology: throwaway network namespaces joined by veth pairs.
//
//   <p>-host:  wan1 10.101.0.2/24 fd00:101::2/64 ─── cust (fe80::1, 10.101.0.1, fd00:101::1)  <p>-isp1
//              wan2 10.102.0.2/24 fd00:102::2/64 ─── cust (fe80::1, 10.102.0.1, fd00:102::1)  <p>-isp2
//   <p>-isp1:  uplink 10.201.0.1/24 fd00:201::1/64 ─── isp1 10.201.0.2 fd00:201::2  <p>-inet
//   <p>-isp2:  uplink 10.202.0.1/24 fd00:202::1/64 ─── isp2 10.202.0.2 fd00:202::2  <p>-inet
//   <p>-inet:  lo 10.250.0.1/32 fd00:250::1/128 (the "internet server"),
//              routes each customer prefix back via its ISP.
//
// Host main table, as in the DynMHS README scenario:
//   default via 10.101.0.1 dev wan1 metric 200 / default via fe80::1 dev wan1 metric 200
//   default via 10.102.0.1 dev wan2 metric 300 / default via fe80::1 dev wan2 metric 300
//
// Everything is created inside namespaces this process made; only those are ever deleted.
// The host's own network is never touched: every `ip` call carries `-n <our namespace>`.
//
// Building it needs iproute2 and /bin/sh only (sysctls are written to /proc/sys). Traffic
// proof comes two ways: egressOf() (the demo's), a UDP probe in Node with the uplinks'
// packet counters, which needs nothing more; and pathOf() (the tests'), ping with nftables
// counters of echo requests, which needs iputils-ping and nftables (`npm test` installs them,
// scripts/test-prerequisites.sh).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EgressResult } from './egress-probe';

export type Fam = 4 | 6;

export interface Wan {
  readonly ifName: string;
  readonly table: number;
  readonly metric: number;
  readonly v4: string;
  readonly v4Prefix: string;
  readonly gw4: string;
  readonly v6: string;
  readonly v6Prefix: string;
  /** The ISP router's fixed link-local address (IPv6 default gateway). */
  readonly gw6: string;
}

export const WAN1: Wan = {
  ifName: 'wan1', table: 2000, metric: 200,
  v4: '10.101.0.2', v4Prefix: '10.101.0.0/24', gw4: '10.101.0.1',
  v6: 'fd00:101::2', v6Prefix: 'fd00:101::/64', gw6: 'fe80::1',
};
export const WAN2: Wan = {
  ifName: 'wan2', table: 3000, metric: 300,
  v4: '10.102.0.2', v4Prefix: '10.102.0.0/24', gw4: '10.102.0.1',
  v6: 'fd00:102::2', v6Prefix: 'fd00:102::/64', gw6: 'fe80::1',
};
export const SERVER4 = '10.250.0.1';
export const SERVER6 = 'fd00:250::1';

/** A route as `ip -j route show` prints it. */
export interface IpRoute {
  type?: string;
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
  metric?: number;
  table?: string;
  nhid?: number;
  flags?: string[];
  nexthops?: { gateway?: string; dev?: string; weight?: number; flags?: string[] }[];
  [k: string]: unknown;
}

/** A rule as `ip -j rule show` prints it. */
export interface IpRule {
  priority: number;
  src: string;
  srclen?: number;
  table: string;
  protocol?: string;
  [k: string]: unknown;
}

export class CommandError extends Error {
  constructor(readonly cmd: string[], readonly status: number | null, readonly stderr: string) {
    super(`${cmd.join(' ')} failed (exit ${status}): ${stderr.trim()}`);
    this.name = 'CommandError';
  }
}

/** Run a command synchronously; throws CommandError with its stderr on failure. */
export function run(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, {
    input, encoding: 'utf8', maxBuffer: 512 * 1024 * 1024, stdio: ['pipe', 'pipe', 'pipe'],
  });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new CommandError([cmd, ...args], r.status, r.stderr ?? '');
  return r.stdout;
}

/** Why real-kernel tests cannot run here, or undefined when they can. */
export function netnsSkipReason(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux network namespaces';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return 'needs root: creates network namespaces and veth pairs (run as root, as CI does)';
  }
  const r = spawnSync('ip', ['-V'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return 'needs iproute2 (`ip`)';
  return undefined;
}

/**
 * Set `key=value` sysctls (dotted names) inside namespace `ns` by writing /proc/sys, which
 * shows the writer's own network namespace: no procps needed.
 */
export function writeSysctls(ns: string, settings: readonly string[]): void {
  const paths = settings.map((setting) => {
    const eq = setting.indexOf('=');
    if (eq <= 0) throw new Error(`bad sysctl setting ${JSON.stringify(setting)}`);
    return `/proc/sys/${setting.slice(0, eq).replaceAll('.', '/')}=${setting.slice(eq + 1)}`;
  });
  run('ip', ['netns', 'exec', ns, '/bin/sh', '-c',
    'for s do printf "%s\\n" "${s#*=}" > "${s%%=*}" || exit 1; done', 'sh', ...paths]);
}

// ---- ownership of what we create: the only namespaces we ever delete ----
const createdNamespaces = new Set<string>();
let exitHookInstalled = false;

function killPidsIn(ns: string): void {
  const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' });
  if (r.status !== 0) return;
  for (const p of r.stdout.split(/\s+/).filter(Boolean)) {
    const pid = Number(p);
    if (Number.isInteger(pid) && pid > 1 && pid !== process.pid) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  }
}

function deleteNamespace(ns: string): void {
  if (!createdNamespaces.has(ns)) return;
  killPidsIn(ns);
  spawnSync('ip', ['netns', 'del', ns], { encoding: 'utf8' });
  createdNamespaces.delete(ns);
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort: a test that crashed or a runner that exits without after() hooks.
  process.on('exit', () => {
    for (const ns of [...createdNamespaces]) deleteNamespace(ns);
  });
}

let topoCounter = 0;

export interface TopologyOptions {
  /** Short tag appended to the prefix (keeps several topologies of one process apart). */
  tag?: string;
  /** Add the main-table default routes (v4 + v6) of the README scenario. Default true. */
  defaults?: boolean;
}

export class Topology {
  readonly prefix: string;
  readonly host: string;
  readonly isp1: string;
  readonly isp2: string;
  readonly inet: string;
  private destroyed = false;
  private egressServer: ChildProcess | undefined;

  private constructor(prefix: string) {
    this.prefix = prefix;
    this.host = `${prefix}-host`;
    this.isp1 = `${prefix}-isp1`;
    this.isp2 = `${prefix}-isp2`;
    this.inet = `${prefix}-inet`;
  }

  get namespaces(): string[] {
    return [this.host, this.isp1, this.isp2, this.inet];
  }

  /** Build the whole topology. On any failure, what was built is torn down again. */
  static create(opts: TopologyOptions = {}): Topology {
    installExitHook();
    const tag = opts.tag ?? String.fromCharCode(97 + (topoCounter++ % 26));
    const t = new Topology(`dmh${process.pid % 10000}${tag}`);
    try {
      t.build(opts.defaults ?? true);
    } catch (e) {
      t.destroy();
      throw e;
    }
    return t;
  }

  private addNamespace(ns: string): void {
    // A leftover of ours from an earlier crashed run with the same pid: ours to remove.
    if (spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).status === 0) {
      createdNamespaces.add(ns);
      deleteNamespace(ns);
    }
    run('ip', ['netns', 'add', ns]);
    createdNamespaces.add(ns);
  }

  private build(defaults: boolean): void {
    for (const ns of this.namespaces) this.addNamespace(ns);
    for (const ns of this.namespaces) {
      const sysctls = [
        'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0',
        'net.ipv6.conf.all.accept_ra=0', 'net.ipv6.conf.default.accept_ra=0',
        'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0',
      ];
      if (ns === this.isp1 || ns === this.isp2) {
        sysctls.push('net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1');
      }
      if (ns === this.host) {
        // IPv6 addresses survive link down, like IPv4 ones (tests re-add routes, not addresses).
        sysctls.push('net.ipv6.conf.all.keep_addr_on_down=1', 'net.ipv6.conf.default.keep_addr_on_down=1');
      }
      writeSysctls(ns, sysctls);
    }
    // Links (created from the host and the ISPs, peers moved at creation).
    this.batch(this.host, [
      'link set lo up',
      `link add wan1 type veth peer name cust netns ${this.isp1}`,
      `link add wan2 type veth peer name cust netns ${this.isp2}`,
    ]);
    this.batch(this.inet, [
      'link set lo up',
      `link add isp1 type veth peer name uplink netns ${this.isp1}`,
      `link add isp2 type veth peer name uplink netns ${this.isp2}`,
      `addr add ${SERVER4}/32 dev lo`,
      `addr add ${SERVER6}/128 dev lo`,
      'addr add 10.201.0.2/24 dev isp1', 'addr add fd00:201::2/64 dev isp1',
      'addr add 10.202.0.2/24 dev isp2', 'addr add fd00:202::2/64 dev isp2',
      'link set isp1 up', 'link set isp2 up',
    ]);
    for (const [ns, n] of [[this.isp1, 1], [this.isp2, 2]] as const) {
      const wan = n === 1 ? WAN1 : WAN2;
      this.batch(ns, [
        'link set lo up',
        // fixed link-local router address, as tests need to know the gateway
        'link set cust addrgenmode none',
        `addr add ${wan.gw6}/64 dev cust`,
        `addr add ${wan.gw4}/24 dev cust`,
        `addr add fd00:10${n}::1/64 dev cust`,
        'link set cust up',
        `addr add 10.20${n}.0.1/24 dev uplink`,
        `addr add fd00:20${n}::1/64 dev uplink`,
        'link set uplink up',
        `route add default via 10.20${n}.0.2 dev uplink`,
        `route add default via fd00:20${n}::2 dev uplink`,
      ]);
      this.batch(this.inet, [
        `route add ${wan.v4Prefix} via 10.20${n}.0.1 dev isp${n}`,
        `route add ${wan.v6Prefix} via fd00:20${n}::1 dev isp${n}`,
      ]);
    }
    const hostLines: string[] = [];
    for (const wan of [WAN1, WAN2]) {
      hostLines.push(
        `addr add ${wan.v4}/24 dev ${wan.ifName} metric ${wan.metric}`,
        `addr add ${wan.v6}/64 dev ${wan.ifName} metric ${wan.metric}`,
        `link set ${wan.ifName} up`,
      );
    }
    this.batch(this.host, hostLines);
    if (defaults) this.addDefaults();
  }

  /** The README scenario's default routes in the host's main table (v4 + v6, metrics 200/300). */
  addDefaults(wans: readonly Wan[] = [WAN1, WAN2]): void {
    const lines: string[] = [];
    for (const wan of wans) {
      lines.push(
        `route replace default via ${wan.gw4} dev ${wan.ifName} metric ${wan.metric}`,
        `route replace default via ${wan.gw6} dev ${wan.ifName} metric ${wan.metric}`,
      );
    }
    this.batch(this.host, lines);
  }

  /**
   * A further host interface (veth; this kernel has no `dummy`), its peer parked in the
   * inet namespace, both up so it has carrier. Returns its ifindex.
   */
  addHostLink(name: string): number {
    this.batch(this.host, [`link add ${name} type veth peer name p-${name} netns ${this.inet}`]);
    this.batch(this.inet, [`link set p-${name} addrgenmode none`, `link set p-${name} up`]);
    this.ip(['link', 'set', name, 'up']);
    return this.ifindex(name);
  }

  /** Delete a host interface (its veth peer goes with it). */
  deleteHostLink(name: string): void {
    this.ip(['link', 'del', name]);
  }

  ifindex(name: string, ns = this.host): number {
    const j = JSON.parse(run('ip', ['-n', ns, '-j', 'link', 'show', 'dev', name])) as { ifindex: number }[];
    return j[0]!.ifindex;
  }

  /** `ip -n <ns> ARGS` (host namespace by default); returns stdout. */
  ip(args: string[], ns = this.host): string {
    return run('ip', ['-n', ns, ...args]);
  }

  /** `ip -n <ns> -batch -` with one command per line; stops at the first failing line. */
  batch(ns: string, lines: readonly string[], force = false): string {
    return run('ip', ['-n', ns, ...(force ? ['-force'] : []), '-batch', '-'], lines.join('\n') + '\n');
  }

  /** `ip netns exec <ns> CMD ARGS`. */
  exec(cmd: string, args: string[], ns = this.host, input?: string): string {
    return run('ip', ['netns', 'exec', ns, cmd, ...args], input);
  }

  // ---- kernel state as JSON ----

  routes(fam: Fam, table: number | 'main' | 'all' = 'main', ns = this.host): IpRoute[] {
    const r = spawnSync('ip', ['-n', ns, '-j', `-${fam}`, 'route', 'show', 'table', String(table)], {
      encoding: 'utf8', maxBuffer: 512 * 1024 * 1024,
    });
    if (r.status !== 0) {
      if (/table does not exist/i.test(r.stderr)) return [];
      throw new CommandError(['ip', '-n', ns, '-j', `-${fam}`, 'route', 'show', 'table', String(table)], r.status, r.stderr);
    }
    const out = r.stdout.trim();
    return out === '' ? [] : (JSON.parse(out) as IpRoute[]);
  }

  rules(fam: Fam, ns = this.host): IpRule[] {
    const out = run('ip', ['-n', ns, '-j', `-${fam}`, 'rule', 'show']).trim();
    return out === '' ? [] : (JSON.parse(out) as IpRule[]);
  }

  /** Rules created by dynmhs (protocol 249 / "dynmhs"). */
  ourRules(fam: Fam): IpRule[] {
    return this.rules(fam).filter(isOurs);
  }

  /** Routes created by dynmhs in a table (protocol 249 / "dynmhs"). */
  ourRoutes(fam: Fam, table: number | 'all'): IpRoute[] {
    return this.routes(fam, table).filter(isOurs);
  }

  /** Addresses (local) on an interface, as `ip -j addr` shows them. */
  addresses(fam: Fam, ifName: string): { local: string; prefixlen: number; scope: string }[] {
    const j = JSON.parse(run('ip', ['-n', this.host, '-j', `-${fam}`, 'addr', 'show', 'dev', ifName])) as
      { addr_info?: { local: string; prefixlen: number; scope: string }[] }[];
    return j[0]?.addr_info ?? [];
  }

  /** Tear down: kill what still runs in our namespaces, delete them. Idempotent. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.stopEgressServer();
    for (const ns of this.namespaces) deleteNamespace(ns);
  }

  // ---- traffic proof without nftables or ping (the demo's; see egress-probe.ts) ----

  /** Start the UDP echo server of egress-probe.ts in the internet namespace. */
  async startEgressServer(): Promise<void> {
    if (this.egressServer) return;
    const child = spawn('ip', ['netns', 'exec', this.inet, process.execPath, EGRESS_PROBE, 'serve', String(EGRESS_PORT)],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    this.egressServer = child;
    let output = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => { output += s; });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`egress probe server not ready after 10 s: ${output}`)), 10_000);
      child.stdout!.setEncoding('utf8').on('data', (s: string) => {
        if (s.includes('ready')) { clearTimeout(timer); resolve(); }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`egress probe server exited (${code ?? signal}): ${output}`));
      });
    });
  }

  stopEgressServer(): void {
    const child = this.egressServer;
    this.egressServer = undefined;
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try { process.kill(child.pid, 'SIGTERM'); } catch { /* gone */ }
    }
  }

  /**
   * From each source address of the host, send `count` UDP datagrams to the internet
   * server, one at a time, and count the packets each host interface sent meanwhile.
   */
  egressOf(sources: readonly string[], count = 5, ifNames: readonly string[] = ['wan1', 'wan2']): EgressPath[] {
    if (!this.egressServer) throw new Error('startEgressServer() first');
    const out = run('ip', ['netns', 'exec', this.host, process.execPath, EGRESS_PROBE, 'send',
      SERVER4, SERVER6, String(EGRESS_PORT), String(count), ifNames.join(','), ...sources]);
    return out.trim().split('\n').map((line) => {
      const r = JSON.parse(line) as EgressResult;
      return { ...r, via: egressInterfaces(r) };
    });
  }

  // ---- traffic proof (see the functions below; these work on the host namespace) ----

  installCounters(ifNames: readonly string[] = ['wan1', 'wan2']): void {
    installEchoCounters(this.host, ifNames);
  }

  resetCounters(): void {
    resetEchoCounters(this.host);
  }

  readCounters(fam: Fam): Record<string, number> {
    return readEchoCounters(this.host, fam);
  }

  ping(source: string, count = 3, target?: string): { ok: boolean; output: string } {
    return pingFrom(this.host, source, count, target);
  }

  pathOf(source: string, count = 3): EchoPath {
    return echoPathOf(this.host, source, count);
  }
}

/** dist/test/helpers/egress-probe.js, next to this file once compiled. */
export const EGRESS_PROBE = join(__dirname, 'egress-probe.js');
const EGRESS_PORT = 9749;

export interface EgressPath extends EgressResult {
  /** The interfaces that sent at least one packet per datagram (the probe's own). */
  readonly via: string[];
}

/**
 * Where the datagrams left: an interface counts when it sent at least as many packets as
 * datagrams were sent; fewer are the kernel's own chatter (neighbour discovery, ARP).
 */
export function egressInterfaces(r: EgressResult): string[] {
  return Object.entries(r.txPackets).filter(([, n]) => n >= r.sent).map(([name]) => name);
}

// ---- traffic proof, in any namespace ----

/**
 * nftables counters in namespace `ns`: ICMP/ICMPv6 echo requests leaving per interface
 * (postrouting, so after the routing decision).
 */
export function installEchoCounters(ns: string, ifNames: readonly string[] = ['wan1', 'wan2']): void {
  const counters: string[] = [];
  const rules: string[] = [];
  for (const i of ifNames) {
    counters.push(`  counter ${i}_v4 { }`, `  counter ${i}_v6 { }`);
    rules.push(
      `    oifname "${i}" icmp type echo-request counter name "${i}_v4"`,
      `    oifname "${i}" icmpv6 type echo-request counter name "${i}_v6"`,
    );
  }
  const ruleset = [
    'table inet dmhcount {',
    ...counters,
    '  chain post {',
    '    type filter hook postrouting priority 0; policy accept;',
    ...rules,
    '  }',
    '}',
  ].join('\n');
  // From a file: nftables 1.0.9 (Ubuntu 24.04) refuses `-f -` from a pipe ("Not a regular file").
  const dir = mkdtempSync(join(tmpdir(), `dynmhs-nft-${process.pid}-`));
  try {
    writeFileSync(join(dir, 'counters.nft'), ruleset + '\n');
    run('ip', ['netns', 'exec', ns, 'nft', '-f', join(dir, 'counters.nft')]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function resetEchoCounters(ns: string): void {
  run('ip', ['netns', 'exec', ns, 'nft', 'reset', 'counters', 'table', 'inet', 'dmhcount']);
}

/** Echo requests counted per interface for one family since the last reset. */
export function readEchoCounters(ns: string, fam: Fam): Record<string, number> {
  const j = JSON.parse(run('ip', ['netns', 'exec', ns, 'nft', '-j', 'list', 'counters', 'table', 'inet', 'dmhcount'])) as
    { nftables: { counter?: { name: string; packets: number } }[] };
  const out: Record<string, number> = {};
  for (const e of j.nftables) {
    if (!e.counter) continue;
    const m = /^(.*)_v([46])$/.exec(e.counter.name);
    if (m && Number(m[2]) === fam) out[m[1]!] = e.counter.packets;
  }
  return out;
}

/** Ping the internet server (or `target`) from a source address in `ns`; ok if any reply came. */
export function pingFrom(ns: string, source: string, count = 3, target?: string): { ok: boolean; output: string } {
  const fam: Fam = source.includes(':') ? 6 : 4;
  const dst = target ?? (fam === 4 ? SERVER4 : SERVER6);
  const r = spawnSync('ip', ['netns', 'exec', ns, 'ping', `-${fam}`, '-n', '-q',
    '-c', String(count), '-i', '0.02', '-W', '1', '-I', source, dst], { encoding: 'utf8' });
  return { ok: r.status === 0, output: (r.stdout ?? '') + (r.stderr ?? '') };
}

export interface EchoPath {
  /** Echo requests per interface, e.g. { wan1: 3, wan2: 0 }. */
  readonly counts: Record<string, number>;
  /** A reply came back. */
  readonly ok: boolean;
  readonly output: string;
}

/**
 * Reset the counters, ping from `source`, and say through which interfaces the echo
 * requests left.
 */
export function echoPathOf(ns: string, source: string, count = 3): EchoPath {
  const fam: Fam = source.includes(':') ? 6 : 4;
  resetEchoCounters(ns);
  const p = pingFrom(ns, source, count);
  return { counts: readEchoCounters(ns, fam), ok: p.ok, output: p.output };
}

// ---- comparing tables ----

export function isOurs(x: { protocol?: string }): boolean {
  return x.protocol === '249' || x.protocol === 'dynmhs';
}

/** A route's identity and the attributes a copy must preserve (not the protocol). */
export function routeKey(r: IpRoute): string {
  const nh = r.nexthops
    ? ' nexthops=' + r.nexthops.map((n) => `${n.gateway ?? '-'}@${n.dev ?? '-'}/${n.weight ?? 1}`).sort().join(',')
    : '';
  return `${r.type ?? 'unicast'} ${r.dst} via=${r.gateway ?? '-'} dev=${r.dev ?? '-'} metric=${r.metric ?? 0}` +
    ` src=${r.prefsrc ?? '-'} scope=${r.scope ?? 'global'}${r.nhid !== undefined ? ` nhid=${r.nhid}` : ''}${nh}`;
}

/** A plain single-device route: what dynmhs copies one to one. */
export function isPlainDeviceRoute(r: IpRoute): boolean {
  return (r.type ?? 'unicast') === 'unicast' && r.dev !== undefined && !r.nexthops && r.nhid === undefined;
}

/** Every device an entry refers to (its own dev and its next hops'). */
export function devicesOf(r: IpRoute): string[] {
  const d = new Set<string>();
  if (r.dev) d.add(r.dev);
  for (const n of r.nexthops ?? []) if (n.dev) d.add(n.dev);
  return [...d];
}

export interface MirrorDiff {
  missing: string[];
  extra: string[];
}

/**
 * Compare a dynmhs table against main: expected = every plain main route via `ifName`,
 * actual = every plain route of ours in `table`. Multipath and nhid routes are checked by
 * dedicated tests, not here.
 */
export function mirrorDiff(topo: Topology, fam: Fam, ifName: string, table: number): MirrorDiff {
  const main = topo.routes(fam, 'main');
  const expected = main.filter((r) => isPlainDeviceRoute(r) && r.dev === ifName).map(routeKey);
  // Copies of multipath / nhid routes may legitimately look like plain routes: leave them out.
  const special = new Set(main.filter((r) => r.nexthops || r.nhid !== undefined).map((r) => `${r.dst} ${r.metric ?? 0}`));
  const actual = topo.ourRoutes(fam, table)
    .filter((r) => !special.has(`${r.dst} ${r.metric ?? 0}`))
    .map(routeKey);
  return diffKeys(expected, actual);
}

export function diffKeys(expected: readonly string[], actual: readonly string[]): MirrorDiff {
  const count = (xs: readonly string[]) => {
    const m = new Map<string, number>();
    for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
    return m;
  };
  const e = count(expected);
  const a = count(actual);
  const missing: string[] = [];
  const extra: string[] = [];
  for (const [k, n] of e) for (let i = a.get(k) ?? 0; i < n; i++) missing.push(k);
  for (const [k, n] of a) for (let i = e.get(k) ?? 0; i < n; i++) extra.push(k);
  return { missing, extra };
}

export function ruleKey(r: IpRule): string {
  return `${r.priority}: from ${r.src}${r.srclen !== undefined ? '/' + r.srclen : ''} lookup ${r.table}`;
}

/** The rules dynmhs should hold: one per non-link-local address of each interface. */
export function expectedRuleKeys(topo: Topology, fam: Fam, nets: readonly { ifName: string; table: number }[]): string[] {
  const keys: string[] = [];
  for (const n of nets) {
    let addrs: { local: string; scope: string }[];
    try {
      addrs = topo.addresses(fam, n.ifName);
    } catch {
      continue; // interface absent
    }
    for (const a of addrs) {
      if (fam === 4 && a.local.startsWith('169.254.')) continue;
      if (fam === 6 && (a.scope === 'link' || /^fe[89ab]/i.test(a.local))) continue;
      keys.push(`${n.table}: from ${a.local} lookup ${n.table}`);
    }
  }
  return keys.sort();
}

/**
 * Converged: for each network, the dynmhs rules equal one per address and the dynmhs table
 * equals main's plain routes via the interface (v4 + v6). Returns a description of what
 * differs, or '' when converged.
 */
export function convergence(topo: Topology, nets: readonly { ifName: string; table: number }[]): string {
  const problems: string[] = [];
  for (const fam of [4, 6] as const) {
    const want = expectedRuleKeys(topo, fam, nets);
    const have = topo.ourRules(fam).map(ruleKey).sort();
    const d = diffKeys(want, have);
    if (d.missing.length || d.extra.length) problems.push(`v${fam} rules ${JSON.stringify(d)}`);
    for (const n of nets) {
      const m = mirrorDiff(topo, fam, n.ifName, n.table);
      if (m.missing.length || m.extra.length) {
        problems.push(`v${fam} table ${n.table} (${n.ifName}) missing=${m.missing.length} extra=${m.extra.length} ` +
          JSON.stringify({ missing: m.missing.slice(0, 5), extra: m.extra.slice(0, 5) }));
      }
    }
  }
  return problems.join('; ');
}

export const README_NETS = [WAN1, WAN2].map((w) => ({ ifName: w.ifName, table: w.table }));


// ---- watching the kernel ----

/**
 * `ip -n NS [-ts] monitor ARGS` in the background, output kept in memory
 * (e.g. `['rule']` to see whether a rule was ever deleted and re-added).
 */
export class IpMonitor {
  private buf = '';
  private readonly child: ChildProcess;
  readonly ready: Promise<void>;

  constructor(ns: string, args: readonly string[]) {
    this.child = spawn('ip', ['-n', ns, 'monitor', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (s: string) => { this.buf += s; });
    this.child.stderr!.on('data', () => { /* ignore */ });
    // ip monitor has subscribed once it runs; give it a moment to bind its socket
    this.ready = new Promise((res) => setTimeout(res, 150));
  }

  output(): string {
    return this.buf;
  }

  lines(): string[] {
    return this.buf.split('\n').filter(Boolean);
  }

  stop(): void {
    if (this.child.exitCode === null && this.child.pid !== undefined) {
      try { process.kill(this.child.pid, 'SIGTERM'); } catch { /* gone */ }
    }
  }
}
