// Chaos with NetworkManager as the source: connections going down and up while dynmhs
// runs, while it is dead (SIGKILL, restarted after), and while it is being killed and
// restarted in the middle of an activation. After each step the independent checker
// must find the kernel right: every active connection's addresses have a rule to one
// table (the table tables.json gives its uuid, distinct per connection), that table
// holds copies of the connection's main-table routes, nothing of protocol 249 is left
// for connections that are down, and the foreign entries are intact. The last SIGTERM
// must leave nothing of protocol 249 behind.
//
// Replay: DYNMHS_CHAOS_SEED=<seed printed>. Steps: DYNMHS_CHAOS_ITERATIONS / 8 (default 15).
// Needs root: namespaces, NetworkManager, dnsmasq (test/managers/harness.ts).

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import type { DaemonProcess } from '../helpers/daemon';
import { sleep } from '../helpers/wait';
import { skipReason, Testbed } from '../managers/harness';
import { daemonRunning, startDaemon } from '../managers/util';
import { check, difference, dumpKernel, foreignSnapshot, leftovers, type Family, type Network } from './checker';
import { ipBatch } from './churn';
import { chaosIterations, chaosSeed, Random, stats } from './random';

const skip = skipReason();
const SEED = chaosSeed();
const STEPS = Math.max(2, Math.ceil(chaosIterations() / 8));

const PLANTED_MAIN = '198.51.100.0/24';
const planted = (_family: Family, route: Record<string, unknown>): boolean =>
  (route.table ?? 'main') === 'main' && route.dst === PLANTED_MAIN;
/** Foreign entries: a rule and a route in the first table of the allocation range, 249 in main on an unmanaged link. */
const FOREIGN = [
  'rule add from 192.0.2.1 lookup 10000 priority 10000 proto static',
  'route add unreachable 203.0.113.0/24 table 10000 proto static',
  `route add ${PLANTED_MAIN} dev lo proto 249`,
];

describe('chaos with NetworkManager: connections down and up around SIGKILLs and restarts', { skip, timeout: 240_000 }, () => {
  let tb: Testbed;
  let state: string;
  let daemon: DaemonProcess | undefined;
  const rnd = new Random(SEED);
  const ns = (): string => tb.ns.nm;
  const args = (): string[] => ['--source', 'networkmanager', '--state-directory', state, '--loglevel', '2', '--logcolor', 'off'];

  before(async () => {
    process.stderr.write(`# chaos (NetworkManager): seed ${SEED}, ${STEPS} steps (replay: DYNMHS_CHAOS_SEED=${SEED})\n`);
    tb = await Testbed.create({ nm: true });
    state = mkdtempSync(join(tmpdir(), 'dynmhs-chaos-nm-'));
    await tb.startNetworkManager();
    await tb.addNmProfiles();
    await tb.nmcli('-w', '60', 'con', 'up', 'wan1');
    await tb.nmcli('-w', '60', 'con', 'up', 'wan2');
    assert.equal(ipBatch(ns(), FOREIGN), 0, 'every foreign entry was created');
  });

  after(async () => {
    await daemon?.stop('SIGTERM', 5000).catch(() => daemon?.killNow());
    await tb?.destroy();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  /** Active connections (fully activated) by device, with their uuid; undefined while one is in between. */
  async function activeConnections(): Promise<Map<string, string> | undefined> {
    const { stdout } = await tb.nmcli('-t', '-f', 'UUID,DEVICE,STATE', 'con', 'show', '--active');
    const active = new Map<string, string>();
    for (const line of stdout.split('\n').filter(Boolean)) {
      const [uuid, device, st] = line.split(':');
      if (st !== 'activated') return undefined;
      active.set(device!, uuid!);
    }
    return active;
  }

  /** The networks NetworkManager and tables.json call for, or a reason why they cannot be told yet. */
  async function expectedNetworks(): Promise<Network[] | string> {
    const active = await activeConnections();
    if (active === undefined) return 'a connection is still activating or deactivating';
    let stored: { connections?: Record<string, { table?: number }> };
    try {
      stored = JSON.parse(readFileSync(join(state, 'tables.json'), 'utf8'));
    } catch (error) {
      return `tables.json unreadable: ${(error as Error).message}`;
    }
    const nets: Network[] = [];
    for (const [device, uuid] of active) {
      const table = stored.connections?.[uuid]?.table;
      if (typeof table !== 'number') return `tables.json has no table for ${device}'s connection ${uuid}`;
      nets.push({ ifName: device, table });
    }
    const tables = nets.map((n) => n.table);
    if (new Set(tables).size !== tables.length) return `two active connections share a table: ${JSON.stringify(nets)}`;
    return nets;
  }

  test(`connections down and up, SIGKILLs and restarts (seed ${SEED})`, async (t: TestContext) => {
    t.diagnostic(`seed ${SEED} (replay: DYNMHS_CHAOS_SEED=${SEED})`);
    const foreign = foreignSnapshot(dumpKernel(ns()), planted);
    const history: string[] = [];
    let step = 0;
    const fail = (message: string): never => assert.fail(`seed ${SEED}, step ${step}: ${message}\n--- steps ---\n${history.join('\n')}`
      + `\n--- daemon log (tail) ---\n${daemon?.output().split('\n').slice(-30).join('\n') ?? '(none)'}\n(replay: DYNMHS_CHAOS_SEED=${SEED})`);
    const converge = async (what: string, deadlineMs = 30_000): Promise<number> => {
      const begin = performance.now();
      let last: string[] = [];
      for (;;) {
        if (daemon !== undefined && !daemon.running) fail(`dynmhs exited (${JSON.stringify(daemon.status)}) during "${what}"`);
        const nets = await expectedNetworks();
        last = typeof nets === 'string' ? [nets] : check(dumpKernel(ns()), nets, { foreign, planted });
        const elapsed = performance.now() - begin;
        if (last.length === 0) return elapsed;
        if (elapsed > deadlineMs) fail(`not converged ${deadlineMs} ms after "${what}":\n${last.join('\n')}`);
        await sleep(25);
      }
    };
    const start = async (): Promise<void> => {
      daemon = startDaemon(tb, ns(), tb.nmBus, args());
      await daemonRunning(daemon);
    };

    const times: number[] = [];
    const restartTimes: number[] = [];
    let kills = 0;
    let startedAt = performance.now();
    await start();
    await converge('first start');
    restartTimes.push(performance.now() - startedAt);
    for (step = 1; step <= STEPS; step++) {
      const connection = rnd.pick(['wan1', 'wan2']);
      const up = (await activeConnections())?.has(connection) ?? false;
      const action = (): Promise<unknown> => tb.nmcli('-w', '60', 'con', up ? 'down' : 'up', connection);
      const mode = rnd.weighted<'running' | 'dead' | 'killed-during'>([['running', 2], ['dead', 2], ['killed-during', 1]]);
      history.push(`${connection} ${up ? 'down' : 'up'} (dynmhs ${mode})`);
      if (mode === 'running') {
        await action();
        times.push(await converge(history[history.length - 1]!));
        continue;
      }
      if (mode === 'dead') {
        await daemon!.kill();
        await action();
      } else {
        const pending = action();
        await sleep(rnd.int(0, 400));
        await daemon!.kill();
        await pending;
      }
      kills++;
      startedAt = performance.now();
      await start();
      await converge(history[history.length - 1]!);
      restartTimes.push(performance.now() - startedAt);
    }
    // both up for the last word: SIGTERM must take every rule and copy with it
    for (const connection of ['wan1', 'wan2']) {
      if (!(await activeConnections())?.has(connection)) await tb.nmcli('-w', '60', 'con', 'up', connection);
    }
    await converge('both connections up');
    const code = await daemon!.stop('SIGTERM', 10_000);
    if (code !== 0) fail(`SIGTERM: exit ${code}`);
    const dump = dumpKernel(ns());
    const left = leftovers(dump, planted);
    if (left.length > 0) fail(`after SIGTERM ${left.length} entries of protocol 249 are left:\n${left.join('\n')}`);
    const changed = difference(foreign, foreignSnapshot(dump, planted));
    if (changed.missing.length + changed.extra.length > 0) fail(`after SIGTERM foreign entries changed: ${JSON.stringify(changed)}`);
    daemon = undefined;

    const c = stats(times);
    const r = stats(restartTimes);
    t.diagnostic(`steps ${STEPS}: ${history.join('; ')}`);
    t.diagnostic(`convergence with dynmhs running (after nmcli returned): n=${c.n} median ${c.median.toFixed(1)} ms, max ${c.max.toFixed(1)} ms`);
    t.diagnostic(`${kills} SIGKILLs; from (re)start to converged: n=${r.n} median ${r.median.toFixed(0)} ms, max ${r.max.toFixed(0)} ms`);
  });
});
