// The cache's routes by key (keys.ts routeKey), which also knows which addresses the
// routes name as their source hint (prefsrc). Every IPv4 address removal asks whether a
// route names that address (the kernel may drop such routes without telling: cache.ts),
// and with a full table in main a walk over every route for each one was the cost of a
// lone removal; a count per source address answers at once.
import type { Route } from '../model';

export class RouteMap extends Map<string, Route> {
  /** Source hint → how many of the routes name it. */
  private readonly sources = new Map<string, number>();

  override set(key: string, route: Route): this {
    const before = super.get(key);
    if (before !== undefined && before.prefsrc !== undefined) this.uncount(before.prefsrc);
    if (route.prefsrc !== undefined) this.sources.set(route.prefsrc, (this.sources.get(route.prefsrc) ?? 0) + 1);
    return super.set(key, route);
  }

  override delete(key: string): boolean {
    const before = super.get(key);
    if (before === undefined) return false;
    if (before.prefsrc !== undefined) this.uncount(before.prefsrc);
    return super.delete(key);
  }

  override clear(): void {
    this.sources.clear();
    super.clear();
  }

  /** Some route names `address` as its source hint. */
  namesSource(address: string): boolean {
    return this.sources.has(address);
  }

  private uncount(source: string): void {
    const left = (this.sources.get(source) ?? 1) - 1;
    if (left === 0) this.sources.delete(source); else this.sources.set(source, left);
  }
}
