// Route-only passes (IncrementalRoutes) against the full derive + diff, on random
// sequences of main-table changes: the same routes wanted, the same operations, and a
// full pass whenever it cannot decide alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ObservedCache, type CacheEvent } from '../../src/kernel/cache';
import { operationKey } from '../../src/keys';
import { DYNMHS_PROTOCOL, type Operation, type Route } from '../../src/model';
import { derive } from '../../src/policy/derive';
import { diff } from '../../src/reconcile/diff';
import { IncrementalRoutes } from '../../src/reconcile/incremental';
import { addr, fullPassOn, NETWORKS, networkOf, OTHER, random, route, routeChangesAlone, WAN1, WAN2 } from './fixtures';



function randomMainRoute(next: () => number): Route {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)];
  const links = [WAN1.index, WAN2.index, OTHER.index];
  const v6 = next() < 0.3;
  const dst = v6 ? pick(['fd00:a::', 'fd00:b::', 'fd00:c::', '::']) : pick(['10.9.0.0', '10.9.1.0', '10.9.2.0', '10.9.3.0', '0.0.0.0']);
  const dstLength = dst === '::' || dst === '0.0.0.0' ? 0 : v6 ? 64 : 24;
  const metric = pick([0, 100]);
  const shape = next();
  if (shape < 0.1) return route({ dst, dstLength, metric, type: 'blackhole' });
  if (shape < 0.25) {
    return route({ dst, dstLength, metric, nexthops: [
      { oif: pick(links), gateway: v6 ? 'fe80::1' : '10.101.0.1', weight: 1 },
      { oif: pick(links), gateway: v6 ? 'fe80::2' : '10.102.0.1', weight: 1 },
    ] });
  }
  const oif = pick(links);
  const gateway = next() < 0.5 ? undefined : v6 ? pick(['fe80::1', 'fe80::2']) : pick(['10.101.0.1', '10.102.0.1']);
  return route({ dst, dstLength, metric, oif, gateway, protocol: pick([2, 3, 4]) });
}

/** Operations as comparable strings; the order only matters between kinds and gateway ranks. */
const opKeys = (ops: readonly Operation[]): string[] => ops.map((op) => `${op.kind} ${operationKey(op)}`).sort();

function assertOrdered(ops: readonly Operation[]): void {
  // Adds before deletes; among adds, device routes before gateway routes.
  let seenDelete = false;
  let seenGatewayAdd = false;
  for (const op of ops) {
    if (op.kind === 'delete-route') { seenDelete = true; continue; }
    assert.ok(!seenDelete, 'an add after a delete');
    if (op.kind !== 'add-route' && op.kind !== 'replace-route') continue;
    const viaGateway = op.route.gateway !== undefined || op.route.nexthops !== undefined;
    assert.ok(viaGateway || !seenGatewayAdd, 'a device route after a gateway route');
    seenGatewayAdd ||= viaGateway;
  }
}

for (const seed of Array.from({ length: 100 }, (_, i) => i + 1)) {
  test(`route-only passes equal full passes on random changes (seed ${seed})`, () => {
    const next = random(seed);
    const cache = new ObservedCache();
    cache.replaceAll('links', [WAN1, WAN2, OTHER].map((link): CacheEvent => ({ kind: 'link', removed: false, link })));
    cache.replaceAll('addresses', [addr(3, '10.101.0.2'), addr(4, '10.102.0.2')].map((address): CacheEvent => ({ kind: 'address', removed: false, address })));
    cache.replaceAll('routes', []);

    let incremental: IncrementalRoutes | undefined;
    let decided = 0;
    let fullPasses = 0;
    const fullPass = (): void => {
      const { desired, plans } = fullPassOn(cache);
      incremental = new IncrementalRoutes(new Map(desired.routes), plans);
      fullPasses++;
    };
    fullPass();

    for (let step = 0; step < 300; step++) {
      // A handful of kernel events, as one read of the monitor socket brings.
      for (let n = 1 + Math.floor(next() * 4); n > 0; n--) {
        const r = next();
        const existing = [...cache.snapshot().routesByKey.values()];
        if (r < 0.55 || existing.length === 0) {
          cache.apply({ kind: 'route', removed: false, replace: next() < 0.3, route: randomMainRoute(next) });
        } else if (r < 0.9) {
          cache.apply({ kind: 'route', removed: true, replace: false, route: existing[Math.floor(next() * existing.length)] });
        } else if (r < 0.93) {
          // Someone else's route in a table of ours.
          cache.apply({ kind: 'route', removed: false, replace: false, route: { ...randomMainRoute(next), table: 2000, protocol: 4 } });
        } else {
          // An echo of something already there changes nothing.
          const same = existing[Math.floor(next() * existing.length)];
          cache.apply({ kind: 'route', removed: false, replace: false, route: { ...same } });
        }
      }
      const changes = routeChangesAlone(cache);
      assert.ok(changes !== undefined, 'route events alone keep the change list');
      const observed = cache.snapshot();
      const operations = incremental!.apply(changes, observed.routesByKey, networkOf);
      const full = derive(observed, NETWORKS);
      const fullPlan = diff(full.desired, observed, networkOf);
      if (operations === undefined) {
        // Only what the full pass must report or decide sends it there.
        assert.ok(fullPlan.conflicts.length > 0 || fullPlan.foreignRoutes.length > 0
          || [...changes].some(([key, before]) => (before !== undefined && before.table === 2000 && before.protocol !== DYNMHS_PROTOCOL)
            || before?.nexthops !== undefined || observed.routesByKey.get(key)?.nexthops !== undefined
            || sharesCopyWithMultipath(before ?? observed.routesByKey.get(key), observed.routesByKey)),
        `seed ${seed} step ${step}: fell back to a full pass without a reason`);
        fullPass();
        continue;
      }
      decided++;
      assert.deepEqual(opKeys(operations), opKeys(fullPlan.operations.filter((op) => op.kind.endsWith('-route'))), `seed ${seed} step ${step}`);
      assert.deepEqual([...incremental!.routes.keys()].sort(), [...full.desired.routes.keys()].sort(), `seed ${seed} step ${step}: wanted routes`);
      for (const [key, copy] of full.desired.routes) assert.equal(incremental!.routes.get(key), copy, key);
      assertOrdered(operations);
      for (const op of operations) cache.applyOperation(op);
      routeChangesAlone(cache);
    }
    assert.ok(decided > 100, `only ${decided} of 300 passes were route-only (${fullPasses} full)`);
  });
}

/** A multipath route reduced to one hop may have the same copy as a plain route via that hop. */
function sharesCopyWithMultipath(changed: Route | undefined, routes: ReadonlyMap<string, Route>): boolean {
  if (changed === undefined) return false;
  return [...routes.values()].some((r) => r.nexthops !== undefined && r.table === changed.table && r.family === changed.family
    && r.dst === changed.dst && r.dstLength === changed.dstLength && r.metric === changed.metric);
}

test('anything but routes changing asks for a full pass', () => {
  const cache = new ObservedCache();
  assert.equal(routeChangesAlone(cache), undefined, 'nothing known yet');
  assert.deepEqual([...routeChangesAlone(cache)!.keys()], []);
  cache.apply({ kind: 'address', removed: false, address: addr(3, '10.101.0.2') });
  assert.equal(routeChangesAlone(cache), undefined, 'an address');
  cache.apply({ kind: 'route', removed: false, replace: false, route: route({ dst: '10.9.0.0', dstLength: 24, oif: 3 }) });
  assert.equal(routeChangesAlone(cache)?.size, 1, 'a route');
  cache.replaceAll('routes', []);
  assert.equal(routeChangesAlone(cache), undefined, 'a dump');
});
