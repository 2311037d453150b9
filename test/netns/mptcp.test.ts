// MPTCP endpoints on the real kernel: an MPTCP connection from the host to the internet
// namespace uses both uplinks with --mptcp subflow and only wan1 without it; endpoints
// follow addresses (also under a live connection), foreign ones are left alone, ownership
// survives SIGKILL, a restart and systemd's restart hand-over; a backup network carries
// data only when the other path fails. Needs root (namespaces) and python3 (MPTCP client
// and server).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DaemonProcess, leftovers, networkArgs, startConverged, waitConverged } from '../helpers/daemon';
import { REPO, startSystemBus } from '../helpers/dbus-harness';
import { FakeSystemd } from '../helpers/fake-systemd';
import { MptcpTraffic, mptcpSkipReason, type KernelEndpoint, type Sample, type Stream, type Transfer } from '../helpers/mptcp';
import { netnsSkipReason, README_NETS, SERVER4, SERVER6, Topology, WAN1, WAN2 } from '../helpers/netns';
import { eventually, holdsFor } from '../helpers/wait';

const skip = netnsSkipReason() ?? mptcpSkipReason();

const MB = 1 << 20;
/** Per transfer: enough that a path which carries data carries megabytes of it. */
const TRANSFER = 16 * MB;
const UPLINK_MBIT = 200;

describe('MPTCP endpoints for managed addresses', { skip }, () => {
  let topo: Topology;
  let traffic: MptcpTraffic;
  let dir: string;
  let d: DaemonProcess | undefined;
  const figures: string[] = [];

  const endpoints = (): KernelEndpoint[] => traffic.endpoints();
  const endpointKeys = (): string[] => traffic.endpointKeys();
  const transfer = (target: string): Transfer => traffic.transfer(target, TRANSFER);
  const startStream = (): Stream => traffic.stream();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), `dynmhs-mptcp-state-${process.pid}-`));
    topo = Topology.create();
    traffic = await MptcpTraffic.start(topo, UPLINK_MBIT);
  });
  after(() => {
    d?.killNow();
    traffic?.stop();
    topo?.destroy();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    if (figures.length > 0) process.stdout.write(`# MPTCP transfer figures (${TRANSFER} bytes each):\n${figures.map((f) => `#   ${f}\n`).join('')}`);
  });

  it('without --mptcp: no endpoints, every byte of an MPTCP transfer leaves through wan1', async () => {
    d = await startConverged(topo, README_NETS, ['--loglevel', '1', '--state-directory', dir]);
    assert.deepEqual(endpoints(), []);
    const t = transfer(SERVER4);
    figures.push(`IPv4 without --mptcp: wan1 ${t.bytes.wan1} B, wan2 ${t.bytes.wan2} B, subflows from ${t.subflowSources.join(' ')}`);
    assert.equal(t.received, TRANSFER);
    assert.deepEqual(t.subflowSources, [WAN1.v4]);
    assert.ok(t.bytes.wan1 >= TRANSFER, `wan1 carried ${t.bytes.wan1}`);
    assert.ok(t.bytes.wan2 < 64 * 1024, `wan2 carried ${t.bytes.wan2}`);
    assert.equal(await d.stop(), 0);
    d = undefined;
  });

  it('with --mptcp subflow: an endpoint per address, limits raised, both uplinks carry megabytes (IPv4 and IPv6)', async () => {
    // A foreign endpoint for a managed address: left alone, reported once.
    topo.ip(['mptcp', 'endpoint', 'add', WAN2.v6, 'dev', 'wan2', 'id', '77', 'subflow']);
    d = await startConverged(topo, README_NETS, ['--loglevel', '1', '--state-directory', dir, '--mptcp', 'subflow']);
    await eventually(() => assert.deepEqual(endpointKeys(), [
      `${WAN1.v4} subflow wan1`, `${WAN2.v4} subflow wan2`, `${WAN1.v6} subflow wan1`, `${WAN2.v6} subflow wan2`,
    ].sort()), 10_000);
    assert.equal(endpoints().find((e) => e.address === WAN2.v6)?.id, 77);
    const limits = topo.ip(['mptcp', 'limits', 'show']);
    assert.match(limits, /subflows [4-8]/);
    assert.match(limits, /add_addr_accepted [4-8]/);
    assert.equal(d.output().match(/Leaving foreign MPTCP endpoint alone: id 77/g)?.length, 1, d.output());

    for (const [target, sources] of [[SERVER4, [WAN1.v4, WAN2.v4]], [SERVER6, [WAN1.v6, WAN2.v6]]] as const) {
      const t = transfer(target);
      figures.push(`IPv${target === SERVER4 ? 4 : 6} with --mptcp subflow: wan1 ${t.bytes.wan1} B, wan2 ${t.bytes.wan2} B, subflows from ${t.subflowSources.join(' ')}`);
      assert.equal(t.received, TRANSFER);
      assert.deepEqual(t.subflowSources, [...sources].sort());
      assert.ok(t.bytes.wan1 >= MB, `wan1 carried ${t.bytes.wan1}`);
      assert.ok(t.bytes.wan2 >= MB, `wan2 carried ${t.bytes.wan2}`);
      assert.ok(t.bytes.wan1 + t.bytes.wan2 >= TRANSFER);
    }
    assert.equal(d.output().match(/Leaving foreign MPTCP endpoint alone: id 77/g)?.length, 1, 'reported once');
  });

  it('endpoints follow addresses; one deleted by another program is restored', async () => {
    const mark = d!.output().length;
    topo.ip(['addr', 'del', `${WAN2.v4}/24`, 'dev', 'wan2']);
    await eventually(() => assert.ok(!endpoints().some((e) => e.address === WAN2.v4)), 10_000);
    topo.ip(['addr', 'add', `${WAN2.v4}/24`, 'dev', 'wan2']);
    topo.ip(['route', 'add', 'default', 'via', WAN2.gw4, 'dev', 'wan2', 'metric', String(WAN2.metric)]);
    await eventually(() => assert.ok(endpoints().some((e) => e.address === WAN2.v4 && e.dev === 'wan2')), 10_000);

    const own = endpoints().find((e) => e.address === WAN1.v4)!;
    topo.ip(['mptcp', 'endpoint', 'delete', 'id', String(own.id)]);
    await eventually(() => assert.ok(endpoints().some((e) => e.address === WAN1.v4)), 10_000);
    await d!.waitForOutput(/MPTCP endpoint 10\.101\.0\.2 \(wan1\) was deleted by another program; restoring it/, 1000, mark);
  });

  it('a live connection: removing wan2\'s address closes its subflow, adding it back opens one that carries data', async () => {
    const stream = startStream();
    const { samples, client, exited } = stream;
    try {
      const both = [WAN1.v4, WAN2.v4].join(' ');
      const latest = (): Sample => { assert.ok(samples.length > 0, 'no sample yet'); return samples.at(-1)!; };
      const recent = (): string => `${JSON.stringify(samples.slice(-2))}\nendpoints ${JSON.stringify(endpoints())}\n`
        + `${topo.exec('nstat', ['-az']).split('\n').filter((l) => /MPTcpExt(Join|AddAddr|MPCapable)/.test(l) && !/\s0\s/.test(l)).join('\n')}\n${d!.output().slice(-1500)}`;
      await eventually(() => assert.equal(latest().sources.join(' '), both, recent()), 10_000);
      const removedAt = samples.length;
      topo.ip(['addr', 'del', `${WAN2.v4}/24`, 'dev', 'wan2']);
      await eventually(() => assert.equal(latest().sources.join(' '), WAN1.v4, recent()), 10_000);
      const alone = latest();
      await eventually(() => assert.ok(latest().wan1 - alone.wan1 >= MB, 'wan1 keeps carrying the connection'), 10_000);
      const beforeReadd = latest();
      assert.ok(beforeReadd.wan2 - alone.wan2 < 64 * 1024, `wan2 carried ${beforeReadd.wan2 - alone.wan2} without its address`);
      topo.ip(['addr', 'add', `${WAN2.v4}/24`, 'dev', 'wan2']);
      topo.ip(['route', 'add', 'default', 'via', WAN2.gw4, 'dev', 'wan2', 'metric', String(WAN2.metric)]);
      await eventually(() => assert.equal(latest().sources.join(' '), both, recent()), 10_000);
      const rejoined = latest();
      await eventually(() => assert.ok(latest().wan2 - rejoined.wan2 >= MB, 'the new subflow carries megabytes'), 10_000);
      figures.push(`live connection: subflows ${samples[removedAt - 1]!.sources.join(' ')} -> ${alone.sources.join(' ')} -> ${rejoined.sources.join(' ')}`);
    } finally {
      client.stdin!.end();
    }
    assert.equal(await exited, 0);
    assert.ok(stream.last !== undefined && stream.last.received === stream.last.sent && stream.last.sent > 0, JSON.stringify(stream.last));
  });

  it('ownership survives SIGKILL and a restart; SIGTERM deletes only its own endpoints', async () => {
    const before = endpoints();
    await d!.kill();
    d = undefined;
    assert.deepEqual(endpoints(), before, 'endpoints stay when the daemon dies');
    const recorded = JSON.parse(readFileSync(join(dir, 'mptcp-endpoints.json'), 'utf8')) as { endpoints: { id: number; address: string }[] };
    assert.deepEqual(recorded.endpoints.map((e) => e.address).sort(), [WAN1.v4, WAN2.v4, WAN1.v6].sort());

    d = await startConverged(topo, README_NETS, ['--loglevel', '1', '--state-directory', dir, '--mptcp', 'subflow']);
    await holdsFor(() => assert.deepEqual(endpoints(), before), 3000, 200);
    assert.doesNotMatch(d.output(), /Adding MPTCP endpoint|Deleting MPTCP endpoint/);

    assert.equal(await d.stop(), 0);
    d = undefined;
    assert.deepEqual(endpoints().map((e) => `${e.id} ${e.address}`), [`77 ${WAN2.v6}`], 'only the foreign endpoint is left');
    assert.deepEqual(leftovers(topo), []);
    topo.ip(['mptcp', 'endpoint', 'delete', 'id', '77']);
  });

  it('the kernel holds 8 endpoints: addresses beyond that are reported once, not retried in a loop', async () => {
    const extra = [10, 11, 12, 13, 14, 15].map((n) => `10.101.0.${n}`);
    for (const address of extra) topo.ip(['addr', 'add', `${address}/24`, 'dev', 'wan1']);
    try {
      d = await startConverged(topo, README_NETS, ['--loglevel', '1', '--state-directory', dir, '--mptcp', 'subflow']);
      await eventually(() => assert.equal(endpoints().length, 8), 10_000);
      await d.waitForOutput(/No MPTCP endpoint for [0-9a-f.:]+ \(wan1\): the kernel holds at most 8 endpoints/, 5000);
      for (const key of [`${WAN2.v4} subflow wan2`, `${WAN2.v6} subflow wan2`, `${WAN1.v4} subflow wan1`, `${WAN1.v6} subflow wan1`]) {
        assert.ok(endpointKeys().includes(key), `wan1's many addresses leave room for ${key}: ${endpointKeys().join('; ')}`);
      }
      await holdsFor(() => assert.equal(endpoints().length, 8), 4500, 250);
      const output = d.output();
      assert.equal(output.match(/No MPTCP endpoint for/g)?.length, 2, 'two addresses without room, each reported once');
      assert.doesNotMatch(output, /Adding MPTCP endpoint .* failed/);
      for (const address of extra) topo.ip(['addr', 'del', `${address}/24`, 'dev', 'wan1']);
      await eventually(() => assert.deepEqual(endpointKeys(), [
        `${WAN1.v4} subflow wan1`, `${WAN2.v4} subflow wan2`, `${WAN1.v6} subflow wan1`, `${WAN2.v6} subflow wan2`,
      ].sort()), 10_000);
      assert.equal(await d.stop(), 0);
      d = undefined;
      assert.deepEqual(endpoints(), []);
    } finally {
      for (const address of extra) spawnSync('ip', ['-n', topo.host, 'addr', 'del', `${address}/24`, 'dev', 'wan1']);
    }
  });

  it('under the unit (--service): a restart hands the endpoints over untouched, a stop removes them', async () => {
    const busDir = mkdtempSync(join(tmpdir(), `dynmhs-mptcp-bus-${process.pid}-`));
    const bus = await startSystemBus(join(busDir, 'bus'), [join(REPO, 'dbus', 'no.nntb.DynMHS.conf'), '/usr/share/dbus-1/system.d/org.freedesktop.systemd1.conf']);
    const fake = await FakeSystemd.start(bus.address);
    const service = (): DaemonProcess => DaemonProcess.start(topo.host, [...networkArgs(README_NETS), '--service', '--mptcp', 'subflow',
      '--state-directory', dir, '--loglevel', '1'], { noDbus: false, env: { DBUS_SYSTEM_BUS_ADDRESS: bus.address } });
    try {
      d = service();
      await waitConverged(topo, d, README_NETS, 20_000);
      await eventually(() => assert.equal(endpoints().length, 4), 10_000);
      const before = endpoints();
      // dynmhsctl status over the bus shows each network's flags and endpoint ids.
      const ctl = spawnSync(process.execPath, [join(REPO, 'dist', 'src', 'cli', 'dynmhsctl.js'), 'status'],
        { encoding: 'utf8', env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus.address } });
      assert.equal(ctl.status, 0, ctl.stderr);
      const idsOf = (dev: string): string => before.filter((e) => e.dev === dev).map((e) => e.id).join(',');
      assert.match(ctl.stdout, /\bMPTCP\b/);
      for (const dev of ['wan1', 'wan2']) {
        assert.match(ctl.stdout, new RegExp(`^${dev}\\s+${dev}\\s+.*\\ssubflow ${idsOf(dev)}\\s`, 'm'), ctl.stdout);
      }
      fake.unitPids.add(d.pid);
      fake.job = 'restart';
      assert.equal(await d.stop('SIGTERM', 10_000), 0);
      assert.match(d.output(), /systemd restarts dynmhs\.service: leaving/);
      assert.deepEqual(endpoints(), before, 'the endpoints stay for the successor');
      d = service();
      await waitConverged(topo, d, README_NETS, 20_000);
      await holdsFor(() => assert.deepEqual(endpoints(), before), 2500, 250);
      assert.doesNotMatch(d.output(), /Adding MPTCP endpoint|Deleting MPTCP endpoint/, 'the successor adopts them as they are');
      fake.unitPids.clear();
      fake.unitPids.add(d.pid);
      fake.job = 'stop';
      assert.equal(await d.stop('SIGTERM', 10_000), 0);
      d = undefined;
      assert.deepEqual(endpoints(), []);
    } finally {
      fake.stop();
      await bus.stop();
      rmSync(busDir, { recursive: true, force: true });
    }
  });

  it('a backup network (wan2:3000:mptcp=subflow,backup) carries data only when the other path fails', async () => {
    d = DaemonProcess.start(topo.host, ['--network', 'wan1:2000', '--network', 'wan2:3000:mptcp=subflow,backup',
      '--mptcp', 'subflow', '--loglevel', '1', '--state-directory', dir]);
    await eventually(() => assert.deepEqual(endpointKeys(), [
      `${WAN1.v4} subflow wan1`, `${WAN2.v4} subflow,backup wan2`, `${WAN1.v6} subflow wan1`, `${WAN2.v6} subflow,backup wan2`,
    ].sort()), 20_000);
    const stream = startStream();
    const { samples } = stream;
    const latest = (): Sample => { assert.ok(samples.length > 0, 'no sample yet'); return samples.at(-1)!; };
    try {
      await eventually(() => assert.equal(latest().sources.join(' '), [WAN1.v4, WAN2.v4].join(' ')), 10_000);
      const joined = latest();
      await eventually(() => assert.ok(latest().wan1 - joined.wan1 >= 4 * MB), 10_000);
      const healthy = latest();
      const idle = healthy.wan2 - joined.wan2;
      assert.ok(idle < 256 * 1024, `the backup path carried ${idle} B while wan1 carried ${healthy.wan1 - joined.wan1} B`);
      // wan1's ISP loses its way to the internet: the host sees no change, only loss.
      topo.ip(['link', 'set', 'uplink', 'down'], topo.isp1);
      const failedAt = latest();
      await eventually(() => assert.ok(latest().wan2 - failedAt.wan2 >= 2 * MB, 'the backup path takes over'), 20_000);
      const after = latest();
      figures.push(`backup: wan2 ${idle} B while wan1 carried ${healthy.wan1 - joined.wan1} B; after wan1's ISP failed, wan2 ${after.wan2 - failedAt.wan2} B in ${(after.t - failedAt.t).toFixed(1)} s`);
    } finally {
      stream.client.stdin!.end();
      topo.ip(['link', 'set', 'uplink', 'up'], topo.isp1);
      topo.ip(['route', 'replace', 'default', 'via', '10.201.0.2', 'dev', 'uplink'], topo.isp1);
    }
    assert.equal(await stream.exited, 0);
    assert.equal(await d.stop(), 0);
    d = undefined;
    assert.deepEqual(endpoints(), []);
  });

  it('the userspace path manager, which ignores endpoints, is reported', async () => {
    topo.exec('sysctl', ['-q', '-w', 'net.mptcp.path_manager=userspace']);
    try {
      d = await startConverged(topo, README_NETS, ['--loglevel', '1', '--state-directory', dir, '--mptcp', 'subflow']);
      await d.waitForOutput(/MPTCP endpoints are in place, but net\.mptcp\.path_manager is userspace \(mptcpd\?\), which does not use these endpoints; set it to kernel/, 10_000);
      assert.equal(await d.stop(), 0);
      d = undefined;
    } finally {
      topo.exec('sysctl', ['-q', '-w', 'net.mptcp.path_manager=kernel']);
    }
  });
});
