// SIGTERM leaves nothing of protocol 249, whatever the daemon's cache believes: an IPv4
// address removed just before SIGTERM (a network manager shutting down alongside dynmhs)
// makes the kernel flush the routes with that source hint from main only; a copy of one
// in our table must still go. Needs root (skipped otherwise).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { DaemonProcess, leftovers, startConverged, waitConverged } from '../helpers/daemon';
import { netnsSkipReason, README_NETS, Topology } from '../helpers/netns';
import { eventually, sleep } from '../helpers/wait';

const skip = netnsSkipReason();
/**
 * Between the address's removal and SIGTERM. The daemon's view is wrong only from reading
 * the event until it has re-read the routes, a millisecond or so: about every other round
 * hits that window, so a dozen rounds catch it.
 */
const DELAYS_MS = [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1];
const ROUNDS = DELAYS_MS.length;

describe('SIGTERM right after an address goes', { skip }, () => {
  let topo: Topology;
  let d: DaemonProcess | undefined;
  before(() => { topo = Topology.create(); });
  after(() => {
    d?.killNow();
    topo?.destroy();
  });

  it(`leaves nothing of protocol 249 in any table (${ROUNDS} rounds)`, async () => {
    const failures: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      topo.batch(topo.host, ['addr add 10.119.0.1/24 dev wan1']);
      d = await startConverged(topo);
      await eventually(() => assert.ok(topo.ourRoutes(4, 2000).some((r) => r.dst === '10.119.0.0/24' && r.prefsrc === '10.119.0.1'),
        'copy of 10.119.0.0/24 with its source hint'), 5000);
      await waitConverged(topo, d, README_NETS, 5000);
      // At once: the address goes and SIGTERM follows before the daemon has read the event.
      const removed = spawnSync('ip', ['-n', topo.host, 'addr', 'del', '10.119.0.1/24', 'dev', 'wan1']);
      assert.equal(removed.status, 0, String(removed.stderr));
      if (DELAYS_MS[round] > 0) await sleep(DELAYS_MS[round]);
      d.signal('SIGTERM');
      const status = await d.waitExit(10000);
      assert.equal(status.code, 0, d.output().slice(-2000));
      const left = leftovers(topo);
      if (left.length > 0) failures.push(`round ${round + 1} (${DELAYS_MS[round]} ms): ${left.join('; ')}`);
      // Whatever was left must not spoil the next round.
      spawnSync('ip', ['-n', topo.host, 'route', 'flush', 'table', '2000']);
      spawnSync('ip', ['-n', topo.host, 'route', 'flush', 'table', '3000']);
      spawnSync('ip', ['-n', topo.host, '-6', 'route', 'flush', 'table', '2000']);
      spawnSync('ip', ['-n', topo.host, '-6', 'route', 'flush', 'table', '3000']);
      for (let i = 0; i < 8; i++) spawnSync('ip', ['-n', topo.host, 'rule', 'del', 'protocol', '249']);
      for (let i = 0; i < 8; i++) spawnSync('ip', ['-n', topo.host, '-6', 'rule', 'del', 'protocol', '249']);
    }
    assert.deepEqual(failures, []);
  });
});
