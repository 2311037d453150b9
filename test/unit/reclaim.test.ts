import assert from 'node:assert/strict';
import { test } from 'node:test';
import { collectStartUpGarbage, Reclaimer, RECLAIM_MIN_CHANGES, RECLAIM_QUIET_MS } from '../../src/reclaim';
import { FakeClock } from './fixtures';

function reclaimer(): { clock: FakeClock; collections: number[]; reclaim: Reclaimer } {
  const clock = new FakeClock();
  const collections: number[] = [];
  const reclaim = new Reclaimer(() => collections.push(clock.now()), clock);
  return { clock, collections, reclaim };
}

test('a large change is collected after once quiet, not during the burst', () => {
  const { clock, collections, reclaim } = reclaimer();
  for (let pass = 0; pass < 10; pass++) {
    reclaim.afterPass(RECLAIM_MIN_CHANGES / 4);
    clock.advance(RECLAIM_QUIET_MS / 2);
  }
  assert.deepEqual(collections, [], 'collected in the middle of the burst');
  // The last pass ran RECLAIM_QUIET_MS / 2 ago.
  clock.advance(RECLAIM_QUIET_MS / 2 - 1);
  assert.deepEqual(collections, [], 'collected before the quiet time was over');
  clock.advance(1);
  assert.equal(collections.length, 1);
  clock.advance(10 * RECLAIM_QUIET_MS);
  assert.equal(collections.length, 1, 'collected again with nothing new');
});

test('small changes never cost a collection until they add up', () => {
  const { clock, collections, reclaim } = reclaimer();
  reclaim.afterPass(2);
  reclaim.afterPass(0);
  clock.advance(10 * RECLAIM_QUIET_MS);
  assert.deepEqual(collections, []);
  reclaim.afterPass(RECLAIM_MIN_CHANGES - 2);
  clock.advance(RECLAIM_QUIET_MS);
  assert.equal(collections.length, 1);
  reclaim.afterPass(1);
  clock.advance(10 * RECLAIM_QUIET_MS);
  assert.equal(collections.length, 1, 'the count starts over after a collection');
});

test('stop cancels a pending collection', () => {
  const { clock, collections, reclaim } = reclaimer();
  reclaim.afterPass(RECLAIM_MIN_CHANGES);
  reclaim.stop();
  clock.advance(10 * RECLAIM_QUIET_MS);
  assert.deepEqual(collections, []);
});

test('a small start-up is scavenged once; a large heap is left to V8 and the Reclaimer', () => {
  const calls: unknown[] = [];
  const gc = (options?: { type: 'minor' | 'major' }): void => { calls.push(options); };
  collectStartUpGarbage(gc, 6 * 1024 * 1024);
  assert.deepEqual(calls, [{ type: 'minor' }]);
  collectStartUpGarbage(gc, 200 * 1024 * 1024);
  assert.equal(calls.length, 1, 'a scavenge of a large heap is a long pause');
});
