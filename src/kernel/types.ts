import type { EventEmitter } from 'node:events';
import type { Observed, Operation, OperationResult, Route, Rule } from '../model';

/** What changed in the observed state since the last look. */
export interface KernelChanges {
  /**
   * Routes changed, by key, with the route each had before (undefined: none); undefined
   * when links or rules changed, a dump replaced a kind, or since start: then a pass must
   * look at everything.
   */
  readonly routes: ReadonlyMap<string, Route | undefined> | undefined;
  /** Indexes of the links whose addresses changed (with `routes`, nothing else did). */
  readonly addressLinks: ReadonlySet<number>;
}

/**
 * The kernel as the daemon sees it: a cache of observed state kept true by events
 * and dumps, and a way to apply operations. Emits 'changed' () whenever the observed
 * state may have changed (coalesced), and 'resynced' () after a full re-dump.
 */
export interface Kernel extends EventEmitter {
  start(): Promise<void>;
  stop(): Promise<void>;
  observed(): Observed;
  /**
   * Keys (keys.ts) of objects the kernel reported deleted since the
   * last call, other than by our own delete operations. Clears the set.
   */
  takeForeignDeletions(): ReadonlySet<string>;
  /** What changed since the last call (see KernelChanges). Starts over. */
  takeChanges(): KernelChanges;
  /** True while a re-dump runs: the observed state may be stale then, so no pass should act on it. */
  isResyncing(): boolean;
  /**
   * Applies the operations in order of kinds as given, several in flight at once.
   * Adding what exists and deleting what is gone count as success. Never rejects:
   * each operation gets its own result.
   */
  apply(operations: readonly Operation[]): Promise<OperationResult[]>;
  /**
   * Every route (all tables, both families; with `routeProtocol`, only the routes of that
   * protocol) and rule the kernel has right now, read afresh, not from the cache: for a
   * clean-up that must not trust what events said.
   */
  dumpRoutesAndRules(routeProtocol?: number): Promise<{ readonly routes: readonly Route[]; readonly rules: readonly Rule[] }>;
}
