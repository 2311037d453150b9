// The DynMHS README scenario on the real kernel, with traffic proof.
// Needs root: it creates network namespaces and veth pairs (skipped otherwise).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DaemonProcess, kernelSnapshot, leftovers, startConverged, waitConverged } from '../helpers/daemon';
import {
  isOurs, netnsSkipReason, README_NETS, routeKey, ruleKey, Topology, WAN1, WAN2, type Fam, type Wan,
} from '../helpers/netns';
import { eventually } from '../helpers/wait';

const skip = netnsSkipReason();

function sources(): { src: string; own: Wan; fam: Fam }[] {
  return [WAN1, WAN2].flatMap((own) => [
    { src: own.v4, own, fam: 4 as Fam },
    { src: own.v6, own, fam: 6 as Fam },
  ]);
}

describe('README scenario: two networks, metrics 200/300, IPv4 + IPv6', { skip }, () => {
  let topo: Topology;
  let d: DaemonProcess | undefined;

  before(() => {
    topo = Topology.create();
    topo.installCounters();
  });
  after(() => {
    d?.killNow();
    topo?.destroy();
  });

  it('without dynmhs, every source address leaves through wan1 (lowest metric)', () => {
    for (const { src } of sources()) {
      const p = topo.pathOf(src);
      assert.equal(p.counts.wan1, 3, `${src}: ${JSON.stringify(p.counts)}\n${p.output}`);
      assert.equal(p.counts.wan2, 0, `${src}: ${JSON.stringify(p.counts)}`);
    }
  });

  it('with dynmhs, each table mirrors main via its interface and each address has a rule', async () => {
    d = await startConverged(topo, README_NETS, ['--loglevel', '1']);
    // The README's tables, spelled out.
    const t2000v4 = topo.ourRoutes(4, 2000).map(routeKey).sort();
    assert.deepEqual(t2000v4, [
      'unicast 10.101.0.0/24 via=- dev=wan1 metric=200 src=10.101.0.2 scope=link',
      'unicast default via=10.101.0.1 dev=wan1 metric=200 src=- scope=global',
    ].sort());
    const t3000v6 = topo.ourRoutes(6, 3000).map(routeKey).sort();
    assert.deepEqual(t3000v6, [
      'unicast default via=fe80::1 dev=wan2 metric=300 src=- scope=global',
      'unicast fd00:102::/64 via=- dev=wan2 metric=300 src=- scope=global',
      'unicast fe80::/64 via=- dev=wan2 metric=256 src=- scope=global',
    ].sort());
    assert.deepEqual(topo.ourRules(4).map(ruleKey).sort(),
      ['2000: from 10.101.0.2 lookup 2000', '3000: from 10.102.0.2 lookup 3000']);
    assert.deepEqual(topo.ourRules(6).map(ruleKey).sort(),
      ['2000: from fd00:101::2 lookup 2000', '3000: from fd00:102::2 lookup 3000']);
    // Nothing of wan2 in wan1's table and vice versa.
    for (const fam of [4, 6] as const) {
      assert.ok(topo.routes(fam, 2000).every((r) => r.dev === 'wan1'), `table 2000 v${fam}`);
      assert.ok(topo.routes(fam, 3000).every((r) => r.dev === 'wan2'), `table 3000 v${fam}`);
    }
  });

  it('with dynmhs, pings from each source address leave through its own interface (v4 + v6)', () => {
    for (const { src, own } of sources()) {
      const p = topo.pathOf(src);
      const other = own === WAN1 ? 'wan2' : 'wan1';
      assert.equal(p.counts[own.ifName], 3, `${src}: ${JSON.stringify(p.counts)}\n${p.output}`);
      assert.equal(p.counts[other], 0, `${src}: ${JSON.stringify(p.counts)}`);
      assert.ok(p.ok, `${src}: no reply from the server\n${p.output}`);
    }
  });

  it('several addresses per interface; no rule for 169.254/16 or fe80:: link-local addresses', async () => {
    topo.batch(topo.host, [
      'addr add 10.101.0.3/24 dev wan1',
      'addr add fd00:101::3/64 dev wan1',
      'addr add 10.102.0.3/24 dev wan2',
      'addr add 169.254.7.7/16 dev wan1',
      'addr add fe80::99/64 dev wan2',
    ]);
    await eventually(() => {
      assert.deepEqual(topo.ourRules(4).map(ruleKey).sort(), [
        '2000: from 10.101.0.2 lookup 2000', '2000: from 10.101.0.3 lookup 2000',
        '3000: from 10.102.0.2 lookup 3000', '3000: from 10.102.0.3 lookup 3000',
      ]);
      assert.deepEqual(topo.ourRules(6).map(ruleKey).sort(), [
        '2000: from fd00:101::2 lookup 2000', '2000: from fd00:101::3 lookup 2000',
        '3000: from fd00:102::2 lookup 3000',
      ]);
    }, 5000);
    await waitConverged(topo, d, README_NETS, 5000);
    // the second address routes through its own interface too
    const p = topo.pathOf('10.102.0.3');
    assert.equal(p.counts.wan2, 3, JSON.stringify(p.counts));
    assert.equal(p.counts.wan1, 0, JSON.stringify(p.counts));
    // and its rule goes with it
    topo.batch(topo.host, ['addr del 10.101.0.3/24 dev wan1', 'addr del fd00:101::3/64 dev wan1',
      'addr del 10.102.0.3/24 dev wan2', 'addr del 169.254.7.7/16 dev wan1', 'addr del fe80::99/64 dev wan2']);
    await eventually(() => {
      assert.deepEqual(topo.ourRules(4).map(ruleKey).sort(),
        ['2000: from 10.101.0.2 lookup 2000', '3000: from 10.102.0.2 lookup 3000']);
      assert.deepEqual(topo.ourRules(6).map(ruleKey).sort(),
        ['2000: from fd00:101::2 lookup 2000', '3000: from fd00:102::2 lookup 3000']);
    }, 5000);
    await waitConverged(topo, d, README_NETS, 5000);
  });

  it('SIGTERM removes every rule and route it created and exits 0; traffic falls back to wan1', async () => {
    assert.ok(d?.running, 'daemon should still run');
    const before = Date.now();
    const code = await d!.stop('SIGTERM', 5000);
    assert.equal(code, 0, d!.output().slice(-2000));
    assert.ok(Date.now() - before < 3000, 'shutdown took too long');
    assert.deepEqual(leftovers(topo), []);
    // main untouched
    assert.ok(topo.routes(4, 'main').some((r) => r.dst === 'default' && r.dev === 'wan2'));
    assert.equal(topo.routes(4, 'all').filter(isOurs).length, 0);
    const p = topo.pathOf(WAN2.v4);
    assert.equal(p.counts.wan1, 3, JSON.stringify(p.counts));
  });

  it('SIGINT does the same', async () => {
    d = await startConverged(topo, README_NETS, ['--loglevel', '2']);
    const code = await d.stop('SIGINT', 5000);
    assert.equal(code, 0, d.output().slice(-2000));
    assert.deepEqual(leftovers(topo), []);
  });
});

describe('bad command line input changes nothing in the kernel', { skip }, () => {
  let topo: Topology;
  before(() => { topo = Topology.create(); });
  after(() => topo?.destroy());

  for (const args of [
    ['--network', 'wan1:99'],
    ['--network', 'wan1:2000x'],
    ['--network', 'wan1'],
    ['--network', 'wan1:2000', '--network', 'wan2:2000'],
    ['--bogus-option'],
    [],
  ]) {
    it(`dynmhs ${args.join(' ') || '(no networks)'} → non-zero exit, kernel unchanged`, async () => {
      const snap = kernelSnapshot(topo);
      const d = DaemonProcess.start(topo.host, args);
      const st = await d.waitExit(10000);
      assert.notEqual(st.code, 0, `exit ${JSON.stringify(st)}\n${d.output()}`);
      assert.equal(st.signal, null);
      assert.ok(d.output().trim().length > 0, 'an error message is expected');
      assert.deepEqual(kernelSnapshot(topo), snap);
    });
  }
});
