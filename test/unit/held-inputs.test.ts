import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HeldInputs } from '../../src/held-inputs.js';

const ids = (held: HeldInputs<string>) => held.drain();

test('without priorities, held inputs are taken in arrival order', () => {
  const held = new HeldInputs<string>(0);
  for (const id of ['a', 'b', 'c']) held.add(id, { priority: 9, redelivered: false });
  assert.deepEqual(ids(held), ['a', 'b', 'c'], 'MAX_PRIORITY 0: priority is ignored');
});

test('a high-priority input added after low ones is taken before them; first come first served within a level', () => {
  const held = new HeldInputs<string>(10);
  held.add('low1', { redelivered: false });
  held.add('low2', { priority: 0, redelivered: false });
  held.add('mid1', { priority: 5, redelivered: false });
  held.add('high', { priority: 9, redelivered: false });
  held.add('mid2', { priority: 5, redelivered: false });
  assert.deepEqual(ids(held), ['high', 'mid1', 'mid2', 'low1', 'low2']);
});

test('redelivered inputs keep going first, before any priority, in their own arrival order', () => {
  const held = new HeldInputs<string>(10);
  held.add('high', { priority: 10, redelivered: false });
  held.add('again1', { priority: 0, redelivered: true });
  held.add('again2', { redelivered: true });
  assert.deepEqual(ids(held), ['again1', 'again2', 'high']);
});

test('a priority above MAX_PRIORITY counts as MAX_PRIORITY, as RabbitMQ treats it; odd values count as 0', () => {
  const held = new HeldInputs<string>(3);
  held.add('three', { priority: 3, redelivered: false });
  held.add('two-hundred', { priority: 200, redelivered: false });
  held.add('negative', { priority: -1, redelivered: false });
  held.add('nan', { priority: Number.NaN, redelivered: false });
  held.add('one', { priority: 1, redelivered: false });
  assert.equal(held.levelOf({ priority: 200, redelivered: false }), 3);
  assert.deepEqual(ids(held), ['three', 'two-hundred', 'one', 'negative', 'nan']);
});

test('take(n) gives the next batch in scoring order and leaves the rest held', () => {
  const held = new HeldInputs<string>(5);
  for (let i = 0; i < 5; i++) held.add(`low${i}`, { redelivered: false });
  held.add('high', { priority: 5, redelivered: false });
  assert.deepEqual(held.take(3), ['high', 'low0', 'low1']);
  assert.equal(held.size, 3);
  held.add('again', { redelivered: true });
  assert.deepEqual(held.take(10), ['again', 'low2', 'low3', 'low4']);
  assert.equal(held.size, 0);
  assert.equal(held.shift(), undefined);
  assert.deepEqual(held.take(4), []);
});

test('many inputs through one level keep their order (the FIFO compacts as it goes)', () => {
  const held = new HeldInputs<number>(1);
  const out: number[] = [];
  for (let i = 0; i < 5000; i++) {
    held.add(i, { redelivered: false });
    if (i % 3 === 0) out.push(held.shift()!);
  }
  out.push(...held.drain());
  assert.deepEqual(
    out,
    Array.from({ length: 5000 }, (_, i) => i),
  );
});

test('MAX_PRIORITY out of range is refused with the rule and the value', () => {
  assert.throws(() => new HeldInputs(256), /from 0 to 255, got 256/);
  assert.throws(() => new HeldInputs(1.5), /got 1.5/);
});

test('nextBatch gives a redelivered input alone, else up to n by priority', () => {
  const held = new HeldInputs<string>(5);
  held.add('a', { redelivered: false });
  held.add('b', { priority: 3, redelivered: false });
  held.add('again1', { redelivered: true });
  held.add('again2', { redelivered: true });
  held.add('c', { redelivered: false });
  assert.deepEqual(held.nextBatch(10), ['again1']);
  assert.deepEqual(held.nextBatch(10), ['again2']);
  assert.deepEqual(held.nextBatch(2), ['b', 'a']);
  held.add('again3', { redelivered: true });
  assert.deepEqual(held.nextBatch(10), ['again3'], 'a redelivered input arriving later still goes next, alone');
  assert.deepEqual(held.nextBatch(10), ['c']);
  assert.deepEqual(held.nextBatch(10), []);
  assert.equal(held.size, 0);
});
