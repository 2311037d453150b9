import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Daemon, type DynamicNetworks } from '../../src/daemon';
import type { ManagedNetwork, Route } from '../../src/model';
import { FakeKernel } from '../../src/kernel/fake';
import { ControlError } from '../../src/control';
import type { Config } from '../../src/config/types';
import { FakeClock, WAN1, WAN2, addr, ours, recordingLogger, route, rule } from './fixtures';

function config(networks: Array<[string, number]>): Config {
  return {
    networks: networks.map(([value, table]) => ({ match: 'interface', value, table, definedAt: 'test' })),
    logLevel: 2, logColor: false, source: 'static', include: [], exclude: [],
    tableRange: { first: 10000, last: 19999 }, stateDirectory: '/nonexistent', tableIdleSeconds: 86400, dbus: false,
  };
}

async function running(initial: Config, loadConfig: () => Config = () => initial) {
  const kernel = new FakeKernel();
  kernel.addLink(WAN1); kernel.addLink(WAN2);
  kernel.addAddress(addr(3, '10.1.0.2')); kernel.addAddress(addr(4, '10.2.0.2'));
  kernel.addRoute(route({ dst: '0.0.0.0', dstLength: 0, gateway: '10.1.0.1', oif: 3, metric: 200 }));
  const log = recordingLogger();
  const daemon = new Daemon({ kernel, log, config: initial, loadConfig, version: 'test', clock: new FakeClock() });
  await daemon.start();
  return { kernel, daemon, log };
}

test('status reports each network with its addresses, rules, routes and state', async () => {
  const { daemon } = await running(config([['wan1', 2000], ['wan9', 9000]]));
  const status = daemon.status();
  assert.equal(status.state, 'running');
  const [wan1, wan9] = status.networks;
  assert.deepEqual([wan1.interfaceName, wan1.interfaceIndex, wan1.table, wan1.state, wan1.rules.length], ['wan1', 3, 2000, 'active', 1]);
  assert.deepEqual(wan1.addresses, [{ family: 4, address: '10.1.0.2', prefixLength: 24 }]);
  assert.deepEqual(wan1.routes.map((r) => `${r.destination} ${r.gateway} ${r.device}`), ['default 10.1.0.1 wan1']);
  assert.deepEqual([wan9.state, wan9.interfaceIndex], ['waiting', 0]);
});

test('reload adds and removes networks without touching unchanged ones', async () => {
  let next = config([['wan1', 2000]]);
  const { kernel, daemon } = await running(next, () => next);
  const before = kernel.applied.length;
  next = config([['wan1', 2000], ['wan2', 3000]]);
  await daemon.reload();
  const ops = kernel.applied.slice(before);
  assert.ok(ops.every((op) => op.network === 'wan2'), 'nothing done to wan1');
  assert.ok(kernel.hasRule(rule('10.2.0.2', 3000)));
  next = config([['wan2', 3000]]);
  await daemon.reload();
  assert.ok(!kernel.hasRule(rule('10.1.0.2', 2000)));
  assert.ok(kernel.hasRule(rule('10.2.0.2', 3000)));
});

test('a bad config on reload changes nothing and is reported as InvalidArgument', async () => {
  const good = config([['wan1', 2000]]);
  let fail = false;
  const { kernel, daemon } = await running(good, () => { if (fail) throw new Error('dynmhs.conf:3: bad'); return good; });
  fail = true;
  const before = kernel.applied.length;
  await assert.rejects(daemon.reload(), (e: unknown) => e instanceof ControlError && e.code === 'InvalidArgument');
  assert.equal(kernel.applied.length, before);
  assert.equal(daemon.status().state, 'running');
});

test('runtime networks: validated, added, removed', async () => {
  const { kernel, daemon } = await running(config([['wan1', 2000]]));
  await assert.rejects(daemon.addNetwork('wan2', 99), (e: unknown) => e instanceof ControlError && e.code === 'InvalidArgument');
  await assert.rejects(daemon.addNetwork('bad/name', 3000), (e: unknown) => e instanceof ControlError && e.code === 'InvalidArgument');
  await assert.rejects(daemon.addNetwork('wan2', 2000), (e: unknown) => e instanceof ControlError && e.code === 'Exists');
  await assert.rejects(daemon.addNetwork('wan1', 3000), (e: unknown) => e instanceof ControlError && e.code === 'Exists');
  await daemon.addNetwork('wan2', 3000);
  assert.ok(kernel.hasRule(rule('10.2.0.2', 3000)));
  await assert.rejects(daemon.removeNetwork('wan7'), (e: unknown) => e instanceof ControlError && e.code === 'NotFound');
  await daemon.removeNetwork('wan2');
  assert.ok(!kernel.hasRule(rule('10.2.0.2', 3000)));
  assert.throws(() => daemon.setLogLevel(9 as never), ControlError);
});

test('stop removes every route and rule of ours and nothing else', async () => {
  const { kernel, daemon } = await running(config([['wan1', 2000]]));
  const foreign = route({ dst: '203.0.113.0', dstLength: 24, type: 'unreachable', table: 2000, protocol: 4 });
  kernel.addRoute(foreign);
  kernel.addRule(rule('10.9.9.9', 2000, 4));
  await daemon.settled();
  await daemon.stop();
  const left = kernel.observed();
  assert.deepEqual(left.rules, [rule('10.9.9.9', 2000, 4)]);
  assert.deepEqual(left.routes.filter((r) => r.table === 2000), [foreign]);
  assert.ok(!kernel.hasRoute(ours(route({ dst: '0.0.0.0', dstLength: 0, gateway: '10.1.0.1', oif: 3, metric: 200 }), 2000)));
});

/** A connection source whose start() waits until the test releases it (a manager still being asked). */
class SlowConnections extends EventEmitter implements DynamicNetworks {
  private started = false;
  private release!: () => void;
  private readonly released = new Promise<void>((resolve) => { this.release = resolve; });
  constructor(private readonly reported: readonly ManagedNetwork[]) { super(); }
  async start(): Promise<void> { await this.released; this.started = true; }
  async stop(): Promise<void> { /* nothing to stop */ }
  networks(): readonly ManagedNetwork[] { return this.started ? this.reported : []; }
  activeSource(): 'networkmanager' { return 'networkmanager'; }
  heldTables(): ReadonlySet<number> { return new Set(); }
  reconfigure(): void { /* not reloaded here */ }
  answer(): void { this.release(); }
}

/** wan1 with its address and default route, and what a SIGKILLed daemon left: its rule and its copy of that route in 10000. */
function kernelWithLeftovers(): { kernel: FakeKernel; defaultRoute: Route } {
  const kernel = new FakeKernel();
  kernel.addLink(WAN1);
  kernel.addAddress(addr(3, '10.1.0.2'));
  const defaultRoute = route({ dst: '0.0.0.0', dstLength: 0, gateway: '10.1.0.1', oif: 3, metric: 100 });
  kernel.addRoute(defaultRoute);
  kernel.addRule(rule('10.1.0.2', 10000));
  kernel.addRoute(ours(defaultRoute, 10000));
  return { kernel, defaultRoute };
}

test('with a connection source, what a killed predecessor left is adopted: no pass runs before the source has reported', async () => {
  const { kernel, defaultRoute } = kernelWithLeftovers();
  const source = new SlowConnections([{ interfaceName: 'wan1', table: 10000, priority: 10000, origin: 'networkmanager' }]);
  const daemon = new Daemon({
    kernel, log: recordingLogger(), config: { ...config([]), source: 'networkmanager' }, loadConfig: () => config([]),
    version: 'test', clock: new FakeClock(), connections: () => source,
  });
  const starting = daemon.start();
  // The kernel reports a change while the source still waits for NetworkManager (the real
  // adapter always does, right after its first dump).
  await new Promise((resolve) => setImmediate(resolve));
  kernel.addAddress(addr(3, 'fd00:1::2'));
  await new Promise((resolve) => setImmediate(resolve));
  await daemon.settled();
  source.answer();
  await starting;
  assert.deepEqual(kernel.applied.filter((op) => op.kind === 'delete-rule' || op.kind === 'delete-route'), [], 'nothing removed');
  assert.ok(kernel.hasRule(rule('10.1.0.2', 10000)));
  assert.ok(kernel.hasRoute(ours(defaultRoute, 10000)));
  assert.ok(kernel.hasRule(rule('fd00:1::2', 10000)), 'the new address got its rule');
  await daemon.stop();
});

/** A source that starts without having heard its manager (bus not there yet), then hears it. */
class UnheardConnections extends EventEmitter implements DynamicNetworks {
  private heard = false;
  constructor(private readonly stored: ReadonlySet<number>, private readonly reported: readonly ManagedNetwork[]) { super(); }
  async start(): Promise<void> { /* the bus is not reachable yet */ }
  async stop(): Promise<void> { /* nothing to stop */ }
  networks(): readonly ManagedNetwork[] { return this.heard ? this.reported : []; }
  activeSource(): 'networkmanager' { return 'networkmanager'; }
  heldTables(): ReadonlySet<number> { return this.heard ? new Set() : this.stored; }
  reconfigure(): void { /* not reloaded here */ }
  hear(): void { this.heard = true; this.emit('changed'); }
}

test('until the manager has been heard, the last run\'s entries in stored tables stay; then what is stale goes', async () => {
  const { kernel, defaultRoute } = kernelWithLeftovers();
  // and a connection on table 10001 that is gone now
  kernel.addRule(rule('10.9.0.2', 10001));
  const log = recordingLogger();
  const source = new UnheardConnections(new Set([10000, 10001]), [{ interfaceName: 'wan1', table: 10000, priority: 10000, origin: 'networkmanager' }]);
  const daemon = new Daemon({
    kernel, log, config: { ...config([]), source: 'networkmanager' }, loadConfig: () => config([]),
    version: 'test', clock: new FakeClock(), connections: () => source,
  });
  await daemon.start();
  await daemon.settled();
  assert.deepEqual(kernel.applied.filter((op) => op.kind.startsWith('delete')), [], 'nothing removed while unheard');
  assert.ok(log.lines.some((l) => /Keeping 3 of the last run's rules and routes in tables 10000, 10001 until the network manager has been heard from/.test(l)));
  source.hear();
  await daemon.settled();
  assert.ok(kernel.hasRule(rule('10.1.0.2', 10000)), 'wan1 kept its policy throughout');
  assert.ok(kernel.hasRoute(ours(defaultRoute, 10000)));
  assert.ok(!kernel.hasRule(rule('10.9.0.2', 10001)), 'the gone connection\'s rule is removed once heard');
  assert.deepEqual(kernel.applied.filter((op) => op.kind.startsWith('delete')).map((op) => op.kind), ['delete-rule']);
  await daemon.stop();
});

/** A source that selects by the configuration it is given, as the real one does: EXCLUDE=interface:X drops X. */
class ConfiguredConnections extends EventEmitter implements DynamicNetworks {
  readonly reconfigured: Config[] = [];
  private excluded: readonly string[] = [];
  constructor(private readonly reported: readonly ManagedNetwork[]) { super(); }
  async start(): Promise<void> { /* heard at once */ }
  async stop(): Promise<void> { /* nothing to stop */ }
  networks(): readonly ManagedNetwork[] { return this.reported.filter((n) => !this.excluded.includes(n.interfaceName)); }
  activeSource(): 'networkmanager' { return 'networkmanager'; }
  heldTables(): ReadonlySet<number> { return new Set(); }
  reconfigure(config: Config): void {
    this.reconfigured.push(config);
    this.excluded = config.exclude.filter((s) => s.match === 'interface').map((s) => s.value);
    this.emit('changed');
  }
}

test('reload hands the new configuration to the connection source; restart-only keys keep their start-up values, with a warning each', async () => {
  const kernel = new FakeKernel();
  kernel.addLink(WAN1); kernel.addLink(WAN2);
  kernel.addAddress(addr(3, '10.1.0.2')); kernel.addAddress(addr(4, '10.2.0.2'));
  const log = recordingLogger();
  const source = new ConfiguredConnections([
    { interfaceName: 'wan1', table: 10000, priority: 10000, origin: 'networkmanager' },
    { interfaceName: 'wan2', table: 10001, priority: 10001, origin: 'networkmanager' },
  ]);
  const initial: Config = { ...config([]), source: 'networkmanager', dbus: true, logFile: '/var/log/dynmhs/a.log' };
  let next = initial;
  const daemon = new Daemon({ kernel, log, config: initial, loadConfig: () => next, version: 'test', clock: new FakeClock(), connections: () => source });
  await daemon.start();
  assert.ok(kernel.hasRule(rule('10.2.0.2', 10001)));
  const before = kernel.applied.length;
  next = {
    ...initial, exclude: [{ match: 'interface', value: 'wan2' }], tableIdleSeconds: 60,
    source: 'networkd', stateDirectory: '/elsewhere', dbus: false, logColor: true, logFile: undefined,
  };
  await daemon.reload();
  const given = source.reconfigured.at(-1)!;
  assert.deepEqual(given.exclude, [{ match: 'interface', value: 'wan2' }]);
  assert.equal(given.tableIdleSeconds, 60);
  assert.deepEqual([given.source, given.stateDirectory, given.dbus, given.logColor, given.logFile],
    ['networkmanager', '/nonexistent', true, false, '/var/log/dynmhs/a.log']);
  for (const key of ['SOURCE', 'STATE_DIRECTORY', 'DBUS', 'LOGCOLOR', 'LOGFILE']) {
    assert.ok(log.lines.some((l) => l.startsWith('warning') && l.includes(`Reload: ${key} changed`) && l.includes('next restart')), `${key}: ${log.lines.join('\n')}`);
  }
  assert.ok(!kernel.hasRule(rule('10.2.0.2', 10001)), 'the excluded connection lost its rule');
  assert.ok(kernel.hasRule(rule('10.1.0.2', 10000)));
  const tableOf = (op: (typeof kernel.applied)[number]): number => ('rule' in op ? op.rule.table : op.route.table);
  assert.deepEqual(kernel.applied.slice(before).map(tableOf), [10001], 'only the excluded connection\'s rule removed; nothing done to wan1');
  assert.equal(daemon.status().source, 'networkmanager');
  await daemon.stop();
});

test('handOver leaves every rule and route of ours for a successor, says how many, and stops the connection source', async () => {
  const kernel = new FakeKernel();
  kernel.addLink(WAN1);
  kernel.addAddress(addr(3, '10.1.0.2'));
  kernel.addRoute(route({ dst: '0.0.0.0', dstLength: 0, gateway: '10.1.0.1', oif: 3, metric: 100 }));
  let stopped = 0;
  const source = new ConfiguredConnections([{ interfaceName: 'wan1', table: 10000, priority: 10000, origin: 'networkmanager' }]);
  source.stop = async () => { stopped++; };
  const daemon = new Daemon({
    kernel, log: recordingLogger(), config: { ...config([]), source: 'networkmanager' }, loadConfig: () => config([]),
    version: 'test', clock: new FakeClock(), connections: () => source,
  });
  await daemon.start();
  const before = kernel.observed();
  const applied = kernel.applied.length;
  assert.deepEqual(await daemon.handOver(), { rules: 1, routes: 1 });
  assert.equal(kernel.applied.length, applied, 'nothing removed');
  assert.deepEqual(kernel.observed().rules, before.rules);
  assert.deepEqual(kernel.observed().routes, before.routes);
  assert.equal(stopped, 1, 'the connection source stopped (its tables saved)');
  assert.equal(daemon.status().state, 'stopping');
});
