import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { loadConfig } from '../../src/config.js';
import { sessionOptions } from '../../src/onnx/session.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeMlpModel } from '../../scripts/make-models.js';

test('ORT_ALLOW_SPINNING is off by default and reaches the session options', () => {
  const off = loadConfig({}).ort;
  assert.equal(off.allowSpinning, false);
  assert.deepEqual(sessionOptions(off).extra, {
    session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } },
  });
  const on = loadConfig({ ORT_ALLOW_SPINNING: 'true' }).ort;
  assert.equal(sessionOptions(on).extra, undefined, "onnxruntime's own default: spin");
});

test('with two intra-op threads and spinning off, an idle session costs no CPU after its runs', async () => {
  // The pool's threads spin for a while after each run when allowed to (about 30 ms of CPU in 500 ms idle
  // here); off, the process is as idle as it looks. CPU time, counted over every thread.
  const dir = mkdtempSync(join(tmpdir(), 'scorer-spinning-'));
  const file = await makeMlpModel(dir);
  const options = sessionOptions({ intraOpNumThreads: 2, graphOptimizationLevel: 'all', allowSpinning: false });
  const session = await ort.InferenceSession.create(file, options);
  const x = new ort.Tensor('float32', new Float32Array(64 * 784), [64, 784]);
  for (let i = 0; i < 100; i++) await session.run({ [session.inputNames[0]]: x });
  const before = process.cpuUsage();
  await new Promise((r) => setTimeout(r, 500));
  const { user, system } = process.cpuUsage(before);
  await session.release();
  rmSync(dir, { recursive: true, force: true });
  assert.ok((user + system) / 1000 < 15, `CPU while idle: ${((user + system) / 1000).toFixed(1)} ms in 500 ms`);
});
