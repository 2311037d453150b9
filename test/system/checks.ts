// What the container tests assert about an installed dynmhs, in one place: the policy in
// the kernel per network, the service as systemd sees it, and what an installation
// leaves on disk.
import assert from 'node:assert/strict';
import { readdirSync, lstatSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { duplicates, waitUntil, type Container, type Policy } from './harness';

/** The table of each source address, from the rules. */
export function tablesByAddress(policy: Policy): Map<string, string> {
  const tables = new Map<string, string>();
  for (const rule of policy.rules) {
    const m = /from (\S+) lookup (\S+)/.exec(rule);
    if (m) tables.set(m[1]!, m[2]!);
  }
  return tables;
}

/** The table serving `dev`: the one its default route (protocol 249) is in. */
export function tableOf(policy: Policy, dev: string): string | undefined {
  return policy.routes.map((r) => new RegExp(`^default .*dev ${dev} table (\\S+)`).exec(r)?.[1]).find((t) => t !== undefined);
}

/**
 * Wait until the kernel holds exactly the policy for `devs`: a rule for each global address
 * (IPv4 and IPv6) of each, looking up a table with a default route via that device, one
 * table per device, no rule for any other address, and nothing twice.
 */
export async function waitForPolicy(c: Container, devs: readonly string[], timeoutMs = 30_000): Promise<Policy> {
  return waitUntil(`dynmhs's rules and tables for ${devs.join(', ') || 'no network'}`, async () => {
    const policy = await c.policy();
    assert.deepEqual(duplicates(policy.rules.map((r) => r.replace(/^\d+:\s*/, ''))), [], 'duplicate rules');
    assert.deepEqual(duplicates(policy.routes), [], 'duplicate routes');
    const byAddress = tablesByAddress(policy);
    const expected = new Set<string>();
    const tables = new Set<string>();
    for (const dev of devs) {
      const addresses = [...await c.addresses(dev, 4), ...await c.addresses(dev, 6)];
      assert.ok(addresses.some((a) => a.includes('.')) && addresses.some((a) => a.includes(':')), `${dev} has no IPv4 and IPv6 address yet`);
      const table = tableOf(policy, dev);
      assert.ok(table, `no default route via ${dev} in a table of dynmhs: ${policy.routes.join(' | ')}`);
      assert.ok(!tables.has(table), `${dev} shares table ${table}`);
      tables.add(table);
      for (const address of addresses) {
        expected.add(address);
        assert.equal(byAddress.get(address), table, `rule from ${address} lookup ${table}: ${policy.rules.join(' | ')}`);
      }
    }
    assert.deepEqual([...byAddress.keys()].filter((a) => !expected.has(a)), [], 'rules for addresses of no managed network');
    return policy;
  }, timeoutMs, 100);
}

/** Nothing of protocol 249 in the kernel. */
export async function assertNoPolicy(c: Container, why: string): Promise<void> {
  const policy = await c.policy();
  assert.deepEqual(policy, { rules: [], routes: [] }, `${why}: protocol 249 left in the kernel`);
}

export interface ServiceState { readonly active: string; readonly mainPid: number; readonly restarts: number }

export async function service(c: Container): Promise<ServiceState> {
  const out = await c.exec(['systemctl', 'show', '-p', 'ActiveState', '-p', 'MainPID', '-p', 'NRestarts', 'dynmhs.service']);
  const value = (key: string): string => new RegExp(`^${key}=(.*)$`, 'm').exec(out)?.[1] ?? '';
  return { active: value('ActiveState'), mainPid: Number(value('MainPID')), restarts: Number(value('NRestarts')) };
}

/** Wait until dynmhs.service is active with a main process (and not the one given). */
export async function waitActive(c: Container, options: { notPid?: number; timeoutMs?: number } = {}): Promise<ServiceState> {
  try {
    return await waitUntil('dynmhs.service to be active', async () => {
      const s = await service(c);
      return s.active === 'active' && s.mainPid > 0 && s.mainPid !== options.notPid ? s : undefined;
    }, options.timeoutMs ?? 15_000, 50);
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${await c.journal('dynmhs.service')}`);
  }
}

/**
 * The container's files outside /usr that an installation may touch, minus what the
 * running system itself keeps changing (journal, NetworkManager's leases, systemd's
 * timer stamps, caches the package tools' triggers rebuild) and the package tools' own
 * bookkeeping (apt's state and history; dpkg's database is checked through dpkg-query).
 */
export async function filesOutsideUsr(c: Container): Promise<string[]> {
  const out = await c.exec(['find', '/etc', '/var', '/srv', '/root', '-xdev',
    '(', '-path', '/var/log/journal', '-o', '-path', '/var/lib/NetworkManager', '-o', '-path', '/var/lib/systemd/timers',
    '-o', '-path', '/var/cache', '-o', '-path', '/var/tmp', '-o', '-path', '/var/lib/dpkg', '-o', '-path', '/var/lib/polkit-1',
    '-o', '-path', '/var/lib/apt', '-o', '-path', '/var/log/apt', ')', '-prune',
    '-o', '-print']);
  return out.split('\n').filter(Boolean).sort();
}

/**
 * What the container wrote into /usr, read from the overlay's upper directory on the host:
 * files (an installation's leftovers, or whiteouts of deleted host files) and directories
 * that the host's /usr does not have. Copied-up directories the host has are no leftover.
 * Compare with the list taken before installing (the harness's own setup writes there).
 */
export function leftInUsr(c: Container): string[] {
  const upper = join(c.dir, 'usr');
  const found: string[] = [];
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(upper, rel))) {
      const path = join(rel, name);
      const st = lstatSync(join(upper, path));
      if (st.isDirectory()) {
        if (!existsSync(join('/usr', path))) found.push(`/usr/${path}/`);
        walk(path);
      } else {
        found.push(`/usr/${path}`);
      }
    }
  };
  walk('');
  return found;
}
