// The daemon as dynmhs.service runs it (--service), on the real kernel, with a fake
// org.freedesktop.systemd1 on a private system bus: SIGTERM during a restart job leaves
// every rule and route for the successor, which adopts them (no rule is ever absent, no
// duplicate); a stop job, or no unit at all, cleans up; and a bus name that cannot be
// had ends the start at once, before the kernel is touched. Needs root.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DaemonProcess, kernelSnapshot, leftovers, networkArgs, waitConverged } from '../helpers/daemon';
import { REPO, startSystemBus, type PrivateBus } from '../helpers/dbus-harness';
import { FakeSystemd } from '../helpers/fake-systemd';
import { IpMonitor, isOurs, netnsSkipReason, README_NETS, routeKey, ruleKey, Topology } from '../helpers/netns';
import { RuleGapProbe } from '../helpers/rule-gap';
import { eventually, holdsFor } from '../helpers/wait';

const skip = netnsSkipReason();
const SYSTEMD_POLICY = '/usr/share/dbus-1/system.d/org.freedesktop.systemd1.conf';
const OUR_POLICY = join(REPO, 'dbus', 'no.nntb.DynMHS.conf');

function ourState(topo: Topology): string[] {
  const out: string[] = [];
  for (const fam of [4, 6] as const) {
    out.push(...topo.ourRules(fam).map((r) => `rule ${ruleKey(r)}`));
    out.push(...topo.routes(fam, 'all').filter(isOurs).map((r) => `route ${r.table} ${routeKey(r)}`));
  }
  return out.sort();
}

function startService(topo: Topology, bus: PrivateBus, extra: readonly string[] = []): DaemonProcess {
  return DaemonProcess.start(topo.host, [...networkArgs(README_NETS), '--service', '--loglevel', '1', ...extra],
    { noDbus: false, env: { DBUS_SYSTEM_BUS_ADDRESS: bus.address } });
}

describe('SIGTERM under the unit: a restart hands over, a stop cleans up', { skip }, () => {
  let topo: Topology;
  let dir = '';
  let bus: PrivateBus | undefined;
  let fake: FakeSystemd | undefined;
  const daemons: DaemonProcess[] = [];
  const start = async (): Promise<DaemonProcess> => {
    const d = startService(topo, bus!);
    daemons.push(d);
    await waitConverged(topo, d, README_NETS, 20000);
    return d;
  };

  before(async () => {
    topo = Topology.create();
    dir = mkdtempSync('/tmp/dynmhs-restart-test-');
    bus = await startSystemBus(join(dir, 'bus'), [OUR_POLICY, SYSTEMD_POLICY]);
    fake = await FakeSystemd.start(bus.address);
  });
  after(async () => {
    for (const d of daemons) d.killNow();
    fake?.stop();
    await bus?.stop();
    topo?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('restart job: the old process leaves everything, the successor adopts it; no rule is absent, no duplicate', async (t) => {
    const old = await start();
    fake!.unitPids.add(old.pid);
    fake!.job = 'restart';
    const before = ourState(topo);
    const probe = new RuleGapProbe(topo.host);
    const routes = new IpMonitor(topo.host, ['route']);
    try {
      await Promise.all([probe.ready, routes.ready]);
      assert.equal(await old.stop('SIGTERM', 10000), 0, old.output().slice(-2000));
      const rules = before.filter((s) => s.startsWith('rule ')).length;
      assert.match(old.output(), new RegExp(`systemd restarts dynmhs\\.service: leaving ${rules} rules and ${before.length - rules} routes for the successor`));
      assert.doesNotMatch(old.output(), /removing the rules/);
      assert.deepEqual(ourState(topo), before, 'entries left in place');
      const successor = await start();
      await holdsFor(() => assert.deepEqual(ourState(topo), before), 300);
      assert.doesNotMatch(successor.output(), /\berror\b/i, successor.output().slice(-2000));
      const gaps = probe.result();
      t.diagnostic(`rules across the restart: ${JSON.stringify(gaps)}`);
      assert.deepEqual([gaps.deleted, gaps.maxMs, gaps.open], [0, 0, []], 'no rule of ours was deleted');
      assert.deepEqual(routes.lines().filter((l) => l.startsWith('Deleted') && /proto (249|dynmhs)\b/.test(l)), [], 'no route of ours was deleted');
    } finally {
      probe.stop();
      routes.stop();
    }
  });

  it('stop job: cleans up, saying why', async () => {
    const d = daemons[daemons.length - 1]!;
    fake!.unitPids.add(d.pid);
    fake!.job = 'stop';
    assert.equal(await d.stop('SIGTERM', 10000), 0, d.output().slice(-2000));
    assert.match(d.output(), /SIGTERM \(systemd's job for the unit is "stop"\): removing the rules and routes dynmhs created/);
    assert.deepEqual(leftovers(topo), []);
  });

  it('a process in no unit (SIGTERM by hand with --service): cleans up', async () => {
    const d = await start();
    fake!.job = 'restart';
    assert.equal(await d.stop('SIGTERM', 10000), 0, d.output().slice(-2000));
    assert.match(d.output(), /NoUnitForPID.*removing the rules/);
    assert.deepEqual(leftovers(topo), []);
  });

  it('for comparison, a stop and a start (what a restart did before): the rules are absent in between', async (t) => {
    const first = await start();
    fake!.unitPids.add(first.pid);
    fake!.job = 'stop';
    const probe = new RuleGapProbe(topo.host);
    try {
      await probe.ready;
      assert.equal(await first.stop('SIGTERM', 10000), 0);
      const second = await start();
      fake!.unitPids.add(second.pid);
      // the monitor's lines of the re-additions may still be on their way
      await eventually(() => assert.deepEqual(probe.result().open, []), 5000);
      const gaps = probe.result();
      t.diagnostic(`rules across stop + start: ${gaps.gaps.length} gaps, longest ${gaps.maxMs} ms`);
      assert.ok(gaps.deleted > 0 && gaps.maxMs > 0, JSON.stringify(gaps));
      assert.equal(await second.stop('SIGTERM', 10000), 0);
      assert.deepEqual(leftovers(topo), []);
    } finally {
      probe.stop();
    }
  });
});

describe('--service fails fast when the bus name cannot be had', { skip }, () => {
  let topo: Topology;
  let dir = '';
  let bus: PrivateBus | undefined;
  const daemons: DaemonProcess[] = [];

  before(async () => {
    topo = Topology.create();
    dir = mkdtempSync('/tmp/dynmhs-failfast-test-');
    // a bus that has not loaded our policy: what dbus-daemon is before `systemctl reload dbus`
    bus = await startSystemBus(join(dir, 'bus'), [SYSTEMD_POLICY]);
  });
  after(async () => {
    for (const d of daemons) d.killNow();
    await bus?.stop();
    topo?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('policy not loaded: exit 77 at once, saying what to do, the kernel untouched', async () => {
    const kernelBefore = kernelSnapshot(topo);
    const started = Date.now();
    const d = startService(topo, bus!);
    daemons.push(d);
    const status = await d.waitExit(10000);
    assert.deepEqual(status, { code: 77, signal: null }, d.output());
    assert.ok(Date.now() - started < 10000);
    assert.match(d.output(), /does not let dynmhs own no\.nntb\.DynMHS.*systemctl reload dbus/);
    assert.deepEqual(kernelSnapshot(topo), kernelBefore);
  });

  it('no system bus: exit 69', async () => {
    const d = DaemonProcess.start(topo.host, [...networkArgs(README_NETS), '--service'],
      { noDbus: false, env: { DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${join(dir, 'no-such-socket')}` } });
    daemons.push(d);
    assert.deepEqual(await d.waitExit(15000), { code: 69, signal: null }, d.output());
    assert.match(d.output(), /No system bus.*dynmhs\.service needs it/);
    assert.deepEqual(leftovers(topo), []);
  });

  it('--service with --no-dbus: exit 78 (systemd would wait for the name in vain)', async () => {
    const d = DaemonProcess.start(topo.host, [...networkArgs(README_NETS), '--service'], { noDbus: true });
    daemons.push(d);
    assert.deepEqual(await d.waitExit(10000), { code: 78, signal: null }, d.output());
    assert.match(d.output(), /needs the D-Bus service/);
  });

  it('without --service (a command-line run): warns and keeps working, as before', async () => {
    const d = DaemonProcess.start(topo.host, [...networkArgs(README_NETS)], { noDbus: false, env: { DBUS_SYSTEM_BUS_ADDRESS: bus!.address } });
    daemons.push(d);
    await waitConverged(topo, d, README_NETS, 20000);
    assert.match(d.output(), /No D-Bus service/);
    assert.equal(await d.stop('SIGTERM', 10000), 0);
    assert.deepEqual(leftovers(topo), []);
  });
});
