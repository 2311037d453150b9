// End to end with real NetworkManager, beyond daemon.test.ts: traffic proof in the
// manager's namespace, a DHCP lease renewed with another address, an LTE-like
// point-to-point link (NM `tun` connection with a gateway-less default route), and the
// daemon restarted (SIGTERM, SIGKILL) while connections are up.
// Needs root: namespaces, NetworkManager, dnsmasq, and the daemon changes rules and
// routes (only inside the test's own namespaces).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Testbed, skipReason, waitFor, run } from './harness';
import { daemonRunning, defaultRoutes, sourceRules, startDaemon, type SourceRule } from './util';
import type { DaemonProcess } from '../helpers/daemon';
import { echoPathOf, installEchoCounters, IpMonitor, isOurs, routeKey, type IpRoute } from '../helpers/netns';
import { holdsFor } from '../helpers/wait';
import { TABLES_FILE } from '../../src/sources/table-store';

const skip = skipReason();

/** DHCPv4 renewal time T1 the ISPs hand out: a changed lease shows up within seconds. */
const RENEWAL_SECONDS = 3;
/**
 * The LTE-like link. The testbed's NetworkManager manages only `wan*` interfaces, hence
 * the name; 100.64/10 is carrier-grade NAT space, as mobile operators hand out.
 */
const LTE = { connection: 'lte', interfaceName: 'wanlte', address: '100.64.7.2' } as const;

/** What the daemon put into the kernel: its rules and the routes of its tables, sorted. */
interface Policy { readonly rules: string[]; readonly routes: string[] }

async function ourRoutes(ns: string): Promise<IpRoute[]> {
  const routes: IpRoute[] = [];
  for (const family of ['-4', '-6']) {
    const { stdout } = await run('ip', ['-n', ns, '-j', family, 'route', 'show', 'table', 'all']);
    routes.push(...(JSON.parse(stdout || '[]') as IpRoute[]).filter(isOurs));
  }
  return routes;
}

const ruleText = (r: SourceRule): string => `${r.priority}: from ${r.src} lookup ${r.table}`;

async function policy(ns: string): Promise<Policy> {
  return {
    rules: (await sourceRules(ns)).filter(isOurs).map(ruleText).sort(),
    routes: (await ourRoutes(ns)).map((r) => `table ${r.table ?? 'main'} ${routeKey(r)}`).sort(),
  };
}

function duplicates(items: readonly string[]): string[] {
  return items.filter((item, i) => items.indexOf(item) !== i);
}

describe('dynmhs with real NetworkManager: traffic, lease renewal, LTE-like link, restarts', { skip, timeout: 150_000 }, () => {
  let tb: Testbed;
  let daemon: DaemonProcess | undefined;
  let state: string;
  const ns = (): string => tb.ns.nm;
  /** The table each connection got (found in the kernel, not assumed). */
  const tables = new Map<string, number>();

  const daemonArgs = (): string[] => ['--source', 'networkmanager', '--state-directory', state, '--loglevel', '1', '--logcolor', 'off'];
  const addressesOf = async (dev: string): Promise<string[]> => [...await tb.addresses(ns(), dev, 4), ...await tb.addresses(ns(), dev, 6)];
  const daemonTail = (): string => `\n--- daemon output (tail) ---\n${daemon?.output().slice(-3000) ?? '(none)'}`;

  /** Waits until every address of `dev` has exactly its rule `from ADDR lookup T priority T`; returns T. */
  async function rulesFor(dev: string, timeoutMs = 15_000): Promise<number> {
    let last: unknown;
    return waitFor(`rules for every address of ${dev}`, async () => {
      const addrs = await addressesOf(dev);
      const rules = (await sourceRules(ns())).filter(isOurs);
      last = { addrs, rules };
      const mine = rules.filter((r) => addrs.includes(r.src));
      const table = Number(mine[0]?.table);
      const complete = addrs.length > 0 && mine.length === addrs.length && addrs.every((a) => mine.some((r) => r.src === a))
        && mine.every((r) => Number(r.table) === table && r.priority === table);
      return complete ? table : undefined;
    }, timeoutMs).catch((e: Error) => { throw new Error(`${e.message}; last: ${JSON.stringify(last)}${daemonTail()}`); });
  }

  before(async () => {
    tb = await Testbed.create({ nm: true, internet: true, renewalSeconds: RENEWAL_SECONDS });
    state = mkdtempSync(join(tmpdir(), 'dynmhs-state-'));
    await tb.startNetworkManager();
    await tb.addNmProfiles();
    await tb.nmcli('-w', '60', 'con', 'up', 'wan1');
    await tb.nmcli('-w', '60', 'con', 'up', 'wan2');
    installEchoCounters(ns(), ['wan1', 'wan2']);
  });

  after(async () => {
    await daemon?.stop().catch(() => daemon?.killNow());
    await tb?.destroy();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  test('without dynmhs every source address leaves through wan1 (lowest metric): the traffic proof can tell', async () => {
    for (const dev of ['wan1', 'wan2']) {
      const addrs = await addressesOf(dev);
      assert.ok(addrs.some((a) => !a.includes(':')) && addrs.some((a) => a.includes(':')), `${dev} has a DHCPv4 and a SLAAC address: ${addrs.join(' ')}`);
      for (const src of addrs) {
        const path = echoPathOf(ns(), src);
        assert.deepEqual(path.counts, { wan1: 3, wan2: 0 }, `${src}\n${path.output}`);
      }
    }
  });

  test('with dynmhs each connection gets a table, and pings from each DHCPv4 and SLAAC address leave through its own interface', async () => {
    daemon = startDaemon(tb, ns(), tb.nmBus, daemonArgs());
    await daemonRunning(daemon);
    for (const dev of ['wan1', 'wan2']) tables.set(dev, await rulesFor(dev));
    assert.notEqual(tables.get('wan1'), tables.get('wan2'));
    for (const dev of ['wan1', 'wan2']) {
      // the default routes (IPv4 via the DHCP router, IPv6 via the RA's link-local router) are in the table
      await waitFor(`both default routes in ${dev}'s table`, async () => (await defaultRoutes(ns(), tables.get(dev)!)).length === 2, 10_000);
      for (const src of await addressesOf(dev)) {
        const path = echoPathOf(ns(), src);
        const other = dev === 'wan1' ? 'wan2' : 'wan1';
        assert.deepEqual(path.counts, { [dev]: 3, [other]: 0 }, `${src}\n${path.output}`);
        assert.ok(path.ok, `${src}: no reply from the internet namespace\n${path.output}`);
      }
    }
  });

  test('DHCP lease renewed with another address: the old rule goes, the new one comes, the table keeps its default route, wan2 is untouched', async () => {
    const wan1Table = tables.get('wan1')!;
    const [oldAddress] = await tb.addresses(ns(), 'wan1', 4);
    const wan1v6 = await tb.addresses(ns(), 'wan1', 6);
    const wan2Before = (await sourceRules(ns())).filter((r) => Number(r.table) === tables.get('wan2')).map(ruleText).sort();
    // A reconnect would be a new active connection: the renewal must happen within this one.
    const activeConnection = async (): Promise<string> => (await tb.nmcli('-g', 'GENERAL.CON-PATH', 'device', 'show', 'wan1')).stdout.trim();
    const activeBefore = await activeConnection();
    const monitor = new IpMonitor(ns(), ['rule']);
    try {
      await monitor.ready;
      // At the next renewal (T1) the restarted, authoritative dnsmasq NAKs the old address;
      // NetworkManager's DHCP client starts over and gets one from the new range, without
      // deactivating the connection.
      await tb.startDnsmasq(1, '10.101.0.50', '10.101.0.59');
      const [newAddress] = await waitFor('wan1 to renew its lease with an address from the new range',
        async () => { const a = await tb.addresses(ns(), 'wan1', 4); return a.length === 1 && a[0] !== oldAddress ? a : undefined; }, 30_000);
      assert.match(newAddress!, /^10\.101\.0\.5\d$/);
      assert.equal(await activeConnection(), activeBefore, 'the same activation: a renewal, not a reconnect');

      assert.equal(await rulesFor('wan1'), wan1Table, 'the connection keeps its table');
      assert.ok(!(await sourceRules(ns())).some((r) => r.src === oldAddress), 'no rule for the old address');
      // Removing the old address made the kernel flush the IPv4 routes via wan1 in every
      // table: the copies of NetworkManager's new routes must be back.
      const defaults = await waitFor(`default routes in table ${wan1Table}`, async () => {
        const d = await defaultRoutes(ns(), wan1Table);
        return d.length === 2 && d[0]!.includes(`src ${newAddress}`) ? d : undefined;
      }, 10_000);
      assert.match(defaults[0]!, /^default via 10\.101\.0\.1 dev wan1 /);
      assert.match(defaults[1]!, /^default via fe80::\S+ dev wan1 /);

      const path = echoPathOf(ns(), newAddress!);
      assert.deepEqual(path.counts, { wan1: 3, wan2: 0 }, path.output);
      assert.ok(path.ok, path.output);
    } finally {
      monitor.stop();
    }
    // Only the old address's rule was ever deleted: not wan1's IPv6 rule, nothing of wan2's.
    const deleted = monitor.lines().filter((l) => l.startsWith('Deleted'));
    assert.ok(deleted.length === 1 && deleted[0]!.includes(`from ${oldAddress} lookup ${wan1Table}`), deleted.join('\n'));
    assert.ok(wan1v6.length > 0 && (await sourceRules(ns())).filter((r) => wan1v6.includes(r.src)).length === wan1v6.length);
    const wan2After = (await sourceRules(ns())).filter((r) => Number(r.table) === tables.get('wan2')).map(ruleText).sort();
    assert.deepEqual(wan2After, wan2Before);
  });

  test('LTE-like link: an NM tun connection with a gateway-less default route gets a table with `default dev` and a rule for its /32', async () => {
    // NetworkManager 1.42 adds no default route for a manual address without a gateway
    // (ipv4.never-default no is not enough); an explicit 0.0.0.0/0 route without next hop
    // becomes `default dev wanlte`, as a modem's bearer does on wwan0.
    await tb.nmcli('con', 'add', 'type', 'tun', 'ifname', LTE.interfaceName, 'con-name', LTE.connection, 'autoconnect', 'no',
      'tun.mode', 'tun', 'ipv4.method', 'manual', 'ipv4.addresses', `${LTE.address}/32`, 'ipv4.routes', '0.0.0.0/0',
      'ipv4.route-metric', '300', 'ipv6.method', 'disabled');
    // NM creates the tun device itself; no process holds it open, so it has no carrier and
    // the kernel marks its routes `linkdown`. NM activates it all the same.
    await tb.nmcli('-w', '30', 'con', 'up', LTE.connection);
    const main = JSON.parse((await tb.ip(ns(), '-j', '-4', 'route', 'show', 'default', 'dev', LTE.interfaceName)).stdout) as IpRoute[];
    assert.equal(main.length, 1, 'NetworkManager put `default dev wanlte` into main');
    assert.equal(main[0]!.gateway, undefined);

    const lteTable = await rulesFor(LTE.interfaceName);
    tables.set(LTE.interfaceName, lteTable);
    assert.ok(![tables.get('wan1'), tables.get('wan2')].includes(lteTable), `its own table: ${lteTable}`);
    const rules = (await sourceRules(ns())).filter((r) => r.src === LTE.address);
    assert.deepEqual(rules.map(ruleText), [`${lteTable}: from ${LTE.address} lookup ${lteTable}`]);
    const copies = await waitFor(`default dev ${LTE.interfaceName} in table ${lteTable}`, async () => {
      const r = (await ourRoutes(ns())).filter((x) => Number(x.table) === lteTable);
      return r.length > 0 ? r : undefined;
    }, 10_000);
    assert.deepEqual(copies.map(routeKey), [`unicast default via=- dev=${LTE.interfaceName} metric=300 src=- scope=link`]);
    // and nothing of the tun in the wan tables
    assert.ok(!(await ourRoutes(ns())).some((r) => r.dev === LTE.interfaceName && Number(r.table) !== lteTable));
  });

  /** The policy as it stands with wan1, wan2 and lte up (set by the SIGTERM test). */
  let fullPolicy: Policy;

  test('SIGTERM with connections up: everything removed, exit 0; started again: the same tables (from the state directory) and rules', async () => {
    fullPolicy = await policy(ns());
    assert.equal(fullPolicy.rules.length, 5, `wan1 v4+v6, wan2 v4+v6, lte v4: ${fullPolicy.rules.join(' | ')}`);
    const stored = JSON.parse(readFileSync(join(state, TABLES_FILE), 'utf8')) as { connections: Record<string, { table: number }> };
    for (const [connection, dev] of [['wan1', 'wan1'], ['wan2', 'wan2'], [LTE.connection, LTE.interfaceName]] as const) {
      assert.equal(stored.connections[await tb.nmConnectionUuid(connection)]?.table, tables.get(dev), `${TABLES_FILE} keeps ${connection}'s table`);
    }

    assert.equal(await daemon!.stop('SIGTERM'), 0, daemonTail());
    assert.deepEqual(await policy(ns()), { rules: [], routes: [] });

    daemon = startDaemon(tb, ns(), tb.nmBus, daemonArgs());
    await daemonRunning(daemon);
    let last: Policy | undefined;
    await waitFor('the same rules and routes again', async () => {
      last = await policy(ns());
      return JSON.stringify(last) === JSON.stringify(fullPolicy);
    }, 15_000).catch((e: Error) => { throw new Error(`${e.message}\nwant ${JSON.stringify(fullPolicy)}\nhave ${JSON.stringify(last)}${daemonTail()}`); });
  });

  test('SIGKILL with connections up: the restarted daemon adopts what it left, changes nothing and duplicates nothing', async () => {
    await daemon!.kill();
    assert.deepEqual(await policy(ns()), fullPolicy, 'a killed daemon leaves its policy in the kernel');
    const monitor = new IpMonitor(ns(), ['rule', 'route']);
    try {
      await monitor.ready;
      daemon = startDaemon(tb, ns(), tb.nmBus, daemonArgs());
      await daemonRunning(daemon);
      // "running" is logged after the first pass; a second later nothing has changed either
      await holdsFor(async () => assert.deepEqual(await policy(ns()), fullPolicy), 1000, 100);
      const after = await policy(ns());
      const allSources = (await sourceRules(ns())).map((r) => r.src);
      assert.deepEqual(duplicates(allSources), [], 'one rule per source address in `ip rule`');
      assert.deepEqual(duplicates(after.routes), []);
    } finally {
      monitor.stop();
    }
    const ours = monitor.lines().filter((l) => / proto (dynmhs|249)\b/.test(l));
    assert.deepEqual(ours, [], 'no rule or route of ours was deleted or added again');
  });

  test('SIGKILL, then a connection goes down while the daemon is dead: its stale rules and routes go, the others keep their stored tables', async () => {
    // Take down the connection with the lowest table: a fresh allocation would hand that
    // table to another connection, so keeping theirs proves the state directory is used.
    const [downDev] = ['wan1', 'wan2'].sort((a, b) => tables.get(a)! - tables.get(b)!);
    const staleAddresses = await addressesOf(downDev!);
    await daemon!.kill();
    await tb.nmcli('con', 'down', downDev!);
    const leftover = (await sourceRules(ns())).filter((r) => staleAddresses.includes(r.src));
    assert.equal(leftover.length, staleAddresses.length, 'the dead daemon\'s rules for the gone addresses are still there');

    daemon = startDaemon(tb, ns(), tb.nmBus, daemonArgs());
    await daemonRunning(daemon);
    // (Deactivating, NetworkManager took the addresses, and the kernel flushed every route via
    // the device in every table; the rules are the daemon's to remove.)
    await waitFor(`stale rules and routes of ${downDev} removed`, async () =>
      !(await sourceRules(ns())).some((r) => staleAddresses.includes(r.src))
      && !(await ourRoutes(ns())).some((r) => Number(r.table) === tables.get(downDev!)), 10_000);
    for (const dev of ['wan1', 'wan2', LTE.interfaceName].filter((d) => d !== downDev)) {
      assert.equal(await rulesFor(dev), tables.get(dev), `${dev} keeps its table`);
    }

    await tb.nmcli('-w', '60', 'con', 'up', downDev!);
    assert.equal(await rulesFor(downDev!), tables.get(downDev!), `${downDev} gets its table back`);
    await waitFor(`both default routes in ${downDev}'s table`, async () => (await defaultRoutes(ns(), tables.get(downDev!)!)).length === 2, 10_000);
    assert.deepEqual(duplicates((await sourceRules(ns())).map((r) => r.src)), []);
  });
});
