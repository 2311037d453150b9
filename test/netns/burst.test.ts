// A burst of 20,000 route changes while the daemon runs: every surviving main route is
// mirrored, nothing is left over. Needs root (network namespaces); skipped otherwise.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DaemonProcess, leftovers, startConverged, waitConverged } from '../helpers/daemon';
import { convergence, netnsSkipReason, README_NETS, Topology } from '../helpers/netns';

const skip = netnsSkipReason();

/** 20,000 lines: adds, replaces (some moving wan1 ↔ wan2), deletes, v4 and v6. */
function burst(): string[] {
  const lines: string[] = [];
  const v4 = (i: number) => `10.160.${i >> 8}.${i & 255}/32`;
  const via = (i: number) => (i % 2 === 0 ? 'via 10.101.0.1 dev wan1' : 'via 10.102.0.1 dev wan2');
  const other = (i: number) => (i % 2 === 0 ? 'via 10.102.0.1 dev wan2' : 'via 10.101.0.1 dev wan1');
  for (let i = 0; i < 8000; i++) lines.push(`route add ${v4(i)} ${via(i)}`);
  for (let i = 0; i < 2000; i++) {
    lines.push(`route add 2001:db8:b::${i.toString(16)}/128 via fe80::1 dev ${i % 2 === 0 ? 'wan1' : 'wan2'} metric 10`);
  }
  // 6,000 replaces: 3,000 move to the other interface, 3,000 change gateway on the same one
  for (let i = 0; i < 3000; i++) lines.push(`route replace ${v4(i)} ${other(i)}`);
  for (let i = 3000; i < 6000; i++) {
    lines.push(`route replace ${v4(i)} ${i % 2 === 0 ? 'via 10.101.0.7 dev wan1' : 'via 10.102.0.7 dev wan2'}`);
  }
  // 4,000 deletes: 3,000 v4, 1,000 v6
  for (let i = 5000; i < 8000; i++) lines.push(`route del ${v4(i)}`);
  for (let i = 0; i < 1000; i++) lines.push(`route del 2001:db8:b::${i.toString(16)}/128 metric 10`);
  return lines;
}

/**
 * `count` routes added and deleted again (no net change): 2 × count events, more than the
 * daemon's monitor socket holds (128 MiB as the kernel counts it, ~830 bytes an event)
 * once count is 100,000.
 */
function churn(count: number): string[] {
  const dst = (i: number) => `10.${170 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`;
  const lines: string[] = [];
  for (let i = 0; i < count; i++) lines.push(`route add ${dst(i)} via 10.101.0.1 dev wan1`);
  for (let i = 0; i < count; i++) lines.push(`route del ${dst(i)}`);
  return lines;
}

describe('burst of 20,000 route changes', { skip }, () => {
  let topo: Topology;
  let d: DaemonProcess | undefined;
  before(() => { topo = Topology.create(); });
  after(() => {
    d?.killNow();
    topo?.destroy();
  });

  it('every surviving main route is mirrored, no leftovers, no duplicates', async () => {
    d = await startConverged(topo, README_NETS, ['--loglevel', '2']);
    const lines = burst();
    assert.equal(lines.length, 20000);
    const t0 = Date.now();
    topo.batch(topo.host, lines);
    const tBatch = Date.now() - t0;
    // big dumps: poll slowly so the test does not starve the daemon of CPU
    await waitConverged(topo, d, README_NETS, 60000, 300).catch((e) => {
      throw new Error(`${(e as Error).message}\nfinal: ${convergence(topo, README_NETS)}`);
    });
    const tConverged = Date.now() - t0;
    // expected counts: 5,000 v4 host routes and 1,000 v6 survive, split over both tables
    const n2000 = topo.ourRoutes(4, 2000).filter((r) => r.dst.startsWith('10.160.')).length;
    const n3000 = topo.ourRoutes(4, 3000).filter((r) => r.dst.startsWith('10.160.')).length;
    assert.equal(n2000 + n3000, 5000);
    const m2000 = topo.ourRoutes(6, 2000).filter((r) => r.dst.startsWith('2001:db8:b::')).length;
    const m3000 = topo.ourRoutes(6, 3000).filter((r) => r.dst.startsWith('2001:db8:b::')).length;
    assert.equal(m2000 + m3000, 1000);
    assert.ok(d.running);
    console.log(`# ip -batch 20,000 changes: ${tBatch} ms; converged ${tConverged} ms after the batch started`);
    // and it still cleans up in time with ~6,000 mirrored routes
    const ts = Date.now();
    assert.equal(await d.stop('SIGTERM', 10000), 0);
    console.log(`# SIGTERM → exit: ${Date.now() - ts} ms`);
    assert.deepEqual(leftovers(topo), []);
  });

  it('event overflow (ENOBUFS): stopped while 20,000 changes happen, it re-reads and converges', async () => {
    // Undo the first test's surviving routes so this one starts from the README state.
    topo.batch(topo.host, topo.routes(4, 'main').filter((r) => r.dst.startsWith('10.160.')).map((r) => `route del ${r.dst}`)
      .concat(topo.routes(6, 'main').filter((r) => r.dst.startsWith('2001:db8:b::')).map((r) => `route del ${r.dst} metric 10`)));
    d = await startConverged(topo, README_NETS, ['--loglevel', '2']);
    // A stopped process reads nothing: its monitor socket's receive buffer must overflow.
    d.signal('SIGSTOP');
    try {
      topo.batch(topo.host, [...burst(), ...churn(100000)]);
    } finally {
      d.signal('SIGCONT');
    }
    await waitConverged(topo, d, README_NETS, 60000, 300);
    assert.ok(d.running, 'dynmhs must survive ENOBUFS');
    assert.match(d.output(), /ENOBUFS/, 'the burst must have overflowed the monitor socket');
    assert.equal(await d.stop('SIGTERM', 10000), 0);
    assert.deepEqual(leftovers(topo), []);
  });
});
