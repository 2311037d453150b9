// Random changes to a test host's addresses, routes and links, as DHCP, SLAAC, a network
// manager and an administrator make them: addresses added, removed and moved between
// interfaces, routes added, replaced (also onto another interface) and deleted, with
// source hints (IPv4 and IPv6) whose address later goes, multipath routes, nexthop objects, blackholes,
// link-local and 169.254 addresses, links going down and up, an interface deleted and
// created again. Each action is a few `ip` commands in the host namespace; a command the
// kernel refuses (deleting what is not there) is counted, not fatal.
//
// The base addresses (10.10N.0.2/24, fd00:10N::2/64) stay: every gateway route uses
// them to be on-link, and a route whose gateway is no longer reachable cannot be copied
// at all (the kernel checks gateways when a route is added).

import { spawnSync } from 'node:child_process';
import type { Random } from './random';

type Json = Record<string, unknown>;

export interface ChurnHost {
  /** The host namespace. */
  readonly ns: string;
  /** Managed links that always exist, with their IPv4 gateway (the ISP's address). */
  readonly wans: readonly { readonly ifName: string; readonly gw4: string }[];
  /** An unmanaged link (addresses moved there lose their rule). */
  readonly side: string;
  /** A managed link the churn deletes and creates again. */
  readonly optional: { readonly ifName: string; readonly gw4: string; create(): void; remove(): void };
}

export interface ChurnResult {
  readonly description: string;
  /** Commands the kernel refused. */
  readonly refused: number;
}

/** Runs `ip -force -batch` per family; lines starting with "-6 " go to an `ip -6` batch. Returns the refusals. */
export function ipBatch(ns: string, lines: readonly string[]): number {
  let refused = 0;
  const v4 = lines.filter((l) => !l.startsWith('-6 '));
  const v6 = lines.filter((l) => l.startsWith('-6 ')).map((l) => l.slice(3));
  for (const [family, batch] of [['-4', v4], ['-6', v6]] as const) {
    if (batch.length === 0) continue;
    const args = ['-n', ns, ...(family === '-6' ? ['-6'] : []), '-force', '-batch', '-'];
    const r = spawnSync('ip', args, { input: batch.join('\n') + '\n', encoding: 'utf8' });
    if (r.error) throw r.error;
    refused += (r.stderr.match(/Command failed/g) ?? []).length;
    // A syntax error ends the whole batch: that is a bug in the test, not the kernel saying no.
    if (/expected|invalid argument|Usage:/i.test(r.stderr) && !/Command failed/.test(r.stderr)) {
      throw new Error(`ip ${args.join(' ')} rejected its input:\n${batch.join('\n')}\n${r.stderr}`);
    }
  }
  return refused;
}

export function ipJson(ns: string, args: readonly string[]): Json[] {
  const r = spawnSync('ip', ['-n', ns, '-j', ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) return [];
  const text = r.stdout.trim();
  return text === '' ? [] : (JSON.parse(text) as Json[]);
}

const POOL_SIZE = 24;
const ROUTE_SLOTS = 12;
const METRICS = [0, 7, 50] as const;

/** The addresses of `ifName` (family 4/6) that came from the churn's pool. */
function poolAddresses(ns: string, ifName: string): { local: string; prefixlen: number; family: 4 | 6 }[] {
  const links = ipJson(ns, ['addr', 'show', 'dev', ifName]);
  const info = (links[0]?.addr_info ?? []) as Json[];
  return info
    .filter((a) => typeof a.local === 'string' && /^(10\.150\.|fd00:150::|169\.254\.|fe80::99$)/.test(a.local as string))
    .map((a) => ({ local: a.local as string, prefixlen: a.prefixlen as number, family: a.family === 'inet' ? 4 as const : 6 as const }));
}

function linkExists(ns: string, ifName: string): boolean {
  return ipJson(ns, ['link', 'show', 'dev', ifName]).length > 0;
}

function linkUp(ns: string, ifName: string): boolean {
  const l = ipJson(ns, ['link', 'show', 'dev', ifName])[0];
  return l !== undefined && ((l.flags ?? []) as string[]).includes('UP');
}

export class Churn {
  /** Actions applied, in order, for a failure report. */
  readonly history: string[] = [];
  refusedTotal = 0;
  /** Routes given a source hint, per family. */
  readonly hinted = { 4: 0, 6: 0 };

  constructor(private readonly host: ChurnHost, private readonly rnd: Random) {}

  private managedLinks(): { ifName: string; gw4: string }[] {
    const links = [...this.host.wans];
    if (linkExists(this.host.ns, this.host.optional.ifName)) links.push(this.host.optional);
    return links;
  }

  private upLinks(): { ifName: string; gw4: string }[] {
    return this.managedLinks().filter((l) => linkUp(this.host.ns, l.ifName));
  }

  private run(description: string, lines: readonly string[]): ChurnResult {
    const refused = ipBatch(this.host.ns, lines);
    this.refusedTotal += refused;
    this.history.push(`${description}${refused > 0 ? ` (${refused} refused)` : ''}`);
    return { description, refused };
  }

  /** An IPv4 address of the pool on one of the managed links, or undefined. */
  pickPoolAddress(family?: 4 | 6, local?: string): { ifName: string; local: string; prefixlen: number; family: 4 | 6 } | undefined {
    const all = [...this.managedLinks().map((l) => l.ifName), this.host.side]
      .flatMap((ifName) => poolAddresses(this.host.ns, ifName).map((a) => ({ ...a, ifName })))
      .filter((a) => (family === undefined || a.family === family) && (local === undefined || a.local === local));
    return all.length === 0 ? undefined : this.rnd.pick(all);
  }

  /** Removes a pool address (`local` if given and present, else a random one of `family`). */
  removeAddress(family?: 4 | 6, local?: string): ChurnResult {
    const a = this.pickPoolAddress(family, local);
    if (a === undefined) return this.addAddress();
    return this.run(`remove ${a.local}/${a.prefixlen} from ${a.ifName}`, [`${a.family === 6 ? '-6 ' : ''}addr del ${a.local}/${a.prefixlen} dev ${a.ifName}`]);
  }

  /** Removes pool address `local` and sends `signal` to `pid` right after, from one shell. */
  removeAddressThenSignal(local: string, pid: number, signal: 'TERM' | 'KILL'): ChurnResult {
    const a = this.pickPoolAddress(undefined, local);
    if (a === undefined) throw new Error(`${local} is not on any link`);
    const family = a.family === 6 ? '-6' : '-4';
    const r = spawnSync('sh', ['-c', `ip -n "$1" ${family} addr del "$2" dev "$3"; kill -${signal} "$4"`, 'sh', this.host.ns, `${a.local}/${a.prefixlen}`, a.ifName, String(pid)],
      { encoding: 'utf8' });
    const refused = r.status === 0 ? 0 : 1;
    this.refusedTotal += refused;
    const description = `remove ${a.local}/${a.prefixlen} from ${a.ifName}, SIG${signal} at once`;
    this.history.push(`${description}${refused > 0 ? ` (failed: ${r.stderr.trim()})` : ''}`);
    return { description, refused };
  }

  addAddress(): ChurnResult {
    const r = this.rnd;
    const targets = [...this.managedLinks().map((l) => l.ifName), this.host.side];
    const ifName = r.chance(0.85) ? r.pick(targets.filter((t) => t !== this.host.side)) : this.host.side;
    const n = r.int(2, POOL_SIZE + 1);
    const extra = `${r.chance(0.2) ? ' noprefixroute' : ''}${r.chance(0.2) ? ` metric ${r.pick([5, 300])}` : ''}`;
    const line = r.weighted<string>([
      [`addr add 10.150.0.${n}/${r.pick([24, 24, 32])} dev ${ifName}${extra}`, 6],
      [`-6 addr add fd00:150::${n.toString(16)}/64 dev ${ifName}${extra}`, 4],
      [`addr add 169.254.${r.int(1, 250)}.${n}/16 dev ${ifName}`, 1],
      [`-6 addr add fe80::99/64 dev ${ifName}`, 1],
    ]);
    return this.run(line.replace(/^-6 /, ''), [line]);
  }

  /** A new IPv4 /24 pool address on an up managed link: its prefix route has it as source hint. */
  addPrefixAddress(): ChurnResult & { address: string } {
    const links = this.upLinks();
    const link = links.length > 0 ? this.rnd.pick(links) : this.host.wans[0]!;
    const taken = new Set(this.managedLinks().concat([{ ifName: this.host.side, gw4: '' }])
      .flatMap((l) => poolAddresses(this.host.ns, l.ifName).map((a) => a.local)));
    let n = this.rnd.int(2, POOL_SIZE + 1);
    while (taken.has(`10.150.0.${n}`) && n < 250) n++;
    const address = `10.150.0.${n}`;
    return { ...this.run(`addr add ${address}/24 dev ${link.ifName}`, [`addr add ${address}/24 dev ${link.ifName}`]), address };
  }

  moveAddress(): ChurnResult {
    const a = this.pickPoolAddress();
    if (a === undefined) return this.addAddress();
    const to = this.rnd.pick([...this.managedLinks().map((l) => l.ifName), this.host.side].filter((t) => t !== a.ifName));
    const f = a.family === 6 ? '-6 ' : '';
    return this.run(`move ${a.local}/${a.prefixlen} ${a.ifName} → ${to}`,
      [`${f}addr del ${a.local}/${a.prefixlen} dev ${a.ifName}`, `${f}addr add ${a.local}/${a.prefixlen} dev ${to}`]);
  }

  /** A route via a gateway or a device; sometimes with a source hint on its link (IPv4). */
  addOrReplaceRoute(): ChurnResult {
    const r = this.rnd;
    const links = this.upLinks();
    if (links.length === 0) return this.linkUp();
    const link = r.pick(links);
    const slot = r.int(0, ROUTE_SLOTS - 1);
    const metric = r.pick(METRICS);
    const verb = r.chance(0.5) ? 'replace' : 'add';
    if (r.chance(0.6)) {
      const hint = r.chance(0.7) ? poolAddresses(this.host.ns, link.ifName).find((a) => a.family === 4) : undefined;
      const via = r.chance(0.7) ? `via ${link.gw4} dev ${link.ifName}` : `dev ${link.ifName} scope link`;
      if (hint) this.hinted[4]++;
      return this.run(`route ${verb} 10.160.${slot}.0/24 ${via} metric ${metric}${hint ? ` src ${hint.local}` : ''}`,
        [`route ${verb} 10.160.${slot}.0/24 ${via} metric ${metric}${hint ? ` src ${hint.local}` : ''}`]);
    }
    const via = r.chance(0.7) ? `via fe80::1 dev ${link.ifName}` : `dev ${link.ifName}`;
    // (the kernel clears an IPv6 source hint from every table, silently, when its address goes)
    const hint = r.chance(0.6) ? poolAddresses(this.host.ns, link.ifName).find((a) => a.family === 6 && a.local.startsWith('fd00:')) : undefined;
    if (hint) this.hinted[6]++;
    const line = `route ${verb} fd00:160:${slot}::/64 ${via} metric ${metric}${hint ? ` src ${hint.local}` : ''}`;
    return this.run(line, [`-6 ${line}`]);
  }

  deleteRoute(): ChurnResult {
    const r = this.rnd;
    const family = r.chance(0.6) ? 4 : 6;
    const main = ipJson(this.host.ns, [`-${family}`, 'route', 'show', 'table', 'main'])
      .filter((x) => /^(10\.1[6-9]0\.|fd00:1[67]0:)/.test(String(x.dst)) || (x.dst === 'default' && r.chance(0.3)));
    if (main.length === 0) return this.addOrReplaceRoute();
    const route = r.pick(main);
    const metric = typeof route.metric === 'number' ? ` metric ${route.metric}` : '';
    const dst = route.dst === 'default' ? (family === 4 ? '0.0.0.0/0' : '::/0') : String(route.dst);
    const dev = route.dev !== undefined ? ` dev ${String(route.dev)}` : '';
    return this.run(`route del ${dst}${metric}${dev}`, [`${family === 6 ? '-6 ' : ''}route del ${dst}${metric}${dev}`]);
  }

  multipath(): ChurnResult {
    const r = this.rnd;
    const links = this.upLinks();
    if (links.length < 2) return this.linkUp();
    const [a, b] = [links[0]!, links[1]!];
    const slot = r.int(0, 3);
    if (r.chance(0.6)) {
      const line = `route replace 10.170.${slot}.0/24 nexthop via ${a.gw4} dev ${a.ifName} weight ${r.int(1, 3)} nexthop via ${b.gw4} dev ${b.ifName} weight ${r.int(1, 3)}`;
      return this.run(line, [line]);
    }
    const line = `route replace fd00:170:${slot}::/64 nexthop via fe80::1 dev ${a.ifName} nexthop via fe80::1 dev ${b.ifName}`;
    return this.run(line, [`-6 ${line}`]);
  }

  /** Routes that belong to no network: never copied. */
  deviceless(): ChurnResult {
    const r = this.rnd;
    const type = r.pick(['blackhole', 'unreachable', 'prohibit']);
    const line = r.chance(0.6) ? `route replace ${type} 10.180.${r.int(0, 3)}.0/24` : `-6 route replace ${type} fd00:180:${r.int(0, 3)}::/64`;
    return this.run(line.replace(/^-6 /, ''), [line]);
  }

  /** A route that uses a nexthop object (a single hop or a group over two links). */
  nexthopObject(): ChurnResult {
    const r = this.rnd;
    const links = this.upLinks();
    if (links.length < 2) return this.linkUp();
    const [a, b] = [links[0]!, links[1]!];
    const slot = r.int(0, 3);
    const first = r.pick([a, b]);
    const lines = [
      `nexthop replace id 101 via ${first.gw4} dev ${first.ifName}`,
      `nexthop replace id 102 via ${(first === a ? b : a).gw4} dev ${(first === a ? b : a).ifName}`,
      'nexthop replace id 103 group 101/102',
      `route replace 10.190.${slot}.0/24 nhid ${r.pick([101, 102, 103])}`,
    ];
    return this.run(`nexthop objects 101 (${first.ifName}), 102, group 103; route 10.190.${slot}.0/24 uses one`, lines);
  }

  linkDown(): ChurnResult {
    const up = this.upLinks();
    if (up.length === 0) return this.linkUp();
    const link = this.rnd.pick(up);
    return this.run(`link ${link.ifName} down`, [`link set ${link.ifName} down`]);
  }

  /** Every managed link down comes up; sometimes the default routes come back with it. */
  linkUp(): ChurnResult {
    const down = this.managedLinks().filter((l) => !linkUp(this.host.ns, l.ifName));
    const lines = down.map((l) => `link set ${l.ifName} up`);
    if (this.rnd.chance(0.7)) lines.push(...this.defaultRoutes(down));
    return this.run(`links up: ${down.map((l) => l.ifName).join(', ') || 'none was down'}`, lines);
  }

  private defaultRoutes(links: readonly { ifName: string; gw4: string }[]): string[] {
    return links.flatMap((l, i) => [
      `route replace default via ${l.gw4} dev ${l.ifName} metric ${200 + 100 * i}`,
      `-6 route replace default via fe80::1 dev ${l.ifName} metric ${200 + 100 * i}`,
    ]);
  }

  /** The optional managed interface is deleted, or created again (a new ifindex). */
  toggleOptional(): ChurnResult {
    const o = this.host.optional;
    if (linkExists(this.host.ns, o.ifName)) {
      o.remove();
      this.history.push(`delete link ${o.ifName}`);
      return { description: `delete link ${o.ifName}`, refused: 0 };
    }
    o.create();
    this.history.push(`create link ${o.ifName}`);
    return { description: `create link ${o.ifName}`, refused: 0 };
  }

  /** One random change. */
  step(): ChurnResult {
    const action = this.rnd.weighted<() => ChurnResult>([
      [() => this.addAddress(), 5],
      [() => this.removeAddress(), 4],
      [() => this.moveAddress(), 3],
      [() => this.addOrReplaceRoute(), 6],
      [() => this.deleteRoute(), 3],
      [() => this.multipath(), 2],
      [() => this.deviceless(), 1],
      [() => this.nexthopObject(), 1],
      [() => this.linkDown(), 1],
      [() => this.linkUp(), 2],
      [() => this.toggleOptional(), 1],
    ]);
    return action();
  }
}
