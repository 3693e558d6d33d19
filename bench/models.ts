/**
 * The two benchmark models and the message bodies sent to them. Bodies are fixed by a seed, so every
 * row of the table (and every run) sends the same bytes.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeNpy } from '../src/isolate/npy.js';
import { resolveModelVersion } from '../src/model-version.js';
import { makeMlpModel } from '../scripts/make-models.js';
import { mulberry32 } from '../scripts/train-iris.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface BenchModel {
  name: 'iris' | 'mlp';
  /** MODEL_DIR for the consumer under test (one .onnx file in it). */
  modelDir: string;
  modelFile: string;
  inputName: string;
  /** Features per row: every body holds one row. */
  width: number;
  /** Distinct bodies, sent round-robin. */
  bodies: Buffer[];
  /** Each body's row, for the compute ceiling's input tensor and the hand-written consumer. */
  rows: number[][];
}

const IRIS_ROWS = [
  [5.1, 3.5, 1.4, 0.2],
  [7.0, 3.2, 4.7, 1.4],
  [6.3, 3.3, 6.0, 2.5],
  [4.9, 3.0, 1.4, 0.2],
  [6.4, 3.2, 4.5, 1.5],
  [5.8, 2.7, 5.1, 1.9],
];

/** 784 values with 4 decimals, every pixel non-zero: denser (and larger, ~5.5 kB) than a real MNIST digit. */
function mlpRows(count: number): number[][] {
  const next = mulberry32(784);
  return Array.from({ length: count }, () => Array.from({ length: 784 }, () => Math.round(next() * 1e4) / 1e4));
}

const body = (row: number[]) => Buffer.from(JSON.stringify({ data: [row] }));

export async function benchModels(): Promise<BenchModel[]> {
  const mlpDir = join(ROOT, 'models', 'mlp');
  const mlpFile = join(mlpDir, 'mlp.onnx');
  // The MLP is gitignored: make it on first use, with the generator `npm run make-models` uses.
  if (!existsSync(mlpFile)) await makeMlpModel(join(ROOT, 'models'));
  const mlp = mlpRows(16);
  return [
    {
      name: 'iris',
      modelDir: join(ROOT, 'models'),
      modelFile: join(ROOT, 'models', 'iris.onnx'),
      inputName: 'float_input',
      width: 4,
      bodies: IRIS_ROWS.map(body),
      rows: IRIS_ROWS,
    },
    {
      name: 'mlp',
      modelDir: mlpDir,
      modelFile: mlpFile,
      inputName: 'input',
      width: 784,
      bodies: mlp.map(body),
      rows: mlp,
    },
  ];
}

/** Each of a model's rows as a float32 `.npy` body of shape [1, width], as numpy writes it. */
export function npyBodies(model: BenchModel): Buffer[] {
  return model.rows.map((row) =>
    Buffer.from(writeNpy({ type: 'float32', data: Float32Array.from(row), dims: [1, model.width] })),
  );
}

/**
 * The no-op consumer's environment for replies that carry what this consumer's replies carry: its
 * properties, and its headers with the model's name and the version this consumer would name
 * (x-model-version, resolved from the same folder).
 */
export function replyContractEnv(model: BenchModel): Record<string, string> {
  const { version } = resolveModelVersion(model.modelDir, { warn: () => {} });
  return { REPLY_PROPS: 'full', MODEL_NAME: model.name, MODEL_VERSION: version };
}
