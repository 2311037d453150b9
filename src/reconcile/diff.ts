// The minimal change from what the kernel has to what dynmhs wants. Pure.
import { routeBaseKey, ruleKey, ruleSelectorKey, sameRouteContent } from '../keys';
import { DYNMHS_PROTOCOL, type Desired, type Observed, type Operation, type Route, type Rule } from '../model';

/** Tables no daemon of ours may ever own entries in, whatever protocol they carry: unspec, default, main, local. */
function reservedTable(table: number): boolean {
  return table === 0 || (table >= 253 && table <= 255);
}

export function ownsRoute(route: Route): boolean {
  return route.protocol === DYNMHS_PROTOCOL && !reservedTable(route.table);
}

export function ownsRule(rule: Rule): boolean {
  return rule.protocol === DYNMHS_PROTOCOL && rule.plain && !reservedTable(rule.table);
}

/** A route we want whose place in the table is taken by someone else's route. */
export interface Conflict {
  readonly wanted: Route;
  readonly present: Route;
}

export interface Plan {
  /** In order: routes before the rules that lead to them; rules removed before their routes. */
  readonly operations: readonly Operation[];
  readonly conflicts: readonly Conflict[];
  /** Routes and rules of others in the tables we manage: left alone, reported. */
  readonly foreignRoutes: readonly Route[];
  readonly foreignRules: readonly Rule[];
}

export function diff(desired: Desired, observed: Observed, network: (table: number) => string | undefined = () => undefined): Plan {
  const observedRoutes = observed.routesByKey;
  const managedTables = new Set<number>();
  const routeAdds: Operation[] = [];
  const conflicts: Conflict[] = [];

  // Tens of thousands of routes per pass in a burst: one lookup each, nothing allocated
  // for the ones in place.
  let lastTable = -1;
  for (const [key, route] of desired.routes) {
    if (route.table !== lastTable) managedTables.add(lastTable = route.table);
    const present = observedRoutes.get(key);
    if (present === undefined) routeAdds.push({ kind: 'add-route', route, network: network(route.table) });
    else if (present === route) continue;
    else if (!ownsRoute(present)) conflicts.push({ wanted: route, present });
    else if (!sameRouteContent(present, route)) routeAdds.push({ kind: 'replace-route', route, network: network(route.table) });
  }

  const observedRuleKeys = new Set(observed.rules.map(ruleKey));
  const desiredRuleKeys = new Set<string>();
  const ruleAdds: Operation[] = [];
  for (const rule of desired.rules) {
    const key = ruleKey(rule);
    desiredRuleKeys.add(key);
    managedTables.add(rule.table);
    if (!observedRuleKeys.has(key)) ruleAdds.push({ kind: 'add-rule', rule, network: network(rule.table) });
  }

  const ruleDeletes: Operation[] = [];
  const foreignRules: Rule[] = [];
  const desiredSelectors = new Set(desired.rules.map(ruleSelectorKey));
  for (const rule of observed.rules) {
    if (ownsRule(rule)) {
      if (!desiredRuleKeys.has(ruleKey(rule))) ruleDeletes.push({ kind: 'delete-rule', rule, network: network(rule.table) });
    } else if (managedTables.has(rule.table) || desiredSelectors.has(ruleSelectorKey(rule))) {
      foreignRules.push(rule);
    }
  }

  const routeDeletes: Operation[] = [];
  const foreignRoutes: Route[] = [];
  for (const [key, route] of observedRoutes) {
    if (ownsRoute(route)) {
      if (!desired.routes.has(key)) routeDeletes.push({ kind: 'delete-route', route, network: network(route.table) });
    } else if (managedTables.has(route.table)) {
      foreignRoutes.push(route);
    }
  }
  const paired = replacesInPlace(routeAdds, routeDeletes, desired.routes);
  // A gateway must be reachable when its route is added: device routes go first.
  const orderedAdds = byGatewayRank(paired.adds, 'device routes first');
  // Gateway routes go before the device routes that make their gateway reachable.
  const orderedDeletes = byGatewayRank(paired.deletes, 'gateway routes first');

  return {
    operations: [...orderedAdds, ...ruleAdds, ...ruleDeletes, ...orderedDeletes],
    conflicts,
    foreignRoutes,
    foreignRules,
  };
}

/**
 * An IPv6 copy whose next hop changed (`ip -6 route replace` in main: another gateway,
 * or none) has a new key in its old copy's place (prefix, source, metric). The kernel
 * refuses to add a route beside another in that place (EEXIST, which counts as done),
 * and deleting the old copy then leaves none: such an add and delete are one replace.
 */
export function replacesInPlace(adds: readonly Operation[], deletes: readonly Operation[],
  wanted: ReadonlyMap<string, Route>): { adds: Operation[]; deletes: Operation[] } {
  // place → the one delete there (-1: several, which the kernel cannot have made in one table)
  const byPlace = new Map<string, number>();
  deletes.forEach((op, i) => {
    if (op.kind !== 'delete-route' || op.route.family !== 6) return;
    const place = routeBaseKey(op.route);
    byPlace.set(place, byPlace.has(place) ? -1 : i);
  });
  if (byPlace.size === 0 || adds.length === 0) return { adds: [...adds], deletes: [...deletes] };
  const candidates = adds.filter((op) => op.kind === 'add-route' && op.route.family === 6 && (byPlace.get(routeBaseKey(op.route)) ?? -1) >= 0);
  if (candidates.length === 0) return { adds: [...adds], deletes: [...deletes] };
  // A replace takes the first route in the place: only where one route is wanted there.
  const places = new Set(candidates.map((op) => routeBaseKey((op as { route: Route }).route)));
  const wantedThere = new Map<string, number>();
  for (const route of wanted.values()) {
    if (route.family !== 6) continue;
    const place = routeBaseKey(route);
    if (places.has(place)) wantedThere.set(place, (wantedThere.get(place) ?? 0) + 1);
  }
  const replaced = new Set<number>();
  const merged = adds.map((op): Operation => {
    if (op.kind !== 'add-route' || op.route.family !== 6) return op;
    const place = routeBaseKey(op.route);
    const i = byPlace.get(place);
    if (i === undefined || i < 0 || replaced.has(i) || wantedThere.get(place) !== 1) return op;
    replaced.add(i);
    return { kind: 'replace-route', route: op.route, network: op.network };
  });
  return { adds: merged, deletes: deletes.filter((_, i) => !replaced.has(i)) };
}

/** Routes via a gateway (1) need the device route (0) that makes the gateway reachable. */
export function gatewayRank(op: Operation): number {
  if (op.kind === 'add-rule' || op.kind === 'delete-rule') return 0;
  return op.route.gateway !== undefined || op.route.nexthops !== undefined ? 1 : 0;
}

/**
 * The operations in two groups by gatewayRank, each in its original order (a stable
 * sort on a two-valued key, in one pass: a start-up sorts 10,000s with code V8 has not
 * optimised yet).
 */
export function byGatewayRank(operations: readonly Operation[], order: 'device routes first' | 'gateway routes first'): Operation[] {
  const device: Operation[] = [];
  const gateway: Operation[] = [];
  for (const op of operations) (gatewayRank(op) === 0 ? device : gateway).push(op);
  return order === 'device routes first' ? [...device, ...gateway] : [...gateway, ...device];
}
