// An in-memory kernel for tests of the loop and the daemon: the same cache the real
// adapter keeps, changed by test code the way the kernel would change, and by apply().
import { EventEmitter } from 'node:events';
import { routeKey, ruleKey } from '../keys';
import type { Address, Link, Observed, Operation, OperationResult, Route, Rule } from '../model';
import { ObservedCache, type CacheEvent } from './cache';
import type { Kernel, KernelChanges } from './types';

export class FakeKernel extends EventEmitter implements Kernel {
  private readonly state = new ObservedCache();
  /** Every operation apply() was given, in order. */
  readonly applied: Operation[] = [];
  private failures: Array<{ matches: (op: Operation) => boolean; code: string; times: number }> = [];
  started = false;

  async start(): Promise<void> { this.started = true; }
  async stop(): Promise<void> { this.started = false; }

  private foreignDeletions = new Set<string>();
  takeForeignDeletions(): ReadonlySet<string> {
    const taken = this.foreignDeletions;
    this.foreignDeletions = new Set();
    return taken;
  }

  takeChanges(): KernelChanges {
    return this.state.takeChanges();
  }

  resyncing = false;
  isResyncing(): boolean { return this.resyncing; }

  /** As after ENOBUFS: the kernel adapter re-read everything. */
  finishResync(): void {
    this.resyncing = false;
    this.emit('resynced');
    this.emit('changed');
  }

  observed(): Observed {
    return this.state.snapshot();
  }

  async apply(operations: readonly Operation[]): Promise<OperationResult[]> {
    return operations.map((op) => {
      this.applied.push(op);
      const failure = this.failures.find((f) => f.times > 0 && f.matches(op));
      if (failure !== undefined) {
        failure.times--;
        return { ok: false, code: failure.code };
      }
      this.state.applyOperation(op);
      return { ok: true };
    });
  }

  /** The fake's state is the kernel's: a dump returns what the cache holds. */
  async dumpRoutesAndRules(routeProtocol?: number): Promise<{ readonly routes: readonly Route[]; readonly rules: readonly Rule[] }> {
    const { routes, rules } = this.observed();
    return { routes: routes.filter((route) => routeProtocol === undefined || route.protocol === routeProtocol), rules: [...rules] };
  }

  clearFailures(): void {
    this.failures = [];
  }

  /** The next `times` operations that match fail with `code`. */
  failWith(matches: (op: Operation) => boolean, code: string, times = 1): void {
    this.failures.push({ matches, code, times });
  }

  addLink(link: Link): void { this.event({ kind: 'link', removed: false, link }); }
  removeLink(link: Link): void { this.event({ kind: 'link', removed: true, link }); }
  addAddress(address: Address): void { this.event({ kind: 'address', removed: false, address }); }
  removeAddress(address: Address): void { this.event({ kind: 'address', removed: true, address }); }
  addRoute(route: Route): void { this.event({ kind: 'route', removed: false, replace: false, route }); }
  replaceRoute(route: Route): void { this.event({ kind: 'route', removed: false, replace: true, route }); }
  deleteRoute(route: Route): void {
    this.foreignDeletions.add(routeKey(route));
    this.event({ kind: 'route', removed: true, replace: false, route });
  }
  addRule(rule: Rule): void { this.event({ kind: 'rule', removed: false, rule }); }
  deleteRule(rule: Rule): void {
    this.foreignDeletions.add(ruleKey(rule));
    this.event({ kind: 'rule', removed: true, rule });
  }

  hasRoute(route: Route): boolean {
    const key = routeKey(route);
    return this.observed().routes.some((r) => routeKey(r) === key);
  }

  hasRule(rule: Rule): boolean {
    const key = ruleKey(rule);
    return this.observed().rules.some((r) => ruleKey(r) === key);
  }

  private event(event: CacheEvent): void {
    this.state.apply(event);
    this.emit('changed');
  }
}
