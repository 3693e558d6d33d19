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

test("the benchmark's row is its median round by CPU, with the median rate, and keeps each round's broker CPU and batch", async () => {
  const { medianRound } = await import('../../bench/drain.js');
  const round = (msgPerS: number, cpuMsPerMsg: number, brokerCpuMsPerMsg: number) =>
    ({ label: 'r', msgPerS, cpuMsPerMsg, loadAvg: 1, brokerCpuMsPerMsg, meanBatch: 50 }) as unknown as Parameters<
      typeof medianRound
    >[0][number];
  const row = medianRound([round(10, 0.02, 0.05), round(30, 0.01, 0.04), round(20, 0.03, 0.06)]);
  assert.equal(row.cpuMsPerMsg, 0.02);
  assert.equal(row.msgPerS, 20);
  assert.deepEqual(
    row.rounds?.map((r) => [r.msgPerS, r.brokerCpuMsPerMsg, r.meanBatch]),
    [
      [10, 0.05, 50],
      [30, 0.04, 50],
      [20, 0.06, 50],
    ],
  );
});

test("the benchmark's rounds each start one row later, so every row drains in every place once", async () => {
  const { rotated } = await import('../../bench/drain.js');
  const rows = ['ours', 'noop', 'contract'] as const;
  const rounds = [0, 1, 2].map((r) => rotated(rows, r));
  assert.deepEqual(rounds, [
    ['ours', 'noop', 'contract'],
    ['noop', 'contract', 'ours'],
    ['contract', 'ours', 'noop'],
  ]);
  for (const row of rows)
    assert.deepEqual(
      rounds.map((order) => order.indexOf(row)).sort(),
      [0, 1, 2],
      `${row} drains first, second and third once`,
    );
  assert.deepEqual(rotated(rows, 4), rotated(rows, 1));
  assert.deepEqual(rows, ['ours', 'noop', 'contract'], 'the rows given are not reordered');
});
