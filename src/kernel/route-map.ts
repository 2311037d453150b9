// The cache's routes by key (keys.ts routeKey), which also knows which addresses the
// routes name as their source hint (prefsrc). Every IPv4 address removal asks whether a
// route names that address (the kernel may drop such routes without telling: cache.ts),
// and with a full table in main a walk over every route for each one was the cost of a
// lone removal; a count per source address answers at once.
//
// It also finds the IPv6 routes in one place (keys.ts routeBaseKey: prefix, source,
// metric), which is what an IPv6 `replace` overwrites whatever its device and gateway: a
// routing daemon replaces routes by the thousand, and a walk over every route for each
// made such a burst quadratic. The index holds a hash of the place (a small integer) and
// the keys the map holds anyway, not a string per route.
import { routeBaseKey } from '../keys';
import type { Route } from '../model';

export class RouteMap extends Map<string, Route> {
  /** Source hint → how many of the routes name it. */
  private readonly sources = new Map<string, number>();
  /** Hash of an IPv6 place → the keys of the routes there (hashes may collide: see inPlace). */
  private readonly places = new Map<number, string | string[]>();

  override set(key: string, route: Route): this {
    const before = super.get(key);
    if (before !== undefined && before.prefsrc !== undefined) this.uncount(before.prefsrc);
    // A key names its place (routeBaseKey is part of routeKey): only a new key is a new entry.
    if (before === undefined && route.family === 6) this.addToPlace(placeHash(route), key);
    if (route.prefsrc !== undefined) this.sources.set(route.prefsrc, (this.sources.get(route.prefsrc) ?? 0) + 1);
    return super.set(key, route);
  }

  override delete(key: string): boolean {
    const before = super.get(key);
    if (before === undefined) return false;
    if (before.prefsrc !== undefined) this.uncount(before.prefsrc);
    if (before.family === 6) this.removeFromPlace(placeHash(before), key);
    return super.delete(key);
  }

  override clear(): void {
    this.sources.clear();
    this.places.clear();
    super.clear();
  }

  /** The keys of the IPv6 routes in `route`'s place (routeBaseKey), `route`'s own included if held. */
  inPlace(route: Route): string[] {
    const keys = this.places.get(placeHash(route));
    if (keys === undefined) return [];
    const base = routeBaseKey(route);
    return (typeof keys === 'string' ? [keys] : keys).filter((k) => routeBaseKey(super.get(k)!) === base);
  }

  private addToPlace(hash: number, key: string): void {
    const keys = this.places.get(hash);
    if (keys === undefined) this.places.set(hash, key);
    else if (typeof keys === 'string') this.places.set(hash, [keys, key]);
    else keys.push(key);
  }

  private removeFromPlace(hash: number, key: string): void {
    const keys = this.places.get(hash);
    if (keys === undefined) return;
    if (typeof keys === 'string') {
      if (keys === key) this.places.delete(hash);
      return;
    }
    const left = keys.filter((k) => k !== key);
    this.places.set(hash, left.length === 1 ? left[0] : left);
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

/**
 * A 30-bit FNV-1a hash of what routeBaseKey names (a small integer: a V8 Smi, kept in
 * the map's entry itself), computed from the fields without making that string.
 */
export function placeHash(route: Route): number {
  let hash = mixText(0x811c9dc5, route.dst);
  hash = mixText(hash, route.src ?? '');
  hash = Math.imul(hash ^ route.table, 0x01000193);
  hash = Math.imul(hash ^ route.dstLength, 0x01000193);
  hash = Math.imul(hash ^ route.srcLength, 0x01000193);
  hash = Math.imul(hash ^ route.tos, 0x01000193);
  hash = Math.imul(hash ^ route.metric, 0x01000193);
  return hash & 0x3fffffff;
}

function mixText(hash: number, text: string): number {
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  // A separator: "fd00::1" + "" and "fd00::" + "1" are two places.
  return Math.imul(hash ^ 0x7c, 0x01000193);
}
