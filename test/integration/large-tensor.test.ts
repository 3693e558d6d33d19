/**
 * A 1x3x640x640 float32 image as full-precision JSON (as json.dumps writes it, 25 MB) through the real
 * broker: each limit it meets names its key and value, and with the limits raised it is answered with
 * exactly what onnxruntime-node computes on the same tensor.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { consumersOfFile } from '../support/consumer-process.js';
import { image640, image640Body, modelDir } from '../support/onnx-models.js';

const file = consumersOfFile();
const { consumers } = file;
const bytes = image640();
const dir = modelDir('image640', bytes);
const { body, tensor } = image640Body();

async function askOnce(env: Record<string, string>, id: string) {
  const q = consumers.queuesFor(`onnx.large.${id}`);
  const c = consumers.startOn(q, { MODEL_DIR: dir, CONCURRENCY: '1', ...env });
  await c.waitFor('"msg":"consuming"', 60_000);
  const replies = await file.client.ask(q.input, q.replies, [{ id, body }], 120_000);
  await c.stop();
  const r = replies.get(id);
  assert.ok(r, 'a reply');
  return r;
}

test('a limit error names its key and value: first MAX_MESSAGE_BYTES, then MAX_TENSOR_ELEMENTS', async () => {
  const tooLarge = await askOnce({ BATCHING: 'off' }, 'bytes');
  assert.equal(tooLarge.headers['x-error-code'], 'TOO_LARGE');
  assert.match(tooLarge.json() as string, /over MAX_MESSAGE_BYTES \(4194304\)/);
  const tooMany = await askOnce({ BATCHING: 'off', MAX_MESSAGE_BYTES: String(64 << 20) }, 'elements');
  assert.equal(tooMany.headers['x-error-code'], 'TOO_MANY_ELEMENTS');
  assert.match(
    tooMany.json() as string,
    /input 'x' has 1228800 elements \(shape \[1,3,640,640\]\), over MAX_TENSOR_ELEMENTS \(1048576\)/,
  );
});

test('with the limits raised, a 1x3x640x640 image as full-precision JSON is answered as onnxruntime-node answers the same tensor', async () => {
  const r = await askOnce({ MAX_MESSAGE_BYTES: String(64 << 20), MAX_TENSOR_ELEMENTS: '2000000' }, 'ok');
  assert.equal(r.status, 'ok', r.body.slice(0, 300));
  const session = await ort.InferenceSession.create(bytes);
  const out = await session.run({ x: new ort.Tensor('float32', tensor, [1, 3, 640, 640]) });
  await session.release();
  assert.deepEqual(r.json(), [[...(out.y.data as Float32Array)]]);
});
