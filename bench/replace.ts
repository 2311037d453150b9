// (9) IPv6 replaces beside a large IPv6 table: a routing daemon updates its routes with
// `replace`, and an IPv6 replace overwrites whatever route holds the place (prefix,
// source, metric), whatever its gateway, so the daemon has to find that route.
//
// For each subject, in fresh namespaces: BENCH_REPLACE_ROUTES (default 20,000) IPv6 /128
// routes in main via wan1's gateway fd00:101::1; the daemon starts and mirrors them into
// wan1's table (2000). Then the first BENCH_REPLACE_BURST (default 5,000) of them are
// replaced, in one `ip -batch`, by routes via fd00:101::3. Measured: from the batch's start
// until table 2000 holds every replaced copy via the new gateway and none of them via the
// old one (table dumps every 100 ms: the figure is that coarse), and the batch's own time.

import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { sleep } from '../test/helpers/wait';
import type { Topology } from '../test/helpers/netns';
import type { Running, Subject } from './subjects';

const ROUTES = Number(process.env.BENCH_REPLACE_ROUTES ?? 20000);
const BURST = Number(process.env.BENCH_REPLACE_BURST ?? 5000);
const TIMEOUT_MS = Number(process.env.BENCH_REPLACE_TIMEOUT_S ?? 120) * 1000;
const OLD_GATEWAY = 'fd00:101::1';
const NEW_GATEWAY = 'fd00:101::3';

export interface ReplaceTools {
  readonly subjects: readonly Subject[];
  sink(s: Subject): Record<string, unknown>;
  withTopology<T>(tag: string, fn: (topo: Topology) => Promise<T>): Promise<T>;
  stopSubject(s: Subject, d: Running): Promise<unknown>;
}

export type ReplaceRun = { routes: number; replaced: number; batchMs: number; convergeMs: number | null; stale: number; fresh: number; error?: string };

const now = (): number => performance.timeOrigin + performance.now();
const r1 = (x: number): number => Math.round(x * 1000) / 1000;

function lines(verb: 'add' | 'replace', count: number, gateway: string): string[] {
  // Numbered from 1: fd00:9000::0 prints as fd00:9000::.
  return Array.from({ length: count }, (_, i) => `route ${verb} fd00:9000::${(i + 1).toString(16)}/128 via ${gateway} dev wan1`);
}

/** Copies in table 2000 of the first `replaced` routes via each gateway. */
function copies(topo: Topology, replaced: number): { old: number; fresh: number; all: number } {
  const r = spawnSync('ip', ['-n', topo.host, '-6', 'route', 'show', 'table', '2000'], { encoding: 'utf8', maxBuffer: 256 << 20 });
  let old = 0, fresh = 0, all = 0;
  for (const line of r.stdout.split('\n')) {
    const m = /^fd00:9000::([0-9a-f]+) via (\S+) /.exec(line);
    if (m === null) continue;
    all++;
    if (parseInt(m[1], 16) > replaced) continue;
    if (m[2] === OLD_GATEWAY) old++; else if (m[2] === NEW_GATEWAY) fresh++;
  }
  return { old, fresh, all };
}

async function pollUntil(done: () => boolean, timeoutMs: number): Promise<number | null> {
  const deadline = now() + timeoutMs;
  while (now() < deadline) {
    if (done()) return now();
    await sleep(100);
  }
  return null;
}

export async function benchReplace(tools: ReplaceTools): Promise<void> {
  for (const s of tools.subjects) {
    const run = await tools.withTopology('r', async (topo): Promise<ReplaceRun> => {
      topo.batch(topo.host, lines('add', ROUTES, OLD_GATEWAY));
      const d = s.start(topo.host);
      try {
        const mirrored = await pollUntil(() => copies(topo, 0).all >= ROUTES, 60000);
        if (mirrored === null) throw new Error(`${s.name} did not mirror ${ROUTES} IPv6 routes within 60 s`);
        const t0 = now();
        topo.batch(topo.host, lines('replace', BURST, NEW_GATEWAY));
        const batchMs = now() - t0;
        let last = { old: 0, fresh: 0, all: 0 };
        const seen = await pollUntil(() => {
          last = copies(topo, BURST);
          return last.fresh === BURST && last.old === 0;
        }, TIMEOUT_MS);
        return { routes: ROUTES, replaced: BURST, batchMs: r1(batchMs), convergeMs: seen === null ? null : r1(seen - t0), stale: last.old, fresh: last.fresh };
      } catch (e) {
        return { routes: ROUTES, replaced: BURST, batchMs: 0, convergeMs: null, stale: -1, fresh: -1, error: (e as Error).message };
      } finally {
        await tools.stopSubject(s, d);
      }
    });
    console.error(`    ${s.name}: ${run.convergeMs === null ? 'NOT converged' : `${Math.round(run.convergeMs)} ms`} (batch ${Math.round(run.batchMs)} ms), `
      + `${run.fresh} of ${run.replaced} copies via the new gateway, ${run.stale} via the old${run.error ? `; ${run.error}` : ''}`);
    tools.sink(s).replace6 = run;
  }
}
