// Reload and restart with real systemd-networkd as the source: EXCLUDE and a connection
// mapping (networkd's "id" is the .network file) added on SIGHUP apply at once; a restart
// as systemd does it (a fake org.freedesktop.systemd1 says the unit's job is a restart)
// hands the policy over without removing or re-adding anything; a stop job removes it.
// Needs root: namespaces, systemd-networkd, dnsmasq, and the daemon changes rules and
// routes (only inside the test's own namespaces).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Testbed, skipReason } from './harness';
import { daemonRunning, expectNoSourcePolicy, expectSourcePolicy, sourceRules, tableOf } from './util';
import { DaemonProcess } from '../helpers/daemon';
import { FakeSystemd } from '../helpers/fake-systemd';
import { IpMonitor } from '../helpers/netns';
import { RuleGapProbe } from '../helpers/rule-gap';

const skip = skipReason();

describe('reload and restart with real systemd-networkd', { skip, timeout: 150_000 }, () => {
  let tb: Testbed;
  let daemon: DaemonProcess | undefined;
  let systemd: FakeSystemd | undefined;
  let dir = '';
  let conf = '';
  const tables = new Map<string, number>();
  const ns = (): string => tb.ns.nd;
  const tail = (): string => `\n--- daemon output (tail) ---\n${daemon?.output().slice(-3000) ?? ''}`;
  const base = (): string => `SOURCE=networkd\nSTATE_DIRECTORY=${join(dir, 'state')}\nLOGLEVEL=1\nLOGCOLOR=OFF\n`;
  const expectPolicy = (dev: string, table: number): Promise<void> => expectSourcePolicy(tb, ns(), dev, table, tail);
  const startService = (): DaemonProcess => DaemonProcess.start(ns(), ['--service', '--config', conf],
    { env: { DBUS_SYSTEM_BUS_ADDRESS: tb.ndBus }, logDir: tb.logs, noDbus: false });

  async function reload(text: string): Promise<void> {
    writeFileSync(conf, text);
    const mark = daemon!.output().length;
    daemon!.signal('SIGHUP');
    await daemon!.waitForOutput(/Reloaded configuration/, 10_000, mark);
  }

  before(async () => {
    tb = await Testbed.create({ nm: false, networkd: true });
    dir = mkdtempSync(join(tmpdir(), 'dynmhs-nd-reload-'));
    conf = join(dir, 'dynmhs.conf');
    writeFileSync(conf, base());
    // with the drop-in dynmhs ships: networkd leaves foreign rules and routes alone
    await tb.startNetworkd({ manageForeignRoutingPolicyRules: false, manageForeignRoutes: false });
    await tb.networkdWaitOnline();
    systemd = await FakeSystemd.start(tb.ndBus);
    daemon = startService();
    await daemonRunning(daemon);
    for (const dev of ['wan1', 'wan2']) tables.set(dev, await tableOf(tb, ns(), dev));
  });

  after(async () => {
    systemd?.stop();
    await daemon?.stop();
    await tb?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('EXCLUDE=interface:wan2 added on reload: wan2\'s rules and table routes go, wan1 is not touched', async () => {
    const wan1 = tables.get('wan1')!;
    const mon = new IpMonitor(ns(), ['rule', 'route']);
    try {
      await mon.ready;
      await reload(`${base()}EXCLUDE=interface:wan2\n`);
      await expectNoSourcePolicy(tb, ns(), 'wan2', tables.get('wan2')!, tail);
      await expectPolicy('wan1', wan1);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(mon.lines().filter((l) => l.startsWith('Deleted') && new RegExp(`(lookup|table) ${wan1}\\b`).test(l)), [], 'wan1 entries deleted on reload');
    } finally {
      mon.stop();
    }
  });

  test('NETWORK="id:10-wan1.network:3000" added on reload: wan1 moves to table 3000', async () => {
    await reload(`${base()}EXCLUDE=interface:wan2\nNETWORK="id:10-wan1.network:3000"\n`);
    await expectPolicy('wan1', 3000);
    await expectNoSourcePolicy(tb, ns(), 'wan2', tables.get('wan2')!, tail);
    assert.ok(!(await sourceRules(ns())).some((r) => r.table === String(tables.get('wan1'))), 'wan1\'s old table has no rule left');
  });

  test('systemd restarts the unit: the successor adopts, nothing is removed or re-added', async (t) => {
    const old = daemon!;
    systemd!.unitPids.add(old.pid);
    systemd!.job = 'restart';
    const probe = new RuleGapProbe(ns());
    const routes = new IpMonitor(ns(), ['route']);
    try {
      await Promise.all([probe.ready, routes.ready]);
      assert.equal(await old.stop('SIGTERM', 10_000), 0);
      assert.match(old.output(), /systemd restarts dynmhs\.service: leaving \d+ rules and \d+ routes for the successor/);
      daemon = startService();
      await daemonRunning(daemon);
      await expectPolicy('wan1', 3000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const gaps = probe.result();
      t.diagnostic(`rules across the restart: ${JSON.stringify(gaps)}`);
      assert.deepEqual([gaps.deleted, gaps.added], [0, 0], `no rule of ours removed or re-added${tail()}`);
      assert.deepEqual(routes.lines().filter((l) => /proto (249|dynmhs)\b/.test(l)), [], 'no route of ours removed or re-added');
    } finally {
      probe.stop();
      routes.stop();
    }
  });

  test('systemd stops the unit: everything of ours goes', async () => {
    systemd!.unitPids.add(daemon!.pid);
    systemd!.job = 'stop';
    assert.equal(await daemon!.stop('SIGTERM', 10_000), 0);
    assert.deepEqual((await sourceRules(ns())).filter((r) => Number(r.table) >= 1000), []);
  });
});
