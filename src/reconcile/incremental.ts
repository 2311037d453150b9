// A pass after route-only changes (a burst of thousands of routes arriving a few dozen
// per read) need not look at every route again: the copies of the changed main-table
// routes and the diff of the keys they touch are the whole difference. The result is
// what derive + diff would give; the unit tests check that on random changes. Whatever
// this cannot decide alone (a foreign route in a table of ours, a wanted place taken,
// a multipath route, which may share its copy with another route) returns undefined,
// and the loop runs the full pass, which reports and decides it.
import { keyedRoute, sameRouteContent } from '../keys';
import { MAIN_TABLE, type Operation, type Route } from '../model';
import { cachedCopy, type NetworkPlan } from '../policy/derive';
import { byGatewayRank, ownsRoute, replacesInPlace } from './diff';

export class IncrementalRoutes {
  /** Output device index → table of the network on it. */
  private readonly tableOn = new Map<number, number>();
  private readonly managedTables = new Set<number>();

  /**
   * Starts from a full pass: its desired routes (this object keeps them up to date
   * from now on: pass a copy) and its plans.
   */
  constructor(readonly routes: Map<string, Route>, plans: readonly NetworkPlan[]) {
    for (const plan of plans) {
      if (plan.link === undefined) continue;
      this.tableOn.set(plan.link.index, plan.network.table);
      this.managedTables.add(plan.network.table);
    }
    for (const route of routes.values()) this.managedTables.add(route.table);
  }

  /**
   * Operations for `changes` (route key → the route before them), in the order diff()
   * gives them, or undefined when a full pass must decide. `current` is the cache's
   * route map as it is now. On undefined, this object is no longer valid.
   */
  apply(changes: ReadonlyMap<string, Route | undefined>, current: ReadonlyMap<string, Route>,
    network: (table: number) => string | undefined): Operation[] | undefined {
    // One loop per method: V8 compiles a loop that runs 10,000 times while it runs (OSR),
    // and in one function with three such loops it compiled the whole three times over.
    const touched = new Set<string>();
    // Copies of routes that changed or went first, then those of the new routes: a new
    // route may take the key a changed one leaves.
    if (!this.dropCopiesOfOld(changes, current, touched)) return undefined;
    if (!this.addCopiesOfNew(changes, current, touched)) return undefined;
    return this.operationsFor(touched, current, network);
  }

  private dropCopiesOfOld(changes: ReadonlyMap<string, Route | undefined>, current: ReadonlyMap<string, Route>, touched: Set<string>): boolean {
    for (const key of changes.keys()) {
      const before = changes.get(key);
      if (before === undefined || before === current.get(key)) continue;
      // A multipath route reduced to its one hop on a link may share its copy with a
      // plain route via that hop: only the full pass sees both.
      if (before.nexthops !== undefined || current.get(key)?.nexthops !== undefined) return false;
      if (before.table !== MAIN_TABLE) {
        // A foreign route leaving a table of ours: the full pass forgets having reported it.
        if (this.managedTables.has(before.table) && !ownsRoute(before)) return false;
        continue;
      }
      const copy = this.copyOf(before);
      if (copy === undefined) continue;
      const copyKey = keyedRoute(copy);
      if (this.routes.get(copyKey) === copy) {
        this.routes.delete(copyKey);
        touched.add(copyKey);
      }
    }
    return true;
  }

  private addCopiesOfNew(changes: ReadonlyMap<string, Route | undefined>, current: ReadonlyMap<string, Route>, touched: Set<string>): boolean {
    for (const key of changes.keys()) {
      const after = current.get(key);
      if (changes.get(key) === after) continue;
      touched.add(key);
      if (after === undefined || after.table !== MAIN_TABLE) continue;
      if (after.nexthops !== undefined) return false;
      const copy = this.copyOf(after);
      if (copy === undefined) continue;
      const copyKey = keyedRoute(copy);
      const present = this.routes.get(copyKey);
      if (present === copy) continue;
      if (present !== undefined) return false;
      this.routes.set(copyKey, copy);
      touched.add(copyKey);
    }
    return true;
  }

  private operationsFor(touched: ReadonlySet<string>, current: ReadonlyMap<string, Route>,
    network: (table: number) => string | undefined): Operation[] | undefined {
    const adds: Operation[] = [];
    const deletes: Operation[] = [];
    for (const key of touched) {
      const want = this.routes.get(key);
      const have = current.get(key);
      if (want !== undefined) {
        if (have === undefined) adds.push({ kind: 'add-route', route: want, network: network(want.table) });
        else if (have === want) continue;
        else if (!ownsRoute(have)) return undefined;
        else if (!sameRouteContent(have, want)) adds.push({ kind: 'replace-route', route: want, network: network(want.table) });
      } else if (have !== undefined) {
        if (ownsRoute(have)) deletes.push({ kind: 'delete-route', route: have, network: network(have.table) });
        else if (this.managedTables.has(have.table)) return undefined;
      }
    }
    const paired = replacesInPlace(adds, deletes, this.routes);
    return [...byGatewayRank(paired.adds, 'device routes first'), ...byGatewayRank(paired.deletes, 'gateway routes first')];
  }

  /**
   * The copy of a single-path route: only the network on its output device has one.
   * (Multipath routes never get here: the full pass handles them.)
   */
  private copyOf(route: Route): Route | undefined {
    if (route.oif === undefined) return undefined;
    const table = this.tableOn.get(route.oif);
    return table === undefined ? undefined : cachedCopy(route, route.oif, table);
  }
}
