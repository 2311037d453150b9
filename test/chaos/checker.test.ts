// The chaos checker judges the daemon; this judges the checker, on dumps written by hand
// in `ip -j` shape: it must accept the right state and name every kind of wrong one.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { check, expectedState, foreignSnapshot, leftovers, type KernelDump } from './checker';

type Json = Record<string, unknown>;
const NETS = [{ ifName: 'wan1', table: 2000 }, { ifName: 'wan2', table: 3000 }];

const links: Json[] = [
  { ifname: 'lo', addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }] },
  { ifname: 'wan1', addr_info: [
    { family: 'inet', local: '10.101.0.2', prefixlen: 24, scope: 'global' },
    { family: 'inet', local: '169.254.7.7', prefixlen: 16, scope: 'link' },
    { family: 'inet6', local: 'fd00:101::2', prefixlen: 64, scope: 'global' },
    { family: 'inet6', local: 'fe80::99', prefixlen: 64, scope: 'link' },
  ] },
  { ifname: 'wan2', addr_info: [{ family: 'inet', local: '10.102.0.2', prefixlen: 24, scope: 'global' }] },
  { ifname: 'side0', addr_info: [{ family: 'inet', local: '192.0.2.10', prefixlen: 24, scope: 'global' }] },
];

const main4: Json[] = [
  { type: 'unicast', dst: 'default', gateway: '10.101.0.1', dev: 'wan1', table: 'main', protocol: 'boot', scope: 'global', metric: 200, flags: [] },
  { type: 'unicast', dst: '10.101.0.0/24', dev: 'wan1', table: 'main', protocol: 'kernel', scope: 'link', prefsrc: '10.101.0.2', flags: [] },
  { type: 'unicast', dst: '10.102.0.0/24', dev: 'wan2', table: 'main', protocol: 'kernel', scope: 'link', prefsrc: '10.102.0.2', flags: [] },
  { type: 'blackhole', dst: '10.180.0.0/24', table: 'main', protocol: 'boot', scope: 'global', flags: [] },
  { type: 'unicast', dst: '10.170.0.0/24', table: 'main', protocol: 'boot', scope: 'global', flags: [], nexthops: [
    { gateway: '10.101.0.1', dev: 'wan1', weight: 1, flags: [] }, { gateway: '10.102.0.1', dev: 'wan2', weight: 3, flags: [] }] },
  { type: 'unicast', dst: '10.190.0.0/24', nhid: 5, gateway: '10.102.0.1', dev: 'wan2', table: 'main', protocol: 'boot', scope: 'global', flags: [],
    nh_info: { id: 5, gateway: '10.102.0.1', dev: 'wan2' } },
  { type: 'unicast', dst: '198.51.100.0/24', dev: 'side0', table: 'main', protocol: '249', scope: 'link', flags: [] },
];
const foreign4: Json[] = [
  { type: 'unreachable', dst: '203.0.113.0/24', table: '2000', protocol: 'static', scope: 'global', flags: [] },
  { type: 'unreachable', dst: '10.160.3.0/24', table: '2000', protocol: 'static', scope: 'global', metric: 7, flags: [] },
];
const ours4: Json[] = [
  { type: 'unicast', dst: 'default', gateway: '10.101.0.1', dev: 'wan1', table: '2000', protocol: '249', scope: 'global', metric: 200, flags: [] },
  { type: 'unicast', dst: '10.101.0.0/24', dev: 'wan1', table: '2000', protocol: '249', scope: 'link', prefsrc: '10.101.0.2', flags: [] },
  { type: 'unicast', dst: '10.170.0.0/24', gateway: '10.101.0.1', dev: 'wan1', table: '2000', protocol: '249', scope: 'global', flags: [] },
  { type: 'unicast', dst: '10.102.0.0/24', dev: 'wan2', table: '3000', protocol: '249', scope: 'link', prefsrc: '10.102.0.2', flags: [] },
  { type: 'unicast', dst: '10.170.0.0/24', gateway: '10.102.0.1', dev: 'wan2', table: '3000', protocol: '249', scope: 'global', flags: [] },
  { type: 'unicast', dst: '10.190.0.0/24', gateway: '10.102.0.1', dev: 'wan2', table: '3000', protocol: '249', scope: 'global', flags: [] },
];
const rules4: Json[] = [
  { priority: 0, src: 'all', table: 'local' },
  { priority: 2000, src: '10.101.0.2', table: '2000', protocol: 'static' },
  { priority: 2000, src: '10.101.0.2', table: '2000', protocol: '249' },
  { priority: 3000, src: '10.102.0.2', table: '3000', protocol: '249' },
  { priority: 32766, src: 'all', table: 'main' },
];
const rules6: Json[] = [{ priority: 2000, src: 'fd00:101::2', table: '2000', protocol: '249' }];

function dump(changes: { routes4?: Json[]; rules4?: Json[]; rules6?: Json[]; links?: Json[] } = {}): KernelDump {
  return {
    links: changes.links ?? links,
    routes: { 4: changes.routes4 ?? [...main4, ...foreign4, ...ours4], 6: [] },
    rules: { 4: changes.rules4 ?? rules4, 6: changes.rules6 ?? rules6 },
  };
}
const planted = (_family: 4 | 6, r: Json): boolean => r.dst === '198.51.100.0/24';

describe('the chaos checker on hand-written dumps', () => {
  test('the right state passes: multipath reduced per link, nexthop object resolved, blackhole and foreign tables left out', () => {
    const foreign = foreignSnapshot(dump(), planted);
    assert.deepEqual(check(dump(), NETS, { foreign, planted }), []);
    const want = expectedState(dump(), NETS);
    assert.equal(want.routes.length, 6);
    assert.ok(!want.routes.some((r) => r.includes('blackhole') || r.includes('side0')));
    assert.deepEqual(want.rules, ['v4 rule 2000: from 10.101.0.2/32 lookup 2000', 'v4 rule 3000: from 10.102.0.2/32 lookup 3000',
      'v6 rule 2000: from fd00:101::2/128 lookup 2000']);
  });

  test('a copy held by a foreign route in its place is not expected', () => {
    const route = { type: 'unicast', dst: '10.160.3.0/24', gateway: '10.101.0.1', dev: 'wan1', table: 'main', protocol: 'boot', scope: 'global', metric: 7, flags: [] };
    const d = dump({ routes4: [...main4, route, ...foreign4, ...ours4] });
    assert.deepEqual(check(d, NETS, { planted }), []);
    assert.equal(expectedState(d, NETS).heldByForeign.length, 1);
  });

  test('a next hop the kernel marks dead (its link is down) is not expected in a table', () => {
    const deadHop = { type: 'unicast', dst: '10.170.1.0/24', table: 'main', protocol: 'boot', scope: 'global', flags: [], nexthops: [
      { gateway: '10.101.0.1', dev: 'wan1', weight: 1, flags: [] }, { gateway: '10.102.0.1', dev: 'wan2', weight: 1, flags: ['dead', 'linkdown'] }] };
    const copy1 = { type: 'unicast', dst: '10.170.1.0/24', gateway: '10.101.0.1', dev: 'wan1', table: '2000', protocol: '249', scope: 'global', flags: [] };
    assert.deepEqual(check(dump({ routes4: [...main4, deadHop, ...foreign4, ...ours4, copy1] }), NETS, { planted }), []);
  });

  test('names a missing copy, a wrong attribute, a stale copy, a duplicate, a route in the wrong table', () => {
    const without = ours4.filter((r) => r.dst !== 'default');
    assert.match(check(dump({ routes4: [...main4, ...foreign4, ...without] }), NETS, { planted }).join('\n'), /routes missing \(1\).*default/);
    const wrongMetric = ours4.map((r) => (r.dst === 'default' ? { ...r, metric: 201 } : r));
    assert.match(check(dump({ routes4: [...main4, ...foreign4, ...wrongMetric] }), NETS, { planted }).join('\n'), /metric=201/);
    const stale = { type: 'unicast', dst: '10.160.9.0/24', dev: 'wan1', table: '2000', protocol: '249', scope: 'link', flags: [] };
    assert.match(check(dump({ routes4: [...main4, ...foreign4, ...ours4, stale] }), NETS, { planted }).join('\n'), /extra.*10\.160\.9\.0/);
    assert.match(check(dump({ routes4: [...main4, ...foreign4, ...ours4, ours4[0]!] }), NETS, { planted }).join('\n'), /extra, stale or duplicated \(1\)/);
    const elsewhere = { ...ours4[0]!, table: '4000' };
    assert.match(check(dump({ routes4: [...main4, ...foreign4, ...ours4, elsewhere] }), NETS, { planted }).join('\n'), /table 4000/);
    // the whole multipath route copied into one table: wrong
    const fullMultipath = { ...main4[4]!, table: '2000', protocol: '249' };
    const notReduced = ours4.filter((r) => !(r.dst === '10.170.0.0/24' && r.table === '2000'));
    assert.match(check(dump({ routes4: [...main4, ...foreign4, ...notReduced, fullMultipath] }), NETS, { planted }).join('\n'), /nexthops=/);
  });

  test('names missing, duplicated and wrong rules; link-local and 169.254 addresses must get none', () => {
    assert.match(check(dump({ rules4: rules4.filter((r) => r.src !== '10.102.0.2') }), NETS, { planted }).join('\n'), /rules missing.*10\.102\.0\.2/);
    assert.match(check(dump({ rules4: [...rules4, rules4[3]!] }), NETS, { planted }).join('\n'), /rules extra or duplicated \(1\)/);
    assert.match(check(dump({ rules4: [...rules4, { priority: 2000, src: '169.254.7.7', table: '2000', protocol: '249' }] }), NETS, { planted }).join('\n'), /169\.254/);
    assert.match(check(dump({ rules6: [...rules6, { priority: 2000, src: 'fe80::99', table: '2000', protocol: '249' }] }), NETS, { planted }).join('\n'), /fe80::99/);
    assert.match(check(dump({ rules4: [...rules4.filter((r) => r.src !== '10.102.0.2'), { priority: 3000, src: '10.102.0.2', table: '3000', protocol: '249', iif: 'wan2' }] }), NETS, { planted }).join('\n'), /iif/);
    // an address on a link twice (two prefix lengths) has one rule
    const twice = links.map((l) => (l.ifname === 'wan2'
      ? { ...l, addr_info: [...(l.addr_info as Json[]), { family: 'inet', local: '10.102.0.2', prefixlen: 32, scope: 'global' }] } : l));
    assert.deepEqual(check(dump({ links: twice }), NETS, { planted }), []);
    // an interface that is gone takes its rules with it
    assert.match(check(dump({ links: links.filter((l) => l.ifname !== 'wan2') }), NETS, { planted }).join('\n'), /rules extra.*3000/);
  });

  test('a foreign entry deleted or changed is named; leftovers lists protocol 249 but the planted main route', () => {
    const d = dump();
    const foreign = foreignSnapshot(d, planted);
    const changed = dump({ routes4: [...main4, { ...foreign4[0]!, protocol: 'boot' }, foreign4[1]!, ...ours4] });
    assert.match(check(changed, NETS, { foreign, planted }).join('\n'), /foreign entries gone or changed \(1\).*203\.0\.113/);
    const plantedGone = dump({ routes4: [...main4.filter((r) => r.dst !== '198.51.100.0/24'), ...foreign4, ...ours4] });
    assert.match(check(plantedGone, NETS, { foreign, planted }).join('\n'), /198\.51\.100/);
    const foreignRuleGone = dump({ rules4: rules4.filter((r) => r.protocol !== 'static') });
    assert.match(check(foreignRuleGone, NETS, { foreign, planted }).join('\n'), /foreign entries gone.*static/);
    assert.equal(leftovers(d, planted).length, 6 + 3);
    assert.deepEqual(leftovers(dump({ routes4: [...main4, ...foreign4], rules4: rules4.filter((r) => r.protocol !== '249'), rules6: [] }), planted), []);
  });
});
