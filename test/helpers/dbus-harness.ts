// A private D-Bus "system" bus and a real polkitd on it, for the D-Bus tests.
// Derived from ../shared/testbed/polkit/run.sh (proven on Debian 12):
// - the bus config is the distro's system.conf without fork/syslog/activation, listening
//   on a socket under the test's own directory, with ONE includedir that holds only
//   polkit's bus policy and ours (dbus/no.nntb.DynMHS.conf, the file we ship);
// - polkitd runs as root (it drops to user polkitd) under `unshare --mount` with private
//   bind mounts of its actions dir (host actions + ours) and rules.d (the test's rules);
//   nothing is mounted on the host;
// - every process is stopped by its PID and waited for.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { projectFor } from './reachable';

export { projectFor };
import { userInfo } from 'node:os';
import { join } from 'node:path';

export const REPO = join(__dirname, '..', '..', '..');
export const isRoot = (): boolean => process.getuid?.() === 0;

export interface Started {
  readonly pid: number;
  stop(): Promise<void>;
}

/** SIGTERM one process we started, SIGKILL after `graceMs`, and wait for it to be reaped. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try { process.kill(child.pid as number, 'SIGTERM'); } catch { /* already gone */ }
  const timer = setTimeout(() => { try { process.kill(child.pid as number, 'SIGKILL'); } catch { /* gone */ } }, graceMs);
  await exited;
  clearTimeout(timer);
}

function waitFor<T>(what: string, timeoutMs: number, probe: () => T | undefined): Promise<T> {
  const end = Date.now() + timeoutMs;
  return new Promise<T>((resolve, reject) => {
    const tick = (): void => {
      let value: T | undefined;
      try { value = probe(); } catch { value = undefined; }
      if (value !== undefined) { resolve(value); return; }
      if (Date.now() > end) { reject(new Error(`${what}: timed out after ${timeoutMs} ms`)); return; }
      setTimeout(tick, 25);
    };
    tick();
  });
}

export interface PrivateBus extends Started {
  readonly address: string;
  readonly log: () => string;
}

/** A private system bus in `dir` (mode 0755 so that uid nobody reaches the socket). */
export async function startSystemBus(dir: string, policyFiles: readonly string[]): Promise<PrivateBus> {
  const runDir = join(dir, 'run');
  const policyDir = join(dir, 'system.d');
  mkdirSync(runDir, { recursive: true });
  mkdirSync(policyDir, { recursive: true });
  for (const d of [dir, runDir, policyDir]) chmodSync(d, 0o755);
  copyFileSync('/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf', join(policyDir, 'org.freedesktop.PolicyKit1.conf'));
  for (const file of policyFiles) copyFileSync(file, join(policyDir, file.split('/').pop() as string));
  const socket = join(runDir, 'system_bus_socket');
  let config = readFileSync('/usr/share/dbus-1/system.conf', 'utf8');
  config = config
    .replace('<fork/>', '')
    .replace('<syslog/>', '')
    .replace('<standard_system_servicedirs/>', '')
    .replace(/<servicehelper>[\s\S]*?<\/servicehelper>/, '')
    .replace(/<pidfile>[\s\S]*?<\/pidfile>/, '')
    .replace(/<listen>[\s\S]*?<\/listen>/, `<listen>unix:path=${socket}</listen>`)
    .replace(/<includedir>[\s\S]*?<\/includedir>/g, '')
    .replace(/<include ignore_missing="yes">\/etc\/dbus-1\/[^<]*<\/include>/g, '');
  if (!isRoot()) config = config.replace(/<user>[\s\S]*?<\/user>/, '');
  config = config.replace('</busconfig>', `  <includedir>${policyDir}</includedir>\n</busconfig>`);
  const configFile = join(dir, 'system.conf');
  writeFileSync(configFile, config);
  let stderr = '';
  const child = spawn('dbus-daemon', [`--config-file=${configFile}`, '--nofork', '--nosyslog', '--print-address=1'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  let stdout = '';
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); });
  const stop = (): Promise<void> => stopChild(child);
  try {
    await waitFor('dbus-daemon address', 10_000, () => {
      if (child.exitCode !== null) throw new Error('exited');
      return stdout.includes('\n') ? stdout : undefined;
    });
  } catch (error) {
    await stop();
    throw new Error(`dbus-daemon did not start: ${String(error)}\n${stderr}`);
  }
  return { pid: child.pid as number, address: `unix:path=${socket}`, stop, log: () => stderr };
}

export interface Polkitd extends Started {
  readonly log: () => string;
}

/**
 * polkitd on `busAddress`, seeing the host's actions plus `actionFiles`, and `rules`
 * (file name → JavaScript) as its only /etc/polkit-1/rules.d. Needs root.
 */
export async function startPolkitd(dir: string, busAddress: string, actionFiles: readonly string[],
  rules: Readonly<Record<string, string>>): Promise<Polkitd> {
  const actions = join(dir, 'actions');
  const rulesDir = join(dir, 'rules.d');
  mkdirSync(actions, { recursive: true });
  mkdirSync(rulesDir, { recursive: true });
  for (const f of readdirSync('/usr/share/polkit-1/actions')) copyFileSync(join('/usr/share/polkit-1/actions', f), join(actions, f));
  for (const f of actionFiles) copyFileSync(f, join(actions, f.split('/').pop() as string));
  const polkitdUid = Number(spawnSync('id', ['-u', 'polkitd'], { encoding: 'utf8' }).stdout.trim());
  for (const [name, text] of Object.entries(rules)) {
    writeFileSync(join(rulesDir, name), text, { mode: 0o644 });
    if (Number.isInteger(polkitdUid)) chownSync(join(rulesDir, name), polkitdUid, 0);
  }
  if (Number.isInteger(polkitdUid)) chownSync(rulesDir, polkitdUid, 0);
  chmodSync(rulesDir, 0o700);
  const wrapper = join(dir, 'polkitd-ns.sh');
  writeFileSync(wrapper, [
    '#!/bin/sh',
    '# runs inside unshare --mount --propagation private; -n: no /run/mount/utab on the host',
    'set -e',
    `mount -n --bind '${actions}' /usr/share/polkit-1/actions`,
    `mount -n --bind '${rulesDir}' /etc/polkit-1/rules.d`,
    'exec /usr/lib/polkit-1/polkitd --no-debug',
    '',
  ].join('\n'), { mode: 0o755 });
  let output = '';
  const child = spawn('unshare', ['--mount', '--propagation', 'private', wrapper], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: busAddress },
  });
  child.stdout?.on('data', (d: Buffer) => { output += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { output += d.toString(); });
  const stop = (): Promise<void> => stopChild(child);
  try {
    await waitFor('polkitd on the bus', 15_000, () => {
      if (child.exitCode !== null) throw new Error('exited');
      const r = spawnSync('busctl', [`--address=${busAddress}`, 'status', 'org.freedesktop.PolicyKit1'], { encoding: 'utf8' });
      return r.status === 0 ? true : undefined;
    });
  } catch (error) {
    await stop();
    throw new Error(`polkitd did not start: ${String(error)}\n${output}`);
  }
  return { pid: child.pid as number, stop, log: () => output };
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run a command, optionally as another uid via setpriv (nobody: 65534, daemon: 1). */
export function run(argv: readonly string[], options: { uid?: number; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  let full = [...argv];
  if (options.uid !== undefined && options.uid !== userInfo().uid) {
    full = ['setpriv', `--reuid=${options.uid}`, `--regid=${options.uid}`, '--clear-groups', ...argv];
  }
  return new Promise((resolve, reject) => {
    const child = spawn(full[0], full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => { try { process.kill(child.pid as number, 'SIGKILL'); } catch { /* gone */ } }, options.timeoutMs ?? 20_000);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

export interface CallResult {
  readonly ok: boolean;
  /** On success: the reply body, with variants as {signature, value} and bigints as strings. */
  readonly body?: unknown[];
  readonly name?: string;
  readonly message?: string;
}

/**
 * One method call through test/helpers/dbus-call.ts in a child process (so it can run
 * as another uid): `signature` and `args` are sent exactly as given, garbage included.
 */
export async function call(address: string, uid: number | undefined, path: string, iface: string, member: string,
  signature = '', args: unknown[] = [], destination = 'no.nntb.DynMHS'): Promise<CallResult> {
  const [result] = await callMany(address, uid, [{ destination, path, iface, member, signature, args }]);
  return result;
}

export interface CallSpec {
  readonly destination?: string;
  readonly path: string;
  readonly iface: string;
  readonly member: string;
  readonly signature?: string;
  readonly args?: unknown[];
}

/** Several calls, one after the other, from one client process (one connection). */
export async function callMany(address: string, uid: number | undefined, calls: readonly CallSpec[]): Promise<CallResult[]> {
  const script = join(projectFor(uid), 'dist', 'test', 'helpers', 'dbus-call.js');
  const r = await run(['node', script, address, JSON.stringify(calls)], { uid });
  try {
    const results = r.stdout.trim().split('\n').map((line) => JSON.parse(line) as CallResult);
    if (results.length !== calls.length) throw new Error('short output');
    return results;
  } catch {
    throw new Error(`dbus-call failed (exit ${r.code}): ${r.stdout}${r.stderr}`);
  }
}
