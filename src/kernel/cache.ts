// The observed state, updated from rtnetlink dumps and events. It also mimics the
// kernel's silent flushes: IPv4 sends no RTM_DELROUTE for the routes it drops when a
// link goes down or loses its last address, or for main's routes whose source hint
// goes, so the cache drops them itself (and the kernel adapter re-dumps routes when
// such a flush may have happened, to be sure).
import { identicalRoutes, ipv4PlaceKey, mainIpv4Key, routeKey, ruleKey } from '../keys';
import { MAIN_TABLE, type Address, type Link, type Observed, type Operation, type Route, type Rule } from '../model';
import { RouteMap } from './route-map';
import type { KernelChanges } from './types';

export type CacheKind = 'links' | 'addresses' | 'routes' | 'rules';

export type CacheEvent =
  | { readonly kind: 'link'; readonly removed: boolean; readonly link: Link }
  | { readonly kind: 'address'; readonly removed: boolean; readonly address: Address }
  | { readonly kind: 'route'; readonly removed: boolean; readonly replace: boolean; readonly route: Route }
  | { readonly kind: 'rule'; readonly removed: boolean; readonly rule: Rule };

const LOCAL_TABLE = 255;

function addressKey(a: Address): string {
  return `${a.index}|${a.family}|${a.local}/${a.prefixLength}`;
}

export class ObservedCache {
  private readonly links = new Map<number, Link>();
  private readonly addresses = new Map<string, Address>();
  private readonly routes = new RouteMap();
  private readonly rules = new Map<string, Rule>();
  private snapshotCache?: Observed;
  /**
   * Routes changed since the last takeChanges(), by key, each with the route it
   * had before the first of those changes (undefined: there was none), also those the
   * cache dropped itself (see afterIpv4Removal). Undefined when links or rules changed
   * too, or a dump replaced a whole kind: then the next pass must look at everything.
   * Address changes keep it (see addressLinks).
   */
  private routeChanges: Map<string, Route | undefined> | undefined;
  /** Links whose addresses changed since the last takeChanges() (with routeChanges: nothing but routes and these). */
  private addressLinks = new Set<number>();
  private redumpRequested = false;

  /**
   * What changed since the last call: routes by key (see routeChanges; undefined: look at
   * everything) and the links whose addresses changed. Starts over.
   */
  takeChanges(): KernelChanges {
    const changes = { routes: this.routeChanges, addressLinks: this.addressLinks };
    this.routeChanges = new Map();
    this.addressLinks = new Set();
    return changes;
  }

  /** Replaces everything of one kind with a dump's result. */
  replaceAll(kind: CacheKind, events: readonly CacheEvent[]): void {
    // Route objects that did not change stay the same objects (see applyRoute).
    const previous = kind === 'routes' ? new Map(this.routes) : undefined;
    this[kind].clear();
    for (const event of events) {
      if (previous !== undefined && event.kind === 'route') {
        const key = routeKey(event.route);
        const old = previous.get(key);
        this.applyRoute(old !== undefined && identicalRoutes(old, event.route) ? old : event.route, event.removed, event.replace, true, key);
        continue;
      }
      this.apply(event);
    }
    this.snapshotCache = undefined;
    this.routeChanges = undefined;
  }

  /** Returns true when the event changed the cache. */
  apply(event: CacheEvent): boolean {
    this.snapshotCache = undefined;
    if (event.kind === 'route') return this.applyRoute(event.route, event.removed, event.replace);
    if (event.kind === 'address') {
      const changed = this.applyAddress(event.address, event.removed);
      if (changed && this.routeChanges !== undefined) this.addressLinks.add(event.address.index);
      return changed;
    }
    const changed = event.kind === 'link' ? this.applyLink(event.link, event.removed) : this.applyRule(event.rule, event.removed);
    if (changed) this.routeChanges = undefined;
    return changed;
  }

  /** The link is known and administratively up. */
  linkUp(index: number): boolean {
    return this.links.get(index)?.up === true;
  }

  /** What a successful operation did, before its event arrives. */
  applyOperation(op: Operation): void {
    this.snapshotCache = undefined;
    // The pass that made these changes accounts for them itself: they are not changes for
    // the next pass to look at, and its rule changes leave the rules as it wanted them,
    // so the next pass may still look at route changes alone (see takeChanges).
    switch (op.kind) {
      case 'add-route': this.applyRoute(op.route, false, false, false); break;
      case 'replace-route': this.applyRoute(op.route, false, true, false); break;
      case 'delete-route': this.applyRoute(op.route, true, false, false); break;
      case 'add-rule': this.applyRule(op.rule, false); break;
      case 'delete-rule': this.applyRule(op.rule, true); break;
    }
  }

  /**
   * Links, addresses and rules are copied (they are few); routes can be tens of
   * thousands, so `routesByKey` is the cache's own map, read-only, and `routes` is
   * listed only when asked for. Read a snapshot's routes before the next event can
   * arrive, that is, before the next await.
   */
  snapshot(): Observed {
    if (this.snapshotCache !== undefined) return this.snapshotCache;
    const routesByKey: ReadonlyMap<string, Route> = this.routes;
    let routes: readonly Route[] | undefined;
    this.snapshotCache = {
      links: new Map(this.links),
      addresses: [...this.addresses.values()],
      get routes(): readonly Route[] {
        routes ??= [...routesByKey.values()];
        return routes;
      },
      rules: [...this.rules.values()],
      routesByKey,
    };
    return this.snapshotCache;
  }

  private applyLink(link: Link, removed: boolean): boolean {
    const before = this.links.get(link.index);
    if (removed) {
      if (before === undefined) return false;
      this.links.delete(link.index);
      for (const [key, a] of this.addresses) if (a.index === link.index) this.addresses.delete(key);
      this.dropRoutesVia(link.index, 'all');
      return true;
    }
    this.links.set(link.index, link);
    if (before?.up && !link.up) this.dropRoutesVia(link.index, 'all');
    return before === undefined || before.name !== link.name || before.up !== link.up
      || before.pointToPoint !== link.pointToPoint || before.loopback !== link.loopback;
  }

  private applyAddress(address: Address, removed: boolean): boolean {
    const key = addressKey(address);
    if (!removed) {
      const had = this.addresses.has(key);
      this.addresses.set(key, address);
      return !had;
    }
    const known = this.addresses.delete(key);
    if (address.family === 4) this.afterIpv4Removal(address, known);
    return known;
  }

  /**
   * The kernel drops, without telling, the IPv4 routes via a link whose last IPv4 address
   * goes, and main's routes whose source hint is an address no longer on the host. The
   * cache drops them too, as route changes, and asks for routes to be read again where
   * that may have happened (takeRedumpRequest): the link's last address, or a route
   * naming the address as its source hint. A walk over the routes only when one does:
   * a lone address change costs neither a walk nor a re-read.
   */
  private afterIpv4Removal(gone: Address, known: boolean): void {
    let stillLocal = false;
    let lastOnLink = true;
    for (const a of this.addresses.values()) {
      if (a.family !== 4) continue;
      if (a.local === gone.local) stillLocal = true;
      if (a.index === gone.index) lastOnLink = false;
    }
    // From main only (fib_sync_down_addr, VRFs aside): copies in other tables stay, and it
    // is for the next pass to remove them.
    const flush = known && !stillLocal;
    const named = this.routes.namesSource(gone.local);
    if (lastOnLink || named) this.redumpRequested = true;
    if (flush && named) {
      for (const [k, r] of this.routes) {
        if (r.family === 4 && r.table === MAIN_TABLE && r.prefsrc === gone.local) {
          this.noteRouteChange(k, r);
          this.routes.delete(k);
        }
      }
    }
    if (lastOnLink && known) this.dropRoutesVia(gone.index, 4);
  }

  private applyRoute(route: Route, removed: boolean, replace: boolean, note = true, key = routeKey(route)): boolean {
    if (route.table === LOCAL_TABLE) return false;
    const before = this.routes.get(key);
    if (removed) {
      if (before === undefined) return false;
      if (note) this.noteRouteChange(key, before);
      return this.routes.delete(key);
    }
    // The echo of a route we added, or a dump repeating what we know: keep the object we
    // have, so passes see nothing changed (and derived copies keep their memoized keys).
    if (!replace && before !== undefined && identicalRoutes(before, route)) return false;
    if (replace && route.family === 4 && route.table === MAIN_TABLE) this.replaceInMain(key, route);
    if (replace && route.family === 6) {
      for (const k of this.routes.inPlace(route)) {
        if (note) this.noteRouteChange(k, this.routes.get(k));
        this.routes.delete(k);
      }
    }
    if (note) this.noteRouteChange(key, this.routes.get(key));
    this.routes.set(key, route);
    return true;
  }

  /**
   * `ip route replace` in main replaced the first IPv4 route in the new route's place,
   * whatever its device. The only one there: it goes. Several there: the kernel does
   * not say which one it was, so routes are to be read again (takeRedumpRequest).
   */
  private replaceInMain(key: string, route: Route): void {
    // Per link, not a walk over every route: a routing daemon replaces main's routes by the 100,000.
    const place = ipv4PlaceKey(route);
    const here: string[] = [];
    for (const via of [undefined, 'mp' as const, ...this.links.keys()]) {
      const k = mainIpv4Key(place, via);
      if (this.routes.has(k)) here.push(k);
    }
    if (here.length > 1) this.redumpRequested = true;
    else if (here.length === 1 && here[0] !== key) {
      this.noteRouteChange(here[0], this.routes.get(here[0]));
      this.routes.delete(here[0]);
    }
  }

  /** True once after an event the cache cannot follow exactly: routes are to be dumped again. */
  takeRedumpRequest(): boolean {
    const requested = this.redumpRequested;
    this.redumpRequested = false;
    return requested;
  }

  private noteRouteChange(key: string, before: Route | undefined): void {
    if (this.routeChanges !== undefined && !this.routeChanges.has(key)) this.routeChanges.set(key, before);
  }

  private applyRule(rule: Rule, removed: boolean): boolean {
    const key = ruleKey(rule);
    if (removed) return this.rules.delete(key);
    const had = this.rules.has(key);
    this.rules.set(key, rule);
    return !had;
  }

  private dropRoutesVia(index: number, family: 4 | 'all'): void {
    for (const [key, route] of this.routes) {
      if (family !== 'all' && route.family !== family) continue;
      const via = route.nexthops !== undefined
        ? route.nexthops.every((hop) => hop.oif === index)
        : route.oif === index;
      if (via) {
        this.noteRouteChange(key, route);
        this.routes.delete(key);
      }
    }
  }
}
