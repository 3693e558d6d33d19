import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LatencyTally } from '../../bench/load.js';

test('the benchmark takes a percentile of each second of a fixed-rate phase, in arrival order, leaving out a partial last one', () => {
  const t = new LatencyTally(0, '');
  // Two seconds of four replies each at four a second, then two more replies.
  const ms = [1, 2, 3, 40, 5, 6, 7, 8, 90, 91];
  assert.deepEqual(t.percentiles(99, 4, ms), [40, 8]);
  assert.deepEqual(t.percentiles(50, 4, ms), [2, 6]);
  assert.deepEqual(t.percentiles(99, 20, ms), []);
});

test('the benchmark whole-phase percentile leaves out the warm-up replies', () => {
  const t = new LatencyTally(0, '');
  assert.equal(t.percentile(100, 2, [50, 60, 1, 2, 3]), 3);
  assert.equal(t.percentile(50, 0, [4, 1, 3, 2]), 2);
});
