import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { packedArray, packedMap } from '../../src/packed-array.js';

// V8's own view of an array's elements kind, and its optimising compiler on demand, for these tests only.
setFlagsFromString('--allow-natives-syntax');
const hasHoleyElements = new Function('a', 'return %HasHoleyElements(a)') as (a: unknown[]) => boolean;
const prepare = new Function('f', '%PrepareFunctionForOptimization(f)') as (f: unknown) => void;
const optimiseOnNextCall = new Function('f', '%OptimizeFunctionOnNextCall(f)') as (f: unknown) => void;

/** What `fn(...args)` returns once TurboFan has compiled `fn`, after a few runs for feedback. */
function whenOptimised<A extends unknown[], R>(fn: (...args: A) => R, ...args: A): R {
  prepare(fn);
  for (let i = 0; i < 3; i++) fn(...args);
  optimiseOnNextCall(fn);
  return fn(...args);
}

const items = [{ n: 1 }, { n: 2 }, { n: 3 }];
const toObject = (x: { n: number }, i: number) => ({ m: x.n, i });

test('Array.prototype.map returns a holey array once optimised: why the message path does not hand its results on', () => {
  const map = <T, U>(xs: T[], f: (x: T, i: number) => U) => xs.map(f);
  assert.equal(hasHoleyElements(map(items, toObject)), false, 'the interpreter builds it packed');
  assert.equal(hasHoleyElements(whenOptimised(map, items, toObject)), true, 'TurboFan allocates new Array(length)');
});

test('packedMap returns a packed array in every tier, with what map would', () => {
  assert.equal(hasHoleyElements(packedMap(items, toObject)), false);
  const optimised = whenOptimised(packedMap<{ n: number }, { m: number; i: number }>, items, toObject);
  assert.equal(hasHoleyElements(optimised), false);
  assert.deepEqual(optimised, items.map(toObject));
  assert.deepEqual(
    packedMap([], () => 1),
    [],
  );
});

test('packedArray fills `length` slots, packed in every tier', () => {
  assert.equal(hasHoleyElements(whenOptimised(packedArray<string | undefined>, 4, undefined)), false);
  assert.deepEqual(packedArray(3, 'x'), ['x', 'x', 'x']);
  assert.deepEqual(packedArray(0, 'x'), []);
  assert.equal(hasHoleyElements(new Array(4).fill(undefined)), true, 'what it replaces');
});
