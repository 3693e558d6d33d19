import assert from 'node:assert/strict';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { Batcher } from '../../src/batcher.js';

function collecting<T>(maxBatchSize: number, maxBatchDelayMs: number): { batcher: Batcher<T>; batches: T[][] } {
  const batches: T[][] = [];
  return { batcher: new Batcher<T>(maxBatchSize, maxBatchDelayMs, (b) => batches.push(b)), batches };
}

test('a batch goes as soon as it holds MAX_BATCH_SIZE items', () => {
  const { batcher, batches } = collecting<number>(3, 60_000);
  for (let i = 1; i <= 7; i++) batcher.add(i);
  assert.deepEqual(
    batches,
    [
      [1, 2, 3],
      [4, 5, 6],
    ],
    'full batches go at once, without waiting for the delay',
  );
  assert.equal(batcher.size, 1);
  batcher.flush();
  assert.deepEqual(batches.at(-1), [7]);
});

test('a size given as a function is asked at each cut: batches follow it as it changes (a run-only script: Scorer.runGroup)', () => {
  let size = 1;
  const batches: number[][] = [];
  const batcher = new Batcher<number>(
    () => size,
    60_000,
    (b) => batches.push(b),
  );
  batcher.add(1);
  batcher.add(2);
  size = 4;
  for (let i = 3; i <= 10; i++) batcher.add(i);
  assert.deepEqual(batches, [[1], [2], [3, 4, 5, 6], [7, 8, 9, 10]]);
});

test('a partial batch goes after MAX_BATCH_DELAY_MS', async () => {
  const { batcher, batches } = collecting<string>(100, 30);
  batcher.add('a');
  await sleep(10);
  batcher.add('b');
  assert.deepEqual(batches, []);
  await sleep(60);
  assert.deepEqual(batches, [['a', 'b']], 'the delay runs from the first item');
  batcher.add('c');
  await sleep(60);
  assert.deepEqual(batches, [['a', 'b'], ['c']]);
});

test('a delay of 0 gathers what arrives in one turn of the event loop', async () => {
  const { batcher, batches } = collecting<number>(100, 0);
  for (let i = 0; i < 10; i++) batcher.add(i);
  assert.deepEqual(batches, []);
  await sleep(5);
  assert.deepEqual(batches, [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]);
  batcher.add(10);
  await nextTurn();
  await sleep(5);
  batcher.add(11);
  await sleep(5);
  assert.deepEqual(batches.slice(1), [[10], [11]], 'later turns make later batches');
});

test('while it does not wait, a batch goes at the end of the turn its first item arrived in, whatever the delay', async () => {
  let waits = false;
  const batches: number[][] = [];
  const batcher = new Batcher<number>(
    100,
    60_000,
    (b) => batches.push(b),
    () => true,
    undefined,
    () => waits,
  );
  for (let i = 0; i < 5; i++) batcher.add(i);
  assert.deepEqual(batches, [], 'gathered through the turn');
  await nextTurn();
  assert.deepEqual(batches, [[0, 1, 2, 3, 4]], 'cut at its end, not after the delay');
  batcher.add(5);
  await nextTurn();
  assert.deepEqual(batches.at(-1), [5]);

  waits = true; // busy: back to the delay
  batcher.add(6);
  await sleep(20);
  assert.equal(batches.length, 2, 'waits for the delay again');
  batcher.flush();
  assert.deepEqual(batches.at(-1), [6]);
});

test('items keep their order within and across batches', async () => {
  const { batcher, batches } = collecting<number>(7, 1);
  for (let i = 0; i < 100; i++) {
    batcher.add(i);
    if (i % 13 === 0) await sleep(3);
  }
  batcher.flush();
  assert.deepEqual(
    batches.flat(),
    Array.from({ length: 100 }, (_, i) => i),
  );
  assert.ok(batches.every((b) => b.length >= 1 && b.length <= 7));
});

test('flush sends what is gathered at once, and nothing when empty', async () => {
  const { batcher, batches } = collecting<number>(10, 60_000);
  batcher.flush();
  assert.deepEqual(batches, []);
  batcher.add(1);
  batcher.add(2);
  batcher.flush();
  assert.deepEqual(batches, [[1, 2]]);
  assert.equal(batcher.size, 0);
  await sleep(5);
  assert.equal(batches.length, 1, 'the cleared timer does not send an empty batch later');
});

test('with an order, what is held while there is no capacity is cut by priority, first come first served within a level', () => {
  const batches: Array<Array<{ id: string; priority?: number }>> = [];
  let capacity = false;
  const b = new Batcher<{ id: string; priority?: number }>(
    2,
    0,
    (batch) => batches.push(batch),
    () => capacity,
    {
      maxPriority: 9,
      infoOf: (x) => ({ priority: x.priority, redelivered: false }),
    },
  );
  for (const item of [
    { id: 'low-1', priority: 1 },
    { id: 'none' },
    { id: 'low-2', priority: 1 },
    { id: 'high', priority: 9 },
  ])
    b.add(item);
  assert.equal(batches.length, 0, 'held while every isolate is busy');
  capacity = true;
  b.wake();
  assert.deepEqual(
    batches.map((batch) => batch.map((x) => x.id)),
    [
      ['high', 'low-1'],
      ['low-2', 'none'],
    ],
  );
});
