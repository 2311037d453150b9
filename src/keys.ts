// Identities of kernel objects, as the kernel itself tells two objects apart.
import { MAIN_TABLE, type Operation, type Route, type Rule } from './model';
import { memoOf, setMemo } from './route-record';

/**
 * IPv4 keeps one route per (table, prefix, tos, metric) unless routes are appended,
 * and the kernel appends them itself in main: the prefix routes of one subnet on two
 * links (10.150.0.0/24 dev wan1 and dev wan2), each to be copied into its link's
 * table. So main's IPv4 routes are told apart by device too; elsewhere an IPv4 route's
 * key is its place, which a foreign route may hold. IPv6 keeps several routes that
 * differ only in their next hop (fe80::/64 on every link, in one table), so its
 * identity includes the device and gateway. Multipath routes are one object.
 */
export function routeKey(route: Route): string {
  const memo = memoOf(route);
  return typeof memo === 'string' ? memo : computeRouteKey(route);
}

/**
 * routeKey(), remembered for as long as the route lives: for the copies a pass derives,
 * whose keys every later pass and operation asks for. The kernel's routes are keyed once,
 * by the cache that holds them (and their slot holds their copies: route-record.ts).
 */
export function keyedRoute(route: Route): string {
  const memo = memoOf(route);
  if (typeof memo === 'string') return memo;
  const key = computeRouteKey(route);
  if (memo === undefined) setMemo(route, key);
  return key;
}

const ruleKeys = new WeakMap<Rule, string>();

// Route and rule keys share one namespace ("4|…", "6|…" for routes, "rule|…"): the loop
// tracks both kinds in one set, and a key made once per object is cheaper than a prefix
// per use. The route keys' heads are short: a full table keeps two of them per route.
//
// Keys are joined, not concatenated: V8 keeps a `+` or template result of 13 characters
// or more as a tree of its parts (a ConsString, 32 bytes per part) and hashes it by
// walking that tree, and a table of a million routes keeps two keys per route alive.
// Array.prototype.join makes one flat string.
function computeRouteKey(route: Route): string {
  if (route.family === 4) {
    const place = ipv4PlaceKey(route);
    if (route.table !== MAIN_TABLE) return place;
    // Routes appended on one link share one copy in that link's table: one key for them.
    return mainIpv4Key(place, route.nexthops !== undefined ? 'mp' : route.oif);
  }
  const parts = baseKeyParts(route, 6);
  if (route.nexthops !== undefined) parts.push('mp');
  else parts.push(route.oif ?? '', route.gateway ?? '');
  return parts.join('|');
}

/** An IPv4 route's place in its table (prefix, TOS, metric): the key of every IPv4 route outside main. */
export function ipv4PlaceKey(route: Route): string {
  return [4, route.table, route.dst, route.dstLength, route.tos, route.metric].join('|');
}

/** The key of an IPv4 main-table route in `place` (ipv4PlaceKey) via device `oif` (or multipath). */
export function mainIpv4Key(place: string, oif: number | 'mp' | undefined): string {
  return [place, oif ?? ''].join('|');
}

/** What an IPv6 `replace` overwrites: any route with this prefix, source and metric. */
export function routeBaseKey(route: Route): string {
  return baseKeyParts(route, route.family).join('|');
}

function baseKeyParts(route: Route, head: string | number): (string | number)[] {
  return [head, route.table, route.dst, route.dstLength, route.src ?? '', route.srcLength, route.tos, route.metric];
}

/** Several rules may share selectors; the kernel deletes by selectors plus protocol, so both count. */
export function ruleKey(rule: Rule): string {
  let key = ruleKeys.get(rule);
  if (key === undefined) {
    key = computeRuleKey(rule);
    ruleKeys.set(rule, key);
  }
  return key;
}

function computeRuleKey(rule: Rule): string {
  return ['rule', rule.family, rule.priority, rule.src ?? 'all', rule.srcLength, rule.table, rule.protocol, rule.plain ? 'p' : 'x'].join('|');
}

/** The same rule as another program would write it, whatever protocol it claims. */
export function ruleSelectorKey(rule: Rule): string {
  return [rule.family, rule.priority, rule.src ?? 'all', rule.srcLength, rule.table].join('|');
}

export function sameRouteContent(a: Route, b: Route): boolean {
  return a.type === b.type && a.scope === b.scope && a.oif === b.oif && a.gateway === b.gateway
    && a.prefsrc === b.prefsrc && a.protocol === b.protocol && Boolean(a.onlink) === Boolean(b.onlink)
    && sameNextHops(a, b);
}

/** Everything the kernel would tell about two routes known to have one key (found under it in one map) is the same. */
export function identicalRoutes(a: Route, b: Route): boolean {
  return a === b || (sameRouteContent(a, b) && a.nhid === b.nhid && a.src === b.src && a.srcLength === b.srcLength);
}

function sameNextHops(a: Route, b: Route): boolean {
  if (a.nexthops === undefined || b.nexthops === undefined) return a.nexthops === b.nexthops;
  if (a.nexthops.length !== b.nexthops.length) return false;
  return a.nexthops.every((hop, i) => {
    const other = b.nexthops![i];
    return hop.oif === other.oif && hop.gateway === other.gateway && hop.weight === other.weight;
  });
}

/** The object an operation acts on. */
export function operationKey(op: Operation): string {
  return op.kind === 'add-rule' || op.kind === 'delete-rule' ? ruleKey(op.rule) : routeKey(op.route);
}
