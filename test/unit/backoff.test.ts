import assert from 'node:assert/strict';
import test from 'node:test';
import { backoffMs } from '../../src/backoff.js';

test('backoff starts at initialMs, doubles per attempt and stops at maxMs', () => {
  const b = { initialMs: 200, maxMs: 1000 };
  assert.deepEqual(
    [0, 1, 2, 3, 4, 10].map((a) => backoffMs(b, a)),
    [200, 400, 800, 1000, 1000, 1000],
  );
});
