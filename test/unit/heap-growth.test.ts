import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { appliedHeapFactors } from '../support/gc-trace.js';

/** The factors of the old generation's limits V8 set in a child that applied HEAP_GROWING_PERCENT=percent at runtime. */
function limitFactors(percent: number): number[] {
  const out = execFileSync(
    process.execPath,
    ['--expose-gc', '--trace-gc-verbose', '--import', 'tsx', 'test/support/heap-growth-child.ts', String(percent)],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  );
  assert.match(out, /kept 300000/);
  return appliedHeapFactors(out);
}

test('HEAP_GROWING_PERCENT set after V8 has started bounds the limit of the next full collection', () => {
  // 1000: a factor of 11, which V8 never picks on its own (at most 4), so the two cannot be confused.
  const bounded = limitFactors(1000);
  assert.ok(bounded.length > 0, 'the child made no full collection');
  assert.ok(
    bounded.every((f) => f === 11),
    `factors with HEAP_GROWING_PERCENT=1000: ${bounded.join(', ')}`,
  );
  const own = limitFactors(0);
  assert.ok(own.length > 0 && own.every((f) => f <= 4), `V8's own factors: ${own.join(', ')}`);
});
