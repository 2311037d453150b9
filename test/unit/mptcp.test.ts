// MPTCP endpoints: option parsing, the pure endpoint plan, and the sync against a fake
// path manager (restores rate-limited, foreign endpoints untouched, clean-up of own ones).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCommandLine } from '../../src/config/parse';
import { parseConfigText } from '../../src/config/file';
import { parseMapping, parseMptcpFlags } from '../../src/config/values';
import type { Endpoint, ManagedNetwork, MptcpLimits, OperationResult } from '../../src/model';
import type { NetworkPlan } from '../../src/policy/derive';
import { flagBits, mptcpFlagsFor, planEndpoints, raisedLimits, wantedEndpoints, type WantedEndpoint } from '../../src/policy/endpoints';
import { EndpointSync, type PathManager } from '../../src/reconcile/endpoints';
import { Daemon } from '../../src/daemon';
import { FakeKernel } from '../../src/kernel/fake';
import type { Config } from '../../src/config/types';
import { FakeClock, NET1, NET2, WAN1, WAN2, addr, ours, recordingLogger, route } from './fixtures';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

test('MPTCP flags: off, comma lists in kernel order, and the combinations the kernel refuses or never uses', () => {
  assert.deepEqual(parseMptcpFlags('off'), []);
  assert.deepEqual(parseMptcpFlags('backup,Subflow'), ['subflow', 'backup']);
  assert.deepEqual(parseMptcpFlags('signal'), ['signal']);
  assert.deepEqual(parseMptcpFlags('subflow,fullmesh'), ['subflow', 'fullmesh']);
  assert.throws(() => parseMptcpFlags('signal,fullmesh'), /signal and fullmesh cannot be combined \(the kernel refuses/);
  assert.throws(() => parseMptcpFlags('backup'), /need subflow or signal as well.*subflow,backup/);
  assert.throws(() => parseMptcpFlags('subflow,bogus'), /unknown MPTCP flag "bogus"; expected off or a comma list/);
  assert.throws(() => parseMptcpFlags('off,subflow'), /"off" cannot be combined/);
  assert.throws(() => parseMptcpFlags('subflow,subflow'), /given twice/);
});

test('per-network :mptcp=FLAGS after the table; every DynMHS mapping keeps its meaning', () => {
  assert.deepEqual(parseMapping('eth0:2000'), { match: 'interface', value: 'eth0', table: 2000 });
  assert.deepEqual(parseMapping('wan2:3000:mptcp=subflow,backup'), { match: 'interface', value: 'wan2', table: 3000, mptcp: ['subflow', 'backup'] });
  assert.deepEqual(parseMapping('id:Home:Office:2000:mptcp=off'), { match: 'id', value: 'Home:Office', table: 2000, mptcp: [] });
  assert.deepEqual(parseMapping('id:mptcp=x:2000'), { match: 'id', value: 'mptcp=x', table: 2000 });
  assert.throws(() => parseMapping('wan2:3000:mptcp=signal,fullmesh'), /in ":mptcp=signal,fullmesh": MPTCP flags signal and fullmesh/);
});

test('--mptcp and MPTCP= reach the config; a bad value in the file is reported with FILE:LINE', () => {
  const run = (argv: string[]) => {
    const parsed = parseCommandLine(argv);
    assert.equal(parsed.kind, 'run');
    return parsed.kind === 'run' ? parsed.config : undefined!;
  };
  assert.equal(run(['--network', 'eth0:2000']).mptcp, undefined, 'off by default, and absent');
  assert.deepEqual(run(['--network', 'eth0:2000', '--mptcp', 'subflow']).mptcp, ['subflow']);
  assert.throws(() => run(['--network', 'eth0:2000', '--mptcp', 'signal,fullmesh']), /--mptcp "signal,fullmesh": MPTCP flags signal and fullmesh/);
  const dir = mkdtempSync(join(tmpdir(), 'dynmhs-mptcp-unit-'));
  try {
    const file = join(dir, 'dynmhs.conf');
    writeFileSync(file, 'NETWORK="wan1:2000"\nNETWORK2="wan2:3000:mptcp=subflow,backup"\nMPTCP=subflow\n');
    const config = run(['--config', file]);
    assert.deepEqual(config.mptcp, ['subflow']);
    assert.deepEqual(config.networks.map((n) => n.mptcp), [undefined, ['subflow', 'backup']]);
    assert.deepEqual(run(['--config', file, '--mptcp', 'off']).mptcp, undefined, 'the command line overrides the file');
    writeFileSync(file, 'NETWORK="wan1:2000"\n\nMPTCP=signal,fullmesh\n');
    assert.throws(() => run(['--config', file]), (e: Error) => e.message.startsWith(`${file}:3: MPTCP="signal,fullmesh": MPTCP flags signal and fullmesh`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(parseConfigText('x', 'MPTCP=off\n')[0]!.value, 'off');
});

const lte: ManagedNetwork = { interfaceName: 'wwan0', table: 4000, priority: 4000, origin: 'networkmanager', connectionId: 'LTE', deviceType: 'gsm' };

test('a network\'s flags: its mapping\'s override (by interface, id, type), else the global setting', () => {
  const specs = [
    { match: 'interface' as const, value: 'wan2', table: 3000, definedAt: 'x', mptcp: ['subflow', 'backup'] as const },
    { match: 'type' as const, value: 'gsm', table: 4000, definedAt: 'x', mptcp: [] as const },
  ];
  assert.deepEqual(mptcpFlagsFor(NET1, specs, ['subflow']), ['subflow']);
  assert.deepEqual(mptcpFlagsFor(NET2, specs, ['subflow']), ['subflow', 'backup']);
  assert.deepEqual(mptcpFlagsFor(lte, specs, ['subflow']), []);
  assert.deepEqual(mptcpFlagsFor(NET2, specs, undefined), ['subflow', 'backup'], 'an override works with MPTCP off globally');
  assert.deepEqual(mptcpFlagsFor(NET1, specs, undefined), []);
});

const defaultVia = (gateway: string, table: number, oif: number) =>
  ours(route({ dst: gateway.includes(':') ? '::' : '0.0.0.0', dstLength: 0, gateway, oif }), table);
const plans = (): NetworkPlan[] => [
  { network: NET1, link: WAN1, addresses: [addr(3, '10.1.0.2'), addr(3, 'fd00:1::2')], rules: [],
    routes: [defaultVia('10.1.0.1', 2000, 3), defaultVia('fe80::1', 2000, 3)] },
  { network: NET2, link: WAN2, addresses: [addr(4, '10.2.0.2')], rules: [], routes: [defaultVia('10.2.0.1', 3000, 4)] },
  { network: lte, addresses: [], rules: [], routes: [] },
];
const SUBFLOW = flagBits(['subflow']);

test('wanted endpoints: one per rule address, on its device, with its network\'s flags', () => {
  const wanted = wantedEndpoints(plans(), (n) => (n === NET2 ? ['subflow', 'backup'] : ['subflow']));
  assert.deepEqual(wanted.map((w) => `${w.address} ${w.flags} ${w.ifindex} ${w.interfaceName}`), [
    '10.1.0.2 2 3 wan1', 'fd00:1::2 2 3 wan1', '10.2.0.2 6 4 wan2',
  ]);
  const many = plans().map((p) => (p.network === NET1 ? { ...p, addresses: [addr(3, '10.1.0.2'), addr(3, '10.1.0.3'), addr(3, '10.1.0.4'), addr(3, 'fd00:1::2')] } : p));
  assert.deepEqual(wantedEndpoints(many, () => ['subflow']).map((w) => w.address),
    ['10.1.0.2', 'fd00:1::2', '10.2.0.2', '10.1.0.3', '10.1.0.4'], 'the first address of each network and family first');
  assert.deepEqual(wantedEndpoints(plans(), (n) => (n === NET1 ? [] : ['subflow'])).map((w) => w.address), ['10.2.0.2']);
  const onlyConnected = plans().map((p) => (p.network === NET1
    ? { ...p, routes: [ours(route({ dst: '10.1.0.0', dstLength: 24, oif: 3, scope: 253 }), 2000), defaultVia('fe80::1', 2000, 3)] } : p));
  assert.deepEqual(wantedEndpoints(onlyConnected, () => ['subflow']).map((w) => w.address).sort(), ['10.2.0.2', 'fd00:1::2'],
    'no IPv4 endpoint on wan1 until its table has a default route or a route via a gateway');
});

const ep = (id: number, address: string, flags = SUBFLOW, ifindex = 3): Endpoint =>
  ({ id, family: address.includes(':') ? 6 : 4, address, flags, ifindex, port: 0 });
const want = (address: string, flags = SUBFLOW, ifindex = 3): WantedEndpoint =>
  ({ family: address.includes(':') ? 6 : 4, address, flags, ifindex, interfaceName: ifindex === 3 ? 'wan1' : 'wan2' });

test('endpoint plan: own ones kept or replaced, foreign ones left, the kernel\'s implicit ones replaced, fresh ids', () => {
  const present = [
    ep(1, '10.1.0.2'), // own, as wanted
    ep(2, '10.2.0.2', SUBFLOW, 4), // own, flags changed to backup
    ep(3, 'fd00:1::2', 1), // foreign (NetworkManager's, say)
    ep(4, '10.3.0.2'), // own, no longer wanted
    ep(5, '10.9.0.9'), // foreign, not wanted: untouched
    ep(6, '10.4.0.2', 16), // the kernel's implicit endpoint
  ];
  const owned = new Map([[1, '10.1.0.2'], [2, '10.2.0.2'], [4, '10.3.0.2'], [7, '10.7.0.7'], [5, '10.5.5.5']]);
  const plan = planEndpoints([want('10.1.0.2'), want('10.2.0.2', 6, 4), want('fd00:1::2'), want('10.4.0.2'), want('10.8.0.2')], present, owned);
  assert.deepEqual(plan.kept.map((e) => e.id), [1]);
  assert.deepEqual(plan.remove.map((e) => e.id), [2, 4]);
  assert.deepEqual(plan.foreign.map((f) => f.present.id), [3]);
  assert.deepEqual(plan.add.map((e) => `${e.id} ${e.address} ${e.flags}`), ['8 10.2.0.2 6', '9 10.4.0.2 2', '10 10.8.0.2 2'],
    'ids taken by the kernel or recorded as ours (7, and 5 though its address differs) are skipped');
});

test('endpoint plan: the kernel holds at most 8 endpoints; what does not fit is reported, an implicit one is replaced in place', () => {
  const present = [ep(1, '10.0.0.1', 1), ep(2, '10.0.0.2', 1), ep(3, '10.0.0.3', 1), ep(4, '10.0.0.4', 1), ep(5, '10.0.0.5', 1),
    ep(6, '10.4.0.2', 16), ep(7, '10.7.0.2'), ep(8, '10.8.0.2')];
  const owned = new Map([[7, '10.7.0.2'], [8, '10.8.0.2']]);
  const plan = planEndpoints([want('10.4.0.2'), want('10.7.0.2'), want('10.9.0.2'), want('10.10.0.2')], present, owned);
  assert.deepEqual(plan.add.map((e) => `${e.id} ${e.address}`), ['9 10.4.0.2', '10 10.9.0.2'], 'the implicit one is replaced; 10.8.0.2 goes and makes room for one');
  assert.deepEqual(plan.remove.map((e) => e.id), [8]);
  assert.deepEqual(plan.noRoom.map((w) => w.address), ['10.10.0.2']);
});

test('limits: raised to what the endpoints need, capped at the kernel\'s 8, never lowered', () => {
  const at = (subflows: number, addAddrAccepted: number): MptcpLimits => ({ subflows, addAddrAccepted });
  assert.deepEqual(raisedLimits(at(2, 0), 4), at(4, 4));
  assert.deepEqual(raisedLimits(at(2, 0), 20), at(8, 8));
  assert.deepEqual(raisedLimits(at(6, 1), 4), at(6, 4));
  assert.equal(raisedLimits(at(8, 8), 4), undefined);
});

class FakePathManager implements PathManager {
  table = new Map<number, Endpoint>();
  settings: string[] = [];
  problems(): string[] { return this.settings; }
  limitsNow: MptcpLimits = { subflows: 2, addAddrAccepted: 0 };
  async endpoints(): Promise<Endpoint[]> { return [...this.table.values()]; }
  async add(e: Omit<Endpoint, 'port'>): Promise<OperationResult> {
    if (this.table.has(e.id) || [...this.table.values()].some((x) => x.address === e.address)) return { ok: false, code: 'EEXIST' };
    this.table.set(e.id, { id: e.id, family: e.family, address: e.address, flags: e.flags, ifindex: e.ifindex, port: 0 });
    return { ok: true };
  }
  async remove(e: Pick<Endpoint, 'id'>): Promise<OperationResult> {
    return this.table.delete(e.id) ? { ok: true } : { ok: false, code: 'EINVAL' };
  }
  async limits(): Promise<MptcpLimits> { return this.limitsNow; }
  async setLimits(l: MptcpLimits): Promise<OperationResult> { this.limitsNow = l; return { ok: true }; }
  close(): void { /* nothing open */ }
}

function syncSetup(owned = new Map<number, string>()) {
  const pm = new FakePathManager();
  const clock = new FakeClock();
  const log = recordingLogger();
  const saved: string[] = [];
  const store = { load: () => new Map(owned), save: (m: ReadonlyMap<number, string>) => { saved.push(JSON.stringify([...m])); } };
  const sync = new EndpointSync({ open: async () => pm, store, log, clock, pollMs: 2000 });
  return { pm, clock, log, saved, sync };
}

test('sync: adds endpoints and records them first, raises limits, leaves a foreign one and reports it once', async () => {
  const { pm, log, saved, sync } = syncSetup();
  pm.table.set(50, ep(50, '10.2.0.2', 1, 4));
  sync.update(plans(), () => ['subflow']);
  await sync.idle();
  assert.deepEqual([...pm.table.values()].map((e) => `${e.id} ${e.address}`), ['50 10.2.0.2', '1 10.1.0.2', '2 fd00:1::2']);
  assert.equal(saved[0], JSON.stringify([[1, '10.1.0.2']]), 'recorded before the add');
  assert.equal(saved.at(-1), JSON.stringify([[1, '10.1.0.2'], [2, 'fd00:1::2']]));
  assert.deepEqual(pm.limitsNow, { subflows: 3, addAddrAccepted: 3 });
  sync.markDirty();
  await sync.idle();
  assert.equal(log.lines.filter((l) => l.includes('Leaving foreign MPTCP endpoint alone: id 50 10.2.0.2 signal on wan2')).length, 1);
  assert.equal(pm.table.get(50)?.flags, 1, 'untouched');
});

test('sync: an own endpoint deleted by another program is restored, then with backoff', async () => {
  const { pm, clock, log, sync } = syncSetup();
  sync.update(plans(), () => ['subflow']);
  await sync.idle();
  const idOf = (address: string) => [...pm.table.values()].find((e) => e.address === address)?.id;
  for (let i = 1; i <= 3; i++) {
    pm.table.delete(idOf('10.1.0.2')!);
    clock.advance(2000); // the poll
    await sync.idle();
    assert.ok(idOf('10.1.0.2') !== undefined, `restore ${i}`);
  }
  assert.equal(log.lines.filter((l) => l.includes('MPTCP endpoint 10.1.0.2 (wan1) was deleted by another program; restoring it')).length, 3);
  // Within the same minute: the fourth waits 1 s after the third, the fifth 2 s after the fourth.
  pm.table.delete(idOf('10.1.0.2')!);
  sync.markDirty();
  await sync.idle();
  assert.equal(idOf('10.1.0.2'), undefined, 'the fourth within a minute waits');
  clock.advance(1000);
  await sync.idle();
  assert.ok(idOf('10.1.0.2') !== undefined, 'restore 4, 1 s after the third');
  pm.table.delete(idOf('10.1.0.2')!);
  sync.markDirty();
  await sync.idle();
  clock.advance(1000);
  await sync.idle();
  assert.equal(idOf('10.1.0.2'), undefined, 'the fifth waits twice as long');
  clock.advance(1000);
  await sync.idle();
  assert.ok(idOf('10.1.0.2') !== undefined, 'restore 5, 2 s after the fourth');
});

test('sync: a record from an earlier run makes its endpoints ours (kept, or removed when unwanted); stop removes only own ones', async () => {
  const { pm, sync, saved } = syncSetup(new Map([[4, '10.1.0.2'], [9, '10.3.0.2'], [12, '10.9.9.9']]));
  pm.table.set(4, ep(4, '10.1.0.2'));
  pm.table.set(9, ep(9, '10.3.0.2'));
  pm.table.set(12, ep(12, '10.12.0.2')); // the id was reused by someone else for another address
  pm.table.set(60, ep(60, 'fd00:1::2', 1));
  sync.update(plans(), () => ['subflow']);
  await sync.idle();
  assert.deepEqual([...pm.table.keys()].sort((a, b) => a - b), [1, 4, 12, 60], '9 removed, 10.2.0.2 added as 1; 4 kept');
  assert.equal(pm.table.get(1)?.address, '10.2.0.2');
  await sync.stop();
  assert.deepEqual([...pm.table.keys()].sort((a, b) => a - b), [12, 60]);
  assert.equal(saved.at(-1), '[]');
});

test('sync: release (a restart\'s hand-over) leaves the endpoints and the record for the successor', async () => {
  const { pm, sync, saved } = syncSetup();
  sync.update(plans(), () => ['subflow']);
  await sync.idle();
  const before = [...pm.table.keys()];
  const records = saved.length;
  await sync.release();
  assert.deepEqual([...pm.table.keys()], before);
  assert.equal(saved.length, records, 'the record is not rewritten');
  sync.markDirty();
  await sync.idle();
  assert.deepEqual([...pm.table.keys()], before, 'no sync after release');
});

test('the daemon: endpoints follow its passes, status shows them, a reload that turns MPTCP off removes them', async () => {
  const kernel = new FakeKernel();
  kernel.addLink(WAN1); kernel.addLink(WAN2);
  kernel.addAddress(addr(3, '10.1.0.2')); kernel.addAddress(addr(4, '10.2.0.2'));
  kernel.addRoute(route({ dst: '0.0.0.0', dstLength: 0, gateway: '10.1.0.1', oif: 3, metric: 200 }));
  kernel.addRoute(route({ dst: '0.0.0.0', dstLength: 0, gateway: '10.2.0.1', oif: 4, metric: 300 }));
  const base: Config = {
    networks: [
      { match: 'interface', value: 'wan1', table: 2000, definedAt: 'test' },
      { match: 'interface', value: 'wan2', table: 3000, definedAt: 'test', mptcp: ['subflow', 'backup'] },
    ],
    logLevel: 2, logColor: false, source: 'static', include: [], exclude: [],
    tableRange: { first: 10000, last: 19999 }, stateDirectory: '/nonexistent', tableIdleSeconds: 86400, dbus: false,
  };
  let config: Config = { ...base, mptcp: ['subflow'] };
  const { pm, sync } = syncSetup();
  pm.table.set(40, ep(40, '10.9.9.9'));
  const daemon = new Daemon({ kernel, log: recordingLogger(), config, loadConfig: () => config, version: 'test', clock: new FakeClock(), endpoints: sync });
  await daemon.start();
  await daemon.settled();
  assert.deepEqual([...pm.table.values()].map((e) => `${e.address} ${e.flags} ${e.ifindex}`).sort(), ['10.1.0.2 2 3', '10.2.0.2 6 4', '10.9.9.9 2 3']);
  const [wan1, wan2] = daemon.status().networks;
  assert.equal(wan1!.mptcpFlags, 'subflow');
  assert.deepEqual(wan1!.endpoints, [{ id: 1, address: '10.1.0.2', flags: 'subflow', own: true }]);
  assert.equal(wan2!.mptcpFlags, 'subflow,backup');
  assert.deepEqual(wan2!.endpoints, [{ id: 2, address: '10.2.0.2', flags: 'subflow,backup', own: true }]);

  config = base;
  await daemon.reload();
  await daemon.settled();
  assert.deepEqual([...pm.table.values()].map((e) => e.address).sort(), ['10.2.0.2', '10.9.9.9'], 'wan1 off; wan2 keeps its override');
  await daemon.stop();
  assert.deepEqual([...pm.table.values()].map((e) => e.address), ['10.9.9.9'], 'only the foreign endpoint is left');
});

test('the daemon\'s hand-over to a successor (a restart) leaves its endpoints', async () => {
  const kernel = new FakeKernel();
  kernel.addLink(WAN1);
  kernel.addAddress(addr(3, '10.1.0.2'));
  kernel.addRoute(route({ dst: '0.0.0.0', dstLength: 0, gateway: '10.1.0.1', oif: 3, metric: 200 }));
  const config: Config = {
    networks: [{ match: 'interface', value: 'wan1', table: 2000, definedAt: 'test' }], mptcp: ['subflow'],
    logLevel: 2, logColor: false, source: 'static', include: [], exclude: [],
    tableRange: { first: 10000, last: 19999 }, stateDirectory: '/nonexistent', tableIdleSeconds: 86400, dbus: false,
  };
  const { pm, sync, saved } = syncSetup();
  const daemon = new Daemon({ kernel, log: recordingLogger(), config, loadConfig: () => config, version: 'test', clock: new FakeClock(), endpoints: sync });
  await daemon.start();
  assert.deepEqual([...pm.table.values()].map((e) => e.address), ['10.1.0.2']);
  await daemon.handOver();
  assert.deepEqual([...pm.table.values()].map((e) => e.address), ['10.1.0.2'], 'the endpoint stays');
  assert.equal(saved.at(-1), JSON.stringify([[1, '10.1.0.2']]), 'and so does its record');
});

test('sync: a setting under which endpoints do nothing (the userspace path manager) is reported once while it lasts', async () => {
  const { pm, log, sync } = syncSetup();
  pm.settings = ['net.mptcp.path_manager is userspace'];
  sync.update(plans(), () => ['subflow']);
  await sync.idle();
  sync.markDirty();
  await sync.idle();
  assert.equal(log.lines.filter((l) => l === 'warning: MPTCP endpoints are in place, but net.mptcp.path_manager is userspace').length, 1);
  pm.settings = [];
  sync.markDirty();
  await sync.idle();
  pm.settings = ['net.mptcp.path_manager is userspace'];
  sync.markDirty();
  await sync.idle();
  assert.equal(log.lines.filter((l) => l.includes('path_manager is userspace')).length, 2, 'reported again after it was fixed and came back');
});
