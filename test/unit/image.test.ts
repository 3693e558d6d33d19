import assert from 'node:assert/strict';
import { test } from 'node:test';
import sharp from 'sharp';
import { BootError, ScoringError } from '../../src/errors.js';
import { decodeImage, planImage, type ImagePlan, type ImagePreprocessing } from '../../src/isolate/image.js';

const PREP: ImagePreprocessing = {
  resize: 'fill',
  channelOrder: 'rgb',
  layout: 'auto',
  scale: 1 / 255,
  mean: [0],
  std: [1],
  padValue: 0,
  maxInputPixels: 40_000_000,
};
const prep = (over: Partial<ImagePreprocessing> = {}): ImagePreprocessing => ({ ...PREP, ...over });

function plan(dims: Array<number | string>, type = 'float32', over: Partial<ImagePreprocessing> = {}): ImagePlan {
  const p = planImage({ name: 'images', type, dims }, prep(over));
  assert.ok(typeof p !== 'string', String(p));
  return p;
}

/** A w×h RGB image whose every pixel differs, as raw HWC bytes. */
function pixels(w: number, h: number): Buffer {
  const raw = Buffer.alloc(w * h * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 37 + 11) % 256;
  return raw;
}

const encode = (raw: Buffer, w: number, h: number, format: 'png' | 'jpeg' | 'webp') =>
  sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .toFormat(format, format === 'webp' ? { lossless: true } : {})
    .toBuffer();

test('the layout, channels and size come from the model shape: NCHW, NHWC, rank 3, dynamic batch', () => {
  assert.deepEqual(pick(plan([1, 3, 224, 224])), {
    layout: 'nchw',
    channels: 3,
    size: { width: 224, height: 224 },
    rank: 4,
  });
  assert.deepEqual(pick(plan(['N', 480, 640, 3], 'uint8')), {
    layout: 'nhwc',
    channels: 3,
    size: { width: 640, height: 480 },
    rank: 4,
  });
  assert.deepEqual(pick(plan([1, 28, 28])), { layout: 'nchw', channels: 1, size: { width: 28, height: 28 }, rank: 3 });
  assert.deepEqual(pick(plan([-1, 3, 'h', 'w'], 'float32', { size: { width: 320, height: 240 } })), {
    layout: 'nchw',
    channels: 3,
    size: { width: 320, height: 240 },
    rank: 4,
  });
  assert.equal(plan([1, 3, 'h', 'w']).size, undefined, 'dynamic and no IMAGE_SIZE: refused per image, not at boot');
});

const pick = ({ layout, channels, size, rank }: ImagePlan) => ({ layout, channels, size, rank });

test('an input that is not an image says why; settings that contradict the model stop the boot with the key to change', () => {
  assert.match(
    planImage({ name: 'x', type: 'float32', dims: [-1, 784] }, PREP) as string,
    /input 'x' \(float32, shape \[-1,784\]\) takes no images: an image input has rank 4/,
  );
  assert.match(planImage({ name: 'x', type: 'int64', dims: [1, 3, 8, 8] }, PREP) as string, /float32 or uint8/);
  const boot = (fn: () => unknown, pattern: RegExp) =>
    assert.throws(fn, (e: unknown) => e instanceof BootError && pattern.test(e.message));
  boot(
    () =>
      planImage({ name: 'x', type: 'float32', dims: [1, 3, 224, 224] }, prep({ size: { width: 100, height: 100 } })),
    /config IMAGE_SIZE: input 'x' takes 224x224 images/,
  );
  boot(
    () => planImage({ name: 'x', type: 'float32', dims: [1, 3, 3, 3] }, PREP),
    /config IMAGE_LAYOUT: .*could be NCHW or NHWC/,
  );
  boot(
    () => planImage({ name: 'x', type: 'uint8', dims: [1, 3, 8, 8] }, prep({ mean: [0.5] })),
    /config IMAGE_MEAN\/IMAGE_STD: input 'x' is uint8/,
  );
  boot(
    () => planImage({ name: 'x', type: 'float32', dims: [1, 3, 8, 8] }, prep({ std: [1, 2] })),
    /config IMAGE_STD: input 'x' has 3 channel\(s\), got 2 values/,
  );
});

/** The tensor computed here, independently: HWC pixels → layout, channel order, (p·scale − mean)/std. */
function expected(raw: Uint8Array, w: number, h: number, layout: 'nchw' | 'nhwc', p: ImagePreprocessing): number[] {
  const order = p.channelOrder === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  const out: number[] = [];
  const value = (y: number, x: number, k: number) => {
    const v = raw[(y * w + x) * 3 + order[k]];
    return (v * p.scale - (p.mean[k] ?? p.mean[0])) / (p.std[k] ?? p.std[0]);
  };
  if (layout === 'nchw')
    for (let k = 0; k < 3; k++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out.push(value(y, x, k));
  else for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let k = 0; k < 3; k++) out.push(value(y, x, k));
  return out;
}

function close(got: ArrayLike<number>, want: number[]): void {
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++) {
    if (Math.abs(got[i] - want[i]) > 1e-5) assert.fail(`element ${i}: got ${got[i]}, expected ${want[i]}`);
  }
}

test('a PNG becomes the NCHW float32 tensor of its pixels with mean, std, scale and BGR applied', async () => {
  const raw = pixels(5, 4);
  const p = prep({ channelOrder: 'bgr', mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
  const t = await decodeImage(await encode(raw, 5, 4, 'png'), plan([1, 3, 4, 5], 'float32', p));
  assert.equal(t.type, 'float32');
  assert.deepEqual(t.dims, [1, 3, 4, 5]);
  close(t.data as Float32Array, expected(raw, 5, 4, 'nchw', p));
});

test("a JPEG's decoded pixels become the NHWC tensor; uint8 inputs take them as they are", async () => {
  const jpeg = await encode(pixels(6, 6), 6, 6, 'jpeg');
  const decoded = await sharp(jpeg).raw().toBuffer(); // JPEG is lossy: the same pixels are the decoded ones
  const t = await decodeImage(jpeg, plan([1, 6, 6, 3]));
  close(t.data as Float32Array, expected(decoded, 6, 6, 'nhwc', PREP));
  const u8 = await decodeImage(jpeg, plan([1, 6, 6, 3], 'uint8'));
  assert.deepEqual([...(u8.data as Uint8Array)], [...decoded]);
});

test('a WebP is resized to the model size by the configured fit, as sharp resizes it', async () => {
  const raw = pixels(20, 10);
  const webp = await encode(raw, 20, 10, 'webp');
  for (const fit of ['fill', 'cover', 'contain'] as const) {
    const resized = await sharp(webp)
      .resize(8, 8, { fit, background: { r: 0, g: 0, b: 0 } })
      .raw()
      .toBuffer();
    const t = await decodeImage(webp, plan([1, 3, 8, 8], 'float32', { resize: fit }));
    close(t.data as Float32Array, expected(resized, 8, 8, 'nchw', PREP));
  }
});

test('a body that is not an image, a truncated one, and one over IMAGE_MAX_INPUT_PIXELS get errors naming the problem', async () => {
  const png = await encode(pixels(64, 64), 64, 64, 'png');
  const rejects = (body: Uint8Array, p: ImagePlan, pattern: RegExp) =>
    assert.rejects(
      decodeImage(body, p),
      (e: unknown) => e instanceof ScoringError && e.code === 'BAD_BINARY' && pattern.test(e.message),
    );
  await rejects(Buffer.from('not an image'), plan([1, 3, 8, 8]), /image cannot be decoded/);
  await rejects(png.subarray(0, png.length - 40), plan([1, 3, 8, 8]), /image cannot be decoded/);
  await rejects(
    png,
    plan([1, 3, 8, 8], 'float32', { maxInputPixels: 1000 }),
    /over IMAGE_MAX_INPUT_PIXELS \(1000 pixels\)/,
  );
  await assert.rejects(decodeImage(png, plan([1, 3, 'h', 'w'])), /set IMAGE_SIZE/);
});
