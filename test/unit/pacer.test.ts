// The monitor's read pacing (src/kernel/pacer.ts): a stream is read in batches, a lone
// event at once, and the reader goes back to reading at once when the stream is over.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PAUSE_MS, ReadPacer, STREAM_GAP_MS, STREAM_MESSAGES } from '../../src/kernel/pacer';
import { FakeClock } from './fixtures';

function setup(): { pacer: ReadPacer; clock: FakeClock; calls: boolean[] } {
  const clock = new FakeClock();
  const calls: boolean[] = [];
  const pacer = new ReadPacer({ setReading: (on) => calls.push(on) }, clock);
  return { pacer, clock, calls };
}

test('lone events and small reads never pause the reader', () => {
  const { pacer, clock, calls } = setup();
  for (let i = 0; i < 100; i++) {
    pacer.afterRead(i % STREAM_MESSAGES);
    clock.advance(0.1);
  }
  assert.deepEqual(calls, []);
  assert.equal(pacer.paused, false);
});

test('a read with a stream\'s worth of messages pauses reading for PAUSE_MS, then resumes', () => {
  const { pacer, clock, calls } = setup();
  pacer.afterRead(STREAM_MESSAGES);
  assert.deepEqual(calls, [false]);
  assert.equal(pacer.paused, true);
  assert.deepEqual(clock.pending(), [PAUSE_MS]);
  clock.advance(PAUSE_MS);
  assert.deepEqual(calls, [false, true]);
  assert.equal(pacer.paused, false);
});

test('while the stream lasts, every read pauses, even a small one; after a gap, reads are prompt again', () => {
  const { pacer, clock, calls } = setup();
  pacer.afterRead(500);
  clock.advance(PAUSE_MS);
  // The backlog after the pause happened to be small: still the same stream.
  pacer.afterRead(2);
  assert.equal(pacer.paused, true);
  clock.advance(PAUSE_MS);
  assert.deepEqual(calls, [false, true, false, true]);
  // Quiet for longer than STREAM_GAP_MS: the stream is over, a lone event is read at once.
  clock.advance(STREAM_GAP_MS + 1);
  pacer.afterRead(1);
  assert.equal(pacer.paused, false);
  assert.deepEqual(calls, [false, true, false, true]);
});

test('one pause at a time, and stop() cancels the pending resume', () => {
  const { pacer, clock, calls } = setup();
  pacer.afterRead(100);
  pacer.afterRead(100);
  assert.deepEqual(calls, [false]);
  assert.equal(clock.pending().length, 1);
  pacer.stop();
  assert.equal(clock.pending().length, 0);
  assert.equal(pacer.paused, false);
  clock.advance(10);
  assert.deepEqual(calls, [false]);
});
