// Address passes (rulesAfterAddressChanges, with IncrementalRoutes for the routes an IPv4
// address takes with it) against the full derive + diff, on random sequences of address
// changes: the same rules wanted, the same plans, the same operations in the same order,
// and a full pass only when a table gains its first rule or loses its last.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ObservedCache, type CacheEvent } from '../../src/kernel/cache';
import { RouteMap } from '../../src/kernel/route-map';
import { operationKey, ruleKey } from '../../src/keys';
import type { Address, Operation, Route, Rule } from '../../src/model';
import { derive, type NetworkPlan } from '../../src/policy/derive';
import { rulesAfterAddressChanges } from '../../src/reconcile/address-pass';
import { diff } from '../../src/reconcile/diff';
import { IncrementalRoutes } from '../../src/reconcile/incremental';
import { addr, fullPassOn, NETWORKS, networkOf, OTHER, random, route, rule, WAN1, WAN2 } from './fixtures';



const LINKS = [WAN1.index, WAN2.index, OTHER.index];
const V4 = ['10.101.0.2', '10.101.0.3', '10.102.0.2', '10.102.0.3', '169.254.7.7'];
const V6 = ['fd00:101::2', 'fd00:101::3', 'fd00:102::2', 'fe80::2'];

function randomAddress(next: () => number): Address {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)];
  const local = next() < 0.6 ? pick(V4) : pick(V6);
  return addr(pick(LINKS), local, local.includes(':') ? 64 : pick([24, 32]));
}

/** Main-table routes, some naming an address as their source hint (an IPv4 removal flushes those). */
function mainRoutes(): Route[] {
  const routes: Route[] = [];
  for (const [oif, gateway] of [[WAN1.index, '10.101.0.1'], [WAN2.index, '10.102.0.1'], [OTHER.index, undefined]] as const) {
    routes.push(route({ dst: `10.${oif}.0.0`, dstLength: 16, oif, gateway }));
    routes.push(route({ dst: `10.${oif}.1.0`, dstLength: 24, oif, gateway, prefsrc: V4[oif - 3] }));
    routes.push(route({ dst: `10.${oif}.2.0`, dstLength: 24, oif, prefsrc: V4[oif - 2], metric: 5 }));
    routes.push(route({ dst: `fd00:${oif}::`, dstLength: 64, oif, gateway: 'fe80::1' }));
  }
  return routes;
}

const ruleOps = (ops: readonly Operation[]): string[] => ops.filter((op) => op.kind.endsWith('-rule')).map((op) => `${op.kind} ${operationKey(op)}`);
const routeOps = (ops: readonly Operation[]): string[] => ops.filter((op) => op.kind.endsWith('-route')).map((op) => `${op.kind} ${operationKey(op)}`).sort();
const kinds = (ops: readonly Operation[]): string => ops.map((op) => op.kind.startsWith('delete') ? `d${op.kind.slice(7)}` : `a${op.kind.slice(-5)}`)
  .filter((k, i, all) => i === 0 || all[i - 1] !== k).join(' ');
const tables = (rules: readonly Rule[]): string => [...new Set(rules.map((r) => r.table))].sort().join(',');
const planView = (plans: readonly NetworkPlan[]): unknown => plans.map((p) => ({
  network: p.network.interfaceName, link: p.link?.index, addresses: p.addresses.map((a) => `${a.local}/${a.prefixLength}`), rules: p.rules.map(ruleKey),
}));

for (const seed of Array.from({ length: 100 }, (_, i) => i + 1)) {
  test(`address passes equal full passes on random address changes (seed ${seed})`, () => {
    const next = random(seed);
    const cache = new ObservedCache();
    cache.replaceAll('links', [WAN1, WAN2, OTHER].map((link): CacheEvent => ({ kind: 'link', removed: false, link })));
    const initial = [addr(3, '10.101.0.2'), addr(4, '10.102.0.2'), addr(3, 'fd00:101::2'), addr(4, 'fd00:102::2'), addr(5, '10.105.0.2')];
    cache.replaceAll('addresses', initial.map((address): CacheEvent => ({ kind: 'address', removed: false, address })));
    cache.replaceAll('routes', mainRoutes().map((r): CacheEvent => ({ kind: 'route', removed: false, replace: false, route: r })));
    // The kernel's own rules, and someone else's rule in a table of ours.
    const foreign = [rule('10.101.0.3', 2000, 4), { ...rule('10.9.9.9', 7000, 3), priority: 100 }];
    cache.replaceAll('rules', foreign.map((r): CacheEvent => ({ kind: 'rule', removed: false, rule: r })));

    let wanted: { plans: readonly NetworkPlan[]; rules: readonly Rule[] };
    let incremental: IncrementalRoutes;
    let decided = 0;
    const fullPass = (): void => {
      const { desired, plans } = fullPassOn(cache);
      wanted = { plans, rules: desired.rules };
      incremental = new IncrementalRoutes(new Map(desired.routes), plans);
    };
    fullPass();

    for (let step = 0; step < 200; step++) {
      // A few address events, as one read of the monitor socket brings: mostly of
      // addresses there, also of addresses the cache does not know.
      for (let n = 1 + Math.floor(next() * 3); n > 0; n--) {
        const known = cache.snapshot().addresses;
        const removing = known.length > 0 && next() < 0.5;
        const address = removing && next() < 0.9 ? known[Math.floor(next() * known.length)] : randomAddress(next);
        cache.apply({ kind: 'address', removed: removing, address });
      }
      const changes = cache.takeChanges();
      assert.ok(changes.routes !== undefined, 'address events keep the change list');
      cache.takeRedumpRequest();
      const observed = cache.snapshot();
      const full = derive(observed, NETWORKS);
      const fullPlan = diff(full.desired, observed, networkOf);
      const pass = rulesAfterAddressChanges(wanted!, changes.addressLinks, observed, networkOf);
      if (pass === undefined) {
        assert.notEqual(tables(full.desired.rules), tables(wanted!.rules), `seed ${seed} step ${step}: fell back to a full pass without a reason`);
        fullPass();
        continue;
      }
      const routeOperations = changes.routes.size > 0 ? incremental!.apply(changes.routes, observed.routesByKey, networkOf) : [];
      assert.ok(routeOperations !== undefined, `seed ${seed} step ${step}: the flushed routes are plain routes of main`);
      const operations = [...routeOperations.filter((op) => op.kind !== 'delete-route'), ...pass.adds, ...pass.deletes,
        ...routeOperations.filter((op) => op.kind === 'delete-route')];
      decided++;
      assert.deepEqual(ruleOps(operations), ruleOps(fullPlan.operations), `seed ${seed} step ${step}: rule operations`);
      assert.deepEqual(routeOps(operations), routeOps(fullPlan.operations), `seed ${seed} step ${step}: route operations`);
      assert.equal(kinds(operations), kinds(fullPlan.operations), `seed ${seed} step ${step}: order of kinds`);
      assert.deepEqual(pass.rules.map(ruleKey), full.desired.rules.map(ruleKey), `seed ${seed} step ${step}: rules wanted`);
      assert.deepEqual(planView(pass.plans), planView(full.plans), `seed ${seed} step ${step}: plans`);
      assert.deepEqual([...incremental!.routes.keys()].sort(), [...full.desired.routes.keys()].sort(), `seed ${seed} step ${step}: routes wanted`);
      for (const op of operations) cache.applyOperation(op);
      cache.takeChanges();
      wanted = pass;
    }
    assert.ok(decided > 100, `only ${decided} of 200 passes were address passes`);
  });
}

test('address changes keep the route change list; the routes an IPv4 address takes with it are in it', () => {
  const cache = new ObservedCache();
  cache.replaceAll('links', [WAN1].map((link): CacheEvent => ({ kind: 'link', removed: false, link })));
  cache.replaceAll('addresses', [addr(3, '10.101.0.2'), addr(3, '10.101.0.3')].map((address): CacheEvent => ({ kind: 'address', removed: false, address })));
  const viaSource = route({ dst: '10.9.0.0', dstLength: 24, oif: 3, prefsrc: '10.101.0.3' });
  const plain = route({ dst: '10.9.1.0', dstLength: 24, oif: 3, gateway: '10.101.0.1' });
  cache.replaceAll('routes', [viaSource, plain].map((r): CacheEvent => ({ kind: 'route', removed: false, replace: false, route: r })));
  cache.takeChanges();

  cache.apply({ kind: 'address', removed: false, address: addr(3, '10.101.0.4') });
  let changes = cache.takeChanges();
  assert.deepEqual([...changes.addressLinks], [3]);
  assert.equal(changes.routes?.size, 0);
  assert.equal(cache.takeRedumpRequest(), false, 'an address added drops nothing');

  cache.apply({ kind: 'address', removed: true, address: addr(3, '10.101.0.4') });
  changes = cache.takeChanges();
  assert.deepEqual([...changes.addressLinks], [3]);
  assert.equal(changes.routes?.size, 0);
  assert.equal(cache.takeRedumpRequest(), false, 'neither the last address of the link nor a source hint: no re-read');

  cache.apply({ kind: 'address', removed: true, address: addr(3, '10.101.0.3') });
  changes = cache.takeChanges();
  assert.deepEqual([...changes.routes!.values()], [viaSource], 'the route with it as its source hint, as it was');
  assert.equal(cache.takeRedumpRequest(), true, 'a route named it as its source hint');
  assert.ok(!cache.snapshot().routes.includes(viaSource));

  cache.apply({ kind: 'address', removed: true, address: addr(3, '10.101.0.2') });
  changes = cache.takeChanges();
  assert.deepEqual([...changes.routes!.values()], [plain], 'the last IPv4 address takes the routes via the link');
  assert.equal(cache.takeRedumpRequest(), true);
  assert.equal(cache.snapshot().routes.length, 0);

  cache.apply({ kind: 'link', removed: false, link: { ...WAN1, up: false } });
  assert.equal(cache.takeChanges().routes, undefined, 'a link change: look at everything');
});

test('the cache\'s route map counts the source hints its routes name, through replacements, deletions and dumps', () => {
  const routes = new RouteMap();
  const a = route({ dst: '10.9.0.0', dstLength: 24, oif: 3, prefsrc: '10.101.0.3' });
  const b = route({ dst: '10.9.1.0', dstLength: 24, oif: 3, prefsrc: '10.101.0.3' });
  routes.set('a', a).set('b', b);
  assert.ok(routes.namesSource('10.101.0.3'));
  routes.set('a', { ...a, prefsrc: '10.101.0.4' });
  assert.ok(routes.namesSource('10.101.0.3') && routes.namesSource('10.101.0.4'));
  assert.equal(routes.delete('b'), true);
  assert.equal(routes.delete('b'), false);
  assert.ok(!routes.namesSource('10.101.0.3'), 'no route names it any more');
  routes.set('c', route({ dst: '10.9.2.0', dstLength: 24, oif: 3 }));
  routes.clear();
  assert.ok(!routes.namesSource('10.101.0.4'));
  assert.equal(routes.size, 0);
});
