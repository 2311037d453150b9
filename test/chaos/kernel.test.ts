// Chaos on the real kernel: random churn of addresses, routes and links on a host with
// two uplinks (and a third that comes and goes), foreign entries of every kind beside
// dynmhs's own, SIGKILL and SIGTERM at random points with restarts, and a fighter that
// keeps deleting dynmhs's entries. After each step that should converge, the independent
// checker (./checker.ts) must find the kernel exactly right within a deadline; after each
// SIGTERM nothing of protocol 249 may be left but the foreign main-table routes.
//
// Replay a run: DYNMHS_CHAOS_SEED=<seed printed> [DYNMHS_CHAOS_ITERATIONS=<n>].
// Needs root (network namespaces; the daemon runs only inside them).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { DaemonProcess, networkArgs } from '../helpers/daemon';
import { netnsSkipReason, Topology } from '../helpers/netns';
import { sleep } from '../helpers/wait';
import { check, difference, dumpKernel, foreignSnapshot, isOurs, leftovers, type Family, type Network } from './checker';
import { Churn, ipBatch, ipJson } from './churn';
import { chaosIterations, chaosSeed, Random, stats } from './random';

const skip = netnsSkipReason();
const SEED = chaosSeed();
const ITERATIONS = chaosIterations();
/** How long the fighter keeps deleting: long enough to see the backoff after the free restores. */
const FIGHT_MS = 6000;

const NETS: Network[] = [{ ifName: 'wan1', table: 2000 }, { ifName: 'wan2', table: 3000 }, { ifName: 'wan3', table: 4000 }];

/** Main-table routes of protocol 249 on a link dynmhs does not manage: not dynmhs's (it never touches main). */
const PLANTED_MAIN = new Set(['198.51.100.0/24', '2001:db8:249::/64']);
const planted = (_family: Family, route: Record<string, unknown>): boolean =>
  (route.table ?? 'main') === 'main' && PLANTED_MAIN.has(String(route.dst));

/** Foreign entries beside dynmhs's: other protocols in its tables, its own selectors with another protocol, 249 in main. */
const FOREIGN = [
  'rule add from 10.101.0.2 lookup 2000 priority 2000 proto static',
  'rule add from 192.0.2.1 lookup 2000 priority 2000',
  'rule add fwmark 0x1 lookup 3000 priority 1999 proto static',
  'rule add to 198.18.0.0/16 lookup 4000 priority 4000 proto boot',
  '-6 rule add from fd00:102::2 lookup 3000 priority 3000 proto boot',
  '-6 rule add from 2001:db8::1 lookup 2000 priority 2000',
  'route add unreachable 203.0.113.0/24 table 2000 proto static',
  // holds the place of the copy of `10.160.3.0/24 … metric 7` via wan1, which the churn makes now and then
  'route add unreachable 10.160.3.0/24 metric 7 table 2000 proto static',
  'route add 198.18.5.0/24 via 192.0.2.2 dev side0 table 2000 proto 12',
  'route add throw 198.18.6.0/24 table 3000 proto kernel',
  'route add prohibit 198.18.7.0/24 table 4000 proto 186',
  'route add 198.18.8.0/24 dev side0 table 100 proto static',
  'route add 198.51.100.0/24 dev side0 proto 249',
  '-6 route add unreachable 2001:db8:dead::/48 table 2000 proto static',
  '-6 route add 2001:db8:5::/64 via fd00:99::2 dev side0 table 3000 proto boot',
  '-6 route add 2001:db8:249::/64 dev side0 proto 249',
];

interface Fight {
  readonly target: string;
  readonly deletions: number;
  /** ms from each deletion to the entry being back. */
  readonly restoreDelays: number[];
}

describe('chaos on the real kernel: churn, SIGKILL, SIGTERM, a fighter', { skip, timeout: 300_000 }, () => {
  let topo: Topology;
  let daemon: DaemonProcess | undefined;
  let logDir: string;
  const rnd = new Random(SEED);

  before(() => {
    process.stderr.write(`# chaos (kernel): seed ${SEED}, ${ITERATIONS} iterations (replay: DYNMHS_CHAOS_SEED=${SEED})\n`);
    logDir = mkdtempSync(join(tmpdir(), 'dynmhs-chaos-'));
    topo = Topology.create({ tag: 'q' });
    topo.addHostLink('side0');
    ipBatch(topo.host, ['addr add 192.0.2.10/24 dev side0', '-6 addr add fd00:99::10/64 dev side0 nodad']);
    const refused = ipBatch(topo.host, FOREIGN);
    assert.equal(refused, 0, 'every foreign entry was created');
  });

  after(() => {
    daemon?.killNow();
    topo?.destroy();
    if (logDir && !process.env.DYNMHS_KEEP_TESTBED) rmSync(logDir, { recursive: true, force: true });
  });

  test(`random churn with restarts and a fighter (seed ${SEED})`, async (t: TestContext) => {
    t.diagnostic(`seed ${SEED} (replay: DYNMHS_CHAOS_SEED=${SEED} DYNMHS_CHAOS_ITERATIONS=${ITERATIONS})`);
    const ns = topo.host;
    const churn = new Churn({
      ns,
      wans: [{ ifName: 'wan1', gw4: '10.101.0.1' }, { ifName: 'wan2', gw4: '10.102.0.1' }],
      side: 'side0',
      optional: {
        ifName: 'wan3', gw4: '10.103.0.1',
        create: () => {
          topo.addHostLink('wan3');
          ipBatch(ns, ['addr add 10.103.0.2/24 dev wan3', '-6 addr add fd00:103::2/64 dev wan3',
            'route replace default via 10.103.0.1 dev wan3 metric 400', '-6 route replace default via fe80::1 dev wan3 metric 400']);
        },
        remove: () => topo.deleteHostLink('wan3'),
      },
    }, rnd);
    const foreign = foreignSnapshot(dumpKernel(ns), planted);
    assert.ok(check(dumpKernel(ns), NETS, { foreign, planted }).length > 0, 'without dynmhs the checker must find rules and copies missing');

    const logs: DaemonProcess[] = [];
    /**
     * Starts dynmhs and waits for its first pass ("dynmhs running"): a SIGTERM in the first
     * tens of milliseconds, before Node runs the daemon's code, ends it without clean-up.
     */
    const start = async (): Promise<DaemonProcess> => {
      const d = DaemonProcess.start(ns, [...networkArgs(NETS), '--loglevel', '2', '--logcolor', 'off'], { logDir });
      logs.push(d);
      await d.waitForOutput(/dynmhs running/, 20_000).catch(() => fail(`dynmhs did not start: ${d.output().slice(-2000)}`));
      return d;
    };
    let step = 0;
    const fail = (message: string): never => {
      const tail = daemon ? daemon.output().split('\n').slice(-40).join('\n') : '(no daemon)';
      assert.fail(`seed ${SEED}, step ${step}: ${message}\n--- last actions ---\n${churn.history.slice(-25).join('\n')}`
        + `\n--- daemon log (tail) ---\n${tail}\n(replay: DYNMHS_CHAOS_SEED=${SEED} DYNMHS_CHAOS_ITERATIONS=${ITERATIONS})`);
    };
    /** Polls the checker until the kernel is exactly right; returns how long that took. */
    const converge = async (what: string, deadlineMs = 10_000): Promise<number> => {
      const begin = performance.now();
      let problems: string[] = [];
      for (;;) {
        if (daemon !== undefined && !daemon.running) fail(`dynmhs exited (${JSON.stringify(daemon.status)}) during "${what}"`);
        problems = check(dumpKernel(ns), NETS, { foreign, planted });
        const elapsed = performance.now() - begin;
        if (problems.length === 0) return elapsed;
        if (elapsed > deadlineMs) {
          const addresses = spawnSync('ip', ['-n', ns, '-br', 'addr'], { encoding: 'utf8' }).stdout;
          const rules = spawnSync('ip', ['-n', ns, 'rule'], { encoding: 'utf8' }).stdout;
          fail(`not converged ${deadlineMs} ms after "${what}":\n${problems.join('\n')}\n--- addresses ---\n${addresses}--- rules ---\n${rules}`);
        }
        await sleep(10);
      }
    };
    /** After SIGTERM: exit 0, nothing of protocol 249 but the planted main routes, foreign entries intact. */
    const stopped = async (d: DaemonProcess, what: string, signalled = false): Promise<void> => {
      const code = signalled ? (await d.waitExit(10_000)).code : await d.stop('SIGTERM', 10_000);
      if (code !== 0) fail(`SIGTERM (${what}): exit ${code}`);
      const dump = dumpKernel(ns);
      const left = leftovers(dump, planted);
      if (left.length > 0) fail(`after SIGTERM (${what}) ${left.length} entries of protocol 249 are left:\n${left.join('\n')}`);
      const changed = difference(foreign, foreignSnapshot(dump, planted));
      if (changed.missing.length + changed.extra.length > 0) fail(`after SIGTERM (${what}) foreign entries changed: ${JSON.stringify(changed)}`);
    };

    const churnTimes: number[] = [];
    const restartTimes: number[] = [];
    const fights: Fight[] = [];
    let kills = 0;
    let terms = 0;
    let termsAfterRemoval = 0;
    const firstStart = performance.now();
    daemon = await start();
    await converge('first start', 30_000);
    restartTimes.push(performance.now() - firstStart);
    const fightAt = rnd.int(Math.floor(ITERATIONS / 3), Math.max(Math.floor(ITERATIONS / 3), ITERATIONS - 2));

    for (step = 1; step <= ITERATIONS; step++) {
      const change = churn.step();
      const roll = rnd.next();
      if (roll < 0.12) {
        // SIGKILL somewhere in the middle of following the change, more changes while it is dead
        await sleep(rnd.int(0, 30));
        await daemon.kill();
        kills++;
        for (let k = rnd.int(0, 3); k > 0; k--) churn.step();
        churn.history.push('(SIGKILL, restart)');
        const begin = performance.now();
        daemon = await start();
        await converge('restart after SIGKILL', 30_000);
        restartTimes.push(performance.now() - begin);
      } else if (roll < 0.2) {
        // SIGTERM at once, often just after an IPv4 address with a prefix route (whose copy
        // has it as source hint) went: a network manager shutting down alongside dynmhs.
        let signalled = false;
        if (rnd.chance(0.6)) {
          const added = churn.addPrefixAddress();
          await converge(added.description);
          // from one shell: the signal follows the removal within a millisecond
          churn.removeAddressThenSignal(added.address, daemon.pid, 'TERM');
          signalled = true;
          termsAfterRemoval++;
        } else {
          await sleep(rnd.int(0, 5));
        }
        churn.history.push('(SIGTERM)');
        await stopped(daemon, change.description, signalled);
        terms++;
        for (let k = rnd.int(0, 2); k > 0; k--) churn.step();
        const begin = performance.now();
        daemon = await start();
        await converge('restart after SIGTERM', 30_000);
        restartTimes.push(performance.now() - begin);
      } else {
        churnTimes.push(await converge(change.description));
      }
      if (step === fightAt) fights.push(...await fight(converge));
    }
    await stopped(daemon, 'end of run');
    daemon = undefined;

    const errorLines = logs.flatMap((d) => d.output().split('\n').filter((l) => /\[error\]/.test(l)));
    const warningLines = logs.flatMap((d) => d.output().split('\n').filter((l) => /\[warning\]/.test(l)));
    const c = stats(churnTimes);
    const r = stats(restartTimes);
    t.diagnostic(`iterations ${ITERATIONS}: ${churn.history.length} actions (${churn.refusedTotal} commands refused by the kernel; routes with a source hint: ${churn.hinted[4]} IPv4, ${churn.hinted[6]} IPv6), ${kills} SIGKILL, ${terms + 1} SIGTERM (${termsAfterRemoval} just after an IPv4 address with a prefix route went)`);
    t.diagnostic(`convergence after a change: n=${c.n} median ${c.median.toFixed(1)} ms, max ${c.max.toFixed(1)} ms`);
    t.diagnostic(`from (re)start to converged: n=${r.n} median ${r.median.toFixed(1)} ms, max ${r.max.toFixed(1)} ms`);
    for (const f of fights) {
      t.diagnostic(`fighter on ${f.target}: ${f.deletions} deletions in ${FIGHT_MS} ms, ${f.restoreDelays.length} restores observed, `
        + `restore delays ms: ${f.restoreDelays.map((d) => d.toFixed(0)).join(', ')}`);
    }
    t.diagnostic(`daemon log: ${warningLines.length} lines at warning level, ${errorLines.length} at error level${errorLines.length > 0 ? `, first: ${errorLines[0]!.slice(0, 200)}` : ''}`);
    assert.ok(churnTimes.length > 0);

    /**
     * Keeps deleting one rule and one route of dynmhs for FIGHT_MS, as soon as each is back,
     * then stops and waits for the kernel to be right again. Rate-limited restores mean
     * more than the usual deadline.
     */
    async function fight(wait: (what: string, deadlineMs?: number) => Promise<number>): Promise<Fight[]> {
      churn.linkUp();
      await wait('links up before the fight');
      const dump = dumpKernel(ns);
      const rule = dump.rules[4].find((x) => isOurs(x) && x.src === '10.102.0.2');
      const route = dump.routes[4].find((x) => isOurs(x) && x.table === '3000' && x.dst === '10.102.0.0/24');
      if (rule === undefined || route === undefined) fail('the fighter\'s targets (wan2\'s base rule and prefix route) are missing');
      const metric = typeof route!.metric === 'number' ? ` metric ${route!.metric}` : '';
      const targets = [
        { name: 'rule from 10.102.0.2 lookup 3000', del: 'rule del from 10.102.0.2 lookup 3000 priority 3000 protocol 249',
          present: () => ipJson(ns, ['-4', 'rule', 'show', 'priority', '3000']).some((x) => isOurs(x) && x.src === '10.102.0.2') },
        { name: 'route 10.102.0.0/24 table 3000', del: `route del 10.102.0.0/24 table 3000${metric} proto 249`,
          present: () => ipJson(ns, ['-4', 'route', 'show', 'table', '3000', '10.102.0.0/24']).some((x) => isOurs(x)) },
      ].map((x) => ({ ...x, deletions: 0, deletedAt: undefined as number | undefined, delays: [] as number[] }));
      churn.history.push('(fighter starts)');
      const end = performance.now() + FIGHT_MS;
      while (performance.now() < end) {
        for (const x of targets) {
          if (!x.present()) continue;
          const now = performance.now();
          if (x.deletedAt !== undefined) x.delays.push(now - x.deletedAt);
          if (ipBatch(ns, [x.del]) === 0) {
            x.deletions++;
            x.deletedAt = now;
          }
        }
        await sleep(15);
      }
      churn.history.push('(fighter stops)');
      // After a fight the next restore may be held back for the current backoff (up to 8 s here).
      await wait('the end of the fight', 30_000);
      for (const x of targets) {
        if (x.delays.length === 0) fail(`${x.name}: deleted ${x.deletions} times, never restored during the fight`);
        // Three restores within a minute go at once, then each waits twice as long: a
        // handful in six seconds. Dozens would be two programs spinning against each other.
        if (x.delays.length > 12) fail(`${x.name}: restored ${x.delays.length} times in ${FIGHT_MS} ms: spinning`);
      }
      return targets.map((x) => ({ target: x.name, deletions: x.deletions, restoreDelays: x.delays }));
    }
  });
});
