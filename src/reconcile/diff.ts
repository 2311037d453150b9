// The minimal change from what the kernel has to what dynmhs wants. Pure.
import { routeKey, routeObjectKey, ruleKey, ruleObjectKey, ruleSelectorKey, sameRouteContent } from '../keys';
import { DYNMHS_PROTOCOL, type Desired, type Observed, type Operation, type Route, type Rule } from '../model';

/** Tables no daemon of ours may ever own entries in, whatever protocol they carry. */
const RESERVED_TABLES: ReadonlySet<number> = new Set([0, 253, 254, 255]);

export function ownsRoute(route: Route): boolean {
  return route.protocol === DYNMHS_PROTOCOL && !RESERVED_TABLES.has(route.table);
}

export function ownsRule(rule: Rule): boolean {
  return rule.protocol === DYNMHS_PROTOCOL && rule.plain && !RESERVED_TABLES.has(rule.table);
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
  /** Keys ("route …"/"rule …") of desired objects of ours that are in place already. */
  readonly inPlace: ReadonlySet<string>;
}

export function diff(desired: Desired, observed: Observed, network: (table: number) => string | undefined = () => undefined): Plan {
  const observedRoutes = observed.routesByKey;
  const desiredRouteKeys = new Set<string>();
  const managedTables = new Set<number>();
  const routeAdds: Operation[] = [];
  const conflicts: Conflict[] = [];
  const inPlace = new Set<string>();

  for (const route of desired.routes) {
    const key = routeKey(route);
    desiredRouteKeys.add(key);
    managedTables.add(route.table);
    const present = observedRoutes.get(key);
    const name = network(route.table);
    if (present === undefined) routeAdds.push({ kind: 'add-route', route, network: name });
    else if (!ownsRoute(present)) conflicts.push({ wanted: route, present });
    else if (!sameRouteContent(present, route)) routeAdds.push({ kind: 'replace-route', route, network: name });
    else inPlace.add(routeObjectKey(route));
  }
  // A gateway must be reachable when its route is added: device routes go first.
  routeAdds.sort((a, b) => gatewayRank(a) - gatewayRank(b));

  const observedRuleKeys = new Set(observed.rules.map(ruleKey));
  const desiredRuleKeys = new Set<string>();
  const ruleAdds: Operation[] = [];
  for (const rule of desired.rules) {
    const key = ruleKey(rule);
    desiredRuleKeys.add(key);
    managedTables.add(rule.table);
    if (!observedRuleKeys.has(key)) ruleAdds.push({ kind: 'add-rule', rule, network: network(rule.table) });
    else inPlace.add(ruleObjectKey(rule));
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
      if (!desiredRouteKeys.has(key)) routeDeletes.push({ kind: 'delete-route', route, network: network(route.table) });
    } else if (managedTables.has(route.table)) {
      foreignRoutes.push(route);
    }
  }
  // Gateway routes go before the device routes that make their gateway reachable.
  routeDeletes.sort((a, b) => gatewayRank(b) - gatewayRank(a));

  return {
    operations: [...routeAdds, ...ruleAdds, ...ruleDeletes, ...routeDeletes],
    conflicts,
    foreignRoutes,
    foreignRules,
    inPlace,
  };
}

function gatewayRank(op: Operation): number {
  if (op.kind === 'add-rule' || op.kind === 'delete-rule') return 0;
  return op.route.gateway !== undefined || op.route.nexthops !== undefined ? 1 : 0;
}
