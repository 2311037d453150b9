// The chaos suite's judge: what the kernel should hold, worked out from the kernel's own
// dumps (`ip -j`), and what it does hold. It shares no code with the daemon (nothing from
// src/, nothing from the other test helpers): a mistake in the daemon's model of routes
// and rules cannot hide itself by being made twice. The rules are the README's, section
// "What exactly it does":
//
// - table T of a network IF:T holds, with protocol 249, a copy of every unicast route of
//   the main table that leaves through IF (IPv4 and IPv6): same destination, gateway,
//   metric, source hint, scope, type; a multipath route (or a nexthop group) contributes
//   only its next hops on IF (one hop: a plain route, several: multipath); a route using a
//   nexthop object is copied resolved, without the object; a next hop the kernel marks
//   dead (its link is down) cannot be put into another table, so it is not expected until
//   its link is up again; blackhole, unreachable,
//   prohibit and throw routes are not copied; a foreign route that holds the place of a
//   copy (same destination, TOS and metric in T) is left there and the copy is not made;
// - a rule `from ADDR lookup T priority T`, protocol 249, for every address of IF but
//   IPv4 169.254/16 and IPv6 link-local, and nothing else of protocol 249 outside main;
// - entries of other protocols are never changed (compared byte for byte with a snapshot).

import { spawnSync } from 'node:child_process';

export const OUR_PROTOCOL = '249';

export interface Network {
  readonly ifName: string;
  readonly table: number;
}

type Json = Record<string, unknown>;
export type Family = 4 | 6;

export interface KernelDump {
  /** `ip -j addr`: one entry per link, with its addresses in addr_info. */
  readonly links: readonly Json[];
  /** `ip -j -d -F route show table all`, every table. */
  readonly routes: Readonly<Record<Family, readonly Json[]>>;
  /** `ip -j -F rule show`. */
  readonly rules: Readonly<Record<Family, readonly Json[]>>;
}

function ipJson(ns: string, args: readonly string[]): Json[] {
  const r = spawnSync('ip', ['-n', ns, '-j', ...args], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`ip -n ${ns} -j ${args.join(' ')} failed (${r.status}): ${r.stderr.trim()}`);
  const text = r.stdout.trim();
  return text === '' ? [] : (JSON.parse(text) as Json[]);
}

/** Everything the checker looks at, read from namespace `ns`. */
export function dumpKernel(ns: string): KernelDump {
  return {
    links: ipJson(ns, ['addr', 'show']),
    routes: { 4: ipJson(ns, ['-d', '-4', 'route', 'show', 'table', 'all']), 6: ipJson(ns, ['-d', '-6', 'route', 'show', 'table', 'all']) },
    rules: { 4: ipJson(ns, ['-4', 'rule', 'show']), 6: ipJson(ns, ['-6', 'rule', 'show']) },
  };
}

export function isOurs(entry: Json): boolean {
  return entry.protocol === OUR_PROTOCOL || entry.protocol === 'dynmhs';
}

/** A stable text of a JSON value (keys sorted), for "byte for byte" comparisons. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const o = value as Json;
    return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

const tableOf = (r: Json): string => String(r.table ?? 'main');
const num = (v: unknown, fallback = 0): number => (typeof v === 'number' ? v : fallback);
const str = (v: unknown): string => (typeof v === 'string' || typeof v === 'number' ? String(v) : '-');
const flagsOf = (v: unknown): string[] => (Array.isArray(v) ? v.filter((f): f is string => typeof f === 'string') : []);

interface Hop { readonly gateway?: string; readonly dev?: string; readonly weight: number; readonly dead: boolean }

/** The next hops of a route (its own or its nexthop group's), or undefined for a single path. */
function hopsOf(route: Json): Hop[] | undefined {
  const list = route.nexthops;
  if (!Array.isArray(list)) return undefined;
  return list.map((h: Json) => ({
    gateway: h.gateway as string | undefined, dev: h.dev as string | undefined, weight: num(h.weight, 1), dead: flagsOf(h.flags).includes('dead'),
  }));
}

/** Device and gateway of a single-path route, resolved through its nexthop object if it has one. */
function singlePath(route: Json): { dev?: string; gateway?: string } {
  if (route.dev !== undefined) return { dev: route.dev as string, gateway: route.gateway as string | undefined };
  const info = route.nh_info as Json | undefined;
  if (info !== undefined && info.dev !== undefined) return { dev: info.dev as string, gateway: info.gateway as string | undefined };
  return { gateway: route.gateway as string | undefined };
}

/** What a copy must preserve of a route, as text; `hops` when it is multipath. */
function routeText(family: Family, table: string, route: Json, path: { dev?: string; gateway?: string }, hops?: readonly Hop[]): string {
  const multipath = hops === undefined ? ''
    : ' nexthops=' + hops.map((h) => `${h.gateway ?? '-'}@${h.dev ?? '-'}*${h.weight}`).sort().join(',');
  return `v${family} table ${table} ${str(route.type)} ${str(route.dst)} tos=${str(route.tos)} metric=${num(route.metric)}`
    + ` via=${path.gateway ?? '-'} dev=${path.dev ?? '-'} src=${str(route.prefsrc)} scope=${str(route.scope)}`
    + ` from=${str(route.src)} onlink=${flagsOf(route.flags).includes('onlink')}${multipath}`;
}

/** The place a route takes in its table: another route there with the same one is refused. */
function placeOf(family: Family, table: string, route: Json): string {
  return `v${family} table ${table} ${str(route.dst)} tos=${str(route.tos)} metric=${num(route.metric)} from=${str(route.src)}`;
}

/** The copy of a main-table route for network `net`, as text, or undefined if it does not leave through net's link. */
export function copyOf(family: Family, route: Json, net: Network): string | undefined {
  if (route.type !== undefined && route.type !== 'unicast') return undefined;
  const table = String(net.table);
  const hops = hopsOf(route);
  if (hops !== undefined) {
    const mine = hops.filter((h) => h.dev === net.ifName && !h.dead);
    if (mine.length === 0) return undefined;
    if (mine.length === 1) return routeText(family, table, route, { dev: net.ifName, gateway: mine[0]!.gateway });
    return routeText(family, table, route, {}, mine);
  }
  const path = singlePath(route);
  return path.dev === net.ifName ? routeText(family, table, route, path) : undefined;
}

/** A route as it stands in its table, as text comparable with copyOf(). */
function actualText(family: Family, route: Json): string {
  const hops = hopsOf(route);
  return hops !== undefined && hops.length > 1
    ? routeText(family, tableOf(route), route, {}, hops)
    : routeText(family, tableOf(route), route, hops?.length === 1 ? hops[0]! : singlePath(route));
}

interface AddressInfo { readonly family: string; readonly local: string; readonly scope?: string }

function addressesOf(dump: KernelDump, ifName: string): AddressInfo[] | undefined {
  const link = dump.links.find((l) => l.ifname === ifName);
  if (link === undefined) return undefined;
  return ((link.addr_info ?? []) as Json[])
    .filter((a) => typeof a.local === 'string' && a.local !== '')
    .map((a) => ({ family: String(a.family), local: a.local as string, scope: a.scope as string | undefined }));
}

/** IPv4 169.254/16 and IPv6 link-local (fe80::/10 or scope link) get no rule. */
export function getsRule(a: AddressInfo): boolean {
  if (a.family === 'inet') return !a.local.startsWith('169.254.');
  if (a.family === 'inet6') return a.scope !== 'link' && !/^fe[89ab][0-9a-f]?:/i.test(a.local);
  return false;
}

const RULE_FIELDS = new Set(['priority', 'src', 'srclen', 'table', 'protocol']);

function ruleText(family: Family, rule: Json): string {
  const full = family === 4 ? 32 : 128;
  const extra = Object.keys(rule).filter((k) => !RULE_FIELDS.has(k)).sort().map((k) => ` ${k}=${canonical(rule[k])}`).join('');
  return `v${family} rule ${num(rule.priority, -1)}: from ${str(rule.src)}/${num(rule.srclen, full)} lookup ${str(rule.table)}${extra}`;
}

export interface Expected {
  readonly routes: string[];
  readonly rules: string[];
  /** Copies not made because a foreign route holds their place. */
  readonly heldByForeign: string[];
}

/** What the networks call for, worked out from the kernel's own main table, links and addresses. */
export function expectedState(dump: KernelDump, nets: readonly Network[]): Expected {
  const routes: string[] = [];
  // One rule per address, though an address may be on a link twice (10.150.0.12/24 and /32).
  const rules = new Set<string>();
  const heldByForeign: string[] = [];
  for (const family of [4, 6] as const) {
    const all = dump.routes[family];
    const main = all.filter((r) => tableOf(r) === 'main');
    const foreignPlaces = new Set(all.filter((r) => !isOurs(r)).map((r) => placeOf(family, tableOf(r), r)));
    for (const net of nets) {
      const addresses = addressesOf(dump, net.ifName);
      if (addresses === undefined) continue;
      for (const a of addresses) {
        if ((a.family === 'inet') !== (family === 4) || !getsRule(a)) continue;
        rules.add(`v${family} rule ${net.table}: from ${a.local}/${family === 4 ? 32 : 128} lookup ${net.table}`);
      }
      for (const route of main) {
        const copy = copyOf(family, route, net);
        if (copy === undefined) continue;
        if (foreignPlaces.has(placeOf(family, String(net.table), route))) heldByForeign.push(copy);
        else routes.push(copy);
      }
    }
  }
  return { routes: routes.sort(), rules: [...rules].sort(), heldByForeign: heldByForeign.sort() };
}

/** Entries of protocol 249 in the dump, as text; `keep` excuses main-table routes someone else made with that number. */
export function ourEntries(dump: KernelDump, keep: (family: Family, route: Json) => boolean = () => false): { routes: string[]; rules: string[] } {
  const routes: string[] = [];
  const rules: string[] = [];
  for (const family of [4, 6] as const) {
    for (const r of dump.routes[family]) if (isOurs(r) && !keep(family, r)) routes.push(actualText(family, r));
    for (const r of dump.rules[family]) if (isOurs(r)) rules.push(ruleText(family, r));
  }
  return { routes: routes.sort(), rules: rules.sort() };
}

/** Multiset difference: what `want` has more of, and what `have` has more of. */
export function difference(want: readonly string[], have: readonly string[]): { missing: string[]; extra: string[] } {
  const counts = new Map<string, number>();
  for (const x of want) counts.set(x, (counts.get(x) ?? 0) + 1);
  for (const x of have) counts.set(x, (counts.get(x) ?? 0) - 1);
  const missing: string[] = [];
  const extra: string[] = [];
  for (const [k, n] of counts) {
    for (let i = 0; i < n; i++) missing.push(k);
    for (let i = 0; i > n; i--) extra.push(k);
  }
  return { missing: missing.sort(), extra: extra.sort() };
}

/**
 * The foreign entries to keep intact: every rule not of protocol 249, every route not of
 * protocol 249 outside the main and local tables, and the main-table routes `planted`
 * selects (whatever their protocol), each as canonical JSON.
 */
export function foreignSnapshot(dump: KernelDump, planted: (family: Family, route: Json) => boolean = () => false): string[] {
  const out: string[] = [];
  for (const family of [4, 6] as const) {
    for (const r of dump.rules[family]) if (!isOurs(r)) out.push(`v${family} rule ${canonical(r)}`);
    for (const r of dump.routes[family]) {
      const table = tableOf(r);
      if ((table === 'main' && planted(family, r)) || (!isOurs(r) && table !== 'main' && table !== 'local')) {
        out.push(`v${family} route ${canonical(r)}`);
      }
    }
  }
  return out.sort();
}

export interface CheckOptions {
  /** foreignSnapshot() taken before: must be unchanged. */
  readonly foreign?: readonly string[];
  /** Main-table routes of protocol 249 someone else made (dynmhs never touches main). */
  readonly planted?: (family: Family, route: Json) => boolean;
}

/** Everything wrong with the kernel's state for `nets`, or [] when it is exactly right. */
export function check(dump: KernelDump, nets: readonly Network[], options: CheckOptions = {}): string[] {
  const problems: string[] = [];
  const want = expectedState(dump, nets);
  const have = ourEntries(dump, options.planted);
  const show = (label: string, xs: readonly string[]): void => {
    if (xs.length > 0) problems.push(`${label} (${xs.length}): ${xs.slice(0, 6).join(' | ')}${xs.length > 6 ? ' | …' : ''}`);
  };
  const rules = difference(want.rules, have.rules);
  show('rules missing', rules.missing);
  show('rules extra or duplicated', rules.extra);
  const routes = difference(want.routes, have.routes);
  show('routes missing', routes.missing);
  show('routes extra, stale or duplicated', routes.extra);
  if (options.foreign !== undefined) {
    const now = foreignSnapshot(dump, options.planted);
    const changed = difference(options.foreign, now);
    show('foreign entries gone or changed', changed.missing);
    show('foreign entries new', changed.extra);
  }
  return problems;
}

/** After SIGTERM: every entry of protocol 249 still there (main-table routes `planted` selects excepted). */
export function leftovers(dump: KernelDump, planted?: (family: Family, route: Json) => boolean): string[] {
  const ours = ourEntries(dump, planted);
  return [...ours.rules, ...ours.routes];
}
