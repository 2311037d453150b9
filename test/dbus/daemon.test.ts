// The real daemon core (over the in-memory FakeKernel) behind the D-Bus service, driven
// by dynmhsctl: proves the wiring main.ts uses. No polkitd on this bus, so the service
// falls back to "only root" (the documented behaviour without polkit): dynmhsctl runs
// as root for changes and as nobody for reads.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Daemon } from '../../src/daemon';
import { FakeKernel } from '../../src/kernel/fake';
import type { Config } from '../../src/config/types';
import { startDbusService } from '../../src/dbus/service';
import type { DbusService } from '../../src/dbus/service';
import { REPO, isRoot, projectFor, run, startSystemBus } from '../helpers/dbus-harness';
import type { PrivateBus, RunResult } from '../helpers/dbus-harness';
import { captureLogger } from '../helpers/dbus-fake-control';

/** dynmhsctl as uid `uid` can reach it. */
const ctlFor = (uid: number | undefined): string => join(projectFor(uid), 'dist', 'src', 'cli', 'dynmhsctl.js');
const NOBODY = 65534;

function config(networks: Array<[string, number]>): Config {
  return {
    networks: networks.map(([value, table]) => ({ match: 'interface', value, table, definedAt: 'test' })),
    logLevel: 2, logColor: false, source: 'static', include: [], exclude: [],
    tableRange: { first: 10000, last: 19999 }, stateDirectory: '/nonexistent', tableIdleSeconds: 86400, dbus: true,
  };
}

const skip = isRoot() ? false : 'needs root: dynmhsctl must run as root (allowed without polkit) and as nobody via setpriv';

describe('the real daemon core behind no.nntb.DynMHS, driven by dynmhsctl', { skip }, () => {
  let dir = '';
  let bus: PrivateBus | undefined;
  let service: DbusService | undefined;
  const kernel = new FakeKernel();
  const log = captureLogger();
  const daemon = new Daemon({ kernel, log, config: config([['wan1', 2000]]), loadConfig: () => config([['wan1', 2000]]), version: '9.9.9' });
  const ctl = (args: string[], uid?: number): Promise<RunResult> =>
    run(['node', ctlFor(uid), ...args], { uid, env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus?.address } });

  before(async () => {
    dir = mkdtempSync('/tmp/dynmhs-dbus-daemon-test-');
    chmodSync(dir, 0o755);
    bus = await startSystemBus(join(dir, 'bus'), [join(REPO, 'dbus', 'no.nntb.DynMHS.conf')]);
    kernel.addLink({ index: 3, name: 'wan1', up: true, loopback: false, pointToPoint: false });
    kernel.addLink({ index: 4, name: 'wan2', up: true, loopback: false, pointToPoint: false });
    kernel.addAddress({ index: 3, family: 4, local: '10.1.0.2', prefixLength: 24, scope: 0 });
    kernel.addAddress({ index: 4, family: 4, local: '10.2.0.2', prefixLength: 24, scope: 0 });
    await daemon.start();
    service = await startDbusService(daemon, log, { busAddress: bus.address, polkit: { timeoutMs: 2000 } });
  });

  after(async () => {
    try { await service?.stop(); } finally {
      try { await daemon.stop(); } finally {
        try { await bus?.stop(); } finally { if (dir) rmSync(dir, { recursive: true, force: true }); }
      }
    }
  });

  test('status, add, remove and log-level go through to the core and the kernel', async () => {
    let r = await ctl(['--json', 'status'], NOBODY);
    assert.equal(r.code, 0, r.stderr);
    const status = JSON.parse(r.stdout);
    assert.equal(status.version, '9.9.9');
    assert.deepEqual(status.networks.map((n: { interface: string; state: string; rules: number }) => [n.interface, n.state, n.rules]),
      [['wan1', 'active', 1]]);

    r = await ctl(['add', 'wan2:3000'], NOBODY);
    assert.equal(r.code, 4, `nobody without polkit: ${r.stderr}`);
    r = await ctl(['add', 'wan2:3000']);
    assert.equal(r.code, 0, r.stderr);
    const added = () => kernel.hasRule({ family: 4, priority: 3000, table: 3000, src: '10.2.0.2', srcLength: 32, protocol: 249, plain: true });
    for (let i = 0; i < 100 && !added(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.ok(added(), 'the rule for wan2 is in the (fake) kernel');
    r = await ctl(['rules'], NOBODY);
    assert.match(r.stdout, /3000\s+ipv4\s+from 10\.2\.0\.2 lookup 3000\s+wan2/);
    r = await ctl(['add', 'wan3:3000']);
    assert.notEqual(r.code, 0, 'table 3000 is taken');
    r = await ctl(['remove', 'wan2']);
    assert.equal(r.code, 0, r.stderr);
    r = await ctl(['log-level', 'debug']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(log.level(), 1);
    r = await ctl(['reload']);
    assert.equal(r.code, 0, r.stderr);
  });
});
