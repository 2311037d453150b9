// Which main-table routes are copied, with which attributes, and how changes are followed.
// Needs root: it creates network namespaces and veth pairs (skipped otherwise).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DaemonProcess, startConverged, waitConverged } from '../helpers/daemon';
import {
  devicesOf, isOurs, netnsSkipReason, routeKey, ruleKey, Topology, WAN1, WAN2, type Fam, type IpRoute,
} from '../helpers/netns';
import { eventually, holdsFor } from '../helpers/wait';

const skip = netnsSkipReason();

// wwan0: a point-to-point-like link (veth) with a peer address and a gateway-less default route.
const WWAN = { ifName: 'wwan0', table: 4000 };
const NETS = [
  { ifName: WAN1.ifName, table: WAN1.table },
  { ifName: WAN2.ifName, table: WAN2.table },
  WWAN,
];
const TABLE_OF: Record<string, number> = { wan1: 2000, wan2: 3000, wwan0: 4000 };

/** No table of ours may hold anything that leaves through another network's interface. */
function assertOwnDevicesOnly(topo: Topology): void {
  for (const fam of [4, 6] as const) {
    for (const [ifName, table] of Object.entries(TABLE_OF)) {
      for (const r of topo.ourRoutes(fam, table)) {
        const devs = devicesOf(r);
        assert.ok(devs.length > 0 && devs.every((x) => x === ifName),
          `table ${table} (${ifName}) holds ${routeKey(r)}`);
      }
    }
  }
}

function ours(topo: Topology, fam: Fam, table: number, dst: string): IpRoute[] {
  return topo.ourRoutes(fam, table).filter((r) => r.dst === dst);
}

describe('route copying on the real kernel', { skip }, () => {
  let topo: Topology;
  let d: DaemonProcess;

  before(async () => {
    topo = Topology.create();
    topo.addHostLink('wwan0');
    topo.batch(topo.host, [
      // IFA_LOCAL 10.103.0.2, IFA_ADDRESS (the peer) 10.103.0.1
      'addr add 10.103.0.2 peer 10.103.0.1/32 dev wwan0',
      'route add default dev wwan0 metric 500',
    ]);
    d = await startConverged(topo, NETS, ['--loglevel', '1']);
  });
  after(() => {
    d?.killNow();
    topo?.destroy();
  });

  it('point-to-point link: rule from the local address (not the peer), gateway-less default copied', () => {
    const rules = topo.ourRules(4).map(ruleKey);
    assert.ok(rules.includes('4000: from 10.103.0.2 lookup 4000'), rules.join('\n'));
    assert.ok(!rules.some((r) => r.includes('10.103.0.1')), rules.join('\n'));
    const def = ours(topo, 4, 4000, 'default');
    assert.equal(def.length, 1, JSON.stringify(topo.routes(4, 4000)));
    assert.equal(routeKey(def[0]!), 'unicast default via=- dev=wwan0 metric=500 src=- scope=link');
  });

  it('every kind of route via the interface is copied with metric, gateway, src, scope and type', async () => {
    topo.batch(topo.host, [
      'route add 192.0.2.0/24 via 10.101.0.1 dev wan1 src 10.101.0.2 metric 77',
      'route add 198.18.0.0/15 dev wan1 scope link metric 88',
      'route add 198.18.5.5 via 10.101.0.1 dev wan1',
      'route add 2001:db8:1::/48 via fe80::1 dev wan1 metric 99',
      'route add 2001:db8:2::1 dev wan1',
      'route add 2001:db8:3::/48 via fd00:102::1 dev wan2 src fd00:102::2 metric 5',
      // other tables than main are not copied
      'route add 203.0.113.0/24 via 10.101.0.1 dev wan1 table 100',
      'route add 2001:db8:100::/48 via fe80::1 dev wan1 table 100',
    ]);
    await eventually(() => {
      for (const [fam, table, dst] of [
        [4, 2000, '192.0.2.0/24'], [4, 2000, '198.18.0.0/15'], [4, 2000, '198.18.5.5'],
        [6, 2000, '2001:db8:1::/48'], [6, 2000, '2001:db8:2::1'], [6, 3000, '2001:db8:3::/48'],
      ] as const) {
        const main = topo.routes(fam, 'main').filter((r) => r.dst === dst);
        const copy = ours(topo, fam, table, dst);
        assert.equal(copy.length, 1, `${dst} in table ${table}`);
        assert.equal(routeKey(copy[0]!), routeKey(main[0]!));
      }
    }, 5000);
    await waitConverged(topo, d, NETS, 5000);
    for (const fam of [4, 6] as const) {
      for (const t of [2000, 3000, 4000]) {
        assert.ok(!topo.routes(fam, t).some((r) => r.dst === '203.0.113.0/24' || r.dst === '2001:db8:100::/48'),
          `table ${t} holds a copy of a table-100 route`);
      }
    }
    assert.equal(routeKey(ours(topo, 4, 2000, '192.0.2.0/24')[0]!),
      'unicast 192.0.2.0/24 via=10.101.0.1 dev=wan1 metric=77 src=10.101.0.2 scope=global');
    assert.equal(routeKey(ours(topo, 4, 2000, '198.18.0.0/15')[0]!),
      'unicast 198.18.0.0/15 via=- dev=wan1 metric=88 src=- scope=link');
    assertOwnDevicesOnly(topo);
  });

  it('blackhole, unreachable, prohibit and throw routes are never copied', async () => {
    topo.batch(topo.host, [
      'route add blackhole 203.0.113.0/26',
      'route add unreachable 203.0.113.64/26',
      'route add prohibit 203.0.113.128/26',
      'route add throw 203.0.113.192/26',
      'route add blackhole 2001:db8:dead::/48',
      'route add unreachable 2001:db8:beef::/48',
      // a change via wan1 afterwards, so we know the daemon has seen all of the above
      'route add 192.0.2.200/32 dev wan1 metric 9',
    ]);
    await eventually(() => assert.equal(ours(topo, 4, 2000, '192.0.2.200').length, 1), 5000);
    await holdsFor(() => {
      for (const fam of [4, 6] as const) {
        const bad = topo.routes(fam, 'all').filter((r) => isOurs(r) && (r.type ?? 'unicast') !== 'unicast');
        assert.deepEqual(bad.map(routeKey), []);
      }
    }, 300);
    await waitConverged(topo, d, NETS, 5000);
  });

  it('a route that appears, is replaced, moves from wan2 to wan1 and disappears is followed', async () => {
    topo.ip(['route', 'add', '198.51.100.0/26', 'via', '10.102.0.1', 'dev', 'wan2', 'metric', '10']);
    topo.ip(['-6', 'route', 'add', '2001:db8:55::/48', 'via', 'fe80::1', 'dev', 'wan2', 'metric', '10']);
    await eventually(() => {
      assert.equal(ours(topo, 4, 3000, '198.51.100.0/26').length, 1);
      assert.equal(ours(topo, 6, 3000, '2001:db8:55::/48').length, 1);
    }, 5000);
    // replace in place: new gateway on the same interface
    topo.ip(['route', 'replace', '198.51.100.0/26', 'via', '10.102.0.3', 'dev', 'wan2', 'metric', '10']);
    await eventually(() => {
      const c = ours(topo, 4, 3000, '198.51.100.0/26');
      assert.deepEqual(c.map((r) => r.gateway), ['10.102.0.3']);
    }, 5000);
    // moves to wan1: the copy in 3000 must go, one in 2000 appear
    topo.ip(['route', 'replace', '198.51.100.0/26', 'via', '10.101.0.1', 'dev', 'wan1', 'metric', '10']);
    topo.ip(['-6', 'route', 'replace', '2001:db8:55::/48', 'via', 'fe80::1', 'dev', 'wan1', 'metric', '10']);
    await eventually(() => {
      assert.equal(ours(topo, 4, 3000, '198.51.100.0/26').length, 0, 'old v4 copy still in 3000');
      assert.equal(ours(topo, 6, 3000, '2001:db8:55::/48').length, 0, 'old v6 copy still in 3000');
      assert.deepEqual(ours(topo, 4, 2000, '198.51.100.0/26').map(routeKey),
        ['unicast 198.51.100.0/26 via=10.101.0.1 dev=wan1 metric=10 src=- scope=global']);
      assert.equal(ours(topo, 6, 2000, '2001:db8:55::/48').length, 1);
    }, 5000);
    // disappears
    topo.ip(['route', 'del', '198.51.100.0/26', 'metric', '10']);
    topo.ip(['-6', 'route', 'del', '2001:db8:55::/48', 'metric', '10']);
    await eventually(() => {
      assert.equal(ours(topo, 4, 2000, '198.51.100.0/26').length, 0);
      assert.equal(ours(topo, 6, 2000, '2001:db8:55::/48').length, 0);
    }, 5000);
    await waitConverged(topo, d, NETS, 5000);
  });

  it('multipath: each table gets only the next hops on its own interface', async () => {
    topo.ip(['route', 'add', '198.51.100.64/26',
      'nexthop', 'via', '10.101.0.1', 'dev', 'wan1', 'nexthop', 'via', '10.102.0.1', 'dev', 'wan2']);
    topo.ip(['route', 'add', '198.51.100.128/26',
      'nexthop', 'via', '10.101.0.1', 'dev', 'wan1', 'nexthop', 'via', '10.101.0.5', 'dev', 'wan1',
      'nexthop', 'via', '10.102.0.1', 'dev', 'wan2']);
    topo.ip(['-6', 'route', 'add', '2001:db8:66::/48',
      'nexthop', 'via', 'fe80::1', 'dev', 'wan1', 'nexthop', 'via', 'fe80::1', 'dev', 'wan2']);
    await eventually(() => {
      // documented rule (src/policy/derive.ts): the hops on the table's interface, one hop → plain route
      const a1 = ours(topo, 4, 2000, '198.51.100.64/26');
      const a2 = ours(topo, 4, 3000, '198.51.100.64/26');
      assert.equal(a1.length, 1, 'v4 two-device multipath: table 2000');
      assert.equal(a2.length, 1, 'v4 two-device multipath: table 3000');
      assert.deepEqual(devicesOf(a1[0]!), ['wan1']);
      assert.deepEqual(devicesOf(a2[0]!), ['wan2']);
      const b1 = ours(topo, 4, 2000, '198.51.100.128/26');
      assert.equal(b1.length, 1);
      assert.deepEqual(devicesOf(b1[0]!), ['wan1']);
      assert.deepEqual((b1[0]!.nexthops ?? []).map((n) => n.gateway).sort(), ['10.101.0.1', '10.101.0.5']);
      const b2 = ours(topo, 4, 3000, '198.51.100.128/26');
      assert.deepEqual(b2.map((r) => `${r.gateway}@${r.dev}`), ['10.102.0.1@wan2']);
      const c1 = ours(topo, 6, 2000, '2001:db8:66::/48');
      const c2 = ours(topo, 6, 3000, '2001:db8:66::/48');
      assert.equal(c1.length, 1, 'v6 multipath: table 2000');
      assert.equal(c2.length, 1, 'v6 multipath: table 3000');
      assert.deepEqual(devicesOf(c1[0]!), ['wan1']);
      assert.deepEqual(devicesOf(c2[0]!), ['wan2']);
    }, 5000);
    assertOwnDevicesOnly(topo);
    // gone when the multipath route goes
    topo.ip(['route', 'del', '198.51.100.64/26']);
    topo.ip(['route', 'del', '198.51.100.128/26']);
    topo.ip(['-6', 'route', 'del', '2001:db8:66::/48']);
    await eventually(() => {
      for (const t of [2000, 3000]) {
        assert.equal(ours(topo, 4, t, '198.51.100.64/26').length, 0);
        assert.equal(ours(topo, 4, t, '198.51.100.128/26').length, 0);
        assert.equal(ours(topo, 6, t, '2001:db8:66::/48').length, 0);
      }
    }, 5000);
  });

  it('a route using a nexthop object never ends up in the wrong table, and follows the object', async () => {
    topo.ip(['nexthop', 'add', 'id', '10', 'via', '10.101.0.1', 'dev', 'wan1']);
    topo.ip(['route', 'add', '198.51.100.192/26', 'nhid', '10']);
    // the documented rule: copied with the object resolved (device + gateway), no nhid
    await eventually(() => {
      const c = ours(topo, 4, 2000, '198.51.100.192/26');
      assert.deepEqual(c.map((r) => `${r.gateway}@${r.dev} nhid=${r.nhid}`), ['10.101.0.1@wan1 nhid=undefined']);
    }, 5000);
    assert.equal(ours(topo, 4, 3000, '198.51.100.192/26').length, 0);
    assertOwnDevicesOnly(topo);
    // the object moves to wan2 (the kernel re-announces the route in compat mode)
    topo.ip(['nexthop', 'replace', 'id', '10', 'via', '10.102.0.1', 'dev', 'wan2']);
    await eventually(() => {
      assert.equal(ours(topo, 4, 2000, '198.51.100.192/26').length, 0, 'stale copy via wan1 in 2000');
      assert.deepEqual(ours(topo, 4, 3000, '198.51.100.192/26').map((r) => `${r.gateway}@${r.dev}`),
        ['10.102.0.1@wan2']);
    }, 5000);
    assertOwnDevicesOnly(topo);
    // deleting the object deletes the route silently (only a nexthop event): the copy must go too
    topo.ip(['nexthop', 'del', 'id', '10']);
    await eventually(() => {
      assert.equal(topo.routes(4, 'main').filter((r) => r.dst === '198.51.100.192/26').length, 0);
      assert.equal(ours(topo, 4, 3000, '198.51.100.192/26').length, 0, 'copy left behind after nexthop del');
    }, 5000);
    await waitConverged(topo, d, NETS, 5000);
  });

  it('routes that come and go are never duplicated', () => {
    for (const fam of [4, 6] as const) {
      for (const t of [2000, 3000, 4000]) {
        const keys = topo.ourRoutes(fam, t).map(routeKey);
        assert.equal(new Set(keys).size, keys.length, `duplicates in v${fam} table ${t}`);
      }
    }
  });
});
