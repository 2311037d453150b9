// A main-table route replaced in place with another next hop (`ip route replace`: another
// gateway, or none): its copy follows. For IPv6 the new copy is another route in the old
// one's place, which the kernel does not take beside it: the copy is replaced, not added
// and the old one deleted (that left the table without it).
// Needs root: it creates network namespaces and veth pairs (skipped otherwise).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DaemonProcess, startConverged, waitConverged } from '../helpers/daemon';
import { netnsSkipReason, README_NETS, Topology } from '../helpers/netns';

const skip = netnsSkipReason();

describe('a main route replaced with another next hop', { skip }, () => {
  let topo: Topology;
  let d: DaemonProcess | undefined;
  before(async () => {
    topo = Topology.create({ tag: 'h' });
    d = await startConverged(topo);
  });
  after(() => {
    d?.killNow();
    topo?.destroy();
  });

  const copy = (fam: 4 | 6, dst: string): string[] =>
    topo.ourRoutes(fam, 3000).filter((r) => r.dst === dst).map((r) => `${r.gateway ?? '-'} ${r.dev}`);

  it('IPv6: gateway → none → another gateway → the first again', async () => {
    const steps: [string[], string][] = [
      [['via', 'fe80::1', 'dev', 'wan2'], 'fe80::1 wan2'],
      [['dev', 'wan2'], '- wan2'],
      [['via', 'fe80::2', 'dev', 'wan2'], 'fe80::2 wan2'],
      [['via', 'fe80::1', 'dev', 'wan2'], 'fe80::1 wan2'],
    ];
    for (const [via, want] of steps) {
      topo.ip(['-6', 'route', 'replace', 'fd00:160:3::/64', ...via, 'metric', '7']);
      await waitConverged(topo, d, README_NETS, 5000);
      assert.deepEqual(copy(6, 'fd00:160:3::/64'), [want], `after replace … ${via.join(' ')}`);
    }
  });

  it('IPv4: gateway → none → gateway', async () => {
    for (const [via, want] of [[['via', '10.102.0.1', 'dev', 'wan2'], '10.102.0.1 wan2'], [['dev', 'wan2'], '- wan2'],
      [['via', '10.102.0.1', 'dev', 'wan2'], '10.102.0.1 wan2']] as [string[], string][]) {
      topo.ip(['route', 'replace', '10.160.3.0/24', ...via, 'metric', '7']);
      await waitConverged(topo, d, README_NETS, 5000);
      assert.deepEqual(copy(4, '10.160.3.0/24'), [want], `after replace … ${via.join(' ')}`);
    }
    assert.equal(await d!.stop('SIGTERM', 5000), 0);
  });
});
