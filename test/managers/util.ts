// Small helpers for the manager tests: a logger that records, a signal recorder, stats,
// and the kernel's rules and table routes as the end-to-end tests compare them.
import type { Logger } from '../../src/log';
import { SystemBusClient, type SignalMessage } from '../../src/sources/bus';
import { run, waitFor, type Testbed } from './harness';
import { DaemonProcess } from '../helpers/daemon';

export interface Line { readonly level: string; readonly message: string; readonly at: number }

export function recordingLog(echo = process.env.DYNMHS_TEST_LOG === '1'): Logger & { lines: Line[] } {
  const lines: Line[] = [];
  const at = (level: string) => (message: string): void => {
    lines.push({ level, message, at: performance.now() });
    if (echo) process.stderr.write(`[${level}] ${message}\n`);
  };
  return {
    lines, trace: at('trace'), debug: at('debug'), info: at('info'), warning: at('warning'), error: at('error'), fatal: at('fatal'),
    setLevel: () => undefined, level: () => 0, close: async () => undefined,
  };
}

/** Records signals from a bus name with their arrival time (performance.now()). */
export class SignalRecorder {
  readonly signals: Array<SignalMessage & { at: number }> = [];
  private constructor(readonly bus: SystemBusClient) {}

  static async open(address: string, rules: readonly string[]): Promise<SignalRecorder> {
    const bus = new SystemBusClient({ address, log: recordingLog(false) });
    const rec = new SignalRecorder(bus);
    bus.on('signal', (msg: SignalMessage) => rec.signals.push({ ...msg, at: performance.now() }));
    for (const r of rules) await bus.addMatch(r);
    await bus.start();
    return rec;
  }

  close(): Promise<void> { return this.bus.stop(); }
}

export function percentile(samples: readonly number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function summary(label: string, samples: readonly number[]): string {
  const f = (n: number): string => n.toFixed(2);
  return `${label}: n=${samples.length} p50=${f(percentile(samples, 50))} ms p99=${f(percentile(samples, 99))} ms min=${f(Math.min(...samples))} max=${f(Math.max(...samples))}`;
}

/** A rule with a source address, as `ip -j rule` shows it. */
export interface SourceRule { readonly src: string; readonly table: string; readonly priority: number; readonly protocol: string }

/** Every rule with a source address in namespace `ns` (not `from all`), IPv4 and IPv6. */
export async function sourceRules(ns: string): Promise<SourceRule[]> {
  const out: SourceRule[] = [];
  for (const family of ['-4', '-6']) {
    const { stdout } = await run('ip', ['-n', ns, '-j', family, 'rule', 'show']);
    const parsed = JSON.parse(stdout || '[]') as Array<{ src?: string; table?: string | number; priority?: number; protocol?: string }>;
    for (const r of parsed) {
      if (r.src !== undefined && r.src !== 'all') out.push({ src: r.src, table: String(r.table), priority: r.priority ?? -1, protocol: r.protocol ?? '' });
    }
  }
  return out;
}

/** The IPv4 and IPv6 default routes of `table` in namespace `ns`, as `ip route` prints them. */
export async function defaultRoutes(ns: string, table: number): Promise<string[]> {
  const v4 = (await run('ip', ['-n', ns, '-4', 'route', 'show', 'table', String(table), 'default'])).stdout.trim();
  const v6 = (await run('ip', ['-n', ns, '-6', 'route', 'show', 'table', String(table), 'default'])).stdout.trim();
  return [v4, v6].filter((s) => s !== '');
}

/**
 * The real daemon (dist/src/main.js, --no-dbus) in namespace `ns`, taking its connections
 * from the manager on `bus`; its log goes to the testbed's logs directory.
 */
export function startDaemon(tb: Testbed, ns: string, bus: string, args: readonly string[]): DaemonProcess {
  return DaemonProcess.start(ns, args, { env: { DBUS_SYSTEM_BUS_ADDRESS: bus }, logDir: tb.logs });
}

/** Resolves once the daemon has logged that it runs (after its first reconcile pass). */
export function daemonRunning(daemon: DaemonProcess): Promise<string> {
  return daemon.waitForOutput(/dynmhs running/, 20_000);
}

/** The DHCPv4 and SLAAC addresses of `dev` in `ns`. */
export async function addressesOf(tb: Testbed, ns: string, dev: string): Promise<string[]> {
  return [...await tb.addresses(ns, dev, 4), ...await tb.addresses(ns, dev, 6)];
}

/**
 * Waits until every address of `dev` has its rule to `table` (priority = table, and no rule
 * to another table) and both default routes are in `table`; `context` is added to a timeout.
 */
export async function expectSourcePolicy(tb: Testbed, ns: string, dev: string, table: number, context: () => string = () => ''): Promise<void> {
  const addrs = await addressesOf(tb, ns, dev);
  if (addrs.length < 2) throw new Error(`${dev} has no DHCPv4 and SLAAC address: ${addrs.join(' ')}`);
  let last: unknown;
  await waitFor(`rules of ${dev} -> ${table}`, async () => {
    const rules = (await sourceRules(ns)).filter((r) => addrs.includes(r.src));
    last = rules;
    return rules.length === addrs.length && rules.every((r) => r.table === String(table) && r.priority === table);
  }, 10_000).catch((e: Error) => { throw new Error(`${e.message}; rules ${JSON.stringify(last)}${context()}`); });
  await waitFor(`default routes in table ${table}`, async () => (await defaultRoutes(ns, table)).length === 2, 10_000);
}

/** Waits until `dev`'s addresses have no rule and `table` holds no rule and no default route. */
export async function expectNoSourcePolicy(tb: Testbed, ns: string, dev: string, table: number, context: () => string = () => ''): Promise<void> {
  const addrs = await addressesOf(tb, ns, dev);
  await waitFor(`${dev}'s rules and table ${table} gone`, async () =>
    !(await sourceRules(ns)).some((r) => addrs.includes(r.src) || r.table === String(table))
    && (await defaultRoutes(ns, table)).length === 0, 10_000).catch((e: Error) => { throw new Error(`${e.message}${context()}`); });
}

/** The table of `dev`'s rules, once every address of it has one (the same for all). */
export async function tableOf(tb: Testbed, ns: string, dev: string): Promise<number> {
  return waitFor(`a table for ${dev}`, async () => {
    const addrs = await addressesOf(tb, ns, dev);
    const rules = (await sourceRules(ns)).filter((r) => addrs.includes(r.src));
    const tables = new Set(rules.map((r) => r.table));
    return addrs.length >= 2 && rules.length === addrs.length && tables.size === 1 ? Number([...tables][0]) : undefined;
  }, 20_000);
}
