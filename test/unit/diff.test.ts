import { test } from 'node:test';
import assert from 'node:assert/strict';
import { byGatewayRank, diff, gatewayRank } from '../../src/reconcile/diff';
import { desiredOf } from '../../src/policy/derive';
import { WAN1, observedOf, ours, route, rule } from './fixtures';

const mainDefault = route({ dst: '0.0.0.0', dstLength: 0, gateway: '10.1.0.1', oif: 3, metric: 200 });
const mainPrefix = route({ dst: '10.1.0.0', dstLength: 24, oif: 3, scope: 253 });

test('empty kernel: device routes, then gateway routes, then rules', () => {
  const desired = desiredOf([ours(mainDefault, 2000), ours(mainPrefix, 2000)], [rule('10.1.0.2', 2000)]);
  const plan = diff(desired, observedOf([WAN1], [], []));
  assert.deepEqual(plan.operations.map((op) => op.kind), ['add-route', 'add-route', 'add-rule']);
  assert.equal(plan.operations[0].kind === 'add-route' && plan.operations[0].route.gateway, undefined);
});

test('converged: nothing to do', () => {
  const desired = desiredOf([ours(mainDefault, 2000)], [rule('10.1.0.2', 2000)]);
  const plan = diff(desired, observedOf([WAN1], [], [mainDefault, ours(mainDefault, 2000)], [rule('10.1.0.2', 2000)]));
  assert.deepEqual(plan.operations, []);
});

test('stale entries of ours go, rules before routes; foreign entries stay and are reported', () => {
  const foreignRoute = route({ dst: '203.0.113.0', dstLength: 24, type: 'unreachable', table: 2000, protocol: 4 });
  const foreignRule = rule('10.9.9.9', 2000, 0);
  const stale = ours(route({ dst: '10.7.0.0', dstLength: 16, oif: 3 }), 2000);
  const observed = observedOf([WAN1], [], [ours(mainDefault, 2000), stale, foreignRoute], [rule('10.1.0.3', 2000), foreignRule]);
  const plan = diff(desiredOf([ours(mainDefault, 2000)], [rule('10.1.0.2', 2000)]), observed);
  assert.deepEqual(plan.operations.map((op) => op.kind), ['add-rule', 'delete-rule', 'delete-route']);
  assert.deepEqual(plan.foreignRoutes, [foreignRoute]);
  assert.deepEqual(plan.foreignRules, [foreignRule]);
});

test('never deletes protocol-249 entries in main, local or default', () => {
  const inMain = { ...mainDefault, protocol: 249 };
  const plan = diff(desiredOf([], []), observedOf([WAN1], [], [inMain], [rule('10.1.0.2', 254)]));
  assert.deepEqual(plan.operations, []);
});

test('a changed route is replaced in place; a foreign route holding our key is a conflict, not touched', () => {
  const changed = { ...ours(mainDefault, 2000), prefsrc: '10.1.0.2' };
  let plan = diff(desiredOf([changed], []), observedOf([WAN1], [], [ours(mainDefault, 2000)]));
  assert.deepEqual(plan.operations.map((op) => op.kind), ['replace-route']);
  const squatter = { ...mainDefault, table: 2000, protocol: 4 };
  plan = diff(desiredOf([ours(mainDefault, 2000)], []), observedOf([WAN1], [], [squatter]));
  assert.deepEqual(plan.operations, []);
  assert.equal(plan.conflicts.length, 1);
});

test('shutdown: diff against nothing removes exactly our entries', () => {
  const observed = observedOf([WAN1], [], [mainDefault, ours(mainDefault, 2000), { ...mainDefault, table: 2000, metric: 5, protocol: 4 }],
    [rule('10.1.0.2', 2000), rule('10.1.0.2', 2000, 0)]);
  const plan = diff(desiredOf([], []), observed);
  assert.deepEqual(plan.operations.map((op) => `${op.kind} ${op.kind.endsWith('rule') ? '' : ''}`.trim()), ['delete-rule', 'delete-route']);
});

test('byGatewayRank: two groups, each in its original order, as a stable sort would leave them', () => {
  const device = [10, 11, 12].map((n) => ({ kind: 'add-route' as const, route: ours(route({ dst: `10.${n}.0.0`, dstLength: 16, oif: 3 }), 2000) }));
  const viaGateway = [20, 21].map((n) => ({ kind: 'add-route' as const, route: ours(route({ dst: `10.${n}.0.0`, dstLength: 16, oif: 3, gateway: '10.1.0.1' }), 2000) }));
  const mixed = [viaGateway[0], device[0], device[1], viaGateway[1], device[2]];
  assert.deepEqual(byGatewayRank(mixed, 'device routes first'), [...device, ...viaGateway]);
  assert.deepEqual(byGatewayRank(mixed, 'gateway routes first'), [...viaGateway, ...device]);
  assert.deepEqual(byGatewayRank(mixed, 'device routes first'), [...mixed].sort((a, b) => gatewayRank(a) - gatewayRank(b)));
});
