// IPv4 routes sharing one place in main (prefix, TOS, metric) on different links: the
// kernel makes them itself for one subnet on two links (two addresses of one LAN, say
// Ethernet and Wi-Fi at home), and `ip route append` makes them by hand. Each is copied
// into its own link's table, and each is followed on its own. (Two such routes on one
// link would want one place in that link's table: one of them is copied.)
// Needs root: it creates network namespaces and veth pairs (skipped otherwise).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DaemonProcess, startConverged, waitConverged } from '../helpers/daemon';
import { netnsSkipReason, README_NETS, Topology } from '../helpers/netns';

const skip = netnsSkipReason();

describe('IPv4 routes in one place of main on two links', { skip }, () => {
  let topo: Topology;
  let d: DaemonProcess | undefined;
  before(async () => {
    topo = Topology.create({ tag: 'l' });
    d = await startConverged(topo);
  });
  after(() => {
    d?.killNow();
    topo?.destroy();
  });

  const copies = (table: number, dst: string): string[] =>
    topo.ourRoutes(4, table).filter((r) => r.dst === dst).map((r) => `${r.gateway ?? '-'} ${r.dev} ${r.prefsrc ?? '-'}`);

  it('one subnet on both links: each table gets the prefix route of its own link', async () => {
    topo.batch(topo.host, ['addr add 10.150.0.5/24 dev wan1', 'addr add 10.150.0.18/24 dev wan2']);
    assert.equal(topo.routes(4).filter((r) => r.dst === '10.150.0.0/24').length, 2, 'the kernel keeps both prefix routes in main');
    await waitConverged(topo, d, README_NETS, 5000);
    assert.deepEqual(copies(2000, '10.150.0.0/24'), ['- wan1 10.150.0.5']);
    assert.deepEqual(copies(3000, '10.150.0.0/24'), ['- wan2 10.150.0.18']);
    topo.batch(topo.host, ['addr del 10.150.0.5/24 dev wan1']);
    await waitConverged(topo, d, README_NETS, 5000);
    assert.deepEqual(copies(2000, '10.150.0.0/24'), []);
    assert.deepEqual(copies(3000, '10.150.0.0/24'), ['- wan2 10.150.0.18']);
    topo.batch(topo.host, ['addr del 10.150.0.18/24 dev wan2']);
  });

  it('appended routes: deleting one leaves the other; replacing one is followed', async () => {
    topo.batch(topo.host, [
      'route append 198.18.9.0/24 via 10.101.0.1 dev wan1 metric 5',
      'route append 198.18.9.0/24 via 10.102.0.1 dev wan2 metric 5',
    ]);
    await waitConverged(topo, d, README_NETS, 5000);
    assert.deepEqual(copies(2000, '198.18.9.0/24'), ['10.101.0.1 wan1 -']);
    assert.deepEqual(copies(3000, '198.18.9.0/24'), ['10.102.0.1 wan2 -']);
    // the kernel replaces the first route in that place (wan1's), and does not say which one it was
    topo.ip(['route', 'replace', '198.18.9.0/24', 'dev', 'wan1', 'metric', '5', 'src', '10.101.0.2']);
    await waitConverged(topo, d, README_NETS, 5000);
    assert.deepEqual(copies(2000, '198.18.9.0/24'), ['- wan1 10.101.0.2']);
    assert.deepEqual(copies(3000, '198.18.9.0/24'), ['10.102.0.1 wan2 -']);
    topo.ip(['route', 'del', '198.18.9.0/24', 'dev', 'wan1', 'metric', '5']);
    await waitConverged(topo, d, README_NETS, 5000);
    assert.deepEqual(copies(2000, '198.18.9.0/24'), []);
    assert.deepEqual(copies(3000, '198.18.9.0/24'), ['10.102.0.1 wan2 -']);
    assert.equal(await d!.stop('SIGTERM', 5000), 0);
  });
});
