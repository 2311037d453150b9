// Plain model values for unit tests: the DynMHS README host, wan1 (index 3) and wan2 (index 4).
import type { ObservedCache } from '../../src/kernel/cache';
import { routeKey } from '../../src/keys';
import { derive, type Derived } from '../../src/policy/derive';
import { diff } from '../../src/reconcile/diff';
import { Random } from '../chaos/random';
import type { Clock } from '../../src/reconcile/limiter';
import type { Logger } from '../../src/log';
import { DYNMHS_PROTOCOL, MAIN_TABLE, type Address, type Link, type ManagedNetwork, type Route, type Rule } from '../../src/model';

export const WAN1: Link = { index: 3, name: 'wan1', up: true, loopback: false, pointToPoint: false };
export const WAN2: Link = { index: 4, name: 'wan2', up: true, loopback: false, pointToPoint: false };

export const NET1: ManagedNetwork = { interfaceName: 'wan1', table: 2000, priority: 2000, origin: 'static' };
export const NET2: ManagedNetwork = { interfaceName: 'wan2', table: 3000, priority: 3000, origin: 'static' };

export function addr(index: number, local: string, prefixLength = local.includes(':') ? 64 : 24): Address {
  return { index, family: local.includes(':') ? 6 : 4, local, prefixLength, scope: 0 };
}

export function route(partial: Partial<Route> & { dst: string; dstLength: number }): Route {
  const family = partial.dst.includes(':') ? 6 : 4;
  return {
    family, table: MAIN_TABLE, tos: 0, metric: 0, protocol: 2, scope: 0, type: 'unicast', srcLength: 0,
    ...partial,
  } as Route;
}

export function ours(r: Route, table: number): Route {
  return { ...r, table, protocol: DYNMHS_PROTOCOL, nhid: undefined };
}

export function rule(src: string, table: number, protocol = DYNMHS_PROTOCOL): Rule {
  const family = src.includes(':') ? 6 : 4;
  return { family, priority: table, table, src, srcLength: family === 4 ? 32 : 128, protocol, plain: true };
}

export function observedOf(links: Link[], addresses: Address[], routes: Route[], rules: Rule[] = []) {
  return { links: new Map(links.map((l) => [l.index, l])), addresses, routes, rules, routesByKey: new Map(routes.map((r) => [routeKey(r), r])) };
}

export class FakeClock implements Clock {
  time = 0;
  private timers: Array<{ at: number; callback: () => void; handle: number }> = [];
  private next = 1;
  now(): number { return this.time; }
  setTimeout(callback: () => void, ms: number): unknown {
    const handle = this.next++;
    this.timers.push({ at: this.time + ms, callback, handle });
    return handle;
  }
  clearTimeout(handle: unknown): void { this.timers = this.timers.filter((t) => t.handle !== handle); }
  advance(ms: number): void {
    this.time += ms;
    const due = this.timers.filter((t) => t.at <= this.time);
    this.timers = this.timers.filter((t) => t.at > this.time);
    for (const t of due) t.callback();
  }
  pending(): number[] { return this.timers.map((t) => t.at - this.time); }
}

export function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (m: string) => { lines.push(`${level}: ${m}`); };
  return {
    lines, trace: at('trace'), debug: at('debug'), info: at('info'), warning: at('warning'), error: at('error'), fatal: at('fatal'),
    setLevel: () => undefined, level: () => 2, close: async () => undefined,
  };
}


/** A link no network is on. */
export const OTHER: Link = { index: 5, name: 'eth9', up: true, loopback: false, pointToPoint: false };
export const NETWORKS = [NET1, NET2];
export const networkOf = (table: number): string | undefined => (table === 2000 ? 'wan1' : table === 3000 ? 'wan2' : undefined);

/** A deterministic PRNG (the chaos suite's mulberry32), so a failure can be replayed by its seed. */
export function random(seed: number): () => number {
  const generator = new Random(seed);
  return () => generator.next();
}

/**
 * A full pass carried out on `cache` as the loop does it: derive and diff over its
 * snapshot, every operation applied to it, its change list started over.
 */
export function fullPassOn(cache: ObservedCache): Derived {
  const observed = cache.snapshot();
  const derived = derive(observed, NETWORKS);
  for (const op of diff(derived.desired, observed, networkOf).operations) cache.applyOperation(op);
  cache.takeChanges();
  return derived;
}

/** Route changes since the last call when nothing else changed (links, rules, addresses, a dump): else undefined. */
export function routeChangesAlone(cache: ObservedCache): ReadonlyMap<string, Route | undefined> | undefined {
  const changes = cache.takeChanges();
  return changes.addressLinks.size > 0 ? undefined : changes.routes;
}
