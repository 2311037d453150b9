// End to end: the real daemon (dist/src/main.js) with --source networkmanager|networkd on a
// private bus, in the manager's network namespace, against real NetworkManager / networkd.
// Needs root: namespaces, managers, and the daemon changes rules and routes (only inside
// the test's own namespaces).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Testbed, skipReason, waitFor } from './harness';
import { daemonRunning, defaultRoutes, percentile, SignalRecorder, sourceRules, startDaemon, summary } from './util';
import type { DaemonProcess } from '../helpers/daemon';
import { linkPath, networkdManaged, withLinkProperties, type NetworkdLink } from '../../src/sources/networkd-facts';

const skip = skipReason();
describe('dynmhs daemon with --source networkmanager (real NetworkManager)', { skip, timeout: 170_000 }, () => {
  let tb: Testbed;
  let daemon: DaemonProcess;
  let state: string;
  const ns = (): string => tb.ns.nm;

  before(async () => {
    tb = await Testbed.create({ nm: true });
    state = mkdtempSync(join(tmpdir(), 'dynmhs-state-'));
    await tb.startNetworkManager();
    await tb.addNmProfiles();
    daemon = startDaemon(tb, ns(), tb.nmBus, ['--source', 'networkmanager', '--state-directory', state, '--loglevel', '1', '--logcolor', 'off']);
    await daemonRunning(daemon);
  });

  after(async () => {
    await daemon?.stop();
    await tb?.destroy();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  const expectRules = async (dev: string, table: number): Promise<string[]> => {
    const addrs = [...await tb.addresses(ns(), dev, 4), ...await tb.addresses(ns(), dev, 6)];
    assert.ok(addrs.length >= 2, `${dev} has a DHCPv4 and a SLAAC address: ${addrs.join(' ')}`);
    let last: unknown;
    await waitFor(`rules for ${dev} -> ${table}`, async () => {
      const r = await sourceRules(ns());
      last = r;
      return addrs.every((a) => r.some((x) => x.src === a && x.table === String(table) && x.priority === table));
    }, 10_000).catch((e: Error) => { throw new Error(`${e.message}; addresses ${addrs.join(' ')}; rules ${JSON.stringify(last)}; daemon: ${daemon.output().slice(-2000)}`); });
    await waitFor(`default routes in table ${table}`, async () => (await defaultRoutes(ns(), table)).length === 2, 10_000);
    return addrs;
  };

  let wan1Addrs: string[] = [];
  let wan2Addrs: string[] = [];

  test('nmcli con up wan1: rules from its DHCP and SLAAC addresses lookup an allocated table with both default routes', async () => {
    await tb.nmcli('-w', '60', 'con', 'up', 'wan1');
    wan1Addrs = await expectRules('wan1', 10000);
    const routes = await defaultRoutes(ns(), 10000);
    assert.match(routes[0]!, /^default via 10\.101\.0\.1 dev wan1/);
    assert.match(routes[1]!, /^default via fe80::\S+ dev wan1/);
  });

  test('nmcli con up wan2: its own table', async () => {
    await tb.nmcli('-w', '60', 'con', 'up', 'wan2');
    wan2Addrs = await expectRules('wan2', 10001);
    await expectRules('wan1', 10000);
  });

  test('nmcli con down wan1: its rules and routes go, wan2\'s stay', async () => {
    await tb.nmcli('con', 'down', 'wan1');
    await waitFor('wan1 rules gone', async () => !(await sourceRules(ns())).some((r) => r.table === '10000'), 10_000);
    assert.deepEqual(await defaultRoutes(ns(), 10000), []);
    const r = await sourceRules(ns());
    assert.ok(wan2Addrs.every((a) => r.some((x) => x.src === a && x.table === '10001')));
    assert.ok(!r.some((x) => wan1Addrs.includes(x.src)));
  });

  test('reconnecting wan1 gets table 10000 again (stable per connection)', async () => {
    await tb.nmcli('-w', '60', 'con', 'up', 'wan1');
    await expectRules('wan1', 10000);
  });

  test('latency: NM ACTIVATED signal -> rule and default route in the kernel (IPv4-only profile, 20 cycles)', async (t) => {
    await tb.nmcli('con', 'down', 'wan1');
    await tb.nmcli('con', 'add', 'type', 'ethernet', 'ifname', 'wan1', 'con-name', 'lat1', 'autoconnect', 'no', 'ipv4.method', 'auto', 'ipv6.method', 'disabled');
    const rec = await SignalRecorder.open(tb.nmBus, ["type='signal',sender='org.freedesktop.NetworkManager',interface='org.freedesktop.NetworkManager.Connection.Active',member='StateChanged'"]);
    // `ip monitor` streams the kernel's rule and route notifications as they happen
    const mon = tb.spawnHelper('ip-monitor', 'ip', ['-n', ns(), 'monitor', 'rule', 'route']);
    const seen: Array<{ at: number; line: string }> = [];
    mon.stdout!.on('data', (d: Buffer) => { const at = performance.now(); for (const line of d.toString().split('\n')) if (line) seen.push({ at, line }); });
    await new Promise((r) => setTimeout(r, 200));
    const samples: number[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const mark = rec.signals.length;
        const from = seen.length;
        await tb.nmcli('-w', '30', 'con', 'up', 'lat1');
        const [addr] = await waitFor('lat1 address', () => tb.addresses(ns(), 'wan1', 4).then((a) => (a.length ? a : undefined)), 5_000);
        const rule = await waitFor('rule event', () => seen.slice(from).find((s) => !s.line.startsWith('Deleted') && s.line.includes(`from ${addr} lookup`)), 5_000);
        const route = await waitFor('route event', () => seen.slice(from).find((s) => !s.line.startsWith('Deleted') && /^default via 10\.101\.0\.1 dev wan1 table \d+/.test(s.line)), 5_000);
        const activated = await waitFor('ACTIVATED', () => rec.signals.slice(mark).find((s) => s.body[0] === 2), 5_000);
        samples.push(Math.max(rule.at, route.at) - activated.at);
        await tb.nmcli('con', 'down', 'lat1');
        await waitFor('rule removed', async () => !(await sourceRules(ns())).some((r) => r.src === addr), 5_000);
      }
    } finally {
      await rec.close();
      if (mon.pid) process.kill(mon.pid, 'SIGTERM');
    }
    const line = summary('NM ACTIVATED signal -> rule + table default route in the kernel', samples);
    t.diagnostic(line);
    process.stdout.write(`# ${line}\n`);
    assert.ok(percentile(samples, 50) < 20, line);
  });

  test('SIGTERM: the daemon removes its rules and exits 0', async () => {
    await tb.nmcli('-w', '60', 'con', 'up', 'wan1');
    await expectRules('wan1', 10000);
    assert.equal(await daemon.stop(), 0);
    const r = await sourceRules(ns());
    assert.ok(!r.some((x) => x.table === '10000' || x.table === '10001'), JSON.stringify(r));
  });
});

describe('dynmhs daemon with --source networkd (real systemd-networkd)', { skip, timeout: 120_000 }, () => {
  let tb: Testbed;
  let daemon: DaemonProcess | undefined;
  let state: string;
  const ns = (): string => tb.ns.nd;

  before(async () => {
    tb = await Testbed.create({ nm: false, networkd: true });
    state = mkdtempSync(join(tmpdir(), 'dynmhs-state-'));
  });

  after(async () => {
    await daemon?.stop();
    await tb?.destroy();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  async function allRulesPresent(): Promise<Map<string, string>> {
    const want = new Map<string, string>();
    for (const dev of ['wan1', 'wan2']) for (const a of [...await tb.addresses(ns(), dev, 4), ...await tb.addresses(ns(), dev, 6)]) want.set(a, dev);
    const r = await sourceRules(ns());
    const tables = new Map<string, string>();
    for (const [a, dev] of want) {
      const hit = r.find((x) => x.src === a && Number(x.table) >= 10000);
      if (!hit) return new Map();
      tables.set(a, `${dev}:${hit.table}`);
    }
    return want.size >= 4 ? tables : new Map();
  }

  async function reconfigureWatchingRules(): Promise<string[]> {
    const mon = tb.spawnHelper('ip-monitor', 'ip', ['-n', ns(), 'monitor', 'rule']);
    const lines: string[] = [];
    mon.stdout!.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter((l) => l)));
    await new Promise((r) => setTimeout(r, 200));
    await tb.networkctl('reconfigure', 'wan1');
    await tb.networkdWaitOnline();
    await waitFor('all rules back', async () => (await allRulesPresent()).size >= 4, 15_000);
    await new Promise((r) => setTimeout(r, 300));
    if (mon.pid) process.kill(mon.pid, 'SIGTERM');
    return lines;
  }

  test('networkd with default ManageForeignRoutingPolicyRules=yes: reconfigure deletes our rules, the daemon restores them', async (t) => {
    await tb.startNetworkd();
    await tb.networkdWaitOnline();
    daemon = startDaemon(tb, ns(), tb.ndBus, ['--source', 'networkd', '--state-directory', state, '--loglevel', '1', '--logcolor', 'off']);
    await daemonRunning(daemon);
    const before = await waitFor('rules for wan1 and wan2', () => allRulesPresent().then((m) => (m.size >= 4 ? m : undefined)), 20_000);
    const wan2 = [...before].filter(([, v]) => v.startsWith('wan2:')).map(([a]) => a);
    const lines = await reconfigureWatchingRules();
    const deleted = lines.filter((l) => l.startsWith('Deleted') && wan2.some((a) => l.includes(`from ${a} lookup`)));
    assert.ok(deleted.length > 0, `networkd deleted wan2's rules on reconfiguring wan1: ${lines.join(' | ')}`);
    assert.deepEqual(await allRulesPresent(), before, 'all rules restored, same tables');
    const warnings = daemon.output().split('\n').filter((l) => /\[warning\]/.test(l));
    t.diagnostic(`daemon warnings: ${warnings.join(' | ')}`);
  });

  test('with the shipped drop-in (ManageForeign*=no): reconfiguring wan1 leaves wan2\'s rules alone', async () => {
    await daemon?.stop();
    daemon = undefined;
    await tb.stopNetworkd();
    await tb.startNetworkd({ manageForeignRoutingPolicyRules: false, manageForeignRoutes: false });
    await tb.networkdWaitOnline();
    daemon = startDaemon(tb, ns(), tb.ndBus, ['--source', 'networkd', '--state-directory', state, '--loglevel', '1', '--logcolor', 'off']);
    await daemonRunning(daemon);
    const before = await waitFor('rules for wan1 and wan2', () => allRulesPresent().then((m) => (m.size >= 4 ? m : undefined)), 20_000);
    const wan2 = [...before].filter(([, v]) => v.startsWith('wan2:')).map(([a]) => a);
    const lines = await reconfigureWatchingRules();
    assert.deepEqual(lines.filter((l) => l.startsWith('Deleted') && wan2.some((a) => l.includes(`from ${a} lookup`))), []);
    assert.deepEqual(await allRulesPresent(), before);
  });

  test('latency: networkd signal that makes wan1 managed -> rule and default route in the kernel (20 down/up cycles)', async (t) => {
    const index = Number((await tb.ip(ns(), '-j', 'link', 'show', 'wan1')).stdout.match(/"ifindex":(\d+)/)![1]);
    const rec = await SignalRecorder.open(tb.ndBus, [`type='signal',sender='org.freedesktop.network1',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',path='${linkPath(index)}'`]);
    const mon = tb.spawnHelper('ip-monitor', 'ip', ['-n', ns(), 'monitor', 'rule', 'route']);
    const seen: Array<{ at: number; line: string }> = [];
    mon.stdout!.on('data', (d: Buffer) => { const at = performance.now(); for (const line of d.toString().split('\n')) if (line) seen.push({ at, line }); });
    await new Promise((r) => setTimeout(r, 200));
    const samples: number[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        await tb.networkctl('down', 'wan1');
        await waitFor('wan1 rules gone', async () => (await sourceRules(ns())).filter((r) => Number(r.table) >= 10000).length <= 2, 5_000);
        const mark = rec.signals.length;
        const from = seen.length;
        await tb.networkctl('up', 'wan1');
        const [addr] = await waitFor('wan1 address', () => tb.addresses(ns(), 'wan1', 4).then((a) => (a.length ? a : undefined)), 10_000);
        const rule = await waitFor('rule event', () => seen.slice(from).find((s) => !s.line.startsWith('Deleted') && s.line.includes(`from ${addr} lookup`)), 10_000);
        const route = await waitFor('route event', () => seen.slice(from).find((s) => !s.line.startsWith('Deleted') && /^default via 10\.101\.0\.1 dev wan1 .*table \d+/.test(s.line)), 10_000);
        const managed = await waitFor('networkd signal', () => {
          let link: NetworkdLink = { index, name: 'wan1', administrativeState: 'configured', operationalState: 'off', addressState: 'off', ipv4AddressState: 'off', ipv6AddressState: 'off' };
          for (const s of rec.signals.slice(mark)) {
            link = withLinkProperties(link, s.body[1] as Record<string, unknown>);
            if (networkdManaged(link)) return s;
          }
          return undefined;
        }, 5_000);
        samples.push(Math.max(rule.at, route.at) - managed.at);
      }
    } finally {
      await rec.close();
      if (mon.pid) process.kill(mon.pid, 'SIGTERM');
    }
    const line = summary('networkd link-managed signal -> rule + table default route in the kernel', samples);
    t.diagnostic(line);
    process.stdout.write(`# ${line}\n`);
    assert.ok(percentile(samples, 50) < 20, line);
  });
});
