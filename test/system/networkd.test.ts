// The Debian package under systemd with systemd-networkd managing wan1 and wan2 (and no
// NetworkManager: masked in this container), on this machine's OS booted in a container
// (see harness.ts). The default configuration (SOURCE=auto) must find networkd; links
// taken down and up lose and regain their tables; networkd reconfiguring a link does not
// leave the policy broken; restart, kill -9, stop and purge as with NetworkManager.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Container, requireHostTools, systemSkipReason, waitUntil, type Policy } from './harness';
import { DEB_BUILD_TOOLS, buildDeb, ensureNodejsPackage, inContainer } from './deb';
import { assertNoPolicy, filesOutsideUsr, leftInUsr, service, tableOf, waitActive, waitForPolicy } from './checks';
import { PolicyWatch, describeAbsence } from './watch';

const skip = systemSkipReason();

/** The policy once networkd has configured both links and nothing changed for a second. */
async function settledPolicy(c: Container): Promise<Policy> {
  for (const dev of ['wan1', 'wan2']) {
    await waitUntil(`networkd to configure ${dev}`, async () => /configured/.test(await c.exec(['networkctl', '--no-legend', 'list', dev])), 30_000, 100);
  }
  return waitUntil('the policy to stay the same for a second', async () => {
    const first = await waitForPolicy(c, ['wan1', 'wan2']);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.deepEqual(await waitForPolicy(c, ['wan1', 'wan2']), first);
    return first;
  }, 30_000, 100);
}

describe('the Debian package under systemd with systemd-networkd (container)', { skip, timeout: 240_000 }, () => {
  let c: Container;
  let deb: string;
  let baseline: string[];
  let baselineUsr: string[];
  let policy: Policy;
  let installed = false;
  const requireInstalled = (): void => assert.ok(installed, 'dynmhs is not installed: see the first test');

  before(async () => {
    requireHostTools(DEB_BUILD_TOOLS);
    const built = buildDeb();
    built.catch(() => undefined);
    c = await Container.boot({ manager: 'networkd' });
    console.log(`# container booted in ${c.bootMs} ms; ${await ensureNodejsPackage(c)}`);
    for (const dev of ['wan1', 'wan2']) {
      await waitUntil(`networkd to configure ${dev}`, async () => (await c.addresses(dev, 4)).length > 0 && (await c.addresses(dev, 6)).length > 0, 60_000, 100);
    }
    baseline = await filesOutsideUsr(c);
    baselineUsr = leftInUsr(c);
    deb = await built;
  });
  after(async () => { await c?.destroy(); });

  test('apt install: active within seconds, SOURCE=auto finds networkd, a table per link', async () => {
    const started = Date.now();
    await c.exec(['apt-get', '-y', '-q', 'install', inContainer(deb)], { timeoutMs: 60_000 });
    await waitActive(c);
    console.log(`# apt-get install to active: ${Date.now() - started} ms`);
    assert.equal((await service(c)).restarts, 0);
    // the package restarted networkd (its networkd.conf.d drop-in is read only at start), which
    // configures both links again: the baseline is the policy once that has settled
    policy = await settledPolicy(c);
    const status = JSON.parse(await c.exec(['dynmhsctl', '--json', 'status'])) as { source: string };
    assert.match(status.source, /networkd/);
    installed = true;
  });

  test('networkctl down and up: a link loses its rules and table, and gets the same table back', async () => {
    requireInstalled();
    await c.exec(['networkctl', 'down', 'wan2']);
    await waitForPolicy(c, ['wan1']);
    await c.exec(['networkctl', 'up', 'wan2']);
    const back = await waitForPolicy(c, ['wan1', 'wan2']);
    assert.equal(tableOf(back, 'wan2'), tableOf(policy, 'wan2'));
    policy = back;
  });

  test('networkctl reconfigure wan1: wan2\'s rules and routes stay, and the policy is whole again afterwards', async () => {
    requireInstalled();
    const watch = await PolicyWatch.start(c);
    await c.exec(['networkctl', 'reconfigure', 'wan1']);
    await waitUntil('wan1 to be configured again', async () => /configured/.test(await c.exec(['networkctl', '--no-legend', 'list', 'wan1'])), 30_000, 100);
    // networkd may put wan1's prefix route back with another metric than the kernel's: the
    // rules are the same, and the table holds a copy of whatever main holds now
    const again = await settledPolicy(c);
    assert.deepEqual(again.rules, policy.rules);
    const report = await watch.stop();
    console.log(`# networkctl reconfigure wan1: ${describeAbsence(report)}`);
    // wan1's own rules follow its addresses, which a reconfigure drops and gets again; the
    // other link's must stay: the package's networkd.conf.d drop-in tells networkd to leave
    // rules and routes it did not make alone
    const other = tableOf(policy, 'wan2')!;
    const touched = [...report.rules.gaps, ...report.routes.gaps].filter((g) => g.key.endsWith(`lookup ${other}`) || g.key.endsWith(`table ${other}`));
    assert.deepEqual(touched, [], `reconfiguring wan1 removed wan2's rules or routes (networkd without dynmhs's networkd.conf.d drop-in in effect?): ${describeAbsence(report)}`);
    assert.deepEqual(again.routes.filter((r) => r.includes(`table ${other} `)), policy.routes.filter((r) => r.includes(`table ${other} `)));
    policy = again;
  });

  test('systemctl restart keeps every rule and route in place', async () => {
    requireInstalled();
    const before = await service(c);
    const watch = await PolicyWatch.start(c);
    await c.exec(['systemctl', 'restart', 'dynmhs'], { timeoutMs: 30_000 });
    await waitActive(c, { notPid: before.mainPid });
    await waitForPolicy(c, ['wan1', 'wan2']);
    const report = await watch.stop();
    console.log(`# systemctl restart (networkd): ${describeAbsence(report)}`);
    assert.deepEqual(await c.policy(), policy);
    assert.equal(report.rules.maxMs, 0, describeAbsence(report));
    assert.equal(report.routes.maxMs, 0, describeAbsence(report));
  });

  test('kill -9 of the main process: restarted by systemd, converges with nothing twice', async () => {
    requireInstalled();
    const before = await service(c);
    await c.exec(['kill', '-9', String(before.mainPid)]);
    const after = await waitActive(c, { notPid: before.mainPid, timeoutMs: 20_000 });
    assert.equal(after.restarts, before.restarts + 1);
    assert.deepEqual(await waitForPolicy(c, ['wan1', 'wan2']), policy);
  });

  test('systemctl stop leaves nothing of protocol 249; apt purge leaves nothing behind', async () => {
    requireInstalled();
    await c.exec(['systemctl', 'stop', 'dynmhs'], { timeoutMs: 30_000 });
    await assertNoPolicy(c, 'after systemctl stop');
    await c.exec(['apt-get', '-y', '-q', 'purge', 'dynmhs'], { timeoutMs: 60_000 });
    await assertNoPolicy(c, 'after apt purge');
    assert.equal((await c.attempt(['systemctl', 'cat', 'dynmhs.service'])).code, 1, 'systemd still knows dynmhs.service');
    assert.deepEqual(leftInUsr(c), baselineUsr, 'left in /usr');
    const now = await filesOutsideUsr(c);
    assert.deepEqual({ added: now.filter((f) => !baseline.includes(f)), removed: baseline.filter((f) => !now.includes(f)) },
      { added: [], removed: [] }, 'files outside /usr');
  });
});
