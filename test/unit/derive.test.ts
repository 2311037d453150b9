import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyForTable, derive } from '../../src/policy/derive';
import { DYNMHS_PROTOCOL } from '../../src/model';
import { NET1, NET2, WAN1, WAN2, addr, observedOf, route } from './fixtures';

const readmeRoutes = [
  route({ dst: '0.0.0.0', dstLength: 0, gateway: '172.30.255.1', oif: 3, metric: 200, protocol: 16, prefsrc: '172.30.255.4' }),
  route({ dst: '0.0.0.0', dstLength: 0, gateway: '192.168.255.1', oif: 4, metric: 300, protocol: 16 }),
  route({ dst: '172.30.255.0', dstLength: 24, oif: 3, metric: 200, scope: 253, prefsrc: '172.30.255.4' }),
  route({ dst: '172.30.255.1', dstLength: 32, oif: 3, metric: 200, scope: 253, protocol: 16 }),
  route({ dst: 'fdff:b44d:605c::', dstLength: 64, oif: 3, metric: 200, protocol: 9 }),
  route({ dst: 'fe80::', dstLength: 64, oif: 3, metric: 256 }),
  route({ dst: 'fe80::', dstLength: 64, oif: 4, metric: 256 }),
  route({ dst: '::', dstLength: 0, gateway: 'fe80::5054:ff:fe12:3500', oif: 3, metric: 200, protocol: 9 }),
  route({ dst: '198.51.100.0', dstLength: 24, oif: 3, table: 100 }),
];

test('the DynMHS README scenario: each table mirrors its interface, rules for each address', () => {
  const observed = observedOf([WAN1, WAN2], [
    addr(3, '172.30.255.4'), addr(3, 'fdff:b44d:605c:0:a00:27ff:fedb:ad69'), addr(3, 'fe80::a00:27ff:fedb:ad69'),
    addr(4, '192.168.255.4'), addr(4, '169.254.7.7', 16),
  ], readmeRoutes);
  const { desired, plans } = derive(observed, [NET1, NET2]);
  const t2000 = [...desired.routes.values()].filter((r) => r.table === 2000);
  assert.deepEqual(t2000.map((r) => `${r.dst}/${r.dstLength} ${r.gateway ?? '-'} ${r.metric} ${r.scope} ${r.prefsrc ?? '-'}`).sort(), [
    '0.0.0.0/0 172.30.255.1 200 0 172.30.255.4',
    '172.30.255.0/24 - 200 253 172.30.255.4',
    '172.30.255.1/32 - 200 253 -',
    '::/0 fe80::5054:ff:fe12:3500 200 0 -',
    'fdff:b44d:605c::/64 - 200 0 -',
    'fe80::/64 - 256 0 -',
  ]);
  assert.ok([...desired.routes.values()].every((r) => r.protocol === DYNMHS_PROTOCOL));
  assert.equal([...desired.routes.values()].filter((r) => r.table === 3000).length, 2, 'wan2: its default and its fe80::/64');
  assert.ok(![...desired.routes.values()].some((r) => r.dst === '198.51.100.0'), 'routes of other tables are not copied');
  assert.deepEqual(desired.rules.map((r) => `${r.src}/${r.srcLength} ${r.table} ${r.priority}`).sort(), [
    '172.30.255.4/32 2000 2000',
    '192.168.255.4/32 3000 3000',
    'fdff:b44d:605c:0:a00:27ff:fedb:ad69/128 2000 2000',
  ], 'no rule for fe80:: or 169.254/16');
  assert.equal(plans.length, 2);
  assert.equal(plans[0].link?.name, 'wan1');
});

test('a network whose interface does not exist yet wants nothing, and says so in its plan', () => {
  const { desired, plans } = derive(observedOf([WAN1], [addr(3, '10.0.0.2')], []), [NET2]);
  assert.deepEqual(desired, { routes: new Map(), rules: [] });
  assert.equal(plans[0].link, undefined);
});

test('device-less routes are never copied', () => {
  for (const type of ['blackhole', 'unreachable', 'prohibit', 'throw'] as const) {
    assert.equal(copyForTable(route({ dst: '203.0.113.0', dstLength: 24, type }), 3, 2000), undefined, type);
  }
});

test('a gateway-less default route on a point-to-point link is copied as it is', () => {
  const copy = copyForTable(route({ dst: '0.0.0.0', dstLength: 0, oif: 3, scope: 253 }), 3, 2000);
  assert.deepEqual(copy && [copy.oif, copy.gateway, copy.scope, copy.table], [3, undefined, 253, 2000]);
});

test('multipath: each table gets only the next hops on its own interface', () => {
  const multipath = route({
    dst: '198.51.102.0', dstLength: 24,
    nexthops: [{ oif: 3, gateway: '10.1.0.1', weight: 1 }, { oif: 4, gateway: '10.2.0.1', weight: 1 }, { oif: 3, gateway: '10.1.0.9', weight: 2 }],
  });
  const onWan1 = copyForTable(multipath, 3, 2000)!;
  assert.deepEqual(onWan1.nexthops, [{ oif: 3, gateway: '10.1.0.1', weight: 1 }, { oif: 3, gateway: '10.1.0.9', weight: 2 }]);
  assert.equal(onWan1.oif, undefined);
  const onWan2 = copyForTable(multipath, 4, 3000)!;
  assert.equal(onWan2.nexthops, undefined, 'one hop becomes a plain route');
  assert.deepEqual([onWan2.oif, onWan2.gateway], [4, '10.2.0.1']);
  assert.equal(copyForTable(multipath, 5, 4000), undefined);
});

test('a route using a nexthop object is copied resolved, without the object', () => {
  const viaObject = route({ dst: '198.51.100.0', dstLength: 24, nhid: 10, oif: 3, gateway: '10.1.0.1' });
  const copy = copyForTable(viaObject, 3, 2000)!;
  assert.equal(copy.nhid, undefined);
  assert.deepEqual([copy.oif, copy.gateway], [3, '10.1.0.1']);
  assert.equal(copyForTable(viaObject, 4, 3000), undefined);
});

test('point-to-point addresses: the rule uses the local address the cache recorded', () => {
  const ppp = { ...WAN1, pointToPoint: true };
  const { desired } = derive(observedOf([ppp], [addr(3, '100.64.0.7', 32)], []), [NET1]);
  assert.deepEqual(desired.rules.map((r) => r.src), ['100.64.0.7']);
});
