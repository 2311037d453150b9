// The systemd unit: hardening measured by systemd-analyze itself, and the settings
// the rest of the system relies on (bus name, reload, restart).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

const REPO = join(__dirname, '..', '..', '..');
const UNIT = join(REPO, 'systemd', 'dynmhs.service');

function offlineSecuritySupported(): string | false {
  const r = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return 'systemd-analyze is not installed (apt-get install systemd)';
  const version = Number(/systemd (\d+)/.exec(r.stdout)?.[1] ?? 0);
  return version >= 250 ? false : `systemd ${version} has no "security --offline" (needs 250 or later)`;
}

/** Parse "→ Overall exposure level for dynmhs.service: 1.4 OK". */
export function exposureOf(unitFile: string): number {
  const r = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', unitFile], { encoding: 'utf8' });
  const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(r.stdout);
  assert.ok(m, `no exposure level in systemd-analyze output (exit ${r.status}):\n${r.stdout}${r.stderr}`);
  return Number(m[1]);
}

test('systemd-analyze security --offline rates dynmhs.service at most 2.0', { skip: offlineSecuritySupported() }, () => {
  const exposure = exposureOf(UNIT);
  assert.ok(exposure <= 2.0, `exposure ${exposure} > 2.0`);
});

test('the unit is a D-Bus service with reload, restart and the hardening the design asks for', () => {
  const unit = readFileSync(UNIT, 'utf8');
  const settings = new Map<string, string[]>();
  for (const line of unit.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) settings.set(m[1], [...(settings.get(m[1]) ?? []), m[2]]);
  }
  const one = (key: string): string | undefined => settings.get(key)?.at(-1);
  assert.equal(one('Type'), 'dbus');
  assert.equal(one('BusName'), 'no.nntb.DynMHS');
  assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
  assert.equal(one('Restart'), 'on-failure');
  assert.equal(one('CapabilityBoundingSet'), 'CAP_NET_ADMIN');
  assert.equal(one('ProtectSystem'), 'strict');
  assert.equal(one('StateDirectory'), 'dynmhs');
  assert.equal(one('RestrictAddressFamilies'), 'AF_NETLINK AF_UNIX');
  assert.equal(one('PrivateTmp'), 'yes');
  assert.equal(one('ProtectHome'), 'yes');
  assert.ok(settings.has('SystemCallFilter'));
  assert.ok(!settings.has('MemoryDenyWriteExecute'), 'V8 is a JIT: MemoryDenyWriteExecute would kill it');
  assert.ok(!settings.has('PrivateUsers') && !settings.has('PrivateNetwork'), 'the daemon needs the host network namespace with real CAP_NET_ADMIN');
  const activation = readFileSync(join(REPO, 'dbus', 'no.nntb.DynMHS.service'), 'utf8');
  assert.match(activation, /^Name=no\.nntb\.DynMHS$/m);
  assert.match(activation, /^SystemdService=dynmhs\.service$/m);
});
