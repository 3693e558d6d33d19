/**
 * Image bodies (image/png, image/jpeg, image/webp) → the model's input tensor: decoded and resized
 * by sharp (libvips), then laid out as the model's shape says (NCHW or NHWC, float32 or uint8), with
 * the preprocessing of IMAGE_*: float value = (pixel × IMAGE_SCALE − IMAGE_MEAN[c]) / IMAGE_STD[c],
 * c in the model's channel order (IMAGE_CHANNEL_ORDER). planImage checks the settings against the
 * model once, at init (boot); decodeImage runs per message.
 */
import type { Sharp, SharpOptions } from 'sharp';
import { BootError, ScoringError } from '../errors.js';
import type { TensorData } from '../onnx/element-types.js';
import { formatDims } from '../onnx/tensors.js';

export interface ImagePreprocessing {
  /** IMAGE_SIZE: the size images are resized to where the model's height and width are dynamic. */
  size?: { width: number; height: number };
  resize: 'fill' | 'cover' | 'contain';
  channelOrder: 'rgb' | 'bgr';
  layout: 'auto' | 'nchw' | 'nhwc';
  scale: number;
  mean: number[];
  std: number[];
  padValue: number;
  maxInputPixels: number;
}

export interface ImageInputSpec {
  name: string;
  type: string;
  dims: ReadonlyArray<number | string>;
}

export interface ImagePlan {
  name: string;
  type: 'float32' | 'uint8';
  layout: 'nchw' | 'nhwc';
  channels: 1 | 3;
  /** Absent when the model's size is dynamic and IMAGE_SIZE is unset: images are then refused with that line. */
  size?: { width: number; height: number };
  /** Rank 4 has a batch axis of 1; rank 3 has none. */
  rank: 3 | 4;
  prep: ImagePreprocessing;
}

const fixed = (d: number | string | undefined): d is number => typeof d === 'number' && d >= 0;

/**
 * How images become `spec`, or why this input takes no images (a string, said to a sender of one).
 * Settings that contradict the model throw a BootError: they are wrong for every image.
 */
export function planImage(spec: ImageInputSpec, prep: ImagePreprocessing): ImagePlan | string {
  const { name, dims } = spec;
  const notImage = `input '${name}' (${spec.type}, shape ${formatDims(dims)}) takes no images`;
  if (spec.type !== 'float32' && spec.type !== 'uint8') return `${notImage}: an image input is float32 or uint8`;
  if (dims.length !== 4 && dims.length !== 3) return `${notImage}: an image input has rank 4 (NCHW or NHWC) or 3`;
  const rank = dims.length as 3 | 4;
  if (rank === 4 && fixed(dims[0]) && dims[0] !== 1)
    return `${notImage}: its batch axis is ${dims[0]}, an image is one`;
  const first = rank - 3; // the axis after the batch axis
  const isChannels = (d: number | string) => d === 1 || d === 3;
  let layout: 'nchw' | 'nhwc';
  if (prep.layout !== 'auto') layout = prep.layout;
  else if (isChannels(dims[first]) && !isChannels(dims[rank - 1])) layout = 'nchw';
  else if (isChannels(dims[rank - 1]) && !isChannels(dims[first])) layout = 'nhwc';
  else if (isChannels(dims[first])) {
    throw new BootError(
      `config IMAGE_LAYOUT: input '${name}' has shape ${formatDims(dims)}, which could be NCHW or NHWC; set IMAGE_LAYOUT to nchw or nhwc`,
    );
  } else return `${notImage}: no axis of 1 or 3 channels (set IMAGE_LAYOUT if its channels are dynamic)`;
  const [c, h, w] =
    layout === 'nchw'
      ? [dims[first], dims[first + 1], dims[first + 2]]
      : [dims[rank - 1], dims[first], dims[first + 1]];
  if (fixed(c) && !isChannels(c))
    throw new BootError(
      `config IMAGE_LAYOUT: ${layout} puts ${c} channels on input '${name}' (shape ${formatDims(dims)}); images have 1 or 3`,
    );
  const channels = c === 1 ? 1 : 3;

  let size = prep.size;
  if (fixed(h) && fixed(w)) {
    if (size && (size.width !== w || size.height !== h)) {
      throw new BootError(
        `config IMAGE_SIZE: input '${name}' takes ${w}x${h} images (shape ${formatDims(dims)}), got ${size.width}x${size.height}; leave IMAGE_SIZE empty for a model of fixed size`,
      );
    }
    size = { width: w, height: h };
  } else if (size && ((fixed(h) && h !== size.height) || (fixed(w) && w !== size.width))) {
    throw new BootError(
      `config IMAGE_SIZE: input '${name}' has shape ${formatDims(dims)}, which ${size.width}x${size.height} does not fit`,
    );
  }
  for (const key of ['mean', 'std'] as const) {
    const n = prep[key].length;
    if (n !== 1 && n !== channels)
      throw new BootError(
        `config IMAGE_${key.toUpperCase()}: input '${name}' has ${channels} channel(s), got ${n} values; give 1 or ${channels}`,
      );
  }
  if (spec.type === 'uint8' && (prep.mean.some((m) => m !== 0) || prep.std.some((s) => s !== 1))) {
    throw new BootError(
      `config IMAGE_MEAN/IMAGE_STD: input '${name}' is uint8 and takes the pixels as they are; mean and std apply to float32 inputs only`,
    );
  }
  return { name, type: spec.type, layout, channels, rank, prep, ...(size ? { size } : {}) };
}

type SharpFactory = (input: Uint8Array, options: SharpOptions) => Sharp;
let sharpFactory: Promise<SharpFactory> | undefined;

/** Loaded on the first image: a model that never sees one never loads libvips. */
function loadSharp(): Promise<SharpFactory> {
  sharpFactory ??= import('sharp').then(({ default: sharp }) => {
    // Every image is new: libvips' operation cache would only hold memory.
    sharp.cache(false);
    return sharp as unknown as SharpFactory;
  });
  return sharpFactory;
}

/** The image in `body`, as `plan`'s input tensor. */
export async function decodeImage(body: Uint8Array, plan: ImagePlan): Promise<TensorData> {
  const { prep } = plan;
  if (!plan.size) {
    throw new ScoringError(
      'SHAPE',
      `input '${plan.name}' has a dynamic height or width: set IMAGE_SIZE (e.g. 640x640) for the consumer to resize images to`,
    );
  }
  const { width, height } = plan.size;
  const sharp = await loadSharp();
  let pixels: { data: Buffer; info: { width: number; height: number; channels: number } };
  try {
    let img = sharp(body, { limitInputPixels: prep.maxInputPixels, failOn: 'error' });
    img = plan.channels === 1 ? img.greyscale() : img.toColourspace('srgb');
    const pad = prep.padValue;
    pixels = await img
      .removeAlpha()
      .resize(width, height, { fit: prep.resize, background: { r: pad, g: pad, b: pad } })
      .raw()
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    const why = (err as Error).message.split('\n')[0];
    if (/pixel limit/i.test(why))
      throw new ScoringError(
        'BAD_BINARY',
        `image is over IMAGE_MAX_INPUT_PIXELS (${prep.maxInputPixels} pixels): ${why}`,
      );
    throw new ScoringError('BAD_BINARY', `image cannot be decoded: ${why}`);
  }
  const { info } = pixels;
  if (info.width !== width || info.height !== height || info.channels !== plan.channels) {
    throw new ScoringError(
      'BAD_BINARY',
      `image decoded to ${info.width}x${info.height} with ${info.channels} channels, expected ${width}x${height} with ${plan.channels}`,
    );
  }
  const dims = plan.layout === 'nchw' ? [plan.channels, height, width] : [height, width, plan.channels];
  if (plan.rank === 4) dims.unshift(1);
  return { type: plan.type, data: layOut(pixels.data, plan, width * height), dims };
}

/** HWC pixels from sharp → the model's layout, channel order and element type, in one pass. */
export function layOut(hwc: Uint8Array, plan: ImagePlan, pixelCount: number): Float32Array | Uint8Array {
  const c = plan.channels;
  const bgr = plan.prep.channelOrder === 'bgr' && c === 3;
  // Output channel k reads source channel `from[k]`.
  const from = bgr ? [2, 1, 0] : [0, 1, 2];
  if (plan.type === 'uint8') {
    // sharp's buffer is already HWC RGB uint8: the tensor as it is, no copy.
    if (plan.layout === 'nhwc' && !bgr) return new Uint8Array(hwc.buffer, hwc.byteOffset, pixelCount * c);
    const out = new Uint8Array(pixelCount * c);
    for (let p = 0; p < pixelCount; p++) {
      for (let k = 0; k < c; k++) out[plan.layout === 'nchw' ? k * pixelCount + p : p * c + k] = hwc[p * c + from[k]];
    }
    return out;
  }
  const { scale, mean, std } = plan.prep;
  const out = new Float32Array(pixelCount * c);
  for (let k = 0; k < c; k++) {
    const m = mean.length === 1 ? mean[0] : mean[k];
    const s = std.length === 1 ? std[0] : std[k];
    // (pixel × scale − m) / s as one multiply-add per value.
    const a = scale / s;
    const b = -m / s;
    const src = from[k];
    if (plan.layout === 'nchw') {
      const base = k * pixelCount;
      for (let p = 0; p < pixelCount; p++) out[base + p] = hwc[p * c + src] * a + b;
    } else {
      for (let p = 0; p < pixelCount; p++) out[p * c + k] = hwc[p * c + src] * a + b;
    }
  }
  return out;
}
