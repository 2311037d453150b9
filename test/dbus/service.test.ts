// The no.nntb.DynMHS service for real: a private dbus-daemon system bus that loads the
// bus policy we ship (dbus/no.nntb.DynMHS.conf), the real polkitd with the actions we
// ship (polkit/no.nntb.DynMHS.policy) and a rules.d rule, the service in-process over a
// fake DaemonControl, and callers as root, as uid 1 (daemon: authorized by the rule)
// and as uid 65534 (nobody: denied).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Message, sessionBus } from 'dbus-next';
import type { MessageBus } from 'dbus-next';
import { ControlError } from '../../src/control';
import { DbusServiceError, startDbusService } from '../../src/dbus/service';
import type { DbusService } from '../../src/dbus/service';
import { REPO, call, callMany, isRoot, run, startPolkitd, startSystemBus } from '../helpers/dbus-harness';
import type { CallResult, Polkitd, PrivateBus } from '../helpers/dbus-harness';
import { FakeControl, captureLogger, fakeNetwork } from '../helpers/dbus-fake-control';

const ROOT = 0;
const DAEMON = 1; // granted every no.nntb.DynMHS.* action by the test's rules.d rule
const NOBODY = 65534;
const M = '/no/nntb/DynMHS';
const MI = 'no.nntb.DynMHS1';
const NI = 'no.nntb.DynMHS1.Network';
const PROPS = 'org.freedesktop.DBus.Properties';
const E = 'no.nntb.DynMHS1.Error.';

const RULES = {
  '50-dynmhs-test.rules': `// test: user "daemon" may do everything dynmhs offers
polkit.addRule(function(action, subject) {
    if (action.id.indexOf("no.nntb.DynMHS.") == 0 && subject.user == "daemon")
        return polkit.Result.YES;
});
`,
};

const skip = isRoot() ? false
  : 'needs root: polkitd must be started as root, and the callers run as uid nobody and daemon via setpriv (CI runs as root)';

const wan1 = fakeNetwork('wan1', 2000, {
  interfaceIndex: 7,
  state: 'active',
  addresses: [{ family: 4, address: '10.101.0.2', prefixLength: 24 }, { family: 6, address: 'fd00:101::2', prefixLength: 64 }],
  rules: [{ family: 4, priority: 2000, from: '10.101.0.2', table: 2000 }, { family: 6, priority: 2000, from: 'fd00:101::2', table: 2000 }],
  routes: [
    { family: 4, destination: 'default', gateway: '10.101.0.1', device: 'wan1', metric: 100, prefsrc: '', scope: 'universe', type: 'unicast' },
    { family: 4, destination: '10.101.0.0/24', gateway: '', device: 'wan1', metric: 100, prefsrc: '10.101.0.2', scope: 'link', type: 'unicast' },
  ],
  mptcpFlags: 'subflow',
  endpoints: [{ id: 1, address: '10.101.0.2', flags: 'subflow', own: true }, { id: 77, address: 'fd00:101::2', flags: 'signal', own: false }],
});

interface Signal { path: string; iface: string; member: string; body: unknown[] }

/** A client that records every signal no.nntb.DynMHS sends. */
async function monitor(address: string): Promise<{ bus: MessageBus; signals: Signal[]; waitFor: (p: (s: Signal) => boolean, what: string) => Promise<Signal> }> {
  const bus = sessionBus({ busAddress: address });
  bus.on('error', () => undefined);
  const signals: Signal[] = [];
  bus.on('message', (msg: Message) => {
    if ((msg.type as unknown as number) === 4) signals.push({ path: msg.path, iface: msg.interface, member: msg.member, body: msg.body });
  });
  await bus.call(new Message({
    destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus',
    member: 'AddMatch', signature: 's', body: ["type='signal',sender='no.nntb.DynMHS'"],
  }));
  const waitFor = (p: (s: Signal) => boolean, what: string): Promise<Signal> => new Promise((resolve, reject) => {
    const end = Date.now() + 5000;
    const tick = (): void => {
      const found = signals.find(p);
      if (found) resolve(found);
      else if (Date.now() > end) reject(new Error(`no ${what} signal; got: ${JSON.stringify(signals.map((s) => `${s.path} ${s.iface}.${s.member}`))}`));
      else setTimeout(tick, 10);
    };
    tick();
  });
  return { bus, signals, waitFor };
}

function assertError(result: CallResult, name: string, what: string): void {
  assert.equal(result.ok, false, `${what}: expected ${name}, got success ${JSON.stringify(result.body)}`);
  assert.equal(result.name, name, `${what}: ${result.name}: ${result.message}`);
}

describe('no.nntb.DynMHS on a private system bus with a real polkitd', { skip }, () => {
  let dir = '';
  let bus: PrivateBus | undefined;
  let polkit: Polkitd | undefined;
  let service: DbusService | undefined;
  const control = new FakeControl();
  const log = captureLogger();
  const as = (uid: number | undefined, path: string, iface: string, member: string, signature = '', args: unknown[] = []): Promise<CallResult> =>
    call((bus as PrivateBus).address, uid, path, iface, member, signature, args);

  before(async () => {
    dir = mkdtempSync('/tmp/dynmhs-dbus-test-');
    chmodSync(dir, 0o755);
    bus = await startSystemBus(join(dir, 'bus'), [join(REPO, 'dbus', 'no.nntb.DynMHS.conf')]);
    polkit = await startPolkitd(join(dir, 'polkit'), bus.address, [join(REPO, 'polkit', 'no.nntb.DynMHS.policy')], RULES);
    control.setNetworks([wan1]);
    service = await startDbusService(control, log, { busAddress: bus.address });
  });

  after(async () => {
    try { await service?.stop(); } finally {
      try { await polkit?.stop(); } finally {
        try { await bus?.stop(); } finally { if (dir) rmSync(dir, { recursive: true, force: true }); }
      }
    }
  });

  test('busctl introspect shows the API, for root and for nobody', async () => {
    for (const uid of [ROOT, NOBODY]) {
      const r = await run(['busctl', `--address=${bus?.address}`, 'introspect', 'no.nntb.DynMHS', M], { uid });
      assert.equal(r.code, 0, r.stderr);
      for (const word of ['no.nntb.DynMHS1', 'org.freedesktop.DBus.ObjectManager', 'org.freedesktop.DBus.Properties',
        '.GetNetworks', '.Describe', '.Reload', '.AddNetwork', '.RemoveNetwork', '.SetLogLevel',
        '.NetworkAdded', '.NetworkRemoved', '.PolicyApplied', '.InterfacesAdded', '.InterfacesRemoved', '.PropertiesChanged',
        '.Version', '.Source', '.State', '.Networks']) {
        assert.ok(r.stdout.includes(word), `uid ${uid}: introspection lacks ${word}:\n${r.stdout}`);
      }
      const n = await run(['busctl', `--address=${bus?.address}`, 'introspect', 'no.nntb.DynMHS', `${M}/Network/wan1`], { uid });
      assert.equal(n.code, 0, n.stderr);
      for (const word of ['.Interface ', '.InterfaceIndex', '.Table', '.Priority', '.Origin', '.ConnectionId', '.ConnectionUuid',
        '.DeviceType', '.Addresses', '.Rules', '.Routes', '.State']) {
        assert.ok(n.stdout.includes(word), `uid ${uid}: network introspection lacks ${word}:\n${n.stdout}`);
      }
    }
    const tree = await run(['busctl', `--address=${bus?.address}`, 'tree', 'no.nntb.DynMHS'], { uid: NOBODY });
    assert.equal(tree.code, 0, tree.stderr);
    assert.match(tree.stdout, /\/no\/nntb\/DynMHS\/Network\/wan1/);
  });

  test('nobody reads properties, GetNetworks, Describe and GetManagedObjects', async () => {
    const r = await run(['busctl', `--address=${bus?.address}`, 'get-property', 'no.nntb.DynMHS', M, MI, 'Version', 'Source', 'State', 'Networks'], { uid: NOBODY });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 's "0.1.0-test"\ns "static"\ns "running"\nao 1 "/no/nntb/DynMHS/Network/wan1"\n');
    const all = await as(NOBODY, `${M}/Network/wan1`, PROPS, 'GetAll', 's', [NI]);
    assert.ok(all.ok, all.message);
    const props = (all.body as [Record<string, { signature: string; value: unknown }>])[0];
    assert.deepEqual(props.Interface, { signature: 's', value: 'wan1' });
    assert.deepEqual(props.InterfaceIndex, { signature: 'i', value: 7 });
    assert.deepEqual(props.Table, { signature: 'u', value: 2000 });
    assert.deepEqual(props.Priority, { signature: 'u', value: 2000 });
    assert.deepEqual(props.Origin.value, 'static');
    assert.deepEqual(props.Addresses, { signature: 'a(isu)', value: [[4, '10.101.0.2', 24], [6, 'fd00:101::2', 64]] });
    assert.deepEqual(props.Rules.value, [[4, 2000, '10.101.0.2', 2000], [6, 2000, 'fd00:101::2', 2000]]);
    assert.deepEqual((props.Routes.value as unknown[][])[0], [4, 'default', '10.101.0.1', 'wan1', 100, '', 'universe', 'unicast']);
    assert.deepEqual(props.State.value, 'active');
    assert.deepEqual(props.MptcpFlags, { signature: 's', value: 'subflow' });
    assert.deepEqual(props.Endpoints, { signature: 'a(ussb)', value: [[1, '10.101.0.2', 'subflow', true], [77, 'fd00:101::2', 'signal', false]] });
    for (const key of ['ConnectionId', 'ConnectionUuid', 'DeviceType']) assert.ok(key in props, key);

    const networks = await as(NOBODY, M, MI, 'GetNetworks');
    assert.deepEqual(networks.body, [[['wan1', 2000, '/no/nntb/DynMHS/Network/wan1']]]);
    const described = await as(NOBODY, M, MI, 'Describe');
    assert.ok(described.ok, described.message);
    const json = JSON.parse((described.body as [string])[0]);
    assert.equal(json.version, '0.1.0-test');
    assert.equal(json.networks[0].interfaceName, 'wan1');
    assert.equal(json.networks[0].path, '/no/nntb/DynMHS/Network/wan1');
    assert.equal(json.networks[0].routes.length, 2);
    const managed = await as(NOBODY, M, 'org.freedesktop.DBus.ObjectManager', 'GetManagedObjects');
    assert.ok(managed.ok, managed.message);
    assert.deepEqual(Object.keys((managed.body as [Record<string, unknown>])[0]), ['/no/nntb/DynMHS/Network/wan1']);
  });

  test('every mutation by nobody is denied with NotAuthorized, and nothing reaches the core', async () => {
    const before = control.calls.length;
    assertError(await as(NOBODY, M, MI, 'Reload'), `${E}NotAuthorized`, 'Reload');
    assertError(await as(NOBODY, M, MI, 'AddNetwork', 'su', ['wan9', 2009]), `${E}NotAuthorized`, 'AddNetwork');
    assertError(await as(NOBODY, M, MI, 'RemoveNetwork', 's', ['wan1']), `${E}NotAuthorized`, 'RemoveNetwork');
    assertError(await as(NOBODY, M, MI, 'SetLogLevel', 'u', [0]), `${E}NotAuthorized`, 'SetLogLevel');
    assert.equal(control.calls.length, before);
    // Set is refused by the bus policy already
    assertError(await as(NOBODY, M, PROPS, 'Set', 'ssv', [MI, 'State', { $variant: ['s', 'x'] }]), 'org.freedesktop.DBus.Error.AccessDenied', 'Set');
    assert.ok(log.lines.some((l) => l.startsWith('warning: Refused Reload over D-Bus') && l.includes('uid 65534')), log.lines.join('\n'));
  });

  test('root is authorized; ControlError codes become named errors', async () => {
    let r = await as(ROOT, M, MI, 'AddNetwork', 'su', ['wan2', 2001]);
    assert.ok(r.ok, r.message);
    assert.deepEqual(control.calls.at(-1), { method: 'addNetwork', interfaceName: 'wan2', table: 2001, persist: false });
    assertError(await as(ROOT, M, MI, 'AddNetwork', 'su', ['wan2', 2002]), `${E}Exists`, 'AddNetwork twice');
    r = await as(ROOT, M, MI, 'RemoveNetwork', 's', ['wan2']);
    assert.ok(r.ok, r.message);
    assertError(await as(ROOT, M, MI, 'RemoveNetwork', 's', ['wan2']), `${E}NotFound`, 'RemoveNetwork twice');
    r = await as(ROOT, M, MI, 'SetLogLevel', 'u', [1]);
    assert.ok(r.ok, r.message);
    assert.deepEqual(control.calls.at(-1), { method: 'setLogLevel', level: 1 });
    r = await as(ROOT, M, MI, 'Reload');
    assert.ok(r.ok, r.message);
    control.reloadError = new ControlError('InvalidArgument', '/etc/dynmhs/dynmhs.conf:3: bad table');
    assertError(await as(ROOT, M, MI, 'Reload'), `${E}InvalidArgument`, 'Reload with a bad file');
    control.reloadError = new Error('boom');
    const failed = await as(ROOT, M, MI, 'Reload');
    assertError(failed, `${E}Failed`, 'Reload throwing a plain Error');
    assert.ok(!failed.message?.includes('    at '), `no stack trace to the caller: ${failed.message}`);
    control.reloadError = undefined;
  });

  test('a non-root caller authorized by a polkit rules.d rule succeeds', async () => {
    let r = await as(DAEMON, M, MI, 'AddNetwork', 'su', ['wan3', 2003]);
    assert.ok(r.ok, r.message);
    r = await as(DAEMON, M, MI, 'RemoveNetwork', 's', ['wan3']);
    assert.ok(r.ok, r.message);
    r = await as(DAEMON, M, MI, 'Reload');
    assert.ok(r.ok, r.message);
    r = await as(DAEMON, M, MI, 'SetLogLevel', 'u', [2]);
    assert.ok(r.ok, r.message);
  });

  test('garbage arguments of every kind get named errors, from root and from nobody, and the service lives on', async () => {
    const IA = `${E}InvalidArgument`;
    const cases: [string, string, unknown[], string][] = [
      ['AddNetwork', 'ss', ['wan1', '2000'], IA],
      ['AddNetwork', 's', ['wan1'], IA],
      ['AddNetwork', '', [], IA],
      ['AddNetwork', 'sui', ['wan1', 2000, 1], IA],
      ['AddNetwork', 'iu', [-1, 2000], IA],
      ['AddNetwork', 'su', ['', 2000], IA],
      ['AddNetwork', 'su', ['a'.repeat(16), 2000], IA],
      ['AddNetwork', 'su', ['ä'.repeat(8), 2000], IA],
      ['AddNetwork', 'su', ['a/b', 2000], IA],
      ['AddNetwork', 'su', ['wan1:2000', 2000], IA],
      ['AddNetwork', 'su', ['a b', 2000], IA],
      ['AddNetwork', 'su', ['..', 2000], IA],
      ['AddNetwork', 'su', ['x\u0001', 2000], IA],
      ['AddNetwork', 'su', ['wan5', 0], IA],
      ['AddNetwork', 'su', ['wan5', 999], IA],
      ['AddNetwork', 'su', ['wan5', 30000], IA],
      ['AddNetwork', 'su', ['wan5', 4294967295], IA],
      ['AddNetwork', 'sv', ['wan5', { $variant: ['u', 2000] }], IA],
      ['AddNetwork', 'st', ['wan5', '2000n'], IA],
      ['AddNetwork', 'a{su}', [{ wan5: 2000 }], IA],
      ['RemoveNetwork', 'u', [1], IA],
      ['RemoveNetwork', 'as', [['wan1']], IA],
      ['RemoveNetwork', 's', [''], IA],
      ['RemoveNetwork', 's', ['x'.repeat(4000)], IA],
      ['SetLogLevel', 'u', [6], IA],
      ['SetLogLevel', 'u', [4294967295], IA],
      ['SetLogLevel', 'i', [-1], IA],
      ['SetLogLevel', 's', ['debug'], IA],
      ['SetLogLevel', 'y', [1], IA],
      ['Reload', 's', ['now'], IA],
      ['Describe', 'b', [true], IA],
      ['GetNetworks', 'd', [1.5], IA],
      // not in the bus policy: the bus refuses it for everyone, root included
      ['NoSuchMethod', '', [], 'org.freedesktop.DBus.Error.AccessDenied'],
    ];
    for (const uid of [ROOT, NOBODY]) {
      const results = await callMany((bus as PrivateBus).address, uid, cases.map(([member, sig, args]) => ({ path: M, iface: MI, member, signature: sig, args })));
      cases.forEach(([member, sig, args, name], i) => {
        assertError(results[i], name, `uid ${uid} ${member}(${sig}) ${JSON.stringify(args)}`);
      });
    }
    assertError(await as(ROOT, M, PROPS, 'Get', 'ss', [MI, 'NoSuch']), 'org.freedesktop.DBus.Error.UnknownProperty', 'Get NoSuch');
    assertError(await as(ROOT, M, PROPS, 'Get', 'ss', ['no.such.Iface', 'State']), 'org.freedesktop.DBus.Error.UnknownInterface', 'Get bad iface');
    assertError(await as(ROOT, M, PROPS, 'Get', 's', [MI]), 'org.freedesktop.DBus.Error.InvalidArgs', 'Get(s)');
    assertError(await as(ROOT, M, PROPS, 'GetAll', 'u', [1]), 'org.freedesktop.DBus.Error.InvalidArgs', 'GetAll(u)');
    // Properties.Set is not in the bus policy (every property is read-only): refused by the bus, root included
    assertError(await as(ROOT, M, PROPS, 'Set', 'ssv', [MI, 'State', { $variant: ['s', 'x'] }]), 'org.freedesktop.DBus.Error.AccessDenied', 'Set State');
    assertError(await as(ROOT, `${M}/Network/nonexistent`, PROPS, 'GetAll', 's', [NI]), 'org.freedesktop.DBus.Error.UnknownObject', 'GetAll on a gone network');
    assertError(await as(ROOT, M, 'no.such.Interface', 'Foo'), 'org.freedesktop.DBus.Error.AccessDenied', 'unknown interface (bus policy)');
    // busctl with a wrong signature: a clear message, the service keeps running
    const b = await run(['busctl', `--address=${bus?.address}`, 'call', 'no.nntb.DynMHS', M, MI, 'AddNetwork', 'ss', 'wan1', 'x']);
    assert.notEqual(b.code, 0);
    assert.match(b.stderr, /AddNetwork takes \(su\)/);
    const ping = await run(['busctl', `--address=${bus?.address}`, 'call', 'no.nntb.DynMHS', M, 'org.freedesktop.DBus.Peer', 'Ping']);
    assert.equal(ping.code, 0, ping.stderr);
    assert.equal(control.calls.filter((c) => c.method === 'addNetwork' && c.interfaceName === 'wan5').length, 0);
  });

  test('signals: InterfacesAdded, NetworkAdded, PropertiesChanged, PolicyApplied, InterfacesRemoved, NetworkRemoved', async () => {
    const mon = await monitor((bus as PrivateBus).address);
    try {
      const wan4 = fakeNetwork('wan-4', 2004, { origin: 'networkmanager', connectionId: 'LTE', deviceType: 'gsm' });
      const path = '/no/nntb/DynMHS/Network/wan_2d4';
      control.setNetworks([wan1, wan4]);
      const added = await mon.waitFor((s) => s.member === 'InterfacesAdded', 'InterfacesAdded');
      assert.equal(added.path, M);
      assert.equal(added.iface, 'org.freedesktop.DBus.ObjectManager');
      assert.equal(added.body[0], path);
      assert.ok(NI in (added.body[1] as Record<string, unknown>));
      const na = await mon.waitFor((s) => s.member === 'NetworkAdded', 'NetworkAdded');
      assert.deepEqual(na.body, [path, 'wan-4']);
      const pc = await mon.waitFor((s) => s.member === 'PropertiesChanged' && s.path === M, 'manager PropertiesChanged');
      assert.equal(pc.body[0], MI);
      assert.ok('Networks' in (pc.body[1] as Record<string, unknown>));
      // the new object answers
      const idx = await as(NOBODY, path, PROPS, 'Get', 'ss', [NI, 'ConnectionId']);
      assert.deepEqual(idx.body, [{ signature: 's', value: 'LTE' }], idx.message);

      mon.signals.length = 0;
      control.updateNetwork('wan-4', {
        state: 'active', interfaceIndex: 9,
        addresses: [{ family: 4, address: '10.0.0.5', prefixLength: 30 }],
        routes: [{ family: 4, destination: 'default', gateway: '', device: 'wan-4', metric: 0, prefsrc: '', scope: 'link', type: 'unicast' }],
      });
      const npc = await mon.waitFor((s) => s.member === 'PropertiesChanged' && s.path === path, 'network PropertiesChanged');
      assert.equal(npc.body[0], NI);
      const changed = npc.body[1] as Record<string, { value: unknown }>;
      assert.deepEqual(Object.keys(changed).sort(), ['Addresses', 'InterfaceIndex', 'State']);
      assert.deepEqual(npc.body[2], ['Routes']);

      control.applied({ added: 3, removed: 1, failed: 0 });
      const pa = await mon.waitFor((s) => s.member === 'PolicyApplied', 'PolicyApplied');
      assert.deepEqual(pa.body, [3, 1, 0]);

      control.setState('reloading');
      const st = await mon.waitFor((s) => s.member === 'PropertiesChanged' && s.path === M && 'State' in (s.body[1] as object), 'State change');
      assert.equal((st.body[1] as Record<string, { value: unknown }>).State.value, 'reloading');
      control.setState('running');

      control.setNetworks([wan1]);
      const removed = await mon.waitFor((s) => s.member === 'InterfacesRemoved', 'InterfacesRemoved');
      assert.deepEqual(removed.body, [path, [NI]]);
      assert.equal(removed.path, M);
      const nr = await mon.waitFor((s) => s.member === 'NetworkRemoved', 'NetworkRemoved');
      assert.deepEqual(nr.body, [path, 'wan-4']);
    } finally {
      mon.bus.disconnect();
    }
  });

  test('a broken status() gives callers a named error, and the service recovers', async () => {
    control.statusError = new Error('core exploded');
    control.emit('changed');
    const r = await as(NOBODY, M, MI, 'Describe');
    // the last good snapshot is served: a failing core must not make the bus API fail
    assert.ok(r.ok || r.name === `${E}Failed`, `${r.name}: ${r.message}`);
    control.statusError = undefined;
    control.emit('changed');
    const ok = await as(NOBODY, M, MI, 'Describe');
    assert.ok(ok.ok, ok.message);
    assert.ok(log.lines.some((l) => l.includes('core exploded')));
  });

  test('a second instance cannot take the name, and nobody may own it', async () => {
    await assert.rejects(startDbusService(new FakeControl(), captureLogger(), { busAddress: bus?.address }),
      (e: unknown) => e instanceof DbusServiceError && e.code === 'NameTaken');
    const still = await as(NOBODY, M, MI, 'GetNetworks');
    assert.ok(still.ok, 'the first instance still answers');
    const take = await call((bus as PrivateBus).address, NOBODY, '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'RequestName', 'su',
      ['no.nntb.DynMHS', 4], 'org.freedesktop.DBus');
    assertError(take, 'org.freedesktop.DBus.Error.AccessDenied', 'nobody owning the name');
  });

  test('an unreachable bus is a typed error', async () => {
    await assert.rejects(startDbusService(new FakeControl(), captureLogger(), { busAddress: `unix:path=${dir}/no-such-socket` }),
      (e: unknown) => e instanceof DbusServiceError && e.code === 'BusUnavailable');
  });

  test('without polkitd: root is still allowed, everyone else is refused', async () => {
    await polkit?.stop();
    polkit = undefined;
    const r = await as(ROOT, M, MI, 'SetLogLevel', 'u', [3]);
    assert.ok(r.ok, r.message);
    assertError(await as(DAEMON, M, MI, 'SetLogLevel', 'u', [3]), `${E}NotAuthorized`, 'daemon without polkit');
    assertError(await as(NOBODY, M, MI, 'Reload'), `${E}NotAuthorized`, 'nobody without polkit');
    assert.ok(log.lines.some((l) => l.includes('polkit is not available')));
  });
});
