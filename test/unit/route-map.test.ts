// The cache's route map: its index of IPv6 places (what an IPv6 replace overwrites)
// against a walk over every route, and its count of source hints.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { routeBaseKey, routeKey } from '../../src/keys';
import { placeHash, RouteMap } from '../../src/kernel/route-map';
import type { Route } from '../../src/model';
import { Random } from '../chaos/random';
import { route } from './fixtures';

function v6(r: Random): Route {
  return route({
    dst: `fd00:${r.int(0, 3)}::`, dstLength: 64, table: r.chance(0.5) ? 254 : 2000, metric: r.int(0, 1) * 100,
    oif: r.int(3, 5), gateway: r.chance(0.5) ? `fe80::${r.int(1, 3)}` : undefined,
    prefsrc: r.chance(0.2) ? `fd00::${r.int(1, 2)}` : undefined,
  });
}

function v4(r: Random): Route {
  return route({ dst: `10.0.${r.int(0, 3)}.0`, dstLength: 24, oif: r.int(3, 5), metric: r.int(0, 1) * 100 });
}

const walk = (map: RouteMap, of: Route): string[] =>
  [...map].filter(([, r]) => r.family === 6 && routeBaseKey(r) === routeBaseKey(of)).map(([k]) => k).sort();

test('the routes in an IPv6 place are those a walk finds, through random sets, deletes and clears', () => {
  for (let seed = 1; seed <= 50; seed++) {
    const r = new Random(seed);
    const map = new RouteMap();
    for (let step = 0; step < 300; step++) {
      const candidate = r.chance(0.8) ? v6(r) : v4(r);
      const roll = r.next();
      if (roll < 0.55) map.set(routeKey(candidate), candidate);
      else if (roll < 0.95) map.delete(routeKey(candidate));
      else if (roll < 0.96) map.clear();
      const probe = v6(r);
      assert.deepEqual(map.inPlace(probe).sort(), walk(map, probe), `seed ${seed}, step ${step}`);
    }
    for (const [, held] of map) if (held.family === 6) assert.ok(map.inPlace(held).includes(routeKey(held)), `seed ${seed}`);
  }
});

test('two places with one hash are told apart', () => {
  // 30-bit hashes: among some 100,000 places two collide (birthday bound).
  const seen = new Map<number, Route>();
  let pair: [Route, Route] | undefined;
  for (let i = 0; pair === undefined && i < 1_000_000; i++) {
    const candidate = route({ dst: `fd00:${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}::`, dstLength: 64, oif: 3 });
    const hash = placeHash(candidate);
    const other = seen.get(hash);
    if (other !== undefined) pair = [other, candidate]; else seen.set(hash, candidate);
  }
  assert.ok(pair !== undefined, 'no two places with one hash found');
  const [a, b] = pair;
  const map = new RouteMap();
  const b2 = { ...b, oif: 4 };
  for (const x of [a, b, b2]) map.set(routeKey(x), x);
  assert.deepEqual(map.inPlace(a), [routeKey(a)]);
  assert.deepEqual(map.inPlace(b).sort(), [routeKey(b), routeKey(b2)].sort());
  map.delete(routeKey(b));
  assert.deepEqual(map.inPlace(b), [routeKey(b2)]);
  assert.deepEqual(map.inPlace(a), [routeKey(a)]);
});

test('source hints are counted as routes come, change and go', () => {
  const map = new RouteMap();
  const a = route({ dst: '10.1.0.0', dstLength: 16, oif: 3, prefsrc: '10.0.0.2' });
  map.set(routeKey(a), a);
  assert.equal(map.namesSource('10.0.0.2'), true);
  const changed = { ...a, prefsrc: '10.0.0.3' };
  map.set(routeKey(changed), changed);
  assert.equal(map.namesSource('10.0.0.2'), false);
  assert.equal(map.namesSource('10.0.0.3'), true);
  map.delete(routeKey(changed));
  assert.equal(map.namesSource('10.0.0.3'), false);
});
