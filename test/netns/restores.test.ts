// A fighter on the real kernel: another program deletes our rule as soon as it is back,
// for a few seconds. The restores must follow the README's words: three within a minute
// at once, then each waits twice as long as the one before (1 s, 2 s, 4 s …), each one
// with a warning. Needs root (skipped otherwise).

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { DaemonProcess, leftovers, startConverged } from '../helpers/daemon';
import { netnsSkipReason, Topology, WAN1 } from '../helpers/netns';
import { eventually, sleep } from '../helpers/wait';

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

describe('a fighter that deletes our rule the instant it is back', { skip }, () => {
  let topo: Topology;
  let d: DaemonProcess | undefined;
  before(() => { topo = Topology.create(); });
  after(() => {
    d?.killNow();
    topo?.destroy();
  });

  // The deletion of a restore can be read before the acknowledgement of the restore: the
  // daemon must not then believe the rule is there.
  it('never leaves the daemon believing a deleted rule is in place', async () => {
    d = await startConverged(topo);
    const del = `rule del from ${WAN1.v4} lookup ${WAN1.table} priority ${WAN1.table}`;
    for (let round = 0; round < 3; round++) {
      // A tight loop of deletions (most fail: the rule is gone) around the free restores.
      spawnSync('ip', ['-n', topo.host, '-force', '-batch', '-'], { input: `${del}\n`.repeat(20_000), stdio: ['pipe', 'ignore', 'ignore'] });
      // The restore that backs off comes within the next delay (at most 8 s in this test).
      await eventually(() => {
        const rules = spawnSync('ip', ['-n', topo.host, '-j', 'rule', 'show', 'table', String(WAN1.table)], { encoding: 'utf8' }).stdout;
        assert.ok((JSON.parse(rules) as { src?: string }[]).some((r) => r.src === WAN1.v4), `round ${round}: no rule from ${WAN1.v4}`);
      }, 9_000);
    }
    assert.equal(await d.stop('SIGTERM', 5000), 0);
    assert.deepEqual(leftovers(topo), []);
  });
});
