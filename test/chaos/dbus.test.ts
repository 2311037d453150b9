// Chaos over the D-Bus API: the real daemon in a test namespace exports no.nntb.DynMHS on
// a private system bus with the real polkitd, and gets malformed arguments, wrong
// signatures, unknown objects, interfaces, methods and properties, huge strings, calls
// it must refuse to an unprivileged caller, seeded random calls, and many clients at
// once. Every call must be answered (a reply or an error, no timeout, error texts of
// bounded length), the daemon must stay up, and a rejected call must change nothing:
// the kernel's rules and routes (every table) and Describe() are compared before/after.
//
// Replay: DYNMHS_CHAOS_SEED=<seed printed>. Random calls: 2 × DYNMHS_CHAOS_ITERATIONS (default 240).
// Needs root: namespaces, polkitd, callers as uid nobody via setpriv.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { DaemonProcess, networkArgs } from '../helpers/daemon';
import { projectFor, REPO, startPolkitd, startSystemBus, type CallResult, type CallSpec, type Polkitd, type PrivateBus } from '../helpers/dbus-harness';
import { netnsSkipReason, Topology } from '../helpers/netns';
import { sleep } from '../helpers/wait';
import { canonical, check, dumpKernel, leftovers, type KernelDump, type Network } from './checker';
import { chaosIterations, chaosSeed, Random } from './random';

const skip = netnsSkipReason();
const SEED = chaosSeed();
const RANDOM_CALLS = 2 * chaosIterations();
const NOBODY = 65534;

const M = '/no/nntb/DynMHS';
const MI = 'no.nntb.DynMHS1';
const NI = 'no.nntb.DynMHS1.Network';
const PROPS = 'org.freedesktop.DBus.Properties';
const INTRO = 'org.freedesktop.DBus.Introspectable';
const PEER = 'org.freedesktop.DBus.Peer';
const OM = 'org.freedesktop.DBus.ObjectManager';
const WAN1: Network = { ifName: 'wan1', table: 2000 };
const WAN2: Network = { ifName: 'wan2', table: 3000 };
/** Longest error text accepted: a message quotes at most a short prefix of what it was given. */
const MAX_ERROR_TEXT = 1000;

const c = (path: string, iface: string, member: string, signature = '', args: unknown[] = []): CallSpec => ({ path, iface, member, signature, args });
/** 1 MiB, expanded by the client (test/chaos/dbus-client.ts). */
const HUGE = { $repeat: ['x', 1 << 20] };

/** Calls that must be refused, whoever makes them (root included). */
const MALFORMED: CallSpec[] = [
  c(M, MI, 'AddNetwork', 'su', ['', 3000]),
  c(M, MI, 'AddNetwork', 'su', [HUGE, 3000]),
  c(M, MI, 'AddNetwork', 'su', ['wan2', 0]),
  c(M, MI, 'AddNetwork', 'su', ['wan2', 999]),
  c(M, MI, 'AddNetwork', 'su', ['wan2', 30000]),
  c(M, MI, 'AddNetwork', 'su', ['wan2', 4294967295]),
  c(M, MI, 'AddNetwork', 'su', ['a/b', 3000]),
  c(M, MI, 'AddNetwork', 'su', ['sp ace', 3000]),
  c(M, MI, 'AddNetwork', 'su', ['ctl\u0001\u001b[31m', 3000]),
  c(M, MI, 'AddNetwork', 'su', ['..', 3000]),
  c(M, MI, 'AddNetwork', 'su', ['ünïcødé-ïntërfäcé', 3000]),
  c(M, MI, 'AddNetwork', 'su', ['wan1', 2000]),
  c(M, MI, 'AddNetwork', 'su', ['wan2', 2000]),
  c(M, MI, 'AddNetwork', 's', ['wan2']),
  c(M, MI, 'AddNetwork', 'ss', ['wan2', '3000']),
  c(M, MI, 'AddNetwork', 'us', [3000, 'wan2']),
  c(M, MI, 'AddNetwork', 'suu', ['wan2', 3000, 1]),
  c(M, MI, 'AddNetwork', 'si', ['wan2', 3000]),
  c(M, MI, 'AddNetwork'),
  c(M, MI, 'RemoveNetwork', 's', ['nope']),
  c(M, MI, 'RemoveNetwork', 's', [HUGE]),
  c(M, MI, 'RemoveNetwork', 'u', [1]),
  c(M, MI, 'RemoveNetwork'),
  c(M, MI, 'SetLogLevel', 'u', [6]),
  c(M, MI, 'SetLogLevel', 'u', [4294967295]),
  c(M, MI, 'SetLogLevel', 's', ['debug']),
  c(M, MI, 'SetLogLevel', 'i', [-1]),
  c(M, MI, 'Describe', 's', ['x']),
  c(M, MI, 'GetNetworks', 'u', [1]),
  c(M, MI, 'Reload', 'as', [['a', 'b']]),
  c(M, MI, 'Frobnicate'),
  c(M, MI, 'Frobnicate', 's', [HUGE]),
  c(M, 'no.nntb.DynMHS2', 'AddNetwork', 'su', ['wan2', 3000]),
  c(M, 'no.nntb.DynMHS1.Bogus', 'Describe'),
  c(`${M}/Network/nope`, NI, 'Describe'),
  c(`${M}/Network/nope`, PROPS, 'GetAll', 's', [NI]),
  c(`${M}/Network/wan1`, MI, 'AddNetwork', 'su', ['wan2', 3000]),
  c(`${M}/Nothing/Here`, INTRO, 'Introspect', 's', ['x']),
  c(M, PROPS, 'Get', 'ss', [MI, 'Nope']),
  c(M, PROPS, 'Get', 'ss', ['bogus.interface', 'Version']),
  c(M, PROPS, 'Get', 's', [MI]),
  c(M, PROPS, 'Set', 'ssv', [MI, 'Version', { $variant: ['s', '6.6.6'] }]),
  c(M, PROPS, 'Set', 'ssv', [MI, 'Networks', { $variant: ['ao', ['/x']] }]),
  c(`${M}/Network/wan1`, PROPS, 'Set', 'ssv', [NI, 'Table', { $variant: ['u', 3000] }]),
  c(M, PROPS, 'GetAll', 'u', [7]),
  c(M, OM, 'GetManagedObjects', 's', ['x']),
  c(M, PEER, 'Ping', 's', ['x']),
];

/** Valid calls that change something: as nobody they must all be refused (polkit says no). */
const PRIVILEGED: CallSpec[] = [
  c(M, MI, 'AddNetwork', 'su', ['wan2', 3000]),
  c(M, MI, 'RemoveNetwork', 's', ['wan1']),
  c(M, MI, 'SetLogLevel', 'u', [0]),
  c(M, MI, 'Reload'),
];

/** Reads anyone may make. */
const READS: CallSpec[] = [
  c(M, MI, 'GetNetworks'), c(M, MI, 'Describe'), c(M, PROPS, 'GetAll', 's', [MI]), c(M, PROPS, 'Get', 'ss', [MI, 'State']),
  c(M, INTRO, 'Introspect'), c(`${M}/Network/wan1`, PROPS, 'GetAll', 's', [NI]), c(M, OM, 'GetManagedObjects'), c(M, PEER, 'Ping'),
];

/** A value of D-Bus type `sig` that may be anything the type allows (no NUL in strings: the bus forbids it). */
function randomValue(rnd: Random, sig: string): unknown {
  switch (sig) {
    case 's': return rnd.weighted<() => unknown>([
      [() => rnd.pick(['', 'wan1', 'wan2', 'nope', 'eth0:1', '.', '..', 'a'.repeat(16), 'lo']), 4],
      [() => Array.from({ length: rnd.int(1, 40) }, () => String.fromCodePoint(rnd.pick([rnd.int(1, 31), rnd.int(32, 126), rnd.int(0xa0, 0x2fff)]))).join(''), 3],
      [() => ({ $repeat: ['y', rnd.int(16, 1 << 16)] }), 1],
    ])();
    case 'u': return rnd.pick([0, 1, 5, 6, 999, 1000, 29999, 30000, 65535, 4294967295]);
    case 'i': return rnd.pick([-2147483648, -1, 0, 3, 2147483647]);
    case 'x': return rnd.pick(['-9223372036854775807n', '0n', '2000n']);
    case 'b': return rnd.chance(0.5);
    case 'o': return rnd.pick(['/', '/no/nntb/DynMHS', '/a/b_c']);
    case 'v': return { $variant: ['u', 2000] };
    case 'as': return ['wan1', 'x'.repeat(rnd.int(0, 300))];
    case 'a{sv}': return { Table: { $variant: ['u', 1] } };
    case '(su)': return ['wan2', 3000];
    default: throw new Error(`no generator for ${sig}`);
  }
}

const SIGNATURES = ['', 's', 'u', 'i', 'su', 'us', 'ss', 'suu', 'x', 'b', 'o', 'v', 'as', 'a{sv}', '(su)', 'ssv', 'sb'];
const MEMBERS: Record<string, string[]> = {
  [MI]: ['GetNetworks', 'Describe', 'Reload', 'AddNetwork', 'RemoveNetwork', 'SetLogLevel', 'Frobnicate', 'addnetwork', ''],
  [NI]: ['Describe', 'Get', 'Frobnicate'],
  [PROPS]: ['Get', 'GetAll', 'Set', 'Frobnicate'],
  [INTRO]: ['Introspect', 'Frobnicate'],
  [PEER]: ['Ping', 'GetMachineId', 'Frobnicate'],
  [OM]: ['GetManagedObjects', 'Frobnicate'],
  'no.nntb.Bogus': ['Describe'],
};
const PATHS = [M, M, `${M}/Network/wan1`, `${M}/Network/nope`, `${M}/Network`, '/', '/no/nntb', `${M}/Network/wan1/deeper`];

/**
 * A random call that cannot legitimately change anything as root: the argument checks of
 * the mutating methods are what is tested, so their valid forms are turned invalid.
 */
function randomCall(rnd: Random): CallSpec {
  const iface = rnd.pick(Object.keys(MEMBERS));
  let member = rnd.pick(MEMBERS[iface]!);
  if (member === '') member = 'x'.repeat(rnd.int(1, 255));
  const signature = rnd.chance(0.3) ? ({ AddNetwork: 'su', RemoveNetwork: 's', SetLogLevel: 'u', Get: 'ss', GetAll: 's', Set: 'ssv' } as Record<string, string>)[member] ?? '' : rnd.pick(SIGNATURES);
  const args = signature === '' ? [] : splitSignature(signature).map((s) => randomValue(rnd, s));
  if (iface === MI && member === 'AddNetwork' && signature === 'su') args[1] = rnd.pick([0, 999, 30000, 4294967295]);
  if (iface === MI && member === 'RemoveNetwork' && signature === 's' && args[0] === 'wan1') args[0] = 'wan1x';
  if (iface === MI && member === 'SetLogLevel' && signature === 'u') args[0] = rnd.pick([6, 999, 4294967295]);
  if (iface === MI && member === 'Reload') member = 'Reload2';
  return { path: rnd.pick(PATHS), iface, member, signature, args };
}

/**
 * The calls from one client process (test/chaos/dbus-client.ts, as `uid` when given),
 * one result per call; rejects if the client does not print one for each.
 */
function callMany(address: string, uid: number | undefined, specs: readonly CallSpec[]): Promise<CallResult[]> {
  const script = join(projectFor(uid), 'dist', 'test', 'chaos', 'dbus-client.js');
  const argv = uid !== undefined && uid !== userInfo().uid
    ? ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, script, address]
    : [process.execPath, script, address];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => { try { process.kill(child.pid!, 'SIGKILL'); } catch { /* gone */ } }, 20_000 + 10_000 * specs.length);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code) => {
      clearTimeout(timer);
      const lines = stdout.trim().split('\n').filter(Boolean);
      if (lines.length !== specs.length) {
        reject(new Error(`dbus-client (exit ${code}) printed ${lines.length} results for ${specs.length} calls: ${stdout.slice(-1000)}${stderr.slice(-2000)}`));
        return;
      }
      resolve(lines.map((l) => JSON.parse(l) as CallResult));
    });
    child.stdin.end(JSON.stringify(specs));
  });
}

function splitSignature(sig: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < sig.length;) {
    const rest = sig.slice(i);
    const m = /^(a\{sv\}|as|\(su\)|[suixbov])/.exec(rest);
    if (m === null) throw new Error(`cannot split ${sig}`);
    out.push(m[1]!);
    i += m[1]!.length;
  }
  return out;
}

describe('chaos over the D-Bus API: malformed, unknown, unauthorized, random and concurrent calls', { skip, timeout: 240_000 }, () => {
  let topo: Topology;
  let dir = '';
  let bus: PrivateBus | undefined;
  let polkit: Polkitd | undefined;
  let daemon: DaemonProcess | undefined;
  const rnd = new Random(SEED);

  before(async () => {
    process.stderr.write(`# chaos (D-Bus): seed ${SEED}, ${RANDOM_CALLS} random calls (replay: DYNMHS_CHAOS_SEED=${SEED})\n`);
    topo = Topology.create({ tag: 'b' });
    dir = mkdtempSync('/tmp/dynmhs-chaos-dbus-');
    chmodSync(dir, 0o755);
    bus = await startSystemBus(join(dir, 'bus'), [join(REPO, 'dbus', 'no.nntb.DynMHS.conf')]);
    polkit = await startPolkitd(join(dir, 'polkit'), bus.address, [join(REPO, 'polkit', 'no.nntb.DynMHS.policy')], {});
  });

  after(async () => {
    daemon?.killNow();
    topo?.destroy();
    try { await polkit?.stop(); } finally {
      try { await bus?.stop(); } finally { if (dir) rmSync(dir, { recursive: true, force: true }); }
    }
  });

  test(`every call answered, the daemon up, nothing changed by a rejected call (seed ${SEED})`, async (t: TestContext) => {
    t.diagnostic(`seed ${SEED} (replay: DYNMHS_CHAOS_SEED=${SEED})`);
    const address = bus!.address;
    const ns = topo.host;
    const fail = (message: string): never => assert.fail(`seed ${SEED}: ${message}\n--- daemon log (tail) ---\n`
      + `${daemon?.output().split('\n').slice(-30).join('\n') ?? '(none)'}\n(replay: DYNMHS_CHAOS_SEED=${SEED})`);
    const converge = async (nets: readonly Network[], what: string): Promise<void> => {
      const end = Date.now() + 15_000;
      for (;;) {
        const problems = check(dumpKernel(ns), nets);
        if (problems.length === 0) return;
        if (Date.now() > end) fail(`not converged after ${what}: ${problems.join('\n')}`);
        await sleep(20);
      }
    };
    /** Calls in one client process; each must come back with a reply or an error from the bus or the daemon. */
    let answered = 0;
    const errorNames = new Map<string, number>();
    const calls = async (uid: number | undefined, specs: readonly CallSpec[], what: string): Promise<CallResult[]> => {
      let results: CallResult[];
      try {
        results = await callMany(address, uid, specs);
      } catch (error) {
        return fail(`${what}: the client got no answer to every call: ${(error as Error).message.slice(0, 2000)}`);
      }
      results.forEach((r, i) => {
        const shown = JSON.stringify(specs[i]).slice(0, 300);
        if (!r.ok && (r.name === undefined || r.name.startsWith('client.'))) fail(`${what}: ${shown} got no answer: ${r.name}: ${r.message}`);
        if (!r.ok && (r.message ?? '').length > MAX_ERROR_TEXT) fail(`${what}: ${shown}: an error text of ${r.message!.length} characters`);
        if (r.ok && JSON.stringify(r.body).length > 1 << 20) fail(`${what}: ${shown}: a reply of more than 1 MiB`);
      });
      answered += results.length;
      for (const r of results) errorNames.set(r.ok ? '(reply)' : r.name!, (errorNames.get(r.ok ? '(reply)' : r.name!) ?? 0) + 1);
      if (!daemon!.running) fail(`${what}: dynmhs exited (${JSON.stringify(daemon!.status)})`);
      return results;
    };
    const describeState = async (): Promise<string> => {
      const [r] = await calls(undefined, [c(M, MI, 'Describe')], 'Describe');
      if (!r!.ok) fail(`Describe failed: ${r!.name}: ${r!.message}`);
      return canonical(JSON.parse(String(r!.body![0])));
    };
    const kernelState = (dump: KernelDump = dumpKernel(ns)): string[] => [
      ...[4, 6].flatMap((f) => dump.rules[f as 4 | 6].map((r) => `v${f} rule ${canonical(r)}`)),
      ...[4, 6].flatMap((f) => dump.routes[f as 4 | 6].map((r) => `v${f} route ${canonical(r)}`)),
    ].sort();

    daemon = DaemonProcess.start(ns, [...networkArgs([WAN1]), '--loglevel', '2', '--logcolor', 'off'],
      { noDbus: false, env: { DBUS_SYSTEM_BUS_ADDRESS: address } });
    await daemon.waitForOutput(/dynmhs running/, 20_000);
    const end = Date.now() + 10_000;
    while (!(await callMany(address, undefined, [c(M, PEER, 'Ping')]))[0]!.ok) {
      if (Date.now() > end) fail('no.nntb.DynMHS never answered Ping');
      await sleep(50);
    }
    await converge([WAN1], 'start');
    const kernelBefore = kernelState();
    const describeBefore = await describeState();
    const unchanged = async (what: string): Promise<void> => {
      assert.deepEqual(kernelState(), kernelBefore, `seed ${SEED}: ${what} changed the kernel`);
      assert.equal(await describeState(), describeBefore, `seed ${SEED}: ${what} changed Describe()`);
    };

    // malformed, as root and as nobody: all refused
    for (const [uid, who] of [[undefined, 'root'], [NOBODY, 'nobody']] as const) {
      const results = await calls(uid, MALFORMED, `malformed calls as ${who}`);
      results.forEach((r, i) => { if (r.ok) fail(`malformed call as ${who} succeeded: ${JSON.stringify(MALFORMED[i]).slice(0, 300)}`); });
    }
    const notAuthorized = await calls(NOBODY, PRIVILEGED, 'privileged calls as nobody');
    notAuthorized.forEach((r, i) => {
      if (r.ok || !/NotAuthorized|AccessDenied/.test(r.name ?? '')) fail(`${JSON.stringify(PRIVILEGED[i])} as nobody: ${r.ok ? 'succeeded' : `${r.name}: ${r.message}`}`);
    });
    await unchanged('refused calls');

    // seeded random calls, as root and as nobody, in batches
    const randomCalls = Array.from({ length: RANDOM_CALLS }, () => randomCall(rnd));
    let randomErrors = 0;
    for (let i = 0; i < randomCalls.length; i += 40) {
      const batch = randomCalls.slice(i, i + 40);
      const results = await calls(rnd.chance(0.5) ? undefined : NOBODY, batch, `random calls ${i}…${i + batch.length - 1}`);
      randomErrors += results.filter((r) => !r.ok).length;
    }
    await unchanged('random calls');

    // load: clients at once, reads and malformed calls mixed
    const CLIENTS = 6;
    const PER_CLIENT = 60;
    const loadStart = performance.now();
    await Promise.all(Array.from({ length: CLIENTS }, (_, k) => {
      const specs = Array.from({ length: PER_CLIENT }, () => (rnd.chance(0.7) ? rnd.pick(READS) : rnd.pick(MALFORMED.filter((m) => m.args?.[0] !== HUGE))));
      return calls(k % 2 === 0 ? undefined : NOBODY, specs, `client ${k} under load`);
    }));
    const loadMs = performance.now() - loadStart;
    await unchanged('the load');

    // still working: a valid change as root goes through, and back
    const [added] = await calls(undefined, [c(M, MI, 'AddNetwork', 'su', ['wan2', WAN2.table])], 'AddNetwork as root');
    if (!added!.ok) fail(`AddNetwork(wan2, 3000) as root: ${added!.name}: ${added!.message}`);
    await converge([WAN1, WAN2], 'AddNetwork(wan2)');
    const [removed] = await calls(undefined, [c(M, MI, 'RemoveNetwork', 's', ['wan2'])], 'RemoveNetwork as root');
    if (!removed!.ok) fail(`RemoveNetwork(wan2) as root: ${removed!.name}: ${removed!.message}`);
    await converge([WAN1], 'RemoveNetwork(wan2)');
    assert.deepEqual(kernelState(), kernelBefore, `seed ${SEED}: add and remove of wan2 left the kernel different`);

    const code = await daemon.stop('SIGTERM', 10_000);
    if (code !== 0) fail(`SIGTERM: exit ${code}`);
    assert.deepEqual(leftovers(dumpKernel(ns)), [], `seed ${SEED}: protocol 249 left after SIGTERM`);
    t.diagnostic(`${answered} calls answered: ${MALFORMED.length * 2} malformed (root, nobody), ${PRIVILEGED.length} privileged as nobody, `
      + `${RANDOM_CALLS} random (${randomErrors} errors), ${CLIENTS}×${PER_CLIENT} from ${CLIENTS} clients at once in ${loadMs.toFixed(0)} ms`);
    t.diagnostic(`answers: ${[...errorNames].sort((a, b) => b[1] - a[1]).map(([n, k]) => `${n} ${k}`).join(', ')}`);
  });
});
