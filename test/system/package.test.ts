// The Debian package as a user gets it, on this machine's OS booted with systemd in a
// container (see harness.ts), with NetworkManager managing wan1 and wan2: `apt install
// ./dynmhs_*.deb` starts the service at once; NetworkManager connections get and lose
// their tables; busctl, dynmhsctl and polkit on the real system bus; reload, restart,
// upgrade and kill -9 under systemd (with the time a rule or route is absent); the live
// unit's security exposure; stop, remove and purge leave nothing behind. The tests run in
// order on one container and each leaves the service as the next expects it.
// The package Depends on nodejs (>= 20): where this machine's Node is no dpkg package, the
// container gets a placeholder `nodejs` package for it (deb.ts, ensureNodejsPackage).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Container, REPO, requireHostTools, systemSkipReason, sleep, type Policy } from './harness';
import { DEB_BUILD_TOOLS, buildDeb, ensureNodejsPackage, inContainer } from './deb';
import { assertNoPolicy, filesOutsideUsr, leftInUsr, service, tableOf, waitActive, waitForPolicy } from './checks';
import { PolicyWatch, describeAbsence } from './watch';

const skip = systemSkipReason();
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const NEWER = `${VERSION}+test1`;
const CONFIG = '/etc/dynmhs/dynmhs.conf';

describe('the Debian package under systemd with NetworkManager (container)', { skip, timeout: 300_000 }, () => {
  let c: Container;
  let deb: string;
  let newer: Promise<string>;
  let baseline: string[];
  let baselineUsr: string[];
  let policy: Policy;
  /** The tests after the first one build on its installation. */
  let installed = false;
  const requireInstalled = (): void => assert.ok(installed, 'dynmhs is not installed: see the first test');

  const apt = (...args: string[]): Promise<string> => c.exec(['apt-get', '-y', '-q', ...args], { timeoutMs: 120_000 });

  /** Install a build, returning how long from the start of apt to the service being active. */
  async function install(path: string): Promise<number> {
    const started = Date.now();
    // the same timeout turns a start that waits for a bus name into a failure with the journal
    const r = await c.attempt(['apt-get', '-y', '-q', 'install', inContainer(path)], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, `apt-get install failed after ${Date.now() - started} ms:\n${r.stdout}${r.stderr}\n${await c.journal('dynmhs.service')}`);
    await waitActive(c);
    return Date.now() - started;
  }

  before(async () => {
    requireHostTools(DEB_BUILD_TOOLS);
    // the builds run while the container boots and NetworkManager brings the connections up
    const built = buildDeb();
    newer = built.then(() => buildDeb(NEWER));
    newer.catch(() => undefined);
    c = await Container.boot({ manager: 'networkmanager' });
    console.log(`# container booted in ${c.bootMs} ms; ${await ensureNodejsPackage(c)}`);
    await c.addNmProfiles();
    await c.nmUp('wan1', 'wan2');
    baseline = await filesOutsideUsr(c);
    baselineUsr = leftInUsr(c);
    deb = await built;
  });
  after(async () => { await c?.destroy(); });

  test('apt install: enabled and active within seconds (bus policy live at once, no restart), a table per connection', async () => {
    const ms = await install(deb);
    console.log(`# apt-get install to active: ${ms} ms`);
    assert.ok(ms < 15_000, `${ms} ms`);
    assert.equal((await c.exec(['systemctl', 'is-enabled', 'dynmhs'])).trim(), 'enabled');
    assert.equal((await service(c)).restarts, 0);
    policy = await waitForPolicy(c, ['wan1', 'wan2']);
    installed = true;
  });

  test('busctl introspect, dynmhsctl status and --json on the system bus', async () => {
    requireInstalled();
    const introspection = await c.exec(['busctl', 'introspect', '--no-pager', 'no.nntb.DynMHS', '/no/nntb/DynMHS']);
    for (const member of ['no.nntb.DynMHS1', '.GetNetworks', '.Reload', '.Networks', 'org.freedesktop.DBus.ObjectManager']) {
      assert.ok(introspection.includes(member), `${member} missing from:\n${introspection}`);
    }
    const status = await c.exec(['dynmhsctl', 'status']);
    for (const dev of ['wan1', 'wan2']) assert.match(status, new RegExp(`\\b${dev}\\b.*\\b${tableOf(policy, dev)}\\b`), status);
    const json = JSON.parse(await c.exec(['dynmhsctl', '--json', 'status'])) as { source: string; networks: Array<{ interface: string; table: number; rules: number }> };
    assert.match(json.source, /networkmanager/);
    assert.deepEqual(json.networks.map((n) => [n.interface, String(n.table), n.rules]).sort(),
      [['wan1', tableOf(policy, 'wan1'), 2], ['wan2', tableOf(policy, 'wan2'), 2]]);
  });

  test('polkit: an unprivileged user may read but not reload; root may', async () => {
    requireInstalled();
    assert.equal((await c.asNobody(['dynmhsctl', 'status'])).code, 0, 'reading is open to every user');
    const refused = await c.asNobody(['dynmhsctl', 'reload']);
    assert.equal(refused.code, 4, `nobody's reload: exit ${refused.code} ${refused.stdout}${refused.stderr}`);
    const refusedLevel = await c.asNobody(['dynmhsctl', 'log-level', 'debug']);
    assert.equal(refusedLevel.code, 4, `nobody's log-level: exit ${refusedLevel.code} ${refusedLevel.stderr}`);
    assert.equal((await c.attempt(['dynmhsctl', 'reload'])).code, 0);
  });

  test('NetworkManager: a connection taken down loses its rules and table, brought up gets them back', async () => {
    requireInstalled();
    await c.nmDown('wan2');
    await waitForPolicy(c, ['wan1']);
    await c.nmUp('wan2');
    const back = await waitForPolicy(c, ['wan1', 'wan2']);
    assert.equal(tableOf(back, 'wan2'), tableOf(policy, 'wan2'), 'a connection keeps its table');
    policy = back;
  });

  test('systemctl reload changes nothing that did not change', async () => {
    requireInstalled();
    const before = await service(c);
    const watch = await PolicyWatch.start(c);
    await c.exec(['systemctl', 'reload', 'dynmhs']);
    await sleep(1_000);
    const report = await watch.stop();
    assert.equal(report.events, 0, describeAbsence(report));
    assert.deepEqual(await c.policy(), policy);
    assert.equal((await service(c)).mainPid, before.mainPid);
  });

  test('systemctl reload applies EXCLUDE= and only that; removing it brings the network back', async () => {
    requireInstalled();
    const original = await c.exec(['cat', CONFIG]);
    await c.exec(['sh', '-c', `echo EXCLUDE=interface:wan2 >> ${CONFIG}`]);
    const watch = await PolicyWatch.start(c);
    try {
      await c.exec(['systemctl', 'reload', 'dynmhs']);
      await waitForPolicy(c, ['wan1'], 10_000);
      const report = await watch.stop();
      assert.deepEqual(report.rules.gaps.filter((g) => !g.key.includes(`lookup ${tableOf(policy, 'wan2')}`)), [], `wan1 was touched: ${describeAbsence(report)}`);
    } finally {
      await c.exec(['sh', '-c', `cat > ${CONFIG}`], { input: original });
      await c.exec(['systemctl', 'reload', 'dynmhs']);
    }
    policy = await waitForPolicy(c, ['wan1', 'wan2'], 10_000);
  });

  test('systemctl restart keeps every rule and route in place (3 restarts)', async () => {
    requireInstalled();
    for (let i = 1; i <= 3; i++) {
      const before = await service(c);
      const watch = await PolicyWatch.start(c);
      await c.exec(['systemctl', 'restart', 'dynmhs'], { timeoutMs: 30_000 });
      await waitActive(c, { notPid: before.mainPid });
      await waitForPolicy(c, ['wan1', 'wan2']);
      const report = await watch.stop();
      console.log(`# systemctl restart ${i}: ${describeAbsence(report)}`);
      assert.deepEqual(await c.policy(), policy);
      assert.equal(report.rules.maxMs, 0, describeAbsence(report));
      assert.equal(report.routes.maxMs, 0, describeAbsence(report));
    }
  });

  test('an upgrade to a newer build keeps the edited configuration and every rule and route in place', async () => {
    requireInstalled();
    const path = await newer;
    await c.exec(['sh', '-c', `echo '# edited by the admin' >> ${CONFIG}`]);
    const before = await service(c);
    const watch = await PolicyWatch.start(c);
    await apt('install', inContainer(path));
    await waitActive(c, { notPid: before.mainPid });
    await waitForPolicy(c, ['wan1', 'wan2']);
    const report = await watch.stop();
    console.log(`# upgrade ${VERSION} -> ${NEWER}: ${describeAbsence(report)}`);
    assert.equal((await c.exec(['dpkg-query', '-W', '-f', '${Version}', 'dynmhs'])).trim(), NEWER);
    assert.match(await c.exec(['cat', CONFIG]), /# edited by the admin/, 'the edited conffile was replaced');
    assert.deepEqual(await c.policy(), policy);
    assert.equal(report.rules.maxMs, 0, describeAbsence(report));
    assert.equal(report.routes.maxMs, 0, describeAbsence(report));
  });

  test('kill -9 of the main process: systemd restarts it and it converges, nothing twice', async () => {
    requireInstalled();
    const before = await service(c);
    await c.exec(['kill', '-9', String(before.mainPid)]);
    const after = await waitActive(c, { notPid: before.mainPid, timeoutMs: 20_000 });
    assert.equal(after.restarts, before.restarts + 1);
    const converged = await waitForPolicy(c, ['wan1', 'wan2']);
    assert.deepEqual(converged, policy);
  });

  test('systemd-analyze security on the running unit: exposure at most 2.0', async () => {
    requireInstalled();
    const out = await c.exec(['systemd-analyze', 'security', '--no-pager', 'dynmhs.service']);
    const exposure = Number(/Overall exposure level for dynmhs\.service: (\d+\.\d+)/.exec(out)?.[1]);
    console.log(`# systemd-analyze security dynmhs.service (running): ${exposure}`);
    assert.ok(exposure <= 2.0, `exposure ${exposure}:\n${out}`);
  });

  test('systemctl stop leaves nothing of protocol 249; start brings it all back', async () => {
    requireInstalled();
    await c.exec(['systemctl', 'stop', 'dynmhs'], { timeoutMs: 30_000 });
    await assertNoPolicy(c, 'after systemctl stop');
    await c.exec(['systemctl', 'start', 'dynmhs'], { timeoutMs: 30_000 });
    assert.deepEqual(await waitForPolicy(c, ['wan1', 'wan2']), policy);
  });

  test('apt remove stops it and keeps the configuration; apt purge leaves nothing behind', async () => {
    requireInstalled();
    await apt('remove', 'dynmhs');
    await assertNoPolicy(c, 'after apt remove');
    assert.match(await c.exec(['cat', CONFIG]), /# edited by the admin/);
    await apt('purge', 'dynmhs');
    await assertNoPolicy(c, 'after apt purge');
    await purged();
  });

  test('installed again: active within seconds; purged again: nothing left', async () => {
    const ms = await install(deb);
    console.log(`# second apt-get install to active: ${ms} ms`);
    assert.equal((await service(c)).restarts, 0);
    await waitForPolicy(c, ['wan1', 'wan2']);
    await apt('purge', 'dynmhs');
    await assertNoPolicy(c, 'after the second apt purge');
    await purged();
  });

  async function purged(): Promise<void> {
    assert.equal((await c.attempt(['dpkg-query', '-W', 'dynmhs'])).code, 1, 'dpkg still knows dynmhs');
    assert.equal((await c.attempt(['systemctl', 'cat', 'dynmhs.service'])).code, 1, 'systemd still knows dynmhs.service');
    assert.notEqual((await c.attempt(['busctl', 'status', 'no.nntb.DynMHS'])).code, 0, 'no.nntb.DynMHS is still on the bus');
    assert.deepEqual(leftInUsr(c), baselineUsr, 'left in /usr');
    const now = await filesOutsideUsr(c);
    assert.deepEqual({ added: now.filter((f) => !baseline.includes(f)), removed: baseline.filter((f) => !now.includes(f)) },
      { added: [], removed: [] }, 'files outside /usr');
  }
});
