// Generates the repo's ONNX models deterministically: same bytes on every run, so they can be committed and diffed.
import { mkdir, writeFile } from 'node:fs/promises';
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as ort from 'onnxruntime-node';
import { FLOAT, INT64, Int, buildModel, encodeModel, floatTensor, node, valueInfo } from './onnx-writer.js';
import { CLASSES, loadIris, mulberry32, predict, stratifiedSplit, trainSoftmax } from './train-iris.js';

export const IRIS_SEED = 42;
export const MLP_SEED = 1234;
export const MLP_LAYERS = [784, 512, 256, 10] as const;

export interface IrisResult {
  path: string;
  testAccuracy: number;
  /** Accuracy of the float64 TS weights; should match the ONNX figure unless a row sits on a boundary. */
  tsTestAccuracy: number;
}

export async function makeIrisModel(outDir: string): Promise<IrisResult> {
  const { features, labels } = loadIris();
  const split = stratifiedSplit(labels, 10, mulberry32(IRIS_SEED));
  const model = trainSoftmax(
    split.train.map((i) => features[i]),
    split.train.map((i) => labels[i]),
    { seed: IRIS_SEED },
  );

  const proto = buildModel({
    name: 'iris',
    docString: 'Softmax regression on raw iris features; classes 0 setosa, 1 versicolor, 2 virginica.',
    inputs: [valueInfo('float_input', FLOAT, ['N', 4])],
    outputs: [valueInfo('label', INT64, ['N']), valueInfo('probabilities', FLOAT, ['N', CLASSES.length])],
    initializers: [
      floatTensor('coef', [4, CLASSES.length], model.weights.flat()),
      floatTensor('intercept', [CLASSES.length], model.bias),
    ],
    nodes: [
      node('Gemm', ['float_input', 'coef', 'intercept'], ['logits']),
      node('Softmax', ['logits'], ['probabilities'], { axis: new Int(1) }),
      // Taken from the probabilities so label always agrees with what a client sees in that output.
      node('ArgMax', ['probabilities'], ['label'], { axis: new Int(1), keepdims: new Int(0) }),
    ],
  });

  await mkdir(outDir, { recursive: true });
  const file = path.join(outDir, 'iris.onnx');
  await writeFile(file, encodeModel(proto));

  // Score the file itself, so the quoted accuracy is what the runtime actually produces.
  const testX = split.test.map((i) => features[i]);
  const testY = split.test.map((i) => labels[i]);
  const session = await ort.InferenceSession.create(file);
  try {
    const input = new ort.Tensor('float32', Float32Array.from(testX.flat()), [testX.length, 4]);
    const out = await session.run({ float_input: input });
    const predicted = out.label.data as BigInt64Array;
    const testAccuracy = testY.filter((y, i) => Number(predicted[i]) === y).length / testY.length;
    const tsTestAccuracy = testY.filter((y, i) => predict(model, testX[i]) === y).length / testY.length;

    const meta = {
      trainRows: split.train.length,
      testRows: split.test.length,
      testAccuracy,
      classes: [...CLASSES],
      seed: IRIS_SEED,
    };
    await writeFile(path.join(outDir, 'iris.json'), `${JSON.stringify(meta, null, 2)}\n`);
    return { path: file, testAccuracy, tsTestAccuracy };
  } finally {
    await session.release();
  }
}

export async function makeMlpModel(outDir: string): Promise<string> {
  const rng = mulberry32(MLP_SEED);
  const initializers = [];
  const nodes = [];
  let prev = 'input';
  for (let l = 1; l < MLP_LAYERS.length; l++) {
    const [fanIn, fanOut] = [MLP_LAYERS[l - 1], MLP_LAYERS[l]];
    // PyTorch's default Linear init range, so activations stay in a sane range through the stack.
    const bound = 1 / Math.sqrt(fanIn);
    const uniform = (count: number) => Array.from({ length: count }, () => (2 * rng() - 1) * bound);
    initializers.push(floatTensor(`W${l}`, [fanIn, fanOut], uniform(fanIn * fanOut)));
    initializers.push(floatTensor(`b${l}`, [fanOut], uniform(fanOut)));
    const last = l === MLP_LAYERS.length - 1;
    nodes.push(node('Gemm', [prev, `W${l}`, `b${l}`], [last ? 'logits' : `h${l}`]));
    if (!last) nodes.push(node('Relu', [`h${l}`], [`a${l}`]));
    prev = `a${l}`;
  }
  nodes.push(node('Softmax', ['logits'], ['probabilities'], { axis: new Int(1) }));

  const proto = buildModel({
    name: 'mlp',
    docString: 'Untrained MNIST-shaped MLP with seeded weights, for throughput benchmarks.',
    inputs: [valueInfo('input', FLOAT, ['N', MLP_LAYERS[0]])],
    outputs: [valueInfo('probabilities', FLOAT, ['N', MLP_LAYERS[MLP_LAYERS.length - 1]])],
    initializers,
    nodes,
  });
  const dir = path.join(outDir, 'mlp');
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, 'mlp.onnx');
  await writeFile(file, encodeModel(proto));
  return file;
}

export async function makeModels(outDir: string) {
  const iris = await makeIrisModel(outDir);
  const mlp = await makeMlpModel(outDir);
  return { iris, mlp };
}

function isMain(): boolean {
  if (!process.argv[1]) return false;
  try {
    return (
      pathToFileURL(realpathSync(process.argv[1])).href ===
      pathToFileURL(realpathSync(fileURLToPath(import.meta.url))).href
    );
  } catch {
    return false;
  }
}

if (isMain()) {
  const outDir = fileURLToPath(new URL('../models/', import.meta.url));
  const { iris, mlp } = await makeModels(outDir);
  console.log(
    `wrote ${path.relative(process.cwd(), iris.path)}: held-out accuracy ${iris.testAccuracy} (onnxruntime), ${iris.tsTestAccuracy} (TS weights)`,
  );
  console.log(`wrote ${path.relative(process.cwd(), mlp)}`);
}
