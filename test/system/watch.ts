// How long each of dynmhs's rules and routes is absent from the container's kernel while
// something happens (restart, upgrade, reload): `ip -ts monitor rule route` in its network
// namespace, timestamps taken by ip as each netlink notification arrives.
import type { ChildProcess } from 'node:child_process';
import { GiveUp, must, sleep, waitUntil, type Container } from './harness';

/** One span in which no copy of a rule or route was in the kernel. */
export interface Gap { readonly key: string; readonly ms: number }

export interface Absence {
  /** Every span, in order; a key absent at the end counts until the end. */
  readonly gaps: readonly Gap[];
  readonly maxMs: number;
  /** Present at the start, absent at the end. */
  readonly missingAtEnd: readonly string[];
}

export interface WatchReport {
  readonly rules: Absence;
  readonly routes: Absence;
  /** Notifications about protocol-249 rules and routes seen while watching. */
  readonly events: number;
}

const OURS = /\bproto (249|dynmhs)\b/;
const MARKER_TABLE = '64999';

function isRule(line: string): boolean { return /^\d+:\s/.test(line); }

/** A rule's or route's identity as the kernel knows it (the line, normalized). */
function identity(line: string): string {
  return line.replace(/^Deleted /, '').replace(/ expires \d+sec/, '').replace(/\s+/g, ' ').trim();
}

/** What must be present for traffic: a rule `from ADDR lookup TABLE`, or a route to DST in TABLE (any metric or priority). */
function keyOf(id: string): string {
  if (isRule(id)) return /from \S+ lookup \S+/.exec(id)?.[0] ?? id;
  const family = /:/.test(id) || / pref /.test(id) ? 'inet6' : 'inet';
  const m = /^((?:unreachable|blackhole|prohibit|throw|local|broadcast|multicast|anycast) )?(\S+)/.exec(id);
  return `${family} ${m?.[1] ?? ''}${m?.[2] ?? ''} table ${/ table (\S+)/.exec(id)?.[1] ?? 'main'}`;
}

/** Monitor timestamps, "[2026-11-29T18:28:41.776952]", as milliseconds (local time, as Date.now() in this process). */
function stampMs(stamp: string): number {
  return Date.parse(stamp.slice(0, 19)) + Number(`0.${stamp.slice(20)}`) * 1000;
}

class Presence {
  private readonly present = new Map<string, Set<string>>();
  private readonly absentSince = new Map<string, number>();
  private readonly initial: Set<string>;
  readonly gaps: Gap[] = [];

  constructor(lines: readonly string[]) {
    for (const line of lines) this.add(identity(line), 0);
    this.initial = new Set(this.present.keys());
  }

  add(id: string, at: number): void {
    const key = keyOf(id);
    const ids = this.present.get(key) ?? new Set<string>();
    if (ids.size === 0 && this.absentSince.has(key)) {
      this.gaps.push({ key, ms: at - this.absentSince.get(key)! });
      this.absentSince.delete(key);
    }
    ids.add(id);
    this.present.set(key, ids);
  }

  remove(id: string, at: number): void {
    const key = keyOf(id);
    const ids = this.present.get(key);
    if (!ids?.delete(id)) return;
    if (ids.size === 0) this.absentSince.set(key, at);
  }

  finish(end: number): Absence {
    const missingAtEnd = [...this.initial].filter((key) => (this.present.get(key)?.size ?? 0) === 0);
    const gaps = [...this.gaps, ...[...this.absentSince].map(([key, since]) => ({ key, ms: end - since }))];
    return { gaps, maxMs: Math.max(0, ...gaps.map((g) => Math.round(g.ms * 10) / 10)), missingAtEnd };
  }
}

export class PolicyWatch {
  private buffer = '';
  private readonly lines: string[] = [];

  private errors = '';

  private constructor(private readonly monitor: ChildProcess) {
    monitor.stderr!.setEncoding('utf8').on('data', (chunk: string) => { this.errors += chunk; });
    monitor.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      this.buffer += chunk;
      const parts = this.buffer.split('\n');
      this.buffer = parts.pop()!;
      this.lines.push(...parts);
    });
  }

  /** Watching from when this resolves: a marker route (not ours) must come through first. */
  static async start(container: Container): Promise<PolicyWatch> {
    const monitor = container.spawnHelper('nsenter', ['-t', String(container.pid1), '-n', 'ip', '-ts', 'monitor', 'rule', 'route']);
    const watch = new PolicyWatch(monitor);
    const ip = (...args: string[]): Promise<unknown> => must('nsenter', ['-t', String(container.pid1), '-n', 'ip', ...args]);
    // ip subscribes some time after it starts: add the marker until it comes through
    const seen = (): boolean => watch.lines.some((l) => l.includes(`table ${MARKER_TABLE}`));
    await waitUntil('ip monitor to see the marker route', async () => {
      if (monitor.exitCode !== null) throw new GiveUp(`ip monitor exited ${monitor.exitCode}: ${watch.errors}`);
      await ip('route', 'add', 'unreachable', '192.0.2.99/32', 'table', MARKER_TABLE);
      try {
        const until = Date.now() + 300;
        while (!seen() && Date.now() < until) await sleep(10);
      } finally {
        await ip('route', 'del', 'unreachable', '192.0.2.99/32', 'table', MARKER_TABLE);
      }
      return seen();
    }, 10_000, 0);
    watch.start = await container.policy();
    watch.startLine = watch.lines.length;
    return watch;
  }

  private start: { rules: string[]; routes: string[] } = { rules: [], routes: [] };
  private startLine = 0;

  /** Stop watching after a moment for late notifications; how long each rule and route was absent. */
  async stop(): Promise<WatchReport> {
    const end = Date.now();
    await new Promise((r) => setTimeout(r, 200));
    this.monitor.kill('SIGTERM');
    const rules = new Presence(this.start.rules);
    const routes = new Presence(this.start.routes);
    let events = 0;
    for (const line of this.lines.slice(this.startLine)) {
      const m = /^\[([^\]]+)\] (.*)$/.exec(line);
      if (!m || !OURS.test(m[2]!)) continue;
      events++;
      const at = stampMs(m[1]!);
      const id = identity(m[2]!);
      const set = isRule(id) ? rules : routes;
      if (m[2]!.startsWith('Deleted ')) set.remove(id, at); else set.add(id, at);
    }
    return { rules: rules.finish(end), routes: routes.finish(end), events };
  }
}

export function describeAbsence(report: WatchReport): string {
  const list = (a: Absence): string => a.gaps.map((g) => `${g.key} ${g.ms.toFixed(1)} ms`).join('; ') || 'none';
  return `rules absent max ${report.rules.maxMs} ms (${list(report.rules)}); routes absent max ${report.routes.maxMs} ms (${list(report.routes)}); ${report.events} notifications`;
}
