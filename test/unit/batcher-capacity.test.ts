/** The batcher with a capacity gate: how batches grow while every isolate is busy (src/batcher.ts). */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { Batcher } from '../../src/batcher.js';

/** A batcher whose capacity is `free` slots, each batch taking one until the test frees it. */
function gated<T>(maxBatchSize: number, maxBatchDelayMs: number, free = 0) {
  const batches: T[][] = [];
  const state = { free };
  const batcher = new Batcher<T>(
    maxBatchSize,
    maxBatchDelayMs,
    (b) => {
      state.free--;
      batches.push(b);
    },
    () => state.free > 0,
  );
  const release = () => {
    state.free++;
    batcher.wake();
  };
  return { batcher, batches, release };
}

test('while no isolate is free a due batch waits, and goes when one frees up', async () => {
  const { batcher, batches, release } = gated<number>(10, 5);
  batcher.add(1);
  batcher.add(2);
  await sleep(30);
  assert.deepEqual(batches, [], 'due, but nothing to run it on');
  release();
  assert.deepEqual(batches, [[1, 2]]);
});

test('items that arrive while every isolate is busy grow the next batch up to MAX_BATCH_SIZE, and the rest wait their turn', async () => {
  const { batcher, batches, release } = gated<number>(4, 1);
  for (let i = 0; i < 10; i++) batcher.add(i);
  assert.deepEqual(batches, []);
  assert.equal(batcher.size, 10, 'held, not cut into batches queued behind busy isolates');
  release();
  assert.deepEqual(batches, [[0, 1, 2, 3]], 'a full batch at once');
  release();
  release();
  assert.deepEqual(batches, [
    [0, 1, 2, 3],
    [4, 5, 6, 7],
    [8, 9],
  ]);
  assert.equal(batcher.size, 0);
});

test('a batch left behind is timed from its own first item, not from when the earlier one went', async () => {
  const { batcher, batches, release } = gated<string>(2, 40, 1);
  batcher.add('a');
  batcher.add('b'); // full: goes at once, taking the only slot
  batcher.add('c');
  assert.deepEqual(batches, [['a', 'b']]);
  release();
  assert.deepEqual(batches, [['a', 'b']], 'c has not waited its delay yet');
  await sleep(80);
  assert.deepEqual(batches, [['a', 'b'], ['c']]);
});

test('flush sends everything gathered as capacity allows, in batches of at most MAX_BATCH_SIZE, in order', () => {
  const { batcher, batches, release } = gated<number>(3, 60_000, 1);
  for (let i = 0; i < 7; i++) batcher.add(i);
  assert.deepEqual(batches, [[0, 1, 2]]);
  batcher.flush();
  assert.deepEqual(batches, [[0, 1, 2]], 'no capacity yet');
  release();
  release();
  assert.deepEqual(batches, [[0, 1, 2], [3, 4, 5], [6]], 'flushed items go without waiting for the delay');
});

test('items keep their order when batches are held and released at random', async () => {
  const { batcher, batches, release } = gated<number>(5, 1, 2);
  for (let i = 0; i < 200; i++) {
    batcher.add(i);
    if (i % 7 === 0) release();
    if (i % 31 === 0) await sleep(2);
  }
  batcher.flush();
  while (batcher.size > 0) release();
  assert.deepEqual(
    batches.flat(),
    Array.from({ length: 200 }, (_, i) => i),
  );
  assert.ok(batches.every((b) => b.length >= 1 && b.length <= 5));
});
