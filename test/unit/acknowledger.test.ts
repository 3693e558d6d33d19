import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AckWindow, settlementFor } from '../../src/acknowledger.js';

test('an answered input is acked, whatever the queue and however often it came', () => {
  for (const queueType of ['quorum', 'classic'] as const) {
    for (const redelivered of [false, true]) assert.equal(settlementFor(true, redelivered, queueType), 'ack');
  }
});

test('an unanswered input on a quorum queue is requeued, so the delivery limit counts it', () => {
  assert.equal(settlementFor(false, false, 'quorum'), 'requeue');
  assert.equal(settlementFor(false, true, 'quorum'), 'requeue');
});

test('an unanswered input on a classic queue is requeued once, then dead-lettered', () => {
  assert.equal(settlementFor(false, false, 'classic'), 'requeue');
  assert.equal(settlementFor(false, true, 'classic'), 'dead-letter');
});

function windowOf(...tags: number[]): AckWindow {
  const w = new AckWindow();
  for (const t of tags) w.delivered(t);
  return w;
}

test('settling in order gives the highest tag, to ack with multiple', () => {
  const w = windowOf(1, 2, 3, 4, 5);
  assert.equal(w.settle([1, 2]), 2);
  assert.equal(w.settle([3]), 3);
  assert.equal(w.settle([5, 4]), 5);
  assert.equal(w.size, 0);
});

test('settling out of order gives undefined until the gap closes', () => {
  const w = windowOf(1, 2, 3, 4, 5);
  assert.equal(w.settle([2, 3]), undefined, '1 is still open');
  assert.equal(w.settle([5]), undefined);
  assert.equal(w.size, 2);
  // The caller acked 2, 3 and 5 one by one; a multiple ack up to 4 covers only 1 and 4, never a tag twice.
  assert.equal(w.settle([1, 4]), 4);
  assert.equal(w.size, 0);
});

test('a multiple ack never reaches past the tags just settled', () => {
  const w = windowOf(1, 2, 3);
  assert.equal(w.settle([3]), undefined);
  assert.equal(w.settle([1]), 1, 'not 3: tag 3 was already acked on its own');
  assert.equal(w.settle([2]), 2);
});

test('release() of a nacked tag unblocks later acks', () => {
  const w = windowOf(1, 2, 3);
  assert.equal(w.settle([2, 3]), undefined, 'held back by 1');
  w.release(1); // nacked: the broker no longer counts it
  assert.equal(w.size, 0);
  w.delivered(4);
  assert.equal(w.settle([4]), 4);
});

test('a large window compacts and keeps its answers right', () => {
  const w = new AckWindow();
  const n = 20_000;
  for (let t = 1; t <= n; t++) w.delivered(t);
  for (let t = 1; t <= n / 2; t++) assert.equal(w.settle([t]), t);
  // Everything settled so far is dropped from the bookkeeping, not kept for ever.
  const order = (w as unknown as { order: number[] }).order;
  assert.ok(order.length <= n / 2 + 4097, `order holds ${order.length} tags`);
  assert.equal(w.settle([n]), undefined);
  assert.equal(w.settle(Array.from({ length: n / 2 - 1 }, (_, i) => n / 2 + 1 + i)), n - 1);
  assert.equal(w.size, 0);
  for (let t = n + 1; t <= n + 10_000; t++) {
    w.delivered(t);
    assert.equal(w.settle([t]), t);
  }
  assert.ok((w as unknown as { order: number[] }).order.length <= 4097);
});
