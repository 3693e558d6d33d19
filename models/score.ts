/**
 * The Azure ML entry-script example, ported to TypeScript: what a user writes to score with their
 * own code instead of the built-in ONNX script. Run it with
 *
 *   ENTRY_SCRIPT=models/score.ts npm start
 *
 * and send `{"data": [[5.1, 3.5, 1.4, 0.2]]}`: the reply is
 * `{"label": [0], "probabilities": [[0.98, 0.02, 0]], "classes": ["setosa"]}`.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';

const CLASSES = ['setosa', 'versicolor', 'virginica'];

let session: ort.InferenceSession;

/** Once, at boot: load the model. */
export async function init(): Promise<void> {
  // Azure ML (and this consumer) set AZUREML_MODEL_DIR; run on its own, the model sits next to this file.
  const modelDir = process.env.AZUREML_MODEL_DIR ?? fileURLToPath(new URL('.', import.meta.url));
  session = await ort.InferenceSession.create(join(modelDir, 'iris.onnx'));
}

/** Once per message: `data` is the JSON text under the message's "data" key, rows of 4 measurements. */
export async function run(data: string): Promise<{ label: number[]; probabilities: number[][]; classes: string[] }> {
  const rows: unknown = JSON.parse(data);
  if (!Array.isArray(rows) || rows.length === 0) {
    throw new Error('data must be a non-empty array of rows of 4 numbers');
  }
  rows.forEach((row, i) => {
    if (!Array.isArray(row) || row.length !== 4 || !row.every(Number.isFinite)) {
      throw new Error(
        `row ${i} must be 4 numbers (sepal length, sepal width, petal length, petal width), got ${JSON.stringify(row)}`,
      );
    }
  });

  const input = new ort.Tensor('float32', Float32Array.from(rows.flat()), [rows.length, 4]);
  const output = await session.run({ float_input: input });

  const label = Array.from(output.label.data as BigInt64Array, Number); // int64 comes back as BigInt
  const p = output.probabilities.data as Float32Array;
  const probabilities = label.map((_, i) => Array.from(p.subarray(i * 3, i * 3 + 3)));
  return { label, probabilities, classes: label.map((l) => CLASSES[l]) };
}
