/**
 * INLINE_SCORING through the real broker: the built-in script on the consumer's thread answers exactly
 * as it does in worker threads, each answer equal to onnxruntime-node run directly on the same input,
 * bad inputs included; the boot log says where scoring runs and why.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { consumersOfFile } from '../support/consumer-process.js';
import { modelDir, numbers, rowWise } from '../support/onnx-models.js';

const file = consumersOfFile();
const { consumers } = file;
const model = rowWise();
const dir = modelDir('rowwise-inline', model);

async function ortAlone(row: number[]): Promise<unknown> {
  const session = await ort.InferenceSession.create(model);
  try {
    const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from(row), [1, 4]) });
    return [[...(out.y.data as Float32Array)]];
  } finally {
    await session.release();
  }
}

test('the same inputs scored on the consumer thread and in worker threads get identical replies, each equal to onnxruntime-node alone, bad ones the same error', async () => {
  const flat = numbers(4 * 200, 21);
  const items = Array.from({ length: 200 }, (_, k) => ({
    id: `m-${k}`,
    body: { data: [flat.slice(4 * k, 4 * k + 4)] },
  }));
  const bad = [
    { id: 'wide', body: { data: [[1, 2, 3, 4, 5]] } },
    { id: 'text', body: { data: [['a', 2, 3, 4]] } },
  ];
  const replies = [];
  for (const mode of ['on', 'off']) {
    const q = consumers.queuesFor(`inline.${mode}`);
    const c = consumers.startOn(q, {
      MODEL_DIR: dir,
      INLINE_SCORING: mode,
      MAX_BATCH_DELAY_MS: '20',
      BATCH_DELAY_MIN_LOAD: '0',
    });
    await c.waitFor('"msg":"consuming"');
    if (mode === 'on') assert.match(c.output(), /"reason":"INLINE_SCORING=on".*"msg":"scoring on the consumer thread"/);
    else assert.doesNotMatch(c.output(), /"msg":"scoring on the consumer thread"/);
    replies.push(await file.client.ask(q.input, q.replies, [...items, ...bad]));
  }
  const [inline, threads] = replies;
  for (const { id, body } of items) {
    const a = inline.get(id);
    const b = threads.get(id);
    assert.equal(a?.status, 'ok', a?.body);
    assert.equal(a.body, b?.body, id);
    assert.deepEqual(a.json(), await ortAlone(body.data[0]), id);
  }
  for (const { id } of bad) {
    const a = inline.get(id);
    assert.equal(a?.status, 'error', id);
    assert.equal(a.headers['x-error-code'], threads.get(id)?.headers['x-error-code'], id);
    assert.equal(a.body, threads.get(id)?.body, id);
  }
  assert.equal(inline.get('wide')?.headers['x-error-code'], 'SHAPE');
  assert.equal(inline.get('text')?.headers['x-error-code'], 'TYPE');
});

test('INLINE_SCORING=auto on the demo model: the boot log says it scores on the consumer thread, with the batch it timed and the way back', async () => {
  const q = consumers.queuesFor('inline.auto');
  const c = consumers.startOn(q, { INLINE_SCORING: 'auto', INLINE_MAX_BATCH_MS: '1000' });
  await c.waitFor('"msg":"consuming"');
  const line = c
    .output()
    .split('\n')
    .find((l) => l.includes('"msg":"scoring on the consumer thread"'));
  assert.ok(line, c.output());
  const fields = JSON.parse(line) as Record<string, unknown>;
  assert.equal(fields.rows, 128);
  assert.equal(typeof fields.batchCostMs, 'number');
  assert.equal(fields.override, 'set INLINE_SCORING=off for worker threads');
});
