// `sudo npm run bench` (section 7), or alone `sudo node dist/bench/managers.js`: latency from a network manager's D-Bus report to the
// daemon's full policy in the kernel, against real NetworkManager and systemd-networkd in
// throwaway namespaces (test/managers/harness.ts). Not a timed test.
//
//  (1) NetworkManager: Connection.Active StateChanged(ACTIVATED) -> the `from ADDR` rule and
//      the table's default route are in the kernel (IPv4-only profile, `nmcli con up/down`)
//  (2) systemd-networkd: the Link PropertiesChanged after which the link counts as managed ->
//      rule and default route in the kernel (`networkctl down/up`)
// Times are taken in this process: signals on its own bus connection, kernel events from
// `ip monitor rule route` in the namespace. A negative value means the policy was in the
// kernel before the manager signalled (NM: dynmhs acts in IP_CONFIG once the address is set).
// Environment: BENCH_MANAGER_RUNS (default 50 per manager). Writes bench/results/managers-<date>.json.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { DAEMON_MAIN, daemonNodeOptions } from '../test/helpers/daemon';
import { Testbed, skipReason, waitFor, run } from '../test/managers/harness';
import { percentile, SignalRecorder } from '../test/managers/util';
import { linkPath, networkdManaged, withLinkProperties, type NetworkdLink } from '../src/sources/networkd-facts';

const RUNS = Number(process.env.BENCH_MANAGER_RUNS ?? 50);
const RESULTS = resolve(__dirname, '..', '..', 'bench', 'results');

interface Seen { at: number; line: string }

function monitor(tb: Testbed, ns: string): { child: ChildProcess; seen: Seen[] } {
  const child = tb.spawnHelper('ip-monitor', 'ip', ['-n', ns, 'monitor', 'rule', 'route']);
  const seen: Seen[] = [];
  child.stdout!.on('data', (d: Buffer) => { const at = performance.now(); for (const line of d.toString().split('\n')) if (line) seen.push({ at, line }); });
  return { child, seen };
}

function startDaemon(tb: Testbed, ns: string, bus: string, source: string, state: string): ChildProcess {
  const child = tb.spawnHelper('dynmhs', 'ip', ['netns', 'exec', ns, 'env', '-u', 'NODE_EXTRA_CA_CERTS', `DBUS_SYSTEM_BUS_ADDRESS=${bus}`, process.execPath, ...daemonNodeOptions(), DAEMON_MAIN,
    '--source', source, '--state-directory', state, '--no-dbus', '--loglevel', '3', '--logcolor', 'off']);
  child.stdout!.resume();
  child.stderr!.resume();
  return child;
}

async function v4(tb: Testbed, ns: string, dev: string): Promise<string> {
  const [a] = await waitFor(`${dev} address`, () => tb.addresses(ns, dev, 4).then((x) => (x.length ? x : undefined)), 15_000);
  return a!;
}

async function policyIn(seen: Seen[], from: number, addr: string): Promise<number> {
  const rule = await waitFor('rule', () => seen.slice(from).find((s) => !s.line.startsWith('Deleted') && s.line.includes(`from ${addr} lookup`)), 10_000);
  const route = await waitFor('route', () => seen.slice(from).find((s) => !s.line.startsWith('Deleted') && /^default via 10\.101\.0\.1 dev wan1 .*table \d+/.test(s.line)), 10_000);
  return Math.max(rule.at, route.at);
}

async function ruleGone(ns: string, addr: string): Promise<void> {
  await waitFor('rule removed', async () => !(await run('ip', ['-n', ns, '-4', 'rule', 'show'])).stdout.includes(`from ${addr} `), 10_000);
}

async function benchNetworkManager(tb: Testbed, state: string): Promise<number[]> {
  await tb.startNetworkManager();
  await tb.nmcli('con', 'add', 'type', 'ethernet', 'ifname', 'wan1', 'con-name', 'lat1', 'autoconnect', 'no', 'ipv4.method', 'auto', 'ipv6.method', 'disabled');
  const daemon = startDaemon(tb, tb.ns.nm, tb.nmBus, 'networkmanager', state);
  const rec = await SignalRecorder.open(tb.nmBus, ["type='signal',sender='org.freedesktop.NetworkManager',interface='org.freedesktop.NetworkManager.Connection.Active',member='StateChanged'"]);
  const mon = monitor(tb, tb.ns.nm);
  await new Promise((r) => setTimeout(r, 1500));
  const samples: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const mark = rec.signals.length;
    const from = mon.seen.length;
    await tb.nmcli('-w', '30', 'con', 'up', 'lat1');
    const addr = await v4(tb, tb.ns.nm, 'wan1');
    const inKernel = await policyIn(mon.seen, from, addr);
    const activated = await waitFor('ACTIVATED', () => rec.signals.slice(mark).find((s) => s.body[0] === 2), 5_000);
    samples.push(inKernel - activated.at);
    await tb.nmcli('con', 'down', 'lat1');
    await ruleGone(tb.ns.nm, addr);
  }
  await rec.close();
  process.kill(mon.child.pid!, 'SIGTERM');
  process.kill(daemon.pid!, 'SIGTERM');
  await new Promise((r) => daemon.once('exit', r));
  await tb.stopNetworkManager();
  return samples;
}

async function benchNetworkd(tb: Testbed, state: string): Promise<number[]> {
  await tb.startNetworkd({ manageForeignRoutingPolicyRules: false, manageForeignRoutes: false });
  await tb.networkdWaitOnline();
  const daemon = startDaemon(tb, tb.ns.nd, tb.ndBus, 'networkd', state);
  const index = Number((await tb.ip(tb.ns.nd, '-j', 'link', 'show', 'wan1')).stdout.match(/"ifindex":(\d+)/)![1]);
  const rec = await SignalRecorder.open(tb.ndBus, [`type='signal',sender='org.freedesktop.network1',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',path='${linkPath(index)}'`]);
  const mon = monitor(tb, tb.ns.nd);
  await new Promise((r) => setTimeout(r, 1500));
  const samples: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const before = await v4(tb, tb.ns.nd, 'wan1');
    await tb.networkctl('down', 'wan1');
    await ruleGone(tb.ns.nd, before);
    const mark = rec.signals.length;
    const from = mon.seen.length;
    await tb.networkctl('up', 'wan1');
    const addr = await v4(tb, tb.ns.nd, 'wan1');
    const inKernel = await policyIn(mon.seen, from, addr);
    const managed = await waitFor('networkd signal', () => {
      let link: NetworkdLink = { index, name: 'wan1', administrativeState: 'configured', operationalState: 'off', addressState: 'off', ipv4AddressState: 'off', ipv6AddressState: 'off' };
      for (const s of rec.signals.slice(mark)) {
        link = withLinkProperties(link, s.body[1] as Record<string, unknown>);
        if (networkdManaged(link)) return s;
      }
      return undefined;
    }, 5_000);
    samples.push(inKernel - managed.at);
  }
  await rec.close();
  process.kill(mon.child.pid!, 'SIGTERM');
  process.kill(daemon.pid!, 'SIGTERM');
  await new Promise((r) => daemon.once('exit', r));
  await tb.stopNetworkd();
  return samples;
}

export interface ManagerRow { name: string; runs: number; p50_ms: number; p99_ms: number; min_ms: number; max_ms: number }
export type ManagersResult =
  | { skipped: string }
  | { rows: ManagerRow[]; samples: { networkmanager: number[]; networkd: number[] } };

/** Both measurements on a throwaway testbed (also section (7) of `npm run bench`). */
export async function benchManagers(): Promise<ManagersResult> {
  const skip = skipReason();
  if (skip) return { skipped: skip };
  const tb = await Testbed.create({ nm: true, networkd: true });
  const state = mkdtempSync(join(tmpdir(), 'dynmhs-bench-state-'));
  try {
    const nm = await benchNetworkManager(tb, join(state, 'nm'));
    const nd = await benchNetworkd(tb, join(state, 'nd'));
    const row = (name: string, xs: number[]): ManagerRow => ({ name, runs: xs.length, p50_ms: round(percentile(xs, 50)), p99_ms: round(percentile(xs, 99)), min_ms: round(Math.min(...xs)), max_ms: round(Math.max(...xs)) });
    const rows = [row('NetworkManager ACTIVATED signal -> rule + default route in kernel', nm), row('networkd link-managed signal -> rule + default route in kernel', nd)];
    return { rows, samples: { networkmanager: nm, networkd: nd } };
  } finally {
    await tb.destroy();
    rmSync(state, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const result = await benchManagers();
  if ('skipped' in result) {
    process.stdout.write(`managers benchmark skipped: ${result.skipped}\n`);
    return;
  }
  for (const r of result.rows) process.stdout.write(`${r.name.padEnd(68)} n=${r.runs} p50 ${r.p50_ms} ms  p99 ${r.p99_ms} ms  (min ${r.min_ms}, max ${r.max_ms})\n`);
  mkdirSync(RESULTS, { recursive: true });
  const file = join(RESULTS, `managers-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), ...result }, null, 2)}\n`);
  process.stdout.write(`written ${file}\n`);
}

const round = (x: number): number => Math.round(x * 100) / 100;

if (require.main === module) {
  main().catch((error: Error) => {
    process.stderr.write(`managers benchmark failed: ${error.stack ?? error.message}\n`);
    process.exitCode = 1;
  });
}
