// Reload (SIGHUP) with real NetworkManager: EXCLUDE and a connection mapping added to the
// file apply at once, without a restart; what did not change is not touched; a
// restart-only key is warned about and kept. Then a restart as systemd does it (a fake
// org.freedesktop.systemd1 says the unit's job is a restart): the successor adopts the
// policy with NetworkManager's connections, removing and re-adding nothing.
// Needs root: namespaces, NetworkManager, dnsmasq, and the daemon changes rules and
// routes (only inside the test's own namespaces).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Testbed, skipReason, waitFor } from './harness';
import { daemonRunning, defaultRoutes, expectNoSourcePolicy, expectSourcePolicy, sourceRules } from './util';
import { DaemonProcess } from '../helpers/daemon';
import { FakeSystemd } from '../helpers/fake-systemd';
import { IpMonitor } from '../helpers/netns';
import { RuleGapProbe } from '../helpers/rule-gap';

const skip = skipReason();

describe('reload with real NetworkManager: INCLUDE/EXCLUDE and connection mappings apply', { skip, timeout: 150_000 }, () => {
  let tb: Testbed;
  let daemon: DaemonProcess | undefined;
  let systemd: FakeSystemd | undefined;
  let dir = '';
  let conf = '';
  const ns = (): string => tb.ns.nm;
  const tail = (): string => `\n--- daemon output (tail) ---\n${daemon?.output().slice(-3000) ?? ''}`;
  const base = (): string => `SOURCE=networkmanager\nSTATE_DIRECTORY=${join(dir, 'state')}\nLOGLEVEL=1\nLOGCOLOR=OFF\n`;

  const expectPolicy = (dev: string, table: number): Promise<void> => expectSourcePolicy(tb, ns(), dev, table, tail);
  const expectNoPolicy = (dev: string, table: number): Promise<void> => expectNoSourcePolicy(tb, ns(), dev, table, tail);

  /** As dynmhs.service runs it: --service, with its name on the testbed's bus. */
  const startService = (): DaemonProcess => DaemonProcess.start(ns(), ['--service', '--config', conf],
    { env: { DBUS_SYSTEM_BUS_ADDRESS: tb.nmBus }, logDir: tb.logs, noDbus: false });

  async function reload(text: string): Promise<void> {
    writeFileSync(conf, text);
    const mark = daemon!.output().length;
    daemon!.signal('SIGHUP');
    await daemon!.waitForOutput(/Reloaded configuration/, 10_000, mark);
  }

  before(async () => {
    tb = await Testbed.create({ nm: true });
    dir = mkdtempSync(join(tmpdir(), 'dynmhs-nm-reload-'));
    conf = join(dir, 'dynmhs.conf');
    writeFileSync(conf, base());
    await tb.startNetworkManager();
    await tb.addNmProfiles();
    await tb.nmcli('-w', '60', 'con', 'up', 'wan1');
    systemd = await FakeSystemd.start(tb.nmBus);
    daemon = startService();
    await daemonRunning(daemon);
    await expectPolicy('wan1', 10000);
    await tb.nmcli('-w', '60', 'con', 'up', 'wan2');
    await expectPolicy('wan2', 10001);
  });

  after(async () => {
    systemd?.stop();
    await daemon?.stop();
    await tb?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('EXCLUDE=interface:wan2 added on reload: wan2\'s rules and table routes go, wan1 is not touched', async () => {
    const mon = new IpMonitor(ns(), ['rule', 'route']);
    try {
      await mon.ready;
      await reload(`${base()}EXCLUDE=interface:wan2\n`);
      await expectNoPolicy('wan2', 10001);
      await expectPolicy('wan1', 10000);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(mon.lines().filter((l) => l.startsWith('Deleted') && /(lookup|table) 10000\b/.test(l)), [], 'wan1 entries deleted on reload');
    } finally {
      mon.stop();
    }
  });

  test('EXCLUDE removed again: wan2 is back in its stored table', async () => {
    await reload(base());
    await expectPolicy('wan2', 10001);
    await expectPolicy('wan1', 10000);
  });

  test('NETWORK="id:wan1:3000" added on reload: the connection moves to table 3000', async () => {
    await reload(`${base()}NETWORK="id:wan1:3000"\n`);
    await expectPolicy('wan1', 3000);
    await waitFor('table 10000 empty', async () => (await defaultRoutes(ns(), 10000)).length === 0
      && !(await sourceRules(ns())).some((r) => r.table === '10000'), 10_000);
    await expectPolicy('wan2', 10001);
  });

  test('a restart-only key changed on reload: warned, the running value kept', async () => {
    const mark = daemon!.output().length;
    await reload(`${base().replace('SOURCE=networkmanager', 'SOURCE=auto')}NETWORK="id:wan1:3000"\n`);
    assert.match(daemon!.outputSince(mark), /\[warning\] Reload: SOURCE changed from networkmanager to auto; that takes effect at the next restart/);
    await expectPolicy('wan1', 3000);
    await expectPolicy('wan2', 10001);
    assert.ok(daemon!.running);
  });

  test('systemd restarts the unit: the successor adopts every rule and route, nothing is removed or re-added', async (t) => {
    writeFileSync(conf, `${base()}NETWORK="id:wan1:3000"\n`);
    const old = daemon!;
    systemd!.unitPids.add(old.pid);
    systemd!.job = 'restart';
    const rulesBefore = (await sourceRules(ns())).map((r) => `${r.src} ${r.table}`).sort();
    const probe = new RuleGapProbe(ns());
    const routes = new IpMonitor(ns(), ['route']);
    try {
      await Promise.all([probe.ready, routes.ready]);
      assert.equal(await old.stop('SIGTERM', 10_000), 0);
      assert.match(old.output(), /systemd restarts dynmhs\.service: leaving \d+ rules and \d+ routes for the successor/);
      daemon = startService();
      await daemonRunning(daemon);
      await expectPolicy('wan1', 3000);
      await expectPolicy('wan2', 10001);
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.deepEqual((await sourceRules(ns())).map((r) => `${r.src} ${r.table}`).sort(), rulesBefore);
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
    assert.deepEqual((await sourceRules(ns())).filter((r) => ['3000', '10001'].includes(r.table)), []);
    assert.deepEqual(await defaultRoutes(ns(), 3000), []);
    assert.deepEqual(await defaultRoutes(ns(), 10001), []);
  });
});
