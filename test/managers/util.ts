// Small helpers for the manager tests: a logger that records, a signal recorder, stats.
import type { Logger } from '../../src/log';
import { SystemBusClient, type SignalMessage } from '../../src/sources/bus';

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
