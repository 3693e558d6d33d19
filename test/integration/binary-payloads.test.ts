/**
 * Issue 14 through the broker, the built-in ONNX script: .npy and safetensors bodies answered as the
 * same values sent as JSON are; images laid out as the configured preprocessing says (checked with
 * Identity models that return their input); binary replies on request; each bad body an error reply.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { readNpy } from '../../src/isolate/npy.js';
import { readSafetensors, writeSafetensors } from '../../src/isolate/safetensors.js';
import { FLOAT, INT64, buildModel, encodeModel, node, valueInfo, Int } from '../../scripts/onnx-writer.js';
import { TestClient, type PublishOptions, type ReceivedReply } from '../support/broker.js';
import { TestConsumers, bootFailure, type ConsumerQueues } from '../support/consumer-process.js';
import { npyLoad, npySave } from '../support/numpy.js';

const dir = mkdtempSync(join(tmpdir(), 'scorer-binary-'));
let client: TestClient;
const consumers = new TestConsumers();
const q: Record<'iris' | 'ids' | 'pair' | 'nchw' | 'nhwc', ConsumerQueues> = {} as never;
const modelDirs: Record<string, string> = {};

function modelDir(name: string, graph: Parameters<typeof buildModel>[0]): string {
  const d = join(dir, name);
  mkdirSync(d);
  writeFileSync(join(d, `${name}.onnx`), encodeModel(buildModel(graph)));
  modelDirs[name] = d;
  return d;
}

const IMAGE_PREP = { IMAGE_MEAN: '0.485,0.456,0.406', IMAGE_STD: '0.229,0.224,0.225', IMAGE_CHANNEL_ORDER: 'bgr' };

before(async () => {
  client = await TestClient.connect();
  const ids = modelDir('ids', {
    name: 'ids',
    nodes: [node('Identity', ['ids'], ['out'])],
    initializers: [],
    inputs: [valueInfo('ids', INT64, ['N', 3])],
    outputs: [valueInfo('out', INT64, ['N', 3])],
  });
  const pair = modelDir('pair', {
    name: 'pair',
    nodes: [node('Concat', ['a', 'b'], ['joined'], { axis: new Int(1) })],
    initializers: [],
    inputs: [valueInfo('a', FLOAT, ['N', 2]), valueInfo('b', FLOAT, ['N', 3])],
    outputs: [valueInfo('joined', FLOAT, ['N', 5])],
  });
  const nchw = modelDir('nchw', {
    name: 'nchw',
    nodes: [node('Identity', ['images'], ['same'])],
    initializers: [],
    inputs: [valueInfo('images', FLOAT, [1, 3, 'h', 'w'])],
    outputs: [valueInfo('same', FLOAT, [1, 3, 'h', 'w'])],
  });
  const nhwc = modelDir('nhwc', {
    name: 'nhwc',
    nodes: [node('Identity', ['pixels'], ['same'])],
    initializers: [],
    inputs: [valueInfo('pixels', FLOAT, [1, 6, 8, 3])],
    outputs: [valueInfo('same', FLOAT, [1, 6, 8, 3])],
  });
  const start = (name: keyof typeof q, env: Record<string, string>) => {
    q[name] = consumers.queuesFor(`binary.${name}`);
    consumers.startOn(q[name], { CONCURRENCY: '1', MAX_BATCH_DELAY_MS: '20', BATCH_DELAY_MIN_LOAD: '0', ...env });
  };
  start('iris', {});
  start('ids', { MODEL_DIR: ids });
  start('pair', { MODEL_DIR: pair });
  start('nchw', { MODEL_DIR: nchw, IMAGE_SIZE: '8x6', ...IMAGE_PREP });
  start('nhwc', { MODEL_DIR: nhwc, IMAGE_RESIZE: 'cover', IMAGE_SCALE: '1' });
  // Five consumers booting at once on a loaded machine: give them time.
  await consumers.allConsuming(180_000);
});

after(async () => {
  await consumers.close(client, 'SIGTERM');
  await client.close();
  rmSync(dir, { recursive: true, force: true });
});

type Item = { id: string; body: Buffer | object; contentType?: string; headers?: Record<string, unknown> };

async function ask(queues: ConsumerQueues, items: Item[]): Promise<Map<string, ReceivedReply>> {
  return client.ask(
    queues.input,
    queues.replies,
    items.map(({ id, body, contentType, headers }) => {
      const options: PublishOptions = {
        correlationId: id,
        ...(contentType ? { contentType } : {}),
        ...(headers ? { headers } : {}),
      };
      return { id, body, options };
    }),
  );
}

const ok = (r: ReceivedReply | undefined): unknown => {
  assert.ok(r, 'a reply');
  assert.equal(r.status, 'ok', r.body);
  return r.json();
};

const error = (r: ReceivedReply | undefined, code: string, pattern: RegExp): void => {
  assert.ok(r, 'a reply');
  assert.equal(r.status, 'error', r.body);
  assert.equal(r.headers['x-error-code'], code, r.body);
  assert.equal(r.contentType, 'application/json', 'error replies stay JSON');
  assert.match(r.json() as string, pattern);
};

const NPY = 'application/x-npy';
const ST = 'application/x-safetensors';

test('.npy float32, uint8 and float16 bodies written by numpy are answered as the same values sent as JSON, and as onnxruntime answers them', async () => {
  const rows = [
    [5.1, 3.5, 1.4, 0.2],
    [6.3, 3.3, 6.0, 2.5],
  ];
  const ints = [
    [5, 3, 1, 0],
    [7, 3, 5, 1],
  ];
  const halves = [
    [5.5, 3.5, 1.5, 0.25],
    [6.25, 3.25, 6.0, 2.5],
  ]; // exact in float16
  const replies = await ask(q.iris, [
    { id: 'json-f32', body: { data: rows } },
    { id: 'npy-f32', body: npySave(`np.array(${JSON.stringify(rows)}, dtype=np.float32)`), contentType: NPY },
    { id: 'json-u8', body: { data: ints } },
    { id: 'npy-u8', body: npySave(`np.array(${JSON.stringify(ints)}, dtype=np.uint8)`), contentType: NPY },
    { id: 'json-f16', body: { data: halves } },
    { id: 'npy-f16', body: npySave(`np.array(${JSON.stringify(halves)}, dtype=np.float16)`), contentType: NPY },
  ]);
  for (const t of ['f32', 'u8', 'f16']) assert.deepEqual(ok(replies.get(`npy-${t}`)), ok(replies.get(`json-${t}`)), t);
  const session = await ort.InferenceSession.create('models/iris.onnx');
  const direct = await session.run({ float_input: new ort.Tensor('float32', Float32Array.from(rows.flat()), [2, 4]) });
  const got = ok(replies.get('npy-f32')) as { label: number[]; probabilities: number[][] };
  assert.deepEqual(got.label, [...(direct.label.data as BigInt64Array)].map(Number));
  assert.deepEqual(got.probabilities.flat(), [...(direct.probabilities.data as Float32Array)]);
});

test('an int64 .npy is answered as the same ids sent as JSON; asked for, the reply is an .npy numpy reads', async () => {
  const ids = [
    [1, -2, 2 ** 40],
    [7, 8, 9],
  ];
  const replies = await ask(q.ids, [
    { id: 'json', body: { data: ids } },
    { id: 'npy', body: npySave(`np.array(${JSON.stringify(ids)}, dtype=np.int64)`), contentType: NPY },
    {
      id: 'npy-reply',
      body: npySave(`np.array(${JSON.stringify(ids)}, dtype=np.int64)`),
      contentType: NPY,
      headers: { 'x-reply-content-type': NPY },
    },
    { id: 'json-npy-reply', body: { data: ids }, headers: { 'x-reply-content-type': NPY } },
  ]);
  assert.deepEqual(ok(replies.get('npy')), ok(replies.get('json')));
  assert.deepEqual(ok(replies.get('json')), ids);
  for (const id of ['npy-reply', 'json-npy-reply']) {
    const r = replies.get(id)!;
    assert.equal(r.status, 'ok');
    assert.equal(r.contentType, NPY);
    assert.deepEqual(npyLoad(r.content), { dtype: 'int64', shape: [2, 3], values: ids });
  }
});

test('a safetensors body feeds a two-input model by name; asked for, the reply is safetensors keyed by output name', async () => {
  const a = [
    [1, 2],
    [3, 4],
  ];
  const b = [
    [5, 6, 7],
    [8, 9, 10],
  ];
  const body = Buffer.from(
    writeSafetensors({
      a: { type: 'float32', data: Float32Array.from(a.flat()), dims: [2, 2] },
      b: { type: 'float32', data: Float32Array.from(b.flat()), dims: [2, 3] },
    }),
  );
  const replies = await ask(q.pair, [
    { id: 'json', body: { data: { a, b } } },
    { id: 'st', body, contentType: ST },
    { id: 'st-reply', body, contentType: ST, headers: { 'x-reply-content-type': ST } },
  ]);
  assert.deepEqual(ok(replies.get('st')), ok(replies.get('json')));
  assert.deepEqual(ok(replies.get('json')), [
    [1, 2, 5, 6, 7],
    [3, 4, 8, 9, 10],
  ]);
  const r = replies.get('st-reply')!;
  assert.equal(r.contentType, ST);
  const joined = readSafetensors(new Uint8Array(r.content), { maxTensorElements: 100 }).get('joined')!;
  assert.deepEqual(joined.dims, [2, 5]);
  assert.deepEqual([...(joined.data as Float32Array)], [1, 2, 5, 6, 7, 3, 4, 8, 9, 10]);
});

test('a missing input, a wrong dtype, a wrong shape, a truncated body and a header claiming 10^12 elements each get an error reply naming the problem', async () => {
  const f32 = (dims: number[]) => ({
    type: 'float32' as const,
    data: new Float32Array(dims.reduce((x, y) => x * y, 1)),
    dims,
  });
  const good = Buffer.from(writeSafetensors({ a: f32([1, 2]), b: f32([1, 3]) }));
  const huge = Buffer.from(
    npySave('np.zeros((1, 4), dtype=np.float32)').toString('latin1').replace('(1, 4)', '(1000000, 1000000)'),
    'latin1',
  );
  const replies = await ask(q.pair, [
    { id: 'missing', body: Buffer.from(writeSafetensors({ a: f32([1, 2]) })), contentType: ST },
    {
      id: 'dtype',
      body: Buffer.from(
        writeSafetensors({ a: f32([1, 2]), b: { type: 'int64', data: new BigInt64Array(3), dims: [1, 3] } }),
      ),
      contentType: ST,
    },
    { id: 'shape', body: Buffer.from(writeSafetensors({ a: f32([1, 2]), b: f32([1, 4]) })), contentType: ST },
    { id: 'truncated', body: good.subarray(0, good.length - 2), contentType: ST },
    { id: 'npy-to-two-inputs', body: npySave('np.zeros((1, 2), dtype=np.float32)'), contentType: NPY },
    { id: 'csv', body: Buffer.from('1,2'), contentType: 'text/csv' },
    { id: 'image', body: Buffer.from('not really'), contentType: 'image/png' },
  ]);
  error(
    replies.get('missing'),
    'SHAPE',
    /input 'b' is missing from the safetensors body; the model's inputs are 'a', 'b'/,
  );
  error(replies.get('dtype'), 'TYPE', /input 'b' expects float32 elements, got a safetensors tensor of int64/);
  error(replies.get('shape'), 'SHAPE', /input 'b' expects shape \[-1,3\], got \[1,4\]/);
  error(replies.get('truncated'), 'BAD_BINARY', /safetensors body is truncated/);
  error(replies.get('npy-to-two-inputs'), 'SHAPE', /model has 2 inputs \('a', 'b'\): an \.npy body carries one array/);
  error(replies.get('csv'), 'CONTENT_TYPE', /contentType 'text\/csv' is not taken by the built-in ONNX script/);
  error(replies.get('image'), 'CONTENT_TYPE', /image\/png body refused: the model has 2 inputs/);
  const iris = await ask(q.iris, [
    { id: 'huge', body: huge, contentType: NPY },
    { id: 'npy-multi-reply', body: { data: [[1, 2, 3, 4]] }, headers: { 'x-reply-content-type': NPY } },
  ]);
  error(
    iris.get('huge'),
    'TOO_MANY_ELEMENTS',
    /\.npy body has shape \(1000000, 1000000\), over the cap of \d+ elements \(MAX_TENSOR_ELEMENTS\)/,
  );
  error(
    iris.get('npy-multi-reply'),
    'CONTENT_TYPE',
    /x-reply-content-type application\/x-npy carries one array, and the model has 2 outputs/,
  );
});

/** HWC RGB pixels of a w×h test image, every pixel different. */
function pixels(w: number, h: number): Buffer {
  const raw = Buffer.alloc(w * h * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 53 + 7) % 256;
  return raw;
}

test('a PNG and a JPEG reach an NCHW float32 model as the tensor computed here from the same pixels, with mean, std and BGR applied', async () => {
  const raw = pixels(8, 6);
  const png = await sharp(raw, { raw: { width: 8, height: 6, channels: 3 } })
    .png()
    .toBuffer();
  const jpeg = await sharp(raw, { raw: { width: 8, height: 6, channels: 3 } })
    .jpeg()
    .toBuffer();
  const replies = await ask(q.nchw, [
    { id: 'png', body: png, contentType: 'image/png' },
    { id: 'jpeg', body: jpeg, contentType: 'image/jpeg' },
  ]);
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  const expectFrom = (hwc: Uint8Array) =>
    [0, 1, 2].map((k) =>
      Array.from({ length: 6 }, (_, y) =>
        Array.from({ length: 8 }, (_, x) => (hwc[(y * 8 + x) * 3 + (2 - k)] / 255 - mean[k]) / std[k]),
      ),
    );
  const decodedJpeg = await sharp(jpeg).raw().toBuffer(); // lossy: the same pixels are the decoded ones
  for (const [id, hwc] of [
    ['png', raw],
    ['jpeg', decodedJpeg],
  ] as const) {
    const got = (ok(replies.get(id)) as number[][][][])[0];
    const want = expectFrom(hwc);
    for (let k = 0; k < 3; k++)
      for (let y = 0; y < 6; y++)
        for (let x = 0; x < 8; x++) {
          assert.ok(
            Math.abs(got[k][y][x] - want[k][y][x]) < 1e-5,
            `${id} [${k}][${y}][${x}]: ${got[k][y][x]} vs ${want[k][y][x]}`,
          );
        }
  }
});

// uint8 image inputs are unit-tested (test/unit/image.test.ts): session.ts takes uint8 models once every element type is in (issue 11).
test('a larger image is resized (cover) into an NHWC model as sharp resizes it, and with IMAGE_SCALE 1 the pixels reach it as they are', async () => {
  const raw = pixels(32, 20);
  const png = await sharp(raw, { raw: { width: 32, height: 20, channels: 3 } })
    .png()
    .toBuffer();
  const replies = await ask(q.nhwc, [
    { id: 'png', body: png, contentType: 'image/png', headers: { 'x-reply-content-type': NPY } },
  ]);
  const r = replies.get('png')!;
  assert.equal(r.contentType, NPY, r.body);
  const t = readNpy(new Uint8Array(r.content), { maxTensorElements: 1000 });
  assert.equal(t.type, 'float32');
  assert.deepEqual(t.dims, [1, 6, 8, 3]);
  const want = await sharp(png).resize(8, 6, { fit: 'cover' }).raw().toBuffer();
  assert.deepEqual([...(t.data as Float32Array)], [...want]);
});

test('a large .npy (many frames, handed to the isolate without a copy) is answered as onnxruntime answers it', async () => {
  const rows = 20_000;
  const body = npySave(`(np.arange(${rows * 4}, dtype=np.float32).reshape(${rows}, 4) % 7)`);
  assert.ok(body.length > 64 * 1024);
  const replies = await ask(q.iris, [{ id: 'large', body, contentType: NPY }]);
  const got = ok(replies.get('large')) as { label: number[] };
  const session = await ort.InferenceSession.create('models/iris.onnx');
  const x = Float32Array.from({ length: rows * 4 }, (_, i) => i % 7);
  const direct = await session.run({ float_input: new ort.Tensor('float32', x, [rows, 4]) });
  assert.deepEqual(got.label, [...(direct.label.data as BigInt64Array)].map(Number));
});

test('image settings that contradict the model stop the boot with one line naming the key, before any message', async () => {
  const wrongSize = consumers.startOn(consumers.queuesFor('binary.boot'), {
    MODEL_DIR: modelDirs.nhwc,
    IMAGE_SIZE: '10x10',
  });
  assert.match(
    await bootFailure(wrongSize),
    /config IMAGE_SIZE: input 'pixels' takes 8x6 images \(shape \[1,6,8,3\]\), got 10x10/,
  );
  const badStd = consumers.startOn(consumers.queuesFor('binary.boot'), {
    MODEL_DIR: modelDirs.nchw,
    IMAGE_STD: '1,0,1',
  });
  assert.match(await bootFailure(badStd), /config IMAGE_STD: expected non-zero numbers/);
});
