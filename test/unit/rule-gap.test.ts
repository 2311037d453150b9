// The rule-gap probe's arithmetic on recorded `ip -ts monitor rule` transcripts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ruleGaps } from '../helpers/rule-gap';

test('a deletion and the re-addition of the same rule make one gap; other protocols and unrelated lines are ignored', () => {
  const transcript = [
    '[2026-11-29T18:30:16.393229] 2000:\tfrom 10.1.1.1 lookup 2000 proto 249',
    '[2026-11-29T18:30:16.394630] Deleted 2000:\tfrom 10.1.1.1 lookup 2000 proto 249',
    '[2026-11-29T18:30:16.395000] Deleted 100:\tfrom 10.9.9.9 lookup 100 proto static',
    '[2026-11-29T18:30:16.500000] Deleted 3000:\tfrom fd00::2 lookup 3000 proto dynmhs',
    '[2026-11-29T18:30:16.601630] 2000:\tfrom 10.1.1.1 lookup 2000 proto 249',
    'garbage',
  ].join('\n');
  const result = ruleGaps(transcript);
  assert.deepEqual(result.gaps, [{ rule: '2000: from 10.1.1.1 lookup 2000 proto 249', ms: 207 }]);
  assert.equal(result.maxMs, 207);
  assert.deepEqual(result.open, ['3000: from fd00::2 lookup 3000 proto dynmhs']);
  assert.deepEqual([result.deleted, result.added], [2, 2]);
});

test('no deletion: no gap, 0 ms', () => {
  assert.deepEqual(ruleGaps('[2026-11-29T18:30:16.393229] 2000:\tfrom 10.1.1.1 lookup 2000 proto 249\n'),
    { gaps: [], maxMs: 0, open: [], deleted: 0, added: 1 });
});
