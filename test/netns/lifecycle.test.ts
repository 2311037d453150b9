// Lifecycle on the real kernel: SIGTERM/SIGHUP/SIGKILL, restarts, foreign entries, self-healing.
// Needs root: it creates network namespaces and veth pairs (skipped otherwise).

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DaemonProcess, leftovers, startConverged, waitConverged } from '../helpers/daemon';
import {
  IpMonitor, isOurs, netnsSkipReason, README_NETS, routeKey, ruleKey, Topology, WAN1, WAN2,
} from '../helpers/netns';
import { eventually, holdsFor, sleep } from '../helpers/wait';

const skip = netnsSkipReason();

/** A fingerprint of every dynmhs entry: to compare "intact" across restarts. */
function ourState(topo: Topology): string[] {
  const out: string[] = [];
  for (const fam of [4, 6] as const) {
    out.push(...topo.ourRules(fam).map((r) => `rule ${ruleKey(r)}`));
    out.push(...topo.routes(fam, 'all').filter(isOurs).map((r) => `route ${r.table} ${routeKey(r)}`));
  }
  return out.sort();
}

function assertNoDuplicates(topo: Topology): void {
  const s = ourState(topo);
  assert.equal(new Set(s).size, s.length, `duplicates: ${s.join('\n')}`);
}

describe('restarts', { skip }, () => {
  let topo: Topology;
  let d: DaemonProcess | undefined;
  before(() => { topo = Topology.create(); });
  after(() => {
    d?.killNow();
    topo?.destroy();
  });

  it('start / SIGTERM three times in a row: same rules and tables each time, clean after each stop', async () => {
    let first: string[] | undefined;
    for (let i = 0; i < 3; i++) {
      d = await startConverged(topo);
      const s = ourState(topo);
      if (first) assert.deepEqual(s, first, `run ${i + 1} differs`);
      first ??= s;
      assert.equal(await d.stop('SIGTERM', 5000), 0, d.output().slice(-2000));
      assert.deepEqual(leftovers(topo), [], `after stop ${i + 1}`);
    }
  });

  it('SIGKILL and restart three times: adopts its entries, rules intact, no duplicates, no errors', async () => {
    d = await startConverged(topo);
    const s0 = ourState(topo);
    for (let i = 0; i < 3; i++) {
      await d.kill();
      assert.deepEqual(ourState(topo), s0, 'entries survive SIGKILL');
      d = await startConverged(topo);
      await holdsFor(() => assert.deepEqual(ourState(topo), s0), 200);
      assertNoDuplicates(topo);
      assert.doesNotMatch(d.output(), /\berror\b.*(exists|EEXIST)/i, d.output().slice(-2000));
    }
  });

  it('after SIGKILL, a restart removes stale entries and adds missing ones', async () => {
    // entries for an extra address and route, then the daemon dies
    topo.batch(topo.host, ['addr add 10.101.0.3/24 dev wan1', 'addr add fd00:101::3/64 dev wan1',
      'route add 192.0.2.0/24 via 10.101.0.1 dev wan1']);
    await waitConverged(topo, d);
    assert.ok(topo.ourRules(4).map(ruleKey).includes('2000: from 10.101.0.3 lookup 2000'));
    await d!.kill();
    // while it is dead: an address and a route go, others come
    topo.batch(topo.host, [
      'addr del 10.101.0.3/24 dev wan1', 'addr del fd00:101::3/64 dev wan1',
      'route del 192.0.2.0/24',
      'addr add 10.102.0.9/24 dev wan2',
      'route add 198.51.100.0/24 via 10.102.0.1 dev wan2 metric 42',
    ]);
    // the stale ones are still in the kernel now
    assert.ok(topo.ourRules(4).map(ruleKey).includes('2000: from 10.101.0.3 lookup 2000'));
    assert.ok(topo.ourRoutes(4, 2000).some((r) => r.dst === '192.0.2.0/24'));
    d = await startConverged(topo);
    const rules4 = topo.ourRules(4).map(ruleKey);
    assert.ok(!rules4.includes('2000: from 10.101.0.3 lookup 2000'), 'stale v4 rule kept');
    assert.ok(!topo.ourRules(6).map(ruleKey).includes('2000: from fd00:101::3 lookup 2000'), 'stale v6 rule kept');
    assert.ok(rules4.includes('3000: from 10.102.0.9 lookup 3000'), 'missing rule not added');
    assert.ok(!topo.ourRoutes(4, 2000).some((r) => r.dst === '192.0.2.0/24'), 'stale route kept');
    assert.ok(topo.ourRoutes(4, 3000).some((r) => r.dst === '198.51.100.0/24' && r.metric === 42), 'missing route');
    assertNoDuplicates(topo);
    assert.equal(await d.stop('SIGTERM', 5000), 0);
    assert.deepEqual(leftovers(topo), []);
    topo.batch(topo.host, ['addr del 10.102.0.9/24 dev wan2', 'route del 198.51.100.0/24']);
  });
});

describe('foreign entries and self-healing', { skip }, () => {
  let topo: Topology;
  let d: DaemonProcess | undefined;
  const foreign4 = [
    'unicast 192.0.2.0/24 via=10.101.0.1 dev=wan1 metric=0 src=- scope=global',
    'unreachable 203.0.113.0/24 via=- dev=- metric=0 src=- scope=global',
  ];
  const foreignRule = '2000: from 192.0.2.1 lookup 2000';

  function foreignPresent(): void {
    const t4 = topo.routes(4, 2000).filter((r) => !isOurs(r)).map(routeKey).sort();
    assert.deepEqual(t4, foreign4);
    const t6 = topo.routes(6, 2000).filter((r) => !isOurs(r)).map((r) => `${r.type ?? 'unicast'} ${r.dst}`);
    assert.deepEqual(t6, ['unreachable 2001:db8:dead::/48']);
    assert.ok(topo.rules(4).filter((r) => !isOurs(r)).map(ruleKey).includes(foreignRule), 'foreign rule gone');
    assert.ok(topo.rules(6).filter((r) => !isOurs(r)).map(ruleKey).includes('2000: from 2001:db8::1 lookup 2000'));
  }

  before(async () => {
    topo = Topology.create();
    topo.batch(topo.host, [
      'route add 192.0.2.0/24 via 10.101.0.1 dev wan1 table 2000',
      'route add unreachable 203.0.113.0/24 table 2000',
      'route add unreachable 2001:db8:dead::/48 table 2000',
      'rule add from 192.0.2.1 lookup 2000 priority 2000',
    ]);
    topo.exec('ip', ['-6', 'rule', 'add', 'from', '2001:db8::1', 'lookup', '2000', 'priority', '2000']);
    foreignPresent();
    d = await startConverged(topo);
  });
  after(() => {
    d?.killNow();
    topo?.destroy();
  });

  it('a foreign rule and foreign routes in table 2000 are left alone', async () => {
    await holdsFor(foreignPresent, 300);
  });

  it('our rule deleted by hand is restored, with a warning', async () => {
    const mark = d!.output().length;
    topo.ip(['rule', 'del', 'from', WAN1.v4, 'lookup', '2000', 'priority', '2000']);
    topo.exec('ip', ['-6', 'rule', 'del', 'from', WAN2.v6, 'lookup', '3000', 'priority', '3000']);
    await eventually(() => {
      assert.ok(topo.ourRules(4).map(ruleKey).includes('2000: from 10.101.0.2 lookup 2000'), 'v4 rule not restored');
      assert.ok(topo.ourRules(6).map(ruleKey).includes('3000: from fd00:102::2 lookup 3000'), 'v6 rule not restored');
    }, 5000);
    await d!.waitForOutput(/warn/i, 3000, mark);
    await waitConverged(topo, d, README_NETS, 5000);
    foreignPresent();
  });

  it('our route deleted by hand is restored', async () => {
    topo.ip(['route', 'del', 'default', 'table', '3000']);
    topo.exec('ip', ['-6', 'route', 'del', 'default', 'dev', 'wan1', 'table', '2000']);
    await waitConverged(topo, d, README_NETS, 5000);
  });

  it('SIGTERM removes only our entries: the foreign ones stay', async () => {
    assert.equal(await d!.stop('SIGTERM', 5000), 0, d!.output().slice(-2000));
    assert.deepEqual(leftovers(topo), []);
    foreignPresent();
  });
});

describe('SIGHUP re-reads the config file', { skip }, () => {
  let topo: Topology;
  let d: DaemonProcess | undefined;
  let dir: string;
  let mon: IpMonitor | undefined;
  before(() => {
    topo = Topology.create();
    topo.addHostLink('wan3');
    topo.batch(topo.host, ['addr add 10.103.0.2/24 dev wan3', 'addr add fd00:103::2/64 dev wan3']);
    dir = mkdtempSync(join(tmpdir(), 'dynmhs-hup-'));
  });
  after(() => {
    mon?.stop();
    d?.killNow();
    topo?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('adds and removes networks, leaves unchanged ones untouched', async () => {
    const conf = join(dir, 'dynmhs.conf');
    writeFileSync(conf, '# ====== Logging ====\nLOGLEVEL=1\nLOGCOLOR=OFF\n\n# ====== Networks ====\n' +
      'NETWORK="wan1:2000"\nNETWORK="wan2:3000"\n');
    d = DaemonProcess.start(topo.host, ['--config', conf]);
    await waitConverged(topo, d, README_NETS);
    const wan1Before = ourState(topo).filter((s) => / 2000\b/.test(s));
    mon = new IpMonitor(topo.host, ['rule', 'route']);
    await mon.ready;

    writeFileSync(conf, 'LOGLEVEL=1\nNETWORK="wan1:2000"\nNETWORK="wan3:4000"   # wan2 removed\n');
    d.signal('SIGHUP');
    const nets = [{ ifName: 'wan1', table: 2000 }, { ifName: 'wan3', table: 4000 }];
    await waitConverged(topo, d, nets, 5000);
    // wan2's rules and routes are gone
    for (const fam of [4, 6] as const) {
      assert.ok(!topo.ourRules(fam).some((r) => r.table === '3000'), `v${fam} wan2 rule left`);
      assert.deepEqual(topo.ourRoutes(fam, 3000).map(routeKey), [], `v${fam} table 3000 left`);
    }
    assert.ok(topo.ourRules(4).map(ruleKey).includes('4000: from 10.103.0.2 lookup 4000'));
    // wan1 untouched: same entries, and never deleted (not even deleted and re-added)
    await sleep(100);
    assert.deepEqual(ourState(topo).filter((s) => / 2000\b/.test(s)), wan1Before);
    const deletions = mon.lines().filter((l) => l.startsWith('Deleted') && /(lookup|table) 2000\b/.test(l));
    assert.deepEqual(deletions, [], 'wan1 entries were deleted and re-added on SIGHUP');
    const deleted3000 = mon.lines().filter((l) => l.startsWith('Deleted') && /lookup 3000\b/.test(l));
    assert.ok(deleted3000.length >= 2, `expected wan2's rules deleted: ${mon.output()}`);
    assert.ok(d.running);
    assert.equal(await d.stop('SIGTERM', 5000), 0);
    assert.deepEqual(leftovers(topo), []);
  });
});
