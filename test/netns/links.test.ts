// Interfaces that appear, vanish and come back; link down/up; carrier loss; address removal.
// Needs root: it creates network namespaces and veth pairs (skipped otherwise).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DaemonProcess, networkArgs, waitConverged } from '../helpers/daemon';
import { netnsSkipReason, routeKey, ruleKey, Topology, WAN1, WAN2 } from '../helpers/netns';
import { eventually } from '../helpers/wait';

const skip = netnsSkipReason();
const WAN3 = { ifName: 'wan3', table: 4000 };
const NETS = [
  { ifName: WAN1.ifName, table: WAN1.table },
  { ifName: WAN2.ifName, table: WAN2.table },
  WAN3,
];

function hasDefault(topo: Topology, fam: 4 | 6, table: number | 'main', dev: string): boolean {
  return topo.routes(fam, table).some((r) => r.dst === 'default' && r.dev === dev);
}

describe('interfaces and link state on the real kernel', { skip }, () => {
  let topo: Topology;
  let d: DaemonProcess;

  before(async () => {
    topo = Topology.create();
    // wan3 is configured but does not exist yet: that is fine, it is picked up later.
    d = DaemonProcess.start(topo.host, [...networkArgs(NETS), '--loglevel', '1']);
    await waitConverged(topo, d, NETS, 20000);
  });
  after(() => {
    d?.killNow();
    topo?.destroy();
  });

  it('a configured interface that appears after start is picked up', async () => {
    assert.ok(d.running);
    const idx = topo.addHostLink('wan3');
    topo.batch(topo.host, [
      'addr add 10.103.0.2/24 dev wan3 metric 400',
      'addr add fd00:103::2/64 dev wan3 metric 400',
      'route add default via 10.103.0.1 dev wan3 metric 400',
      'route add default via fe80::1 dev wan3 metric 400',
    ]);
    await waitConverged(topo, d, NETS, 5000);
    assert.ok(topo.ourRules(4).map(ruleKey).includes('4000: from 10.103.0.2 lookup 4000'));
    assert.ok(topo.ourRules(6).map(ruleKey).includes('4000: from fd00:103::2 lookup 4000'));
    assert.ok(hasDefault(topo, 4, 4000, 'wan3') && hasDefault(topo, 6, 4000, 'wan3'));
    assert.ok(idx > 0);
  });

  it('an interface that is deleted loses its rules; re-created (new ifindex) it is managed again', async () => {
    const oldIdx = topo.ifindex('wan3');
    topo.deleteHostLink('wan3');
    await eventually(() => {
      assert.ok(!topo.ourRules(4).some((r) => r.table === '4000'), 'v4 rule for a deleted interface');
      assert.ok(!topo.ourRules(6).some((r) => r.table === '4000'), 'v6 rule for a deleted interface');
      assert.deepEqual(topo.ourRoutes(4, 4000).map(routeKey), []);
      assert.deepEqual(topo.ourRoutes(6, 4000).map(routeKey), []);
    }, 5000);
    await waitConverged(topo, d, NETS, 5000);
    const newIdx = topo.addHostLink('wan3');
    assert.notEqual(newIdx, oldIdx);
    topo.batch(topo.host, [
      'addr add 10.103.0.7/24 dev wan3 metric 400',
      'addr add fd00:103::7/64 dev wan3 metric 400',
      'route add default via 10.103.0.1 dev wan3 metric 400',
    ]);
    await waitConverged(topo, d, NETS, 5000);
    assert.ok(topo.ourRules(4).map(ruleKey).includes('4000: from 10.103.0.7 lookup 4000'));
    assert.ok(hasDefault(topo, 4, 4000, 'wan3'));
    assert.ok(!topo.ourRules(4).map(ruleKey).includes('4000: from 10.103.0.2 lookup 4000'));
  });

  it('link down flushes the copies with main; on link up they come back with main', async () => {
    topo.ip(['link', 'set', 'wan2', 'down']);
    await eventually(() => {
      assert.ok(!hasDefault(topo, 4, 'main', 'wan2'));
      assert.ok(!hasDefault(topo, 4, 3000, 'wan2'));
      assert.ok(!hasDefault(topo, 6, 3000, 'wan2'));
    }, 5000);
    await waitConverged(topo, d, NETS, 5000);
    topo.ip(['link', 'set', 'wan2', 'up']);
    // what a DHCP client / RA would do once the link is back
    topo.addDefaults([WAN2]);
    await waitConverged(topo, d, NETS, 5000);
    assert.ok(hasDefault(topo, 4, 3000, 'wan2') && hasDefault(topo, 6, 3000, 'wan2'));
    assert.ok(topo.routes(4, 3000).some((r) => r.dst === WAN2.v4Prefix), 'prefix route back in 3000');
    assert.ok(topo.ourRules(4).map(ruleKey).includes('3000: from 10.102.0.2 lookup 3000'));
  });

  it('carrier loss and return (the ISP side goes down and up)', async () => {
    topo.ip(['link', 'set', 'cust', 'down'], topo.isp2);
    await eventually(() => {
      const l = JSON.parse(topo.ip(['-j', 'link', 'show', 'wan2'])) as { flags: string[] }[];
      assert.ok(l[0]!.flags.includes('NO-CARRIER'));
    }, 5000);
    await waitConverged(topo, d, NETS, 5000);
    topo.ip(['link', 'set', 'cust', 'up'], topo.isp2);
    topo.addDefaults([WAN2]);
    await waitConverged(topo, d, NETS, 5000);
    assert.ok(hasDefault(topo, 4, 3000, 'wan2') && hasDefault(topo, 6, 3000, 'wan2'));
  });

  it('address removal: the kernel flushes v4 routes via the device; rule goes; both come back', async () => {
    topo.ip(['addr', 'del', `${WAN2.v4}/24`, 'dev', 'wan2']);
    await eventually(() => {
      assert.ok(!topo.ourRules(4).map(ruleKey).includes('3000: from 10.102.0.2 lookup 3000'), 'stale rule');
      assert.ok(!hasDefault(topo, 4, 3000, 'wan2'));
    }, 5000);
    await waitConverged(topo, d, NETS, 5000);
    // v6 untouched
    assert.ok(hasDefault(topo, 6, 3000, 'wan2'));
    topo.ip(['addr', 'add', `${WAN2.v4}/24`, 'dev', 'wan2', 'metric', '300']);
    topo.addDefaults([WAN2]);
    await waitConverged(topo, d, NETS, 5000);
    assert.ok(topo.ourRules(4).map(ruleKey).includes('3000: from 10.102.0.2 lookup 3000'));
    assert.ok(hasDefault(topo, 4, 3000, 'wan2'));
  });

  it('IPv6 address removal: rule goes, comes back with the address', async () => {
    topo.ip(['addr', 'del', `${WAN1.v6}/64`, 'dev', 'wan1']);
    await eventually(() => {
      assert.ok(!topo.ourRules(6).map(ruleKey).includes('2000: from fd00:101::2 lookup 2000'));
    }, 5000);
    await waitConverged(topo, d, NETS, 5000);
    topo.ip(['addr', 'add', `${WAN1.v6}/64`, 'dev', 'wan1', 'metric', '200']);
    await waitConverged(topo, d, NETS, 5000);
    assert.ok(topo.ourRules(6).map(ruleKey).includes('2000: from fd00:101::2 lookup 2000'));
    assert.ok(d.running);
  });
});
