// dynmhsctl against the real service on a private system bus with the real polkitd:
// output, --json, and exit codes for "not running", "access denied" and the rest.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startDbusService } from '../../src/dbus/service';
import type { DbusService } from '../../src/dbus/service';
import { parseArgs, parseLevel, parseMapping, render } from '../../src/cli/dynmhsctl';
import { CtlError } from '../../src/cli/client';
import { REPO, isRoot, projectFor, run, startPolkitd, startSystemBus } from '../helpers/dbus-harness';
import type { Polkitd, PrivateBus, RunResult } from '../helpers/dbus-harness';
import { FakeControl, captureLogger, fakeNetwork } from '../helpers/dbus-fake-control';

/** dynmhsctl as uid `uid` can reach it. */
const ctlFor = (uid: number | undefined): string => join(projectFor(uid), 'dist', 'src', 'cli', 'dynmhsctl.js');
const NOBODY = 65534;

const wan1 = fakeNetwork('wan1', 2000, {
  interfaceIndex: 7, state: 'active',
  addresses: [{ family: 4, address: '10.101.0.2', prefixLength: 24 }, { family: 6, address: 'fd00:101::2', prefixLength: 64 }],
  rules: [{ family: 4, priority: 2000, from: '10.101.0.2', table: 2000 }, { family: 6, priority: 2000, from: 'fd00:101::2', table: 2000 }],
  routes: [
    { family: 4, destination: 'default', gateway: '10.101.0.1', device: 'wan1', metric: 100, prefsrc: '', scope: 'universe', type: 'unicast' },
    { family: 6, destination: 'default', gateway: 'fe80::1', device: 'wan1', metric: 1024, prefsrc: '', scope: 'universe', type: 'unicast' },
  ],
});
const lte = fakeNetwork('wwan0', 4000, {
  interfaceIndex: 9, state: 'active', origin: 'networkmanager', connectionId: 'Telia LTE', deviceType: 'gsm',
  addresses: [{ family: 4, address: '100.64.1.2', prefixLength: 30 }],
  rules: [{ family: 4, priority: 4000, from: '100.64.1.2', table: 4000 }],
  routes: [{ family: 4, destination: 'default', gateway: '', device: 'wwan0', metric: 700, prefsrc: '', scope: 'link', type: 'unicast' }],
});

describe('dynmhsctl argument parsing and rendering (no bus needed)', () => {
  test('commands, --json and usage errors', () => {
    assert.deepEqual(parseArgs([]), { json: false, command: 'status', args: [] });
    assert.deepEqual(parseArgs(['--json', 'routes', 'wan1']), { json: true, command: 'routes', args: ['wan1'] });
    assert.equal(parseArgs(['-h']), 'help');
    for (const bad of [['frobnicate'], ['--bogus'], ['add'], ['add', 'a:1', 'b:2'], ['status', 'x'], ['--json', 'reload']]) {
      assert.throws(() => parseArgs(bad), (e: unknown) => e instanceof CtlError && e.exitCode === 2, bad.join(' '));
    }
    assert.deepEqual(parseMapping('wan1:2000'), ['wan1', 2000]);
    for (const bad of ['wan1', 'wan1:', ':2000', 'wan1:2000x', 'wan1:-1', 'wan1:4294969296']) {
      assert.throws(() => parseMapping(bad), (e: unknown) => e instanceof CtlError && e.exitCode === 2, bad);
    }
    assert.equal(parseLevel('debug'), 1);
    assert.equal(parseLevel('5'), 5);
    assert.throws(() => parseLevel('6'), CtlError);
  });

  test('status table', () => {
    const text = render('status', [], false, { version: '1', source: 'auto' as never, state: 'running', networks: [
      { ...wan1, path: '/x' }, { ...lte, path: '/y' }] });
    assert.equal(text, [
      'dynmhs 1: running, source auto, 2 networks',
      '',
      'NETWORK    INTERFACE  TABLE  ADDRESSES                      RULES  ROUTES  ORIGIN          STATE',
      'wan1       wan1       2000   10.101.0.2/24, fd00:101::2/64  2      2       static          active',
      'Telia LTE  wwan0      4000   100.64.1.2/30                  1      1       networkmanager  active',
    ].join('\n'));
  });

  test('status table with MPTCP on: flags and endpoint ids, a foreign one marked', () => {
    const text = render('status', [], false, { version: '1', source: 'auto' as never, state: 'running', networks: [
      { ...wan1, path: '/x', mptcpFlags: 'subflow', endpoints: [
        { id: 1, address: '10.101.0.2', flags: 'subflow', own: true }, { id: 77, address: 'fd00:101::2', flags: 'signal', own: false }] },
      { ...lte, path: '/y', mptcpFlags: 'off', endpoints: [] }] });
    assert.equal(text.split('\n').slice(2).join('\n'), [
      'NETWORK    INTERFACE  TABLE  ADDRESSES                      RULES  ROUTES  MPTCP                  ORIGIN          STATE',
      'wan1       wan1       2000   10.101.0.2/24, fd00:101::2/64  2      2       subflow 1,77(foreign)  static          active',
      'Telia LTE  wwan0      4000   100.64.1.2/30                  1      1       -                      networkmanager  active',
    ].join('\n'));
  });
});

const skip = isRoot() ? false
  : 'needs root: polkitd must be started as root, and dynmhsctl runs as uid nobody via setpriv (CI runs as root)';

describe('dynmhsctl against no.nntb.DynMHS on a private system bus', { skip }, () => {
  let dir = '';
  let bus: PrivateBus | undefined;
  let polkit: Polkitd | undefined;
  let service: DbusService | undefined;
  const control = new FakeControl('0.1.0-test', 'networkmanager');
  const ctl = (args: string[], uid?: number, address?: string): Promise<RunResult> =>
    run(['node', ctlFor(uid), ...args], { uid, env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: address ?? bus?.address } });

  before(async () => {
    dir = mkdtempSync('/tmp/dynmhs-ctl-test-');
    chmodSync(dir, 0o755);
    bus = await startSystemBus(join(dir, 'bus'), [join(REPO, 'dbus', 'no.nntb.DynMHS.conf')]);
    polkit = await startPolkitd(join(dir, 'polkit'), bus.address, [join(REPO, 'polkit', 'no.nntb.DynMHS.policy')], {});
  });

  after(async () => {
    try { await service?.stop(); } finally {
      try { await polkit?.stop(); } finally {
        try { await bus?.stop(); } finally { if (dir) rmSync(dir, { recursive: true, force: true }); }
      }
    }
  });

  test('daemon not running: exit 3 and a message that says so', async () => {
    const r = await ctl(['status'], NOBODY);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /dynmhs is not running/);
    const noBus = await ctl(['status'], NOBODY, `unix:path=${dir}/no-such-socket`);
    assert.equal(noBus.code, 3, noBus.stderr);
    assert.match(noBus.stderr, /cannot reach the system bus/);
    // a usage error is reported as such even without a daemon
    const usage = await ctl(['add', 'wan1'], NOBODY);
    assert.equal(usage.code, 2, usage.stderr);
    service = await startDbusService(control, captureLogger(), { busAddress: bus?.address });
    control.setNetworks([wan1, lte]);
  });

  test('status, networks, rules, routes, describe as nobody, with and without --json', async () => {
    const status = await ctl(['status'], NOBODY);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^dynmhs 0\.1\.0-test: running, source networkmanager, 2 networks\n/);
    assert.match(status.stdout, /Telia LTE\s+wwan0\s+4000\s+100\.64\.1\.2\/30\s+1\s+1\s+networkmanager\s+active/);
    const sj = JSON.parse((await ctl(['--json', 'status'], NOBODY)).stdout);
    assert.deepEqual(sj.networks[0], { network: 'wan1', interface: 'wan1', table: 2000, addresses: ['10.101.0.2/24', 'fd00:101::2/64'],
      rules: 2, routes: 2, origin: 'static', state: 'active' });

    const networks = await ctl(['networks'], NOBODY);
    assert.match(networks.stdout, /wwan0\s+9\s+4000\s+4000\s+networkmanager\s+active\s+Telia LTE\s+gsm/);
    assert.equal(JSON.parse((await ctl(['networks', '--json'], NOBODY)).stdout)[1].path, '/no/nntb/DynMHS/Network/wwan0');

    const rules = await ctl(['rules'], NOBODY);
    assert.match(rules.stdout, /2000\s+ipv4\s+from 10\.101\.0\.2 lookup 2000\s+wan1/);
    assert.equal(JSON.parse((await ctl(['--json', 'rules'], NOBODY)).stdout).length, 3);

    const routes = await ctl(['routes', 'Telia LTE'], NOBODY);
    assert.equal(routes.code, 0, routes.stderr);
    assert.match(routes.stdout, /4000\s+ipv4\s+default\s+-\s+wwan0\s+700/);
    assert.doesNotMatch(routes.stdout, /wan1/);
    assert.equal(JSON.parse((await ctl(['--json', 'routes', '2000'], NOBODY)).stdout).length, 2);
    const none = await ctl(['routes', 'nosuch'], NOBODY);
    assert.equal(none.code, 5, none.stderr);

    const described = JSON.parse((await ctl(['describe'], NOBODY)).stdout);
    assert.equal(described.networks.length, 2);
  });

  test('changes: access denied for nobody (exit 4), allowed for root, with exit codes for the failures', async () => {
    const denied = await ctl(['add', 'wan2:2001'], NOBODY);
    assert.equal(denied.code, 4, denied.stderr);
    assert.match(denied.stderr, /access denied/);
    for (const args of [['reload'], ['remove', 'wan1'], ['log-level', 'debug']]) {
      const r = await ctl(args, NOBODY);
      assert.equal(r.code, 4, `${args.join(' ')}: ${r.stderr}`);
    }
    let r = await ctl(['add', 'wan2:2001']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /manages wan2 with table 2001/);
    r = await ctl(['add', 'wan2:2002']);
    assert.equal(r.code, 6, r.stderr);
    r = await ctl(['add', 'wan3:999']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /out of range/);
    r = await ctl(['remove', 'wan2']);
    assert.equal(r.code, 0, r.stderr);
    r = await ctl(['remove', 'wan2']);
    assert.equal(r.code, 5, r.stderr);
    r = await ctl(['log-level', 'warning']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(control.calls.at(-1), { method: 'setLogLevel', level: 3 });
    r = await ctl(['reload']);
    assert.equal(r.code, 0, r.stderr);
    r = await ctl(['frobnicate']);
    assert.equal(r.code, 2, r.stderr);
  });
});
