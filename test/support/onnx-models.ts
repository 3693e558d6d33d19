/**
 * Small ONNX models made in the tests with onnx-proto, each for one behaviour of the built-in script:
 * row-independent and row-mixing models for batching, a sequence-first RNN, an orientation-sensitive
 * image model, skl2onnx-shaped classifiers ending in ZipMap, and an Identity per element type.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
const DT = onnx.TensorProto.DataType;
const AT = onnx.AttributeProto.AttributeType;

export type Dim = number | string;
type Attr =
  | { f: number }
  | { i: number }
  | { s: string }
  | { floats: number[] }
  | { ints: number[] }
  | { strings: string[] };

export const f = (v: number): Attr => ({ f: v });
export const i = (v: number): Attr => ({ i: v });
export const s = (v: string): Attr => ({ s: v });
export const floats = (v: number[]): Attr => ({ floats: v });
export const ints = (v: number[]): Attr => ({ ints: v });
export const strings = (v: string[]): Attr => ({ strings: v });

const ELEM: Record<string, number> = {
  float32: DT.FLOAT,
  float64: DT.DOUBLE,
  float16: DT.FLOAT16,
  int8: DT.INT8,
  uint8: DT.UINT8,
  int16: DT.INT16,
  uint16: DT.UINT16,
  int32: DT.INT32,
  uint32: DT.UINT32,
  int64: DT.INT64,
  uint64: DT.UINT64,
  bool: DT.BOOL,
  string: DT.STRING,
};

export function tensorInfo(name: string, type: string, dims: Dim[] | undefined): onnxProto.onnx.IValueInfoProto {
  const shape = dims
    ? { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) }
    : undefined;
  return { name, type: { tensorType: { elemType: ELEM[type], ...(shape ? { shape } : {}) } } };
}

/** skl2onnx's output_probability: a sequence of maps from label to float. */
export function seqMapInfo(name: string, keyType: 'int64' | 'string'): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      sequenceType: {
        elemType: { mapType: { keyType: ELEM[keyType], valueType: { tensorType: { elemType: DT.FLOAT } } } },
      },
    },
  };
}

export function node(
  opType: string,
  inputs: string[],
  outputs: string[],
  attrs: Record<string, Attr> = {},
  domain = '',
): onnxProto.onnx.INodeProto {
  const attribute = Object.entries(attrs).map(([name, a]): onnxProto.onnx.IAttributeProto => {
    const enc = (x: string) => new TextEncoder().encode(x);
    if ('f' in a) return { name, type: AT.FLOAT, f: a.f };
    if ('i' in a) return { name, type: AT.INT, i: a.i };
    if ('s' in a) return { name, type: AT.STRING, s: enc(a.s) };
    if ('floats' in a) return { name, type: AT.FLOATS, floats: a.floats };
    if ('ints' in a) return { name, type: AT.INTS, ints: a.ints };
    return { name, type: AT.STRINGS, strings: a.strings.map(enc) };
  });
  return { name: `${opType}_${outputs[0]}`, opType, domain, input: inputs, output: outputs, attribute };
}

export function floatInit(name: string, dims: number[], values: number[]): onnxProto.onnx.ITensorProto {
  return { name, dims, dataType: DT.FLOAT, floatData: values };
}

export interface Graph {
  nodes: onnxProto.onnx.INodeProto[];
  inputs: onnxProto.onnx.IValueInfoProto[];
  outputs: onnxProto.onnx.IValueInfoProto[];
  initializers?: onnxProto.onnx.ITensorProto[];
}

export function encode(g: Graph, opset = 13): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [
      { domain: '', version: opset },
      { domain: 'ai.onnx.ml', version: 1 },
    ],
    producerName: 'scorer-tests',
    graph: { name: 'g', node: g.nodes, input: g.inputs, output: g.outputs, initializer: g.initializers ?? [] },
  });
  return onnx.ModelProto.encode(model).finish();
}

/** A fresh model folder holding `<name>.onnx`. */
export function modelDir(name: string, bytes: Uint8Array): string {
  const dir = mkdtempSync(join(tmpdir(), `scorer-${name}-`));
  writeFileSync(join(dir, `${name}.onnx`), bytes);
  return dir;
}

/** A seeded sequence of numbers in [-1, 1). */
export function numbers(n: number, seed = 1): number[] {
  let a = seed >>> 0;
  return Array.from({ length: n }, () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return a / 2 ** 31 - 1;
  });
}

/** [N,4] → MatMul → Softmax over the last axis → [N,3]: every row its own answer. */
export function rowWise(): Uint8Array {
  return encode({
    nodes: [node('MatMul', ['x', 'w'], ['z']), node('Softmax', ['z'], ['y'], { axis: i(-1) })],
    inputs: [tensorInfo('x', 'float32', ['N', 4])],
    outputs: [tensorInfo('y', 'float32', ['N', 3])],
    initializers: [floatInit('w', [4, 3], numbers(12, 7))],
  });
}

/** [N,3] → Softmax over axis 0: each row's answer depends on the others in its run. */
export function mixesRows(): Uint8Array {
  return encode({
    nodes: [node('Softmax', ['x'], ['y'], { axis: i(0) })],
    inputs: [tensorInfo('x', 'float32', ['N', 3])],
    outputs: [tensorInfo('y', 'float32', ['N', 3])],
  });
}

/** PyTorch's RNN default layout: x [seq, batch, 3] (axis 0 is time) → y [seq, 1, batch, 4] and the last state [1, batch, 4]. */
export function seqFirstRnn(): Uint8Array {
  const hidden = 4,
    features = 3;
  return encode({
    nodes: [node('RNN', ['x', 'W', 'R', 'B'], ['y', 'y_h'], { hidden_size: i(hidden) })],
    inputs: [tensorInfo('x', 'float32', ['seq', 'batch', features])],
    outputs: [
      tensorInfo('y', 'float32', ['seq', 1, 'batch', hidden]),
      tensorInfo('y_h', 'float32', [1, 'batch', hidden]),
    ],
    initializers: [
      floatInit('W', [1, hidden, features], numbers(hidden * features, 3)),
      floatInit('R', [1, hidden, hidden], numbers(hidden * hidden, 4)),
      floatInit('B', [1, 2 * hidden], numbers(2 * hidden, 5)),
    ],
  });
}

/** x [N,3,H,W] → max over H → softmax over W → [N,3,W]: a portrait and a landscape image of one size answer differently. */
export function orientation(): Uint8Array {
  return encode({
    nodes: [
      node('ReduceMax', ['x'], ['m'], { axes: ints([2]), keepdims: i(0) }),
      node('Softmax', ['m'], ['y'], { axis: i(-1) }),
    ],
    inputs: [tensorInfo('x', 'float32', ['N', 3, 'H', 'W'])],
    outputs: [tensorInfo('y', 'float32', ['N', 3, 'W'])],
  });
}

export const IRIS_LIKE = {
  features: 4,
  classes: 3,
  coefficients: numbers(12, 11).map((v) => v * 3),
  intercepts: [0.1, -0.2, 0.05],
};

/**
 * What skl2onnx exports for a LogisticRegression with default options: LinearClassifier (label and
 * scores) → Normalizer (L1) → ZipMap, outputs `label` and `output_probability`.
 */
export function zipMapClassifier(labels: number[] | string[]): Uint8Array {
  const byString = typeof labels[0] === 'string';
  const { features, coefficients, intercepts } = IRIS_LIKE;
  return encode({
    nodes: [
      node(
        'LinearClassifier',
        ['float_input'],
        ['label', 'scores'],
        {
          coefficients: floats(coefficients),
          intercepts: floats(intercepts),
          multi_class: i(1),
          post_transform: s('LOGISTIC'),
          ...(byString
            ? { classlabels_strings: strings(labels as string[]) }
            : { classlabels_ints: ints(labels as number[]) }),
        },
        'ai.onnx.ml',
      ),
      node('Normalizer', ['scores'], ['probabilities'], { norm: s('L1') }, 'ai.onnx.ml'),
      node(
        'ZipMap',
        ['probabilities'],
        ['output_probability'],
        byString
          ? { classlabels_strings: strings(labels as string[]) }
          : { classlabels_int64s: ints(labels as number[]) },
        'ai.onnx.ml',
      ),
    ],
    inputs: [tensorInfo('float_input', 'float32', ['N', features])],
    outputs: [
      tensorInfo('label', byString ? 'string' : 'int64', ['N']),
      seqMapInfo('output_probability', byString ? 'string' : 'int64'),
    ],
  });
}

/** The same classifier exported with options={'zipmap': False}: label and the probability tensor. */
export function plainClassifier(labels: number[]): Uint8Array {
  const { features, coefficients, intercepts } = IRIS_LIKE;
  return encode({
    nodes: [
      node(
        'LinearClassifier',
        ['float_input'],
        ['label', 'scores'],
        {
          coefficients: floats(coefficients),
          intercepts: floats(intercepts),
          multi_class: i(1),
          post_transform: s('LOGISTIC'),
          classlabels_ints: ints(labels),
        },
        'ai.onnx.ml',
      ),
      node('Normalizer', ['scores'], ['probabilities'], { norm: s('L1') }, 'ai.onnx.ml'),
    ],
    inputs: [tensorInfo('float_input', 'float32', ['N', features])],
    outputs: [tensorInfo('label', 'int64', ['N']), tensorInfo('probabilities', 'float32', ['N', IRIS_LIKE.classes])],
  });
}

/** x [N,2] of the type → Identity → y: what goes in must come out. */
export function identity(type: string): Uint8Array {
  return encode({
    nodes: [node('Identity', ['x'], ['y'])],
    inputs: [tensorInfo('x', type, ['N', 2])],
    outputs: [tensorInfo('y', type, ['N', 2])],
  });
}

/** Two outputs from one input, one of them costly: for OUTPUTS. */
export function twoOutputs(): Uint8Array {
  return encode({
    nodes: [node('Relu', ['x'], ['small']), node('MatMul', ['x', 'w'], ['big'])],
    inputs: [tensorInfo('x', 'float32', ['N', 4])],
    outputs: [tensorInfo('small', 'float32', ['N', 4]), tensorInfo('big', 'float32', ['N', 3])],
    initializers: [floatInit('w', [4, 3], numbers(12, 9))],
  });
}

/**
 * An image model of the size detectors take, with a detector's stem of work (~0.65 G multiply-adds):
 * x [N,3,640,640] → Conv 3→16 → Relu → Conv 16→32 stride 2 → Relu → global average → [N,32].
 */
export function image640(): Uint8Array {
  return encode({
    nodes: [
      node('Conv', ['x', 'w1', 'b1'], ['c1'], { kernel_shape: ints([3, 3]), pads: ints([1, 1, 1, 1]) }),
      node('Relu', ['c1'], ['r1']),
      node('Conv', ['r1', 'w2', 'b2'], ['c2'], {
        kernel_shape: ints([3, 3]),
        strides: ints([2, 2]),
        pads: ints([1, 1, 1, 1]),
      }),
      node('Relu', ['c2'], ['r2']),
      node('GlobalAveragePool', ['r2'], ['g']),
      node('Flatten', ['g'], ['y']),
    ],
    inputs: [tensorInfo('x', 'float32', ['N', 3, 640, 640])],
    outputs: [tensorInfo('y', 'float32', ['N', 32])],
    initializers: [
      floatInit(
        'w1',
        [16, 3, 3, 3],
        numbers(16 * 27, 21).map((v) => v / 3),
      ),
      floatInit('b1', [16], numbers(16, 22)),
      floatInit(
        'w2',
        [32, 16, 3, 3],
        numbers(32 * 144, 23).map((v) => v / 12),
      ),
      floatInit('b2', [32], numbers(32, 24)),
    ],
  });
}

/**
 * A 1x3x640x640 image as json.dumps writes float32 data: every value at full precision (up to 17
 * significant digits, some with exponents), and the Float32Array it stands for.
 */
export function image640Body(seed = 640): { body: Buffer; tensor: Float32Array } {
  const n = 3 * 640 * 640;
  const values = numbers(n, seed).map((v, k) => Math.fround(k % 97 === 0 ? v * 1e-6 : v)); // 1e-6: repr writes 1.2345e-07
  const rows: string[] = [];
  for (let c = 0; c < 3; c++) {
    const lines: string[] = [];
    for (let y = 0; y < 640; y++)
      lines.push(
        `[${values
          .slice((c * 640 + y) * 640, (c * 640 + y + 1) * 640)
          .map(pythonRepr)
          .join(', ')}]`,
      );
    rows.push(`[${lines.join(', ')}]`);
  }
  return { body: Buffer.from(`{"data": [[${rows.join(', ')}]]}`), tensor: Float32Array.from(values) };
}

/** Python's repr of a float: the shortest round-trip digits (as JavaScript's), exponent form below 1e-4 and from 1e16. */
function pythonRepr(x: number): string {
  const js = String(x);
  if (x !== 0 && Math.abs(x) < 1e-4 && !js.includes('e')) return x.toExponential().replace(/e-(\d)$/, 'e-0$1');
  return js.replace(/e-(\d)$/, 'e-0$1');
}
