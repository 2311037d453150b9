// A fighter on the real kernel: another program deletes our rule as soon as it is back,
// for a few seconds. The restores must follow the README's words: three within a minute
// at once, then each waits twice as long as the one before (1 s, 2 s, 4 s …), each one
// with a warning. Needs root (skipped otherwise).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { DaemonProcess, leftovers, startConverged } from '../helpers/daemon';
import { netnsSkipReason, Topology, WAN1 } from '../helpers/netns';
import { sleep } from '../helpers/wait';

const skip = netnsSkipReason();
const FIGHT_MS = 8_000;
/** The documented schedule within FIGHT_MS, in ms after the first deletion. */
const EXPECTED_RESTORES_MS = [0, 0, 0, 1000, 3000, 7000];
/** How late a restore may be seen: the fighter looks every few ms, on a busy machine. */
const LATE_MS = 400;

function deleteRule(ns: string): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn('ip', ['-n', ns, 'rule', 'del', 'from', WAN1.v4, 'lookup', String(WAN1.table), 'priority', String(WAN1.table)],
      { stdio: 'ignore' });
    child.on('exit', (code) => resolve(code === 0));
    child.on('error', () => resolve(false));
  });
}

describe('a program deleting our rule in a loop', { skip }, () => {
  let topo: Topology;
  let d: DaemonProcess | undefined;
  before(() => { topo = Topology.create(); });
  after(() => {
    d?.killNow();
    topo?.destroy();
  });

  it('gets restores at the documented times, each one warned', async () => {
    d = await startConverged(topo);
    const mark = d.output().length;
    const deletedAt: number[] = [];
    const start = performance.now();
    while (performance.now() - start < FIGHT_MS) {
      if (await deleteRule(topo.host)) deletedAt.push(performance.now() - start);
      await sleep(5);
    }
    // Every deletion but the first took away a restore.
    const restoresMs = deletedAt.slice(1).map((t) => Math.round(t - deletedAt[0]));
    const gaps = restoresMs.slice(1).map((t, i) => t - restoresMs[i]);
    const report = `restores at ${restoresMs.join(', ')} ms after the first deletion (gaps ${gaps.join(', ')} ms)`;
    console.log(report);
    assert.equal(restoresMs.length, EXPECTED_RESTORES_MS.length, report);
    restoresMs.forEach((t, i) => {
      assert.ok(t >= EXPECTED_RESTORES_MS[i] - 20 && t <= EXPECTED_RESTORES_MS[i] + LATE_MS, `restore ${i + 1}: ${report}`);
    });
    const warnings = d.outputSince(mark).split('\n').filter((l) => /was deleted by another program/.test(l));
    assert.equal(warnings.length, restoresMs.length, warnings.join('\n'));
    assert.equal(await d.stop('SIGTERM', 5000), 0);
    assert.deepEqual(leftovers(topo), []);
  });
});
