// Route records: the fields of Route plus a memo slot nobody else sees.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { keyedRoute, routeKey } from '../../src/keys';
import { cachedCopy } from '../../src/policy/derive';
import { memoOf, RouteRecord, setMemo } from '../../src/route-record';
import type { Route } from '../../src/model';
import { route } from './fixtures';

const viaWan1 = (): Route => new RouteRecord(4, 254, '10.1.0.0', 16, 0, 100, 3, 0, 'unicast', 3, '10.0.0.1', undefined,
  undefined, undefined, false, undefined, 0);

test('a record is a plain object with Route\'s fields, in order; the memo is seen by no comparison, spread or JSON', () => {
  const record = viaWan1();
  setMemo(record, 'remembered');
  const literal = {
    family: 4, table: 254, dst: '10.1.0.0', dstLength: 16, tos: 0, metric: 100, protocol: 3, scope: 0, type: 'unicast',
    oif: 3, gateway: '10.0.0.1', prefsrc: undefined, nexthops: undefined, nhid: undefined, onlink: false, src: undefined,
    srcLength: 0,
  } satisfies Record<keyof Route, unknown>;
  // `satisfies` makes every field of Route appear above, so a field RouteRecord lacks fails here.
  assert.equal(Object.getPrototypeOf(record), Object.prototype);
  assert.deepEqual(Object.keys(record), Object.keys(literal));
  assert.deepStrictEqual(record, literal);
  assert.deepStrictEqual({ ...record }, literal);
  assert.equal(JSON.stringify(record), JSON.stringify(literal));
  assert.equal(memoOf(record), 'remembered');
  assert.equal(memoOf({ ...record }), undefined);
});

test('a literal route gets its memo when first asked to keep one', () => {
  const literal = route({ dst: '10.2.0.0', dstLength: 16, oif: 3 });
  assert.equal(memoOf(literal), undefined);
  setMemo(literal, 'first');
  setMemo(literal, 'second');
  assert.equal(memoOf(literal), 'second');
  assert.deepEqual(Object.keys(literal), Object.keys(route({ dst: '10.2.0.0', dstLength: 16, oif: 3 })));
});

test('a main-table route keeps its copy in the slot, the copy its key; neither is taken for the other', () => {
  const main = viaWan1();
  const copy = cachedCopy(main, 3, 2000)!;
  assert.equal(memoOf(main), copy, 'the main route remembers its copy');
  assert.equal(memoOf(copy), routeKey({ ...copy }), 'the copy remembers its key');
  assert.equal(cachedCopy(main, 3, 2000), copy, 'the same copy the next time');
  // Asking a main route for its key never overwrites its copies (nor reads them as a key).
  assert.equal(keyedRoute(main), routeKey({ ...main }));
  assert.equal(routeKey(main), routeKey({ ...main }));
  assert.equal(memoOf(main), copy);
});

test('a main route asked for its key first still gets its copies, and keeps the key', () => {
  const main = viaWan1();
  const key = keyedRoute(main);
  const copy = cachedCopy(main, 3, 2000)!;
  assert.deepEqual(copy, { ...main, table: 2000, protocol: 249 });
  assert.equal(memoOf(copy), routeKey({ ...copy }));
  assert.equal(memoOf(main), key);
  assert.equal(routeKey(main), key);
});
