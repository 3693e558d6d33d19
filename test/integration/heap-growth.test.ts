/**
 * HEAP_GROWING_PERCENT reaches V8 in the consumer as users start it: the full collections of its boot
 * that follow the config's load use the factor it sets (the boot makes several: the model, the
 * broker client, the HTTP server).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { consumersOfFile } from '../support/consumer-process.js';
import { appliedHeapFactors } from '../support/gc-trace.js';

const { consumers } = consumersOfFile();

test('the consumer sets V8 heap growth from HEAP_GROWING_PERCENT at boot: 1000 and the default 150', async () => {
  const traced = { nodeArgs: ['--trace-gc-verbose'] };
  const set = consumers.startOn(consumers.queuesFor('heap.set'), { HEAP_GROWING_PERCENT: '1000' }, traced);
  const byDefault = consumers.startOn(consumers.queuesFor('heap.default'), {}, traced);
  await consumers.allConsuming();
  // The first collections come before main() has read the config; every later one has the factor.
  const setFactors = appliedHeapFactors(set.output());
  assert.ok(setFactors.includes(11), `factors with HEAP_GROWING_PERCENT=1000: ${setFactors.join(', ')}`);
  const defaultFactors = appliedHeapFactors(byDefault.output());
  assert.ok(defaultFactors.includes(2.5), `factors with the default: ${defaultFactors.join(', ')}`);
});
