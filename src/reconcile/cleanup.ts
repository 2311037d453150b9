// Removing everything of ours at shutdown. The list comes from a fresh dump, not from
// the cache: an event read just before (an address removed as a network manager shuts
// down) may have made the cache differ from the kernel, and whatever the cache missed
// would stay behind for good. A dump after the deletions checks that nothing is left.
// Only routes of our protocol are read: beside a million routes in main, decoding them
// twice was most of a stop's work (docs/performance.md).
import { routeKey } from '../keys';
import type { Kernel } from '../kernel/types';
import type { Logger } from '../log';
import { DYNMHS_PROTOCOL, type Observed, type Route, type Rule } from '../model';
import { describeRoute, describeRule } from '../describe';
import { desiredOf } from '../policy/derive';
import { diff } from './diff';

/** Dump, delete, dump again: this many rounds at most (routes can come back while we delete). */
const CLEANUP_ROUNDS = 3;

export interface CleanupResult {
  readonly rules: number;
  readonly routes: number;
  /** Entries of ours still in the kernel after the last round. */
  readonly left: number;
}

/** Deletes every rule and route of ours (protocol 249, outside main/local/default) the kernel holds. */
export async function removeEverythingOurs(kernel: Kernel, log: Logger): Promise<CleanupResult> {
  let rules = 0;
  let routes = 0;
  for (let round = 1; ; round++) {
    const fresh = await freshOrCached(kernel, log);
    const observed: Observed = {
      links: new Map(), addresses: [], routes: fresh.routes, rules: fresh.rules,
      routesByKey: new Map(fresh.routes.map((route) => [routeKey(route), route])),
    };
    const { operations } = diff(desiredOf([], []), observed);
    if (operations.length === 0) return { rules, routes, left: 0 };
    if (round > CLEANUP_ROUNDS) {
      for (const op of operations.slice(0, 10)) {
        const what = op.kind === 'delete-rule' ? `rule ${describeRule(op.rule)}` : op.kind === 'delete-route' ? `route ${describeRoute(op.route)}` : op.kind;
        log.warning(`Could not remove ${what}`);
      }
      return { rules, routes, left: operations.length };
    }
    const results = await kernel.apply(operations);
    results.forEach((result, i) => {
      if (!result.ok) return;
      if (operations[i].kind === 'delete-rule') rules++; else routes++;
    });
  }
}

/** A fresh dump; if the kernel will not give one, what the cache shows is the best there is. */
async function freshOrCached(kernel: Kernel, log: Logger): Promise<{ readonly routes: readonly Route[]; readonly rules: readonly Rule[] }> {
  try {
    return await kernel.dumpRoutesAndRules(DYNMHS_PROTOCOL);
  } catch (error) {
    log.warning(`Cannot re-read routes and rules for the clean-up (${(error as Error).message}); removing what was last seen instead`);
    const { routes, rules } = kernel.observed();
    return { routes, rules };
  }
}
