// What dynmhs wants in the kernel, as a pure function of what it sees.
import { isLinkLocal } from '../address';
import { keyedRoute, routeKey, ruleKey } from '../keys';
import {
  DYNMHS_PROTOCOL, MAIN_TABLE,
  type Address, type Desired, type Link, type ManagedNetwork, type NextHop, type Observed, type Route, type Rule,
} from '../model';
import { memoOf, RouteRecord, setMemo } from '../route-record';

/** One network's share of the desired state, also what status reports show. */
export interface NetworkPlan {
  readonly network: ManagedNetwork;
  /** Undefined while no interface of that name exists. */
  readonly link?: Link;
  readonly addresses: readonly Address[];
  readonly rules: readonly Rule[];
  readonly routes: readonly Route[];
}

export interface Derived {
  readonly desired: Desired;
  readonly plans: readonly NetworkPlan[];
}

/** Addresses that get a rule: every IPv4 one but 169.254/16, every IPv6 one but link-local. */
export function ruleAddresses(addresses: readonly Address[], linkIndex: number): Address[] {
  return addresses.filter((a) => a.index === linkIndex && !isLinkLocal(a.family, a.local));
}

/**
 * The copy of a main-table route for the table of the network on `linkIndex`, or
 * undefined if the route does not leave through that link.
 *
 * - Single-path unicast routes via the link are copied as they are: prefix, default,
 *   host and gateway-less device routes, with metric, gateway, source hint, scope and type.
 * - Multipath routes (and nexthop groups) contribute only their next hops on the link:
 *   one such hop becomes a plain route via it, several stay a multipath route.
 *   A table must never send traffic out of another network's interface.
 * - A route using a nexthop object is copied with that object resolved (its device and
 *   gateway), never with the object itself: the object belongs to whoever made it and may
 *   change or vanish under us.
 * - Device-less routes (blackhole, unreachable, prohibit, throw) belong to no network.
 */
export function copyForTable(route: Route, linkIndex: number, table: number): Route | undefined {
  if (route.type !== 'unicast') return undefined;
  if (route.nexthops === undefined) {
    return route.oif === linkIndex ? copyVia(route, table, linkIndex, route.gateway, undefined) : undefined;
  }
  const hops = route.nexthops.filter((hop) => hop.oif === linkIndex);
  if (hops.length === 0) return undefined;
  if (hops.length === 1) return copyVia(route, table, linkIndex, hops[0].gateway, undefined);
  return copyVia(route, table, undefined, undefined, hops);
}

// One record of one shape, not spreads: at start-up a pass makes 10,000s of copies with
// code that has not been optimised yet, and copies and the kernel's routes are made alike
// (codec.ts), so the code that handles both stays monomorphic.
function copyVia(route: Route, table: number, oif: number | undefined, gateway: string | undefined,
  nexthops: readonly NextHop[] | undefined): Route {
  return new RouteRecord(route.family, table, route.dst, route.dstLength, route.tos, route.metric, DYNMHS_PROTOCOL,
    route.scope, route.type, oif, gateway, route.prefsrc, nexthops, undefined, route.onlink, route.src, route.srcLength);
}

// A main-table route object lives until the kernel changes it, so its copies can too:
// the same copy object pass after pass keeps its remembered key and costs no allocation.
// Most routes are copied into one table, via their own device: that copy is kept as it
// is. Other cases (multipath routes, a route asked for another link or table, one with
// no copy) keep a list of what was asked and made.
interface CopySlot {
  readonly linkIndex: number;
  readonly table: number;
  readonly copy: Route | undefined;
}
type Copies = Route | CopySlot[];

/** The copy of `route` for the network on `linkIndex` (see copyForTable), made once per route object. */
export function cachedCopy(route: Route, linkIndex: number, table: number): Route | undefined {
  const memo = memoOf(route);
  // A key there means the route was asked for as if it were a copy: keep it, remember nothing.
  if (typeof memo === 'string') return keyedCopy(copyForTable(route, linkIndex, table));
  const known = memo as Copies | undefined;
  if (known !== undefined) {
    if (!Array.isArray(known)) {
      if (known.oif === linkIndex && known.table === table) return known;
    } else {
      for (const slot of known) if (slot.linkIndex === linkIndex && slot.table === table) return slot.copy;
    }
  }
  const copy = keyedCopy(copyForTable(route, linkIndex, table));
  if (known === undefined && copy !== undefined && copy.oif === linkIndex) {
    setMemo(route, copy);
    return copy;
  }
  // Once a list, always that list: it grows in place.
  if (Array.isArray(known)) {
    known.push({ linkIndex, table, copy });
    return copy;
  }
  const slots: CopySlot[] = known === undefined ? [] : [{ linkIndex: known.oif!, table: known.table, copy: known }];
  slots.push({ linkIndex, table, copy });
  setMemo(route, slots);
  return copy;
}

function keyedCopy(copy: Route | undefined): Route | undefined {
  if (copy !== undefined) keyedRoute(copy);
  return copy;
}

/** The addresses of a network's link that get a rule, and its rules: `from <address> lookup <table>`. */
export function networkRulesOf(network: ManagedNetwork, link: Link, observedAddresses: readonly Address[]):
  { readonly addresses: Address[]; readonly rules: Rule[] } {
  const addresses = ruleAddresses(observedAddresses, link.index);
  const rules = addresses.map((a): Rule => ({
    family: a.family,
    priority: network.priority,
    table: network.table,
    src: a.local,
    srcLength: a.family === 4 ? 32 : 128,
    protocol: DYNMHS_PROTOCOL,
    plain: true,
  }));
  return { addresses, rules };
}

/** Every network's rules, each once (two networks may want the same one), in the networks' order. */
export function uniqueRules(plans: readonly NetworkPlan[]): Rule[] {
  const rules = new Map<string, Rule>();
  for (const plan of plans) for (const rule of plan.rules) rules.set(ruleKey(rule), rule);
  return [...rules.values()];
}

/** A desired state from plain lists (what none of the routes and rules would be: `desiredOf([], [])`). */
export function desiredOf(routes: readonly Route[], rules: readonly Rule[]): Desired {
  return { routes: new Map(routes.map((route) => [routeKey(route), route])), rules };
}

export function derive(observed: Observed, networks: readonly ManagedNetwork[]): Derived {
  const linksByName = new Map<string, Link>();
  for (const link of observed.links.values()) linksByName.set(link.name, link);
  // Indexed by output device so a pass costs O(routes), not O(routes × networks).
  const mainByOif = new Map<number, Route[]>();
  const mainMultipath: Route[] = [];
  for (const route of observed.routesByKey.values()) {
    if (route.table !== MAIN_TABLE) continue;
    if (route.nexthops !== undefined) mainMultipath.push(route);
    else if (route.oif !== undefined) {
      const list = mainByOif.get(route.oif);
      if (list === undefined) mainByOif.set(route.oif, [route]); else list.push(route);
    }
  }

  const routes = new Map<string, Route>();
  const plans: NetworkPlan[] = networks.map((network) => {
    const link = linksByName.get(network.interfaceName);
    if (link === undefined) return { network, addresses: [], rules: [], routes: [] };
    const { addresses, rules: networkRules } = networkRulesOf(network, link, observed.addresses);
    const networkRoutes: Route[] = [];
    for (const candidates of [mainByOif.get(link.index) ?? [], mainMultipath]) {
      for (const route of candidates) {
        const copy = cachedCopy(route, link.index, network.table);
        if (copy === undefined) continue;
        networkRoutes.push(copy);
        routes.set(keyedRoute(copy), copy);
      }
    }
    return { network, link, addresses, rules: networkRules, routes: networkRoutes };
  });
  return { desired: { routes, rules: uniqueRules(plans) }, plans };
}
