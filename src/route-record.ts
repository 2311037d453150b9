// Route objects as the decoder reads them and derive makes them: plain objects with the
// fields of Route and one slot more, not enumerable (so comparisons, spreads and JSON do
// not see it), for what is worked out about a route once and kept as long as it lives:
// a derived copy's key (keys.ts), a main-table route's copies (policy/derive.ts). No
// route is both: copies go to the networks' tables, never to main.
//
// The slot is made with the object, so V8 keeps it inside the object: added later to an
// object literal it would take a property array of its own per route, and a full table
// is a million routes and as many copies.
import type { Family, NextHop, Route, RouteType } from './model';

const MEMO = Symbol('memo');
const EMPTY_SLOT: PropertyDescriptor = { value: undefined, writable: true };

type WritableRoute = { -readonly [K in keyof Route]: Route[K] } & { [MEMO]?: unknown };

function RouteFields(this: WritableRoute, family: Family, table: number, dst: string, dstLength: number, tos: number,
  metric: number, protocol: number, scope: number, type: RouteType, oif: number | undefined,
  gateway: string | undefined, prefsrc: string | undefined, nexthops: readonly NextHop[] | undefined,
  nhid: number | undefined, onlink: boolean | undefined, src: string | undefined, srcLength: number): void {
  this.family = family;
  this.table = table;
  this.dst = dst;
  this.dstLength = dstLength;
  this.tos = tos;
  this.metric = metric;
  this.protocol = protocol;
  this.scope = scope;
  this.type = type;
  this.oif = oif;
  this.gateway = gateway;
  this.prefsrc = prefsrc;
  this.nexthops = nexthops;
  this.nhid = nhid;
  this.onlink = onlink;
  this.src = src;
  this.srcLength = srcLength;
  Object.defineProperty(this, MEMO, EMPTY_SLOT);
}
// A field added to Route is to be added here too (test/unit/route-record.test.ts fails until it is).
// Instances are plain objects for everyone else: assert.deepStrictEqual, for one, compares prototypes.
RouteFields.prototype = Object.prototype;

/** `new RouteRecord(...)`: a route with its memo slot, the fields in Route's order. */
export const RouteRecord = RouteFields as unknown as new (...fields: Parameters<typeof RouteFields>) => Route;

/** What was kept on `route` (undefined: nothing yet). */
export function memoOf(route: Route): unknown {
  return (route as WritableRoute)[MEMO];
}

/**
 * Keeps `value` on `route`. A route made otherwise (a literal, in tests) gets the slot now,
 * outside the object.
 */
export function setMemo(route: Route, value: unknown): void {
  if (Object.prototype.hasOwnProperty.call(route, MEMO)) (route as WritableRoute)[MEMO] = value;
  else Object.defineProperty(route, MEMO, { value, writable: true });
}
