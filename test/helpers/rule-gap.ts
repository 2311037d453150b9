// How long were dynmhs's rules absent? Follows `ip -ts monitor rule` (rtnetlink rule
// notifications, timestamped by ip as they arrive) and pairs each deletion of a rule of
// protocol 249 with the next addition of the same rule: the time between is that rule's
// gap. A rule never deleted has no gap; one deleted and not back by the end is "open".
//
// As a library (tests): new RuleGapProbe(ns).ready, ..., .result().
// As a command (the container tests, by hand across `systemctl restart dynmhs`):
//   node dist/test/helpers/rule-gap.js [--netns NS] [--seconds N]
// runs until N seconds have passed or SIGINT/SIGTERM, then prints one JSON line:
//   {"gaps":[{"rule":"2000: from 10.0.0.2 lookup 2000","ms":0.8}],"maxMs":0.8,"open":[],"deleted":1,"added":1}
import { spawn, type ChildProcess } from 'node:child_process';

export interface RuleGap {
  readonly rule: string;
  readonly ms: number;
}

export interface RuleGapResult {
  /** Every deletion of one of our rules that was followed by its addition. */
  readonly gaps: readonly RuleGap[];
  /** The longest gap, 0 when no rule of ours was ever deleted. */
  readonly maxMs: number;
  /** Rules of ours deleted and not added back by the end. */
  readonly open: readonly string[];
  readonly deleted: number;
  readonly added: number;
}

const LINE = /^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})\]\s+(Deleted\s+)?(.*\bproto (?:249|dynmhs)\b.*)$/;

/** ip's local timestamp as microseconds (only differences matter). */
function micros(seconds: string, fraction: string): number {
  return Date.parse(`${seconds}Z`) * 1000 + Number(fraction);
}

/** Pure: the gaps in a `ip -ts monitor rule` transcript. */
export function ruleGaps(transcript: string): RuleGapResult {
  const absentSince = new Map<string, number>();
  const gaps: RuleGap[] = [];
  let deleted = 0;
  let added = 0;
  for (const line of transcript.split('\n')) {
    const m = LINE.exec(line.trim());
    if (m === null) continue;
    const at = micros(m[1]!, m[2]!);
    const rule = m[4]!.replace(/\s+/g, ' ').trim();
    if (m[3] !== undefined) {
      deleted++;
      if (!absentSince.has(rule)) absentSince.set(rule, at);
      continue;
    }
    added++;
    const since = absentSince.get(rule);
    if (since !== undefined) {
      gaps.push({ rule, ms: (at - since) / 1000 });
      absentSince.delete(rule);
    }
  }
  return { gaps, maxMs: Math.max(0, ...gaps.map((g) => g.ms)), open: [...absentSince.keys()], deleted, added };
}

export class RuleGapProbe {
  private transcript = '';
  private readonly child: ChildProcess;
  /** Resolves once `ip monitor` has had time to subscribe. */
  readonly ready: Promise<void>;

  constructor(netns?: string) {
    const args = [...(netns !== undefined ? ['-n', netns] : []), '-ts', 'monitor', 'rule'];
    this.child = spawn('ip', args, { stdio: ['ignore', 'pipe', 'ignore'] });
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (s: string) => { this.transcript += s; });
    this.ready = new Promise((resolve) => setTimeout(resolve, 150));
  }

  result(): RuleGapResult {
    return ruleGaps(this.transcript);
  }

  stop(): void {
    if (this.child.exitCode === null && this.child.pid !== undefined) {
      try { process.kill(this.child.pid, 'SIGTERM'); } catch { /* gone */ }
    }
  }
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const option = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const probe = new RuleGapProbe(option('--netns'));
  const finish = (): void => {
    probe.stop();
    process.stdout.write(`${JSON.stringify(probe.result())}\n`);
    process.exit(0);
  };
  process.on('SIGINT', finish);
  process.on('SIGTERM', finish);
  const seconds = Number(option('--seconds') ?? NaN);
  if (Number.isFinite(seconds)) setTimeout(finish, seconds * 1000);
  void probe.ready.then(() => process.stderr.write('rule-gap: watching\n'));
}
